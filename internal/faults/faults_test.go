package faults

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/faultproxy"
	"github.com/nixcache/nixcache/internal/testenv"
)

// TestFaults runs a short version of every scenario against real Nix, the
// real S3 server and the real hook and daemon binaries: every built path
// must reach the cache, be accepted by `nix store verify`, the invariant
// must hold, and nothing may be uploaded twice without a failed attempt.
func TestFaults(t *testing.T) {
	testenv.SkipIfShort(t)
	h := newHarness(t, Config{Chain: 4, BigSize: 12 << 20, Kills: 2, Builds: 3})
	var all []Counts
	for _, sc := range All {
		t.Run(string(sc), func(t *testing.T) {
			c, err := h.Run(context.Background(), sc, 2)
			all = append(all, c)
			if err != nil {
				t.Fatal(err)
			}
			if c.PathsChecked == 0 {
				t.Errorf("no paths checked")
			}
			if c.Faults == 0 && sc != Concurrent {
				t.Errorf("no fault injected")
			}
			if c.PathsLost != 0 || c.Broken != 0 {
				t.Errorf("%d paths lost, %d invariant violations (see log)", c.PathsLost, c.Broken)
			}
			if c.Needless != 0 {
				t.Errorf("%d needless re-uploads (see log)", c.Needless)
			}
			if sc == DiskFull && c.Unqueued == 0 {
				t.Errorf("the disk-full builds queued everything: the disk was not full")
			}
		})
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, all); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", buf.String())
}

// newHarness starts the S3 server (versitygw, unless cfg.S3 is set), builds
// the hook and the daemon, and returns a harness with cfg's sizes.
func newHarness(t testing.TB, cfg Config) *Harness {
	t.Helper()
	testenv.RequireNix(t)
	s3 := cfg.S3
	if s3 == nil {
		s3 = testenv.StartS3(t)
	}
	s3.SetEnv(t)
	bin := testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/post-build-hook", "github.com/nixcache/nixcache/examples/upload-daemon")
	cfg.S3, cfg.TB, cfg.WorkDir = s3, t, t.TempDir()
	cfg.Hook, cfg.Daemon = filepath.Join(bin, "post-build-hook"), filepath.Join(bin, "upload-daemon")
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	h, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

var (
	campaignTrials   = flag.Int("trials", 0, "TestCampaign: trials per scenario (0: skip the campaign)")
	campaignScenario = flag.String("scenario", "all", "TestCampaign: all, or one of s3-restart, slow, slowdown, kill, diskfull, concurrent")
	campaignBigMiB   = flag.Int64("big-mib", 40, "TestCampaign: size in MiB of the random-data path uploaded in every trial")
	campaignChain    = flag.Int("chain", 6, "TestCampaign: derivations per build")
	campaignQuiet    = flag.Bool("quiet", false, "TestCampaign: no line per trial")
)

// TestCampaign is the long fault-injection campaign, run on request:
//
//	go test ./internal/faults -run TestCampaign -v -timeout 0 -args -trials 60
//
// It logs a table of counts, and fails if any path was lost, the cache
// invariant broke, or an object was uploaded again without need. Without
// -trials it does nothing: TestFaults is its short version in every run.
func TestCampaign(t *testing.T) {
	if *campaignTrials <= 0 {
		t.Skip("the campaign runs with -args -trials N (TestFaults is its short version)")
	}
	scenarios := All
	if *campaignScenario != "all" {
		sc, err := ParseScenario(*campaignScenario)
		if err != nil {
			t.Fatal(err)
		}
		scenarios = []Scenario{sc}
	}
	cfg := Config{Chain: *campaignChain, BigSize: *campaignBigMiB << 20}
	if *campaignQuiet {
		cfg.Logf = func(string, ...any) {}
	}
	h := newHarness(t, cfg)
	var counts []Counts
	for _, sc := range scenarios {
		c, err := h.Run(context.Background(), sc, *campaignTrials)
		counts = append(counts, c)
		if err != nil {
			t.Errorf("%s: %v", sc, err)
			break
		}
		if c.PathsLost+c.Broken+c.Needless > 0 {
			t.Errorf("%s: %d paths lost, %d invariant violations, %d needless re-uploads (see log)", sc, c.PathsLost, c.Broken, c.Needless)
		}
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, counts); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", buf.String())
}

// The S3 server killed while it completes a multipart upload, then
// restarted: the client's retried CompleteMultipartUpload is answered 200
// by versitygw although the object was never created. The push must not
// trust that answer and publish a narinfo whose NAR is missing (Nix then
// fails with "file 'nar/....nar.zst' does not exist in binary cache").
// Trials 0, 2 and 4 strike in that window.
func TestS3RestartDuringMultipartComplete(t *testing.T) {
	h := newHarness(t, Config{Chain: 2, BigSize: 40 << 20})
	c, err := h.Run(context.Background(), S3Restart, 5)
	if err != nil {
		t.Fatal(err)
	}
	if c.PathsLost != 0 || c.Broken != 0 {
		t.Errorf("%d of %d paths lost, %d invariant violations after restarts during CompleteMultipartUpload (see log)",
			c.PathsLost, c.PathsChecked, c.Broken)
	}
}

// The checker's narinfo reader must read what real Nix writes: `nix copy`
// to a file:// cache, then every field the checker uses is compared with the
// files Nix wrote.
func TestParseNarInfoFieldsRealNix(t *testing.T) {
	outs := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "faults-parse", N: 3}).Paths
	dir := t.TempDir()
	cacheDir := filepath.Join(dir, "cache")
	testenv.Nix(t, "nix", append([]string{"copy", "--to", "file://" + cacheDir + "?compression=zstd"}, outs...)...)
	for _, p := range outs {
		data, err := os.ReadFile(filepath.Join(cacheDir, hashPart(p)+".narinfo"))
		if err != nil {
			t.Fatal(err)
		}
		ni, err := parseNarInfoFields(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v\n%s", p, err, data)
		}
		if ni.StorePath != p {
			t.Errorf("StorePath %q, want %q", ni.StorePath, p)
		}
		fi, err := os.Stat(filepath.Join(cacheDir, ni.URL))
		if err != nil {
			t.Fatalf("URL %s: %v", ni.URL, err)
		}
		if fi.Size() != ni.FileSize {
			t.Errorf("%s: FileSize %d, file has %d bytes", p, ni.FileSize, fi.Size())
		}
		refs := strings.Fields(string(testenv.Nix(t, "nix-store", "--query", "--references", p)))
		var want []string
		for _, r := range refs {
			want = append(want, filepath.Base(r))
		}
		sort.Strings(want) // a narinfo lists them sorted, nix-store does not
		if strings.Join(ni.References, " ") != strings.Join(want, " ") {
			t.Errorf("%s: References %v, nix-store says %v", p, ni.References, want)
		}
	}
}

// sample is a narinfo as Nix 2.8 writes it (notes/test-rig.md).
const sample = `StorePath: /nix/store/0hhb51h788j6gmjd8j9c6jrk34fji2cq-y
URL: nar/0qk0rv9dk5vfdxb91cq2298y6g818wmqi9xvnnnppqw5iba8azdj.nar.zst
Compression: zstd
FileHash: sha256:0qk0rv9dk5vfdxb91cq2298y6g818wmqi9xvnnnppqw5iba8azdj
FileSize: 88
NarHash: sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h
NarSize: 120
References: 
Deriver: 1bih4j3vfip689mf1s374ijxw69b6mj3-y.drv
Sig: test-cache-1:awDMthLIjlowQ6AlWxVJ3+206neEo4IVNU0dbIruBfmipO0hYdwiVbnH3fhixPn6M+5uzoGjpHZR7CJISJvNCw==
`

func TestParseNarInfoFields(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		wantErr  bool
		refs     int
	}{
		{"nix 2.8 sample", sample, false, 0},
		{"references", strings.Replace(sample, "References: ", "References: 0hhb51h788j6gmjd8j9c6jrk34fji2cq-y aaaab51h788j6gmjd8j9c6jrk34fji2cq-z", 1), false, 2},
		{"no URL", strings.Replace(sample, "URL: ", "XURL: ", 1), true, 0},
		{"no StorePath", strings.Replace(sample, "StorePath: ", "Path: ", 1), true, 0},
		{"no NarHash", strings.Replace(sample, "NarHash: ", "X: ", 1), true, 0},
		{"no NarSize", strings.Replace(sample, "NarSize: 120\n", "", 1), true, 0},
		{"no FileSize", strings.Replace(sample, "FileSize: 88\n", "", 1), true, 0},
		{"bad FileSize", strings.Replace(sample, "FileSize: 88", "FileSize: -1", 1), true, 0},
		{"CRLF", strings.ReplaceAll(sample, "\n", "\r\n"), true, 0},
		{"line without colon", sample + "garbage\n", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ni, err := parseNarInfoFields(strings.NewReader(tc.in))
			if tc.wantErr {
				if !errors.Is(err, ErrBadNarInfo) {
					t.Fatalf("err = %v, want ErrBadNarInfo", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ni.FileSize != 88 || len(ni.References) != tc.refs {
				t.Errorf("got %+v", ni)
			}
		})
	}
}

func req(method, path, query string, status int) faultproxy.Request {
	return faultproxy.Request{Method: method, Path: path, Query: query, Status: status}
}

func TestAnalyzeLog(t *testing.T) {
	const nar = "/b/nar/x.nar.zst"
	for _, tc := range []struct {
		name                         string
		log                          []faultproxy.Request
		keys, stored, failed, needed int
		needless                     []string
	}{
		{"one put", []faultproxy.Request{req("PUT", nar, "", 200)}, 1, 1, 0, 0, nil},
		{"put twice", []faultproxy.Request{req("PUT", nar, "", 200), req("PUT", nar, "", 200)}, 1, 2, 0, 0, []string{"nar/x.nar.zst"}},
		{"retry after 503", []faultproxy.Request{req("PUT", nar, "", 200), req("PUT", nar, "", 503), req("PUT", nar, "", 200)}, 1, 2, 1, 1, nil},
		{"first attempt fails", []faultproxy.Request{req("PUT", nar, "", 429), req("PUT", nar, "", 200)}, 1, 1, 1, 0, nil},
		{"other bucket ignored", []faultproxy.Request{req("PUT", "/c/nar/x.nar.zst", "", 200), req("PUT", nar, "", 200)}, 1, 1, 0, 0, nil},
		{"reads ignored", []faultproxy.Request{req("HEAD", nar, "", 404), req("GET", nar, "", 200), req("PUT", nar, "", 200)}, 1, 1, 0, 0, nil},
		{"multipart", []faultproxy.Request{
			req("POST", nar, "uploads=", 200),
			req("PUT", nar, "partNumber=1&uploadId=u", 200),
			req("PUT", nar, "partNumber=2&uploadId=u", 200),
			req("POST", nar, "uploadId=u", 200),
		}, 1, 1, 0, 0, nil},
		{"multipart part fails, redone", []faultproxy.Request{
			req("POST", nar, "uploads=", 200),
			req("PUT", nar, "partNumber=1&uploadId=u", 200),
			req("POST", nar, "uploadId=u", 200),
			req("PUT", nar, "partNumber=1&uploadId=v", 502),
			req("PUT", nar, "partNumber=1&uploadId=v", 200),
			req("POST", nar, "uploadId=v", 200),
		}, 1, 2, 1, 1, nil},
		{"acknowledged but missing", []faultproxy.Request{
			req("POST", nar, "uploadId=u", 502),
			req("POST", nar, "uploadId=u", 200),
			req("HEAD", nar, "", 404),
			req("POST", nar, "uploadId=v", 200),
		}, 1, 2, 1, 1, nil},
		{"touch is no upload", []faultproxy.Request{
			req("PUT", nar, "", 200),
			{Method: "PUT", Path: nar, Status: 200, Copy: true},
		}, 1, 1, 0, 0, nil},
		{"read back and written again (refresh)", []faultproxy.Request{
			req("PUT", nar, "", 200),
			req("HEAD", nar, "", 200),
			req("GET", nar, "", 503),
			req("GET", nar, "", 200),
			req("PUT", nar, "", 200),
			req("PUT", nar, "", 200),
		}, 1, 3, 0, 0, []string{"nar/x.nar.zst"}},
		{"multipart done twice", []faultproxy.Request{
			req("POST", nar, "uploadId=u", 200),
			req("POST", nar, "uploads=", 200),
			req("POST", nar, "uploadId=v", 200),
		}, 1, 2, 0, 0, []string{"nar/x.nar.zst"}},
		// Two uploaders check at once, find it missing, both upload: raced.
		{"raced", []faultproxy.Request{
			req("HEAD", nar, "", 404),
			req("HEAD", nar, "", 404),
			req("PUT", nar, "", 200),
			req("PUT", nar, "", 200),
		}, 1, 2, 0, 0, nil},
		// One check for two uploads: the second is needless.
		{"checked once, stored twice", []faultproxy.Request{
			req("HEAD", nar, "", 404),
			req("PUT", nar, "", 200),
			req("PUT", nar, "", 200),
		}, 1, 2, 0, 0, []string{"nar/x.nar.zst"}},
		// A check after the store finds it: a second upload is needless.
		{"checked after stored", []faultproxy.Request{
			req("HEAD", nar, "", 404),
			req("PUT", nar, "", 200),
			req("HEAD", nar, "", 200),
			req("PUT", nar, "", 200),
		}, 1, 2, 0, 0, []string{"nar/x.nar.zst"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := AnalyzeLog(tc.log, "b")
			if u.Keys != tc.keys || u.Stored != tc.stored || u.Failed != tc.failed || u.Needed != tc.needed ||
				fmt.Sprint(u.Needless) != fmt.Sprint(tc.needless) ||
				(tc.name == "raced") != (len(u.Raced) == 1) {
				t.Errorf("got %+v", u)
			}
		})
	}
}

func TestParseScenario(t *testing.T) {
	for _, sc := range All {
		if got, err := ParseScenario(string(sc)); err != nil || got != sc {
			t.Errorf("ParseScenario(%q) = %q, %v", sc, got, err)
		}
	}
	if _, err := ParseScenario("nope"); !errors.Is(err, ErrUnknownScenario) {
		t.Errorf("err = %v", err)
	}
}

func TestCheckResultErr(t *testing.T) {
	if err := (CheckResult{Checked: 3}).Err(); err != nil {
		t.Errorf("clean result: %v", err)
	}
	err := CheckResult{Lost: []string{"/nix/store/x"}, Broken: []string{"a.narinfo: NAR missing"}}.Err()
	if !errors.Is(err, ErrLost) || !errors.Is(err, ErrInvariant) {
		t.Errorf("err = %v", err)
	}
}

func FuzzParseNarInfoFields(f *testing.F) {
	f.Add([]byte(sample))
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, err := parseNarInfoFields(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadNarInfo) {
				t.Fatalf("error does not wrap ErrBadNarInfo: %v", err)
			}
			return
		}
		if ni.StorePath == "" || ni.URL == "" || ni.FileSize < 0 {
			t.Fatalf("accepted incomplete narinfo %+v", ni)
		}
	})
}

func BenchmarkAnalyzeLog(b *testing.B) {
	var log []faultproxy.Request
	for i := range 10000 {
		key := fmt.Sprintf("/bucket/nar/%d.nar.zst", i%2000)
		status := 200
		if i%7 == 0 {
			status = 503
		}
		log = append(log, req("PUT", key, "", status))
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = AnalyzeLog(log, "bucket")
	}
}

func ExampleAnalyzeLog() {
	log := []faultproxy.Request{
		{Method: "PUT", Path: "/cache/nar/a.nar.zst", Status: 200},
		{Method: "PUT", Path: "/cache/a.narinfo", Status: 503, Injected: true},
		{Method: "PUT", Path: "/cache/a.narinfo", Status: 200},
		{Method: "PUT", Path: "/cache/nar/a.nar.zst", Status: 200}, // stored again for no reason
	}
	u := AnalyzeLog(log, "cache")
	fmt.Println("keys", u.Keys, "stored", u.Stored, "failed", u.Failed, "needless", u.Needless)
	// Output: keys 2 stored 3 failed 1 needless [nar/a.nar.zst]
}
