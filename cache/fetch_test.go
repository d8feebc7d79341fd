package cache_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/compress"
	_ "github.com/nixcache/nixcache/cache/file"
	_ "github.com/nixcache/nixcache/cache/http"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// fetchPaths builds a fresh closure (directories with an executable, a
// symlink, a self-reference and incompressible bytes) and adds a store path
// that is a single regular file; it returns the closure's top, every path,
// and a Nix-made key pair.
func fetchPaths(t *testing.T) (top storepath.Path, paths []storepath.Path, key testenv.NixKey) {
	t.Helper()
	testenv.RequireNix(t)
	// Rooted: other tests on the machine may collect garbage meanwhile.
	cl := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "fetch", N: 3, Blob: 50000, Root: true})
	for _, p := range cl.Paths {
		paths = append(paths, mustPath(t, p))
	}
	f := filepath.Join(t.TempDir(), "fetch-file")
	if err := os.WriteFile(f, cachetestData(fmt.Sprint(t.Name(), time.Now().UnixNano())), 0o644); err != nil {
		t.Fatal(err)
	}
	fp := mustPath(t, strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", f))))
	link := filepath.Join(t.TempDir(), "root")
	testenv.Nix(t, "nix-store", "--realise", fp.String(), "--add-root", link, "--indirect")
	t.Cleanup(func() {
		os.Remove(link)
		testenv.NixCmd("nix-store", "--delete", fp.String())
	})
	key = testenv.NixKeyPair(t, "fetch-test-1")
	return mustPath(t, cl.Top), append(paths, fp), key
}

func cachetestData(seed string) []byte {
	return []byte(strings.Repeat(seed+"\n", 1000))
}

func trustedKeys(t *testing.T, pub string) []signature.PublicKey {
	t.Helper()
	pk, err := signature.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return []signature.PublicKey{pk}
}

// nixDump is `nix-store --dump path`: the judge of a restored tree.
func nixDump(t *testing.T, path string) []byte {
	t.Helper()
	return testenv.Nix(t, "nix-store", "--dump", path)
}

// nixRestoreFrom restores p at dir the way Nix does from the cache at
// store: the NAR Nix itself reads from the cache (nix store dump-path
// --store), unpacked by nix-store --restore.
func nixRestoreFrom(t *testing.T, store string, p storepath.Path, dir string) {
	t.Helper()
	narBytes := testenv.Nix(t, "nix", "store", "dump-path", "--store", store, p.String())
	cmd := exec.Command("nix-store", "--restore", dir)
	cmd.Stdin = bytes.NewReader(narBytes)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nix-store --restore: %v\n%s", err, out)
	}
}

// noLeftovers fails unless dir holds exactly the names want.
func noLeftovers(t *testing.T, dir string, want ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("%s holds %q, want %q", dir, names, want)
	}
}

// TestFetchMatchesNix fetches every path from caches written by nix copy,
// by our push to a directory and to S3, read as file://, s3:// and http://
// (a web server over the directory, and the S3 server's public bucket):
// each restored tree is byte-identical, as nix-store --dump sees it, to
// what nix-store --restore makes of the NAR Nix itself reads from the same
// cache, and to the store path.
func TestFetchMatchesNix(t *testing.T) {
	ctx := context.Background()
	top, paths, key := fetchPaths(t)
	tmp := t.TempDir()
	nixDir := filepath.Join(tmp, "nix-copy")
	testenv.Nix(t, "nix", append([]string{"copy", "--to", "file://" + nixDir + "?secret-key=" + key.SecretFile}, pathStrings(paths)...)...)
	ourDir := filepath.Join(tmp, "push")
	push := func(url string) {
		c, err := cache.Open(ctx, url, cache.WithSecretKeyFiles(key.SecretFile))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Push(ctx, openStore(t), paths, cache.PushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	push("file://" + ourDir)
	noneDir := filepath.Join(tmp, "push-none")
	push("file://" + noneDir + "?compression=none")
	s3 := testenv.StartS3(t)
	s3.SetEnv(t)
	s3.MakeBucket(t, "fetch", true)
	push(s3.URL("fetch", "compression=xz"))
	bucketHTTP := s3.Endpoint + "/fetch"
	served := testenv.ServeDir(t, nixDir)
	gzipped := testenv.ServeDir(t, noneDir, gzipEncoded)
	for _, src := range []struct{ name, url, nixURL string }{
		{"file nix copy", "file://" + nixDir, "file://" + nixDir},
		{"file push", "file://" + ourDir, "file://" + ourDir},
		{"s3 push", s3.URL("fetch"), bucketHTTP},
		{"http nix copy", served, served},
		{"http Content-Encoding gzip, compression none", gzipped, gzipped},
		{"http s3 bucket", bucketHTTP + "?stall-timeout=10s", bucketHTTP},
	} {
		t.Run(src.name, func(t *testing.T) {
			// Nix agrees the cache is good and readable at this URL.
			if code := testenv.NixStoreVerify(t, src.nixURL, key.Public, pathStrings(paths)...); code != 0 {
				t.Fatalf("nix store verify --store %s: exit %d", src.nixURL, code)
			}
			c, err := cache.Open(ctx, src.url)
			if err != nil {
				t.Fatal(err)
			}
			opts := cache.FetchOptions{TrustedKeys: trustedKeys(t, key.Public)}
			work := t.TempDir()
			for _, p := range paths {
				out := filepath.Join(work, "ours-"+p.Base())
				ni, err := c.Fetch(ctx, p, out, opts)
				if err != nil {
					t.Fatalf("Fetch %s: %v", p, err)
				}
				if ni.StorePath != p {
					t.Fatalf("Fetch %s returned the narinfo of %s", p, ni.StorePath)
				}
				ref := filepath.Join(work, "nix-"+p.Base())
				nixRestoreFrom(t, src.nixURL, p, ref)
				got := nixDump(t, out)
				if !bytes.Equal(got, nixDump(t, ref)) || !bytes.Equal(got, nixDump(t, p.String())) {
					t.Fatalf("%s: the fetched tree differs from what Nix restores (nix-store --dump)", p)
				}
			}
			closureDir := filepath.Join(work, "closure")
			infos, err := c.FetchClosure(ctx, top, closureDir, opts)
			if err != nil {
				t.Fatalf("FetchClosure: %v", err)
			}
			if len(infos) != len(paths)-1 || infos[0].StorePath != top {
				t.Fatalf("FetchClosure returned %d narinfos (first %s), want %d starting with %s", len(infos), infos[0].StorePath, len(paths)-1, top)
			}
			var names []string
			for _, p := range paths[:len(paths)-1] {
				names = append(names, p.Base())
				if !bytes.Equal(nixDump(t, filepath.Join(closureDir, p.Base())), nixDump(t, p.String())) {
					t.Fatalf("closure: %s differs from the store path", p)
				}
			}
			slices.Sort(names)
			noLeftovers(t, closureDir, names...)
		})
	}
	// Nix peels every compression layer it recognises off a
	// Content-Encoding: gzip-encoded xz NARs come out bare and then fail
	// as xz. Fetch agrees.
	t.Run("http Content-Encoding gzip over xz NARs", func(t *testing.T) {
		url := testenv.ServeDir(t, nixDir, gzipEncoded)
		if code := testenv.NixStoreVerify(t, url, key.Public, top.String()); code == 0 {
			t.Fatal("nix store verify reads gzip-encoded xz NARs: this test's premise is wrong")
		}
		c, err := cache.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		work := t.TempDir()
		if _, err := c.Fetch(ctx, top, filepath.Join(work, "out"), cache.FetchOptions{TrustedKeys: trustedKeys(t, key.Public)}); err == nil {
			t.Fatal("Fetch of gzip-encoded xz NARs succeeded where Nix fails")
		}
		noLeftovers(t, work)
	})
}

// tamperCase damages a copy of a cache directory.
type tamperCase struct {
	name string
	want []error // the error wraps one of these (any error when empty)
	// nixMissesIt: nix store verify (2.8) passes this damage.
	nixMissesIt bool
	// damage edits the cache at dir for store path p (secret: the trusted
	// key, for damage a key holder could do).
	damage func(t *testing.T, dir string, p storepath.Path, secret signature.SecretKey)
}

func narinfoOf(t *testing.T, dir string, p storepath.Path) *narinfo.NarInfo {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, cache.NarInfoKey(p)))
	if err != nil {
		t.Fatal(err)
	}
	ni, err := narinfo.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return ni
}

// otherRef returns a reference of ni other than its own path.
func otherRef(t *testing.T, ni *narinfo.NarInfo) storepath.Path {
	t.Helper()
	for _, r := range ni.References {
		if r != ni.StorePath {
			return r
		}
	}
	t.Fatalf("%s has no reference but itself", ni.StorePath)
	return ""
}

func writeNarInfo(t *testing.T, dir string, ni *narinfo.NarInfo) {
	t.Helper()
	text, err := ni.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, cache.NarInfoKey(ni.StorePath)), text, 0o644); err != nil {
		t.Fatal(err)
	}
}

func editFile(t *testing.T, path string, edit func([]byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceNAR stores nar (compressed with zstd) as p's NAR and points p's
// narinfo at it with a right FileHash and FileSize, keeping NarHash and
// NarSize, then signs it again with secret: what only a key holder (or a
// bug in a writer) could do, so that only the NAR checks catch it.
func replaceNAR(t *testing.T, dir string, p storepath.Path, secret signature.SecretKey, nar []byte) {
	t.Helper()
	ni := narinfoOf(t, dir, p)
	method, ext := compress.Zstd, ".nar.zst"
	if ni.Compression == compress.None {
		method, ext = compress.None, ".nar"
	}
	var buf bytes.Buffer
	zw, err := compress.NewWriter(&buf, compress.Options{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(nar)
	zw.Close()
	h := nixhash.NewHasher(nixhash.SHA256)
	h.Write(buf.Bytes())
	ni.FileHash, ni.FileSize = h.SumHash(), uint64(buf.Len())
	ni.URL, ni.Compression = "nar/replaced-"+p.HashPart()+ext, method
	if err := os.WriteFile(filepath.Join(dir, ni.URL), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ni.Sigs = nil
	if err := ni.Sign(secret); err != nil {
		t.Fatal(err)
	}
	writeNarInfo(t, dir, ni)
}

// badSig: a signature by the trusted key's name that does not verify, or
// none by a trusted key.
var badSig = []error{signature.ErrInvalidSignature, signature.ErrUntrusted}

var tamperCases = []tamperCase{
	{"NAR byte flipped", []error{cache.ErrFileHashMismatch}, false, func(t *testing.T, dir string, p storepath.Path, _ signature.SecretKey) {
		editFile(t, filepath.Join(dir, narinfoOf(t, dir, p).URL), func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b })
	}},
	{"NAR truncated", []error{cache.ErrFileHashMismatch}, false, func(t *testing.T, dir string, p storepath.Path, _ signature.SecretKey) {
		editFile(t, filepath.Join(dir, narinfoOf(t, dir, p).URL), func(b []byte) []byte { return b[:len(b)/2] })
	}},
	{"NAR missing", []error{cache.ErrNotFound}, false, func(t *testing.T, dir string, p storepath.Path, _ signature.SecretKey) {
		os.Remove(filepath.Join(dir, narinfoOf(t, dir, p).URL))
	}},
	{"narinfo NarHash changed", badSig, false, func(t *testing.T, dir string, p storepath.Path, _ signature.SecretKey) {
		ni := narinfoOf(t, dir, p)
		other := narinfoOf(t, dir, otherRef(t, ni))
		ni.NarHash = other.NarHash
		writeNarInfo(t, dir, ni)
	}},
	{"signature byte flipped", badSig, false, func(t *testing.T, dir string, p storepath.Path, _ signature.SecretKey) {
		editFile(t, filepath.Join(dir, cache.NarInfoKey(p)), func(b []byte) []byte {
			// Another base64 letter, so the signature still parses (a
			// flip could make '+' or '/' an invalid character) but no
			// longer verifies.
			i := bytes.Index(b, []byte("Sig: ")) + len("Sig: fetch-test-1:") + 10
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return b
		})
	}},
	{"signed by another key", badSig, false, func(t *testing.T, dir string, p storepath.Path, _ signature.SecretKey) {
		other, _, err := signature.GenerateKey("fetch-test-1", nil)
		if err != nil {
			t.Fatal(err)
		}
		ni := narinfoOf(t, dir, p)
		ni.Sigs = nil
		if err := ni.Sign(other); err != nil {
			t.Fatal(err)
		}
		writeNarInfo(t, dir, ni)
	}},
	// Nix's verify reads the other path's narinfo and checks that
	// path instead; substitution would refuse it.
	{"narinfo of another path", []error{cache.ErrBadNarInfo}, true, func(t *testing.T, dir string, p storepath.Path, _ signature.SecretKey) {
		ref := otherRef(t, narinfoOf(t, dir, p))
		data, _ := os.ReadFile(filepath.Join(dir, cache.NarInfoKey(ref)))
		os.WriteFile(filepath.Join(dir, cache.NarInfoKey(p)), data, 0o644)
	}},
	{"NAR content changed, re-signed", []error{cache.ErrNarHashMismatch}, false, func(t *testing.T, dir string, p storepath.Path, secret signature.SecretKey) {
		nar := nixDump(t, p.String())
		nar[len(nar)/2] ^= 0x01 // inside the incompressible blob
		replaceNAR(t, dir, p, secret, nar)
	}},
	{"NAR longer, re-signed", []error{cache.ErrNarSizeMismatch}, false, func(t *testing.T, dir string, p storepath.Path, secret signature.SecretKey) {
		replaceNAR(t, dir, p, secret, append(nixDump(t, p.String()), make([]byte, 8)...))
	}},
	{"NAR shorter, re-signed", []error{cache.ErrNarSizeMismatch}, false, func(t *testing.T, dir string, p storepath.Path, secret signature.SecretKey) {
		nar := nixDump(t, p.String())
		replaceNAR(t, dir, p, secret, nar[:len(nar)-8])
	}},
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
}

// TestFetchRefusesTampering damages a cache (zstd, and uncompressed, where
// the file is the NAR and is hashed once) in each way a NAR or narinfo can
// be damaged: Nix's own verify refuses each damaged cache, and Fetch and
// FetchClosure, over file:// and http://, fail with the matching error and
// leave nothing behind.
func TestFetchRefusesTampering(t *testing.T) {
	for _, method := range []string{compress.Zstd, compress.None} {
		t.Run(method, func(t *testing.T) { fetchRefusesTampering(t, method) })
	}
}

func fetchRefusesTampering(t *testing.T, method string) {
	ctx := context.Background()
	top, paths, key := fetchPaths(t)
	secret, err := signature.LoadSecretKeyFile(key.SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	clean := filepath.Join(t.TempDir(), "clean")
	c, err := cache.Open(ctx, "file://"+clean+"?compression="+method, cache.WithSecretKeyFiles(key.SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, openStore(t), paths, cache.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := narinfoOf(t, clean, top).Compression; got != method {
		t.Fatalf("pushed with Compression %q, want %q", got, method)
	}
	opts := cache.FetchOptions{TrustedKeys: trustedKeys(t, key.Public)}
	for _, tc := range tamperCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			copyDir(t, clean, dir)
			tc.damage(t, dir, top, secret)
			if code := testenv.NixStoreVerify(t, "file://"+dir, key.Public, top.String()); code == 0 && !tc.nixMissesIt {
				t.Fatalf("nix store verify passes the damaged cache: the damage is no damage")
			}
			for _, url := range []string{"file://" + dir, testenv.ServeDir(t, dir) + "?retry-attempts=1"} {
				c, err := cache.Open(ctx, url)
				if err != nil {
					t.Fatal(err)
				}
				work := t.TempDir()
				_, err = c.Fetch(ctx, top, filepath.Join(work, "out"), opts)
				checkTamperErr(t, url, "Fetch", err, tc.want, top)
				_, err = c.FetchClosure(ctx, top, filepath.Join(work, "closure"), opts)
				checkTamperErr(t, url, "FetchClosure", err, tc.want, top)
				noLeftovers(t, work)
				// The stream API: the damage shows by the end of the stream.
				_, rc, err := c.FetchNAR(ctx, top, opts)
				if err == nil {
					_, err = io.Copy(io.Discard, rc)
					if cerr := rc.Close(); cerr == nil || cerr.Error() != err.Error() {
						t.Errorf("%s: FetchNAR: Close returned %v, the failed Read %v", url, cerr, err)
					}
				}
				checkTamperErr(t, url, "FetchNAR", err, tc.want, top)
			}
		})
	}
}

func checkTamperErr(t *testing.T, url, call string, err error, want []error, p storepath.Path) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: %s of a damaged path succeeded", url, call)
	}
	if len(want) > 0 && !slices.ContainsFunc(want, func(w error) bool { return errors.Is(err, w) }) {
		t.Fatalf("%s: %s: error %v, want one wrapping one of %v", url, call, err, want)
	}
	if strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("%s: %s: the error reports the paths stopped because of the bad one: %v", url, call, err)
	}
	var pe *cache.PathError
	if !errors.As(err, &pe) || pe.Path != p {
		t.Fatalf("%s: %s: error %v does not name %s", url, call, err, p)
	}
}

// TestFetchNARStream: a FetchNAR stream closed before its end reports it
// was not verified; read to its end, it closes cleanly; and Fetch refuses
// untrusted keys, an empty key list and an existing target.
func TestFetchNARStream(t *testing.T) {
	ctx := context.Background()
	top, paths, key := fetchPaths(t)
	dir := t.TempDir()
	c, err := cache.Open(ctx, "file://"+dir, cache.WithSecretKeyFiles(key.SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, openStore(t), paths, cache.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	opts := cache.FetchOptions{TrustedKeys: trustedKeys(t, key.Public)}
	_, rc, err := c.FetchNAR(ctx, top, opts)
	if err != nil {
		t.Fatal(err)
	}
	rc.Read(make([]byte, 100))
	if err := rc.Close(); !errors.Is(err, cache.ErrIncomplete) {
		t.Fatalf("Close before the end: %v, want ErrIncomplete", err)
	}
	ni, rc, err := c.FetchNAR(ctx, top, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || rc.Close() != nil {
		t.Fatalf("read to the end: %v", err)
	}
	if !bytes.Equal(got, nixDump(t, top.String())) || uint64(len(got)) != ni.NarSize {
		t.Fatal("FetchNAR stream differs from nix-store --dump")
	}
	if _, _, err := c.FetchNAR(ctx, top, cache.FetchOptions{}); !errors.Is(err, cache.ErrNoTrustedKeys) {
		t.Fatalf("no trusted keys: %v", err)
	}
	_, other, _ := signature.GenerateKey("other-1", nil)
	if _, err := c.Fetch(ctx, top, filepath.Join(t.TempDir(), "x"), cache.FetchOptions{TrustedKeys: []signature.PublicKey{other}}); !errors.Is(err, signature.ErrUntrusted) {
		t.Fatalf("untrusted: %v", err)
	}
	exists := t.TempDir()
	if _, err := c.Fetch(ctx, top, exists, opts); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("existing target: %v", err)
	}
	noLeftovers(t, exists)
}

// gzipEncoded serves every object gzip-compressed with Content-Encoding:
// gzip, as a web server with on-the-fly compression does.
func gzipEncoded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			w.WriteHeader(rec.Code)
			return
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(rec.Body.Bytes())
		zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(buf.Bytes())
	})
}
