// Package faults is a fault-injection harness for nixcache's uploads. It runs
// real uploads (the cache.Cache.Push pipeline in-process, and the real
// post-build-hook and upload-daemon binaries under real nix-build) against a
// real S3 server (versitygw, behind internal/faultproxy) while faults happen:
// the server stopped and restarted mid-push, slow responses, 503 SlowDown and
// 429 answers, the daemon SIGKILLed while draining, the queue's disk full, and
// several builds running their hooks at once.
//
// After each trial it judges the cache the way Nix would use it: every path
// that was built has its narinfo, `nix store verify` (real Nix, over plain
// HTTP, with the trusted public key) accepts every path, no narinfo lacks its
// NAR (FileSize bytes) or a reference's narinfo, and, from the proxy's request
// log, no object was uploaded again unless an upload request for it had
// failed.
//
// The harness runs inside tests only: TestFaults, a short version of every
// scenario, runs with go test; TestCampaign runs many trials on request,
// as root on a machine with Nix and versitygw:
//
//	go test ./internal/faults -run TestCampaign -v -timeout 0 -args -trials 60 [-scenario kill] [-big-mib 40] [-chain 6]
package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/localstore"
	"github.com/nixcache/nixcache/internal/faultproxy"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"

	_ "github.com/nixcache/nixcache/cache/localstore/sqlite" // read db.sqlite directly
	_ "github.com/nixcache/nixcache/cache/s3"                // registers s3://
)

// Scenario names a kind of fault.
type Scenario string

// The scenarios, in the order All runs them.
const (
	// S3Restart stops the S3 server mid-push (the proxy then answers 502)
	// and starts it again with the same data, once or twice per trial;
	// in even trials the first stop hits the server while it completes
	// the big path's multipart upload.
	S3Restart Scenario = "s3-restart"
	// Slow adds 50-200 ms of latency to every request.
	Slow Scenario = "slow"
	// SlowDown answers about 15% of requests with 503 SlowDown and 15%
	// with 429 Too Many Requests.
	SlowDown Scenario = "slowdown"
	// Kill SIGKILLs upload-daemon at random moments while it drains a
	// queue filled by the post-build hook, and restarts it.
	Kill Scenario = "kill"
	// DiskFull fills the queue directory's file system (a 64 KiB tmpfs
	// with few inodes) while nix-build runs the hook in queue mode: the hook
	// must exit 0 and the build succeed; once space is freed, later builds
	// queue again.
	DiskFull Scenario = "diskfull"
	// Concurrent runs several nix-builds at once, each running the hook in
	// queue mode, while the daemon drains.
	Concurrent Scenario = "concurrent"
)

// All is every scenario.
var All = []Scenario{S3Restart, Slow, SlowDown, Kill, DiskFull, Concurrent}

// ErrUnknownScenario is returned by ParseScenario and Run for a name not in All.
var ErrUnknownScenario = errors.New("faults: unknown scenario")

// ErrTrial is wrapped when a trial could not be carried out (a build failed,
// the daemon did not drain in time, the disk could not be mounted): the
// harness failed, not necessarily the code under test.
var ErrTrial = errors.New("faults: trial failed")

// ParseScenario returns the scenario named s.
func ParseScenario(s string) (Scenario, error) {
	for _, sc := range All {
		if string(sc) == s {
			return sc, nil
		}
	}
	return "", fmt.Errorf("%w: %q (want one of %v)", ErrUnknownScenario, s, All)
}

// Config configures a Harness.
type Config struct {
	// S3 is the S3 server; the harness stops and starts it.
	S3 *testenv.S3
	// TB is the test the harness runs in; it makes buckets
	// (testenv.S3.MakeBucket).
	TB testenv.TB
	// Hook and Daemon are the post-build-hook and upload-daemon binaries
	// (testenv.GoBuild builds them).
	Hook, Daemon string
	// WorkDir holds keys, Nix expressions, queues and temporary files.
	WorkDir string
	// Chain is the number of small derivations per build (default 6), each
	// referring to the previous one.
	Chain int
	// BigSize is the size of the random-data path uploaded in every trial,
	// so that multipart uploads get interrupted too (default 40 MiB).
	BigSize int64
	// Kills is the number of SIGKILLs per Kill trial (default 4).
	Kills int
	// Builds is the number of concurrent nix-builds per Concurrent trial
	// (default 4).
	Builds int
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
}

// Counts are the totals of one scenario's trials.
type Counts struct {
	Scenario Scenario
	// Trials is the number of trials run.
	Trials int
	// Faults is the number of faults injected: proxy answers (503, 429,
	// 502), server restarts, SIGKILLs, disk-full builds; for Slow, the
	// number of delayed requests.
	Faults int
	// PathsChecked is the number of store paths that had to be in the cache.
	PathsChecked int
	// PathsLost is the number of those missing or refused by Nix (must be 0).
	PathsLost int
	// Broken is the number of invariant violations (must be 0).
	Broken int
	// Stored, Failed, Retried and Needless count uploads (see Uploads):
	// objects stored, failed upload requests, re-uploads after a failed
	// request, re-uploads without one.
	Stored, Failed, Retried, Needless int
	// Vanished is the number of objects the server acknowledged but later
	// answered 404 for (see Uploads.Vanished).
	Vanished int
	// Unqueued is the number of built paths the hook could not queue
	// because the disk was full (re-queued by hand, as an operator would).
	Unqueued int
	// Duration is the wall-clock time of the trials.
	Duration time.Duration
}

func (c *Counts) add(o Counts) {
	c.Trials += o.Trials
	c.Faults += o.Faults
	c.PathsChecked += o.PathsChecked
	c.PathsLost += o.PathsLost
	c.Broken += o.Broken
	c.Stored += o.Stored
	c.Failed += o.Failed
	c.Vanished += o.Vanished
	c.Retried += o.Retried
	c.Needless += o.Needless
	c.Unqueued += o.Unqueued
	c.Duration += o.Duration
}

// Harness runs trials. Create it with New; it is not safe for concurrent use.
type Harness struct {
	cfg      Config
	proxy    *faultproxy.Proxy
	keySec   string
	keyPub   string // "name:base64"
	big      string // store path of the random-data path
	mu       sync.Mutex
	built    []string
	builtSet map[string]bool // of built, for the fleet's overlapping closures
	trialNo  int
}

// New prepares a harness: a signing key pair made by real Nix, a fault proxy
// in front of the S3 server, and the big random-data store path (made with
// `nix-store --add`).
func New(ctx context.Context, cfg Config) (*Harness, error) {
	if cfg.S3 == nil || cfg.TB == nil || cfg.Hook == "" || cfg.Daemon == "" || cfg.WorkDir == "" {
		return nil, errors.New("faults: Config needs S3, TB, Hook, Daemon and WorkDir")
	}
	if cfg.Chain <= 0 {
		cfg.Chain = 6
	}
	if cfg.BigSize <= 0 {
		cfg.BigSize = 40 << 20
	}
	if cfg.Kills <= 0 {
		cfg.Kills = 4
	}
	if cfg.Builds <= 0 {
		cfg.Builds = 4
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	h := &Harness{cfg: cfg, builtSet: map[string]bool{}}
	h.keySec = filepath.Join(cfg.WorkDir, "key.sec")
	pub := filepath.Join(cfg.WorkDir, "key.pub")
	if _, err := testenv.NixCmd("nix-store", "--generate-binary-cache-key", "faults-1", h.keySec, pub); err != nil {
		return nil, fmt.Errorf("faults: generate key: %w", err)
	}
	b, err := os.ReadFile(pub)
	if err != nil {
		return nil, fmt.Errorf("faults: %w", err)
	}
	h.keyPub = strings.TrimSpace(string(b))
	if err := os.WriteFile(h.emptyConfig(), nil, 0o600); err != nil {
		return nil, fmt.Errorf("faults: %w", err)
	}
	h.proxy, err = faultproxy.Start(cfg.S3.Endpoint)
	if err != nil {
		return nil, err
	}
	if err := h.makeBig(); err != nil {
		h.proxy.Close()
		return nil, err
	}
	return h, nil
}

// makeBig writes BigSize bytes of random data into a directory of four
// files and adds it to the store.
func (h *Harness) makeBig() error {
	dir := filepath.Join(h.cfg.WorkDir, fmt.Sprintf("faults-big-%d", time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	rng := rand.NewChaCha8(seed)
	per := h.cfg.BigSize / 4
	for i := range 4 {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("blob%d", i)))
		if err != nil {
			return fmt.Errorf("faults: %w", err)
		}
		_, err = io.CopyN(f, rng, per)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("faults: write %s: %w", f.Name(), err)
		}
	}
	out, err := testenv.NixCmd("nix-store", "--add", dir)
	if err != nil {
		return fmt.Errorf("faults: nix-store --add %s: %w", dir, err)
	}
	_ = os.RemoveAll(dir)
	h.big = strings.TrimSpace(string(out))
	h.cfg.Logf("big path %s (%d bytes)", h.big, h.cfg.BigSize)
	return nil
}

// Check judges bucket on the harness's S3 server: every path in want must
// have a narinfo that real Nix verifies (`nix store verify` over HTTP with
// the harness's public key), and every narinfo in the bucket must have its
// NAR (FileSize bytes) and its references' narinfos.
func (h *Harness) Check(ctx context.Context, bucket string, want []string) (CheckResult, error) {
	return check(ctx, h.cfg.TB, h.cfg.S3.Client(h.cfg.TB), h.cfg.S3.Endpoint, bucket, h.keyPub, want)
}

// Close stops the proxy and deletes the store paths the harness created,
// the built outputs with their .drv files (best effort: a path still
// referenced or rooted is left in place).
func (h *Harness) Close() error {
	err := h.proxy.Close()
	paths := append([]string{h.big}, h.built...)
	if len(h.built) > 0 {
		out, derr := testenv.NixCmd("nix-store", append([]string{"--query", "--deriver"}, h.built...)...)
		if derr != nil {
			h.cfg.Logf("cleanup: nix-store --query --deriver: %v", derr)
		}
		for _, d := range strings.Fields(string(out)) {
			if strings.HasSuffix(d, ".drv") {
				paths = append(paths, d)
			}
		}
	}
	// nix-store --delete refuses a path whose referrer is still there, even
	// one deleted by the same call after it: delete d_N before d_N-1.
	sort.SliceStable(paths, func(i, j int) bool { return chainIndex(paths[i]) > chainIndex(paths[j]) })
	if _, derr := testenv.NixCmd("nix-store", append([]string{"--delete"}, paths...)...); derr != nil {
		h.cfg.Logf("cleanup: nix-store --delete: %v", derr)
	}
	return err
}

// chainIndex is N for a path named faults-<tag>-N (or its .drv), else -1.
func chainIndex(p string) int {
	name := strings.TrimSuffix(p, ".drv")
	i := strings.LastIndex(name, "-")
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil {
		return -1
	}
	return n
}

// Run runs trials trials of scenario sc and returns their counts. It stops at
// the first trial that could not be carried out (an error wrapping ErrTrial);
// lost paths, broken invariants and needless uploads are counted, not
// errors.
func (h *Harness) Run(ctx context.Context, sc Scenario, trials int) (Counts, error) {
	total := Counts{Scenario: sc}
	var trial func(context.Context, *trialState) error
	switch sc {
	case S3Restart:
		trial = h.trialRestart
	case Slow:
		trial = h.trialSlow
	case SlowDown:
		trial = h.trialSlowDown
	case Kill:
		trial = h.trialKill
	case DiskFull:
		trial = h.trialDiskFull
	case Concurrent:
		trial = h.trialConcurrent
	default:
		return total, fmt.Errorf("%w: %q", ErrUnknownScenario, sc)
	}
	for i := range trials {
		c, err := h.runTrial(ctx, sc, i, trial)
		total.add(c)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// trialState is one trial's bucket, paths and counters.
type trialState struct {
	index    int // of the trial within its scenario's run
	name     string
	bucket   string
	dir      string
	want     []string // paths that must end up in the cache
	faults   int
	unqueued int
}

func (h *Harness) runTrial(ctx context.Context, sc Scenario, i int, trial func(context.Context, *trialState) error) (Counts, error) {
	h.trialNo++
	start := time.Now()
	ts := &trialState{
		index:  i,
		name:   fmt.Sprintf("%s-%d", sc, i),
		bucket: fmt.Sprintf("faults-%d-%s-%d", time.Now().Unix()%100000, strings.ReplaceAll(string(sc), "-", ""), h.trialNo),
		dir:    filepath.Join(h.cfg.WorkDir, fmt.Sprintf("trial-%d", h.trialNo)),
	}
	if err := os.MkdirAll(ts.dir, 0o755); err != nil {
		return Counts{}, fmt.Errorf("%w: %w", ErrTrial, err)
	}
	defer os.RemoveAll(ts.dir)
	h.cfg.S3.MakeBucket(h.cfg.TB, ts.bucket, true)
	h.proxy.Set(faultproxy.Faults{})
	h.proxy.ResetLog()
	injected0 := h.proxy.Injected.Load()

	err := trial(ctx, ts)
	h.proxy.Set(faultproxy.Faults{})
	if serr := h.cfg.S3.Start(); serr != nil && err == nil { // never leave it stopped
		err = serr
	}
	c := Counts{Scenario: sc, Trials: 1, Duration: time.Since(start)}
	c.Faults = ts.faults + int(h.proxy.Injected.Load()-injected0)
	c.Unqueued = ts.unqueued
	if err != nil {
		return c, fmt.Errorf("%w: %s: %w", ErrTrial, ts.name, err)
	}
	// Let the proxy log the answers its clients have already seen.
	h.proxy.WaitIdle(5 * time.Second)
	log := h.proxy.Log()
	up := AnalyzeLog(log, ts.bucket)
	// One daemon never races itself: a raced re-upload is needless here.
	up.Needless = append(up.Needless, up.Raced...)
	c.Stored, c.Failed, c.Retried, c.Needless, c.Vanished = up.Stored, up.Failed, up.Needed, len(up.Needless), len(up.Vanished)
	res, err := h.Check(ctx, ts.bucket, ts.want)
	if err != nil {
		return c, fmt.Errorf("%w: %s: %w", ErrTrial, ts.name, err)
	}
	c.PathsChecked, c.PathsLost, c.Broken = res.Checked, len(res.Lost), len(res.Broken)
	if len(res.Lost)+len(res.Broken)+len(up.Needless) > 0 {
		h.cfg.Logf("%s: requests that wrote to bucket %s:", ts.name, ts.bucket)
		for _, r := range log {
			if strings.HasPrefix(r.Path, "/"+ts.bucket+"/") && (r.Method == "PUT" || r.Method == "POST" || r.Method == "DELETE" || r.Failed()) {
				h.cfg.Logf("  %s %s %s?%s -> %d injected=%v", r.Start.Format("15:04:05.000"), r.Method, r.Path, r.Query, r.Status, r.Injected)
			}
		}
	}
	h.cfg.Logf("%s: %d paths, %d narinfos, %d faults, %d stored, %d failed, %d re-uploads, %d refreshes, needless %v, vanished %v, lost %v, broken %v (%v)",
		ts.name, res.Checked, res.NarInfos, c.Faults, up.Stored, up.Failed, up.Needed, up.Refreshed, up.Needless, up.Vanished, res.Lost, res.Broken, c.Duration.Round(time.Millisecond))
	return c, nil
}

// storeURL is the s3:// URL of a bucket through the proxy, with 5 MiB
// multipart parts so that the big path goes up in several parts.
func (h *Harness) storeURL(bucket string) string {
	return "s3://" + bucket + "?endpoint=" + h.proxy.URL + "&region=us-east-1&addressing-style=path&compression=zstd&multipart-chunk-size=5242880"
}

func (h *Harness) emptyConfig() string { return filepath.Join(h.cfg.WorkDir, "empty.conf") }

// build writes a fresh expression and runs nix-build on it (no
// substituters), with the post-build hook in queue mode when queueDir is
// set. It returns the output paths and nix-build's stderr.
func (h *Harness) build(ctx context.Context, ts *trialState, tag, queueDir string) ([]string, string, error) {
	expr, err := testenv.WriteClosureExpr(ts.dir, testenv.ClosureSpec{Name: "faults-" + tag, N: h.cfg.Chain, Blob: 3000})
	if err != nil {
		return nil, "", err
	}
	args := []string{expr, "--no-out-link", "--option", "substituters", ""}
	env := testenv.Environ("NIXCACHE_")
	if queueDir != "" {
		args = append(args, "--option", "post-build-hook", h.cfg.Hook)
		env = append(env, "NIXCACHE_CONFIG="+h.emptyConfig(), "NIXCACHE_QUEUE="+queueDir)
	}
	cmd := exec.CommandContext(ctx, "nix-build", args...)
	cmd.Env = env
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		return nil, se.String(), fmt.Errorf("nix-build %s: %w\n%s", expr, err, se.String())
	}
	outs := strings.Fields(so.String())
	if len(outs) != h.cfg.Chain {
		return nil, se.String(), fmt.Errorf("nix-build %s: %d outputs, want %d", expr, len(outs), h.cfg.Chain)
	}
	h.mu.Lock()
	h.built = append(h.built, outs...)
	h.mu.Unlock()
	return outs, se.String(), nil
}

// closure asks real Nix for the closure of paths.
func closure(paths []string) ([]string, error) {
	out, err := testenv.NixCmd("nix-store", append([]string{"--query", "--requisites"}, paths...)...)
	if err != nil {
		return nil, fmt.Errorf("nix-store --query --requisites: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// want records paths (and their closures) as required in the cache.
func (ts *trialState) addWant(paths []string) error {
	cl, err := closure(paths)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, p := range ts.want {
		seen[p] = true
	}
	for _, p := range cl {
		if !seen[p] {
			seen[p] = true
			ts.want = append(ts.want, p)
		}
	}
	return nil
}

// pushUntilDone pushes paths with the library pipeline until a push
// succeeds, as a user re-running `push` would; each failed push is logged.
func (h *Harness) pushUntilDone(ctx context.Context, bucket string, paths []string, deadline time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	sps := make([]storepath.Path, len(paths))
	for i, p := range paths {
		sp, err := storepath.Parse(p)
		if err != nil {
			return err
		}
		sps[i] = sp
	}
	store, err := localstore.Open(ctx, localstore.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	url := h.storeURL(bucket) + "&secret-key=" + h.keySec
	for attempt := 1; ; attempt++ {
		err := func() error {
			c, err := cache.Open(ctx, url)
			if err != nil {
				return err
			}
			_, err = c.Push(ctx, store, sps, cache.PushOptions{TempDir: h.cfg.WorkDir})
			return err
		}()
		if err == nil {
			return nil
		}
		h.cfg.Logf("push attempt %d failed: %v", attempt, firstLine(err))
		select {
		case <-ctx.Done():
			return fmt.Errorf("push did not succeed within %v: %w", deadline, err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// libraryPaths builds a fresh chain (no hook) and returns it with the big path.
func (h *Harness) libraryPaths(ctx context.Context, ts *trialState) ([]string, error) {
	outs, _, err := h.build(ctx, ts, ts.name+"-lib", "")
	if err != nil {
		return nil, err
	}
	paths := append(outs, h.big)
	return paths, ts.addWant(paths)
}

func (h *Harness) trialRestart(ctx context.Context, ts *trialState) error {
	paths, err := h.libraryPaths(ctx, ts)
	if err != nil {
		return err
	}
	// A little latency makes the push last long enough to be cut.
	h.proxy.Set(faultproxy.Faults{Latency: 20 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- h.pushUntilDone(ctx, ts.bucket, paths, 2*time.Minute) }()
	// Even trials stop the server while it completes the big path's
	// multipart upload (once the proxy has forwarded the
	// CompleteMultipartUpload POST and the server has begun assembling
	// the object): the narrowest window, where a client cannot know
	// whether the object exists. Odd trials stop it after a random number
	// of requests.
	var completing chan struct{}
	if ts.index%2 == 0 {
		completing = make(chan struct{}, 1)
		h.proxy.OnForward(func(r faultproxy.Request) {
			if r.Method == "POST" && strings.Contains(r.Query, "uploadId=") {
				select {
				case completing <- struct{}{}:
				default:
				}
			}
		})
		defer h.proxy.OnForward(nil)
	}
	restarts := 1 + rand.IntN(2)
	for i := range restarts {
		if i == 0 && completing != nil {
			select {
			case err := <-done:
				return err
			case <-completing:
				h.waitCompleting(ts.bucket, 200*time.Millisecond)
			case <-time.After(30 * time.Second):
			}
		} else if pushDone := h.waitRequests(done, 1+rand.IntN(25), 5*time.Second); pushDone {
			// Stop the server after a random number of requests, so the
			// outage lands anywhere in the push, multipart parts included.
			return <-done
		}
		h.cfg.S3.Stop()
		ts.faults++
		time.Sleep(time.Duration(300+rand.IntN(1500)) * time.Millisecond)
		if err := h.cfg.S3.Start(); err != nil {
			<-done
			return err
		}
	}
	return <-done
}

// waitCompleting waits until the S3 server (versitygw) has begun to
// complete a multipart upload in bucket, which it marks by renaming the
// upload's directory under <bucket>/.sgwtmp/multipart to "*.inprogress",
// or until limit has passed.
func (h *Harness) waitCompleting(bucket string, limit time.Duration) {
	pattern := filepath.Join(h.cfg.S3.DataDir, bucket, ".sgwtmp", "multipart", "*", "*.inprogress")
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return
		}
		time.Sleep(500 * time.Microsecond)
	}
}

// waitRequests waits until the proxy has answered n more requests, at most
// limit. It reports true (without consuming the value) if done became ready
// first.
func (h *Harness) waitRequests(done chan error, n int, limit time.Duration) bool {
	target := h.proxy.Requests.Load() + int64(n)
	deadline := time.Now().Add(limit)
	for h.proxy.Requests.Load() < target && time.Now().Before(deadline) {
		select {
		case err := <-done:
			done <- err
			return true
		case <-time.After(2 * time.Millisecond):
		}
	}
	return false
}

func (h *Harness) trialSlow(ctx context.Context, ts *trialState) error {
	paths, err := h.libraryPaths(ctx, ts)
	if err != nil {
		return err
	}
	h.proxy.Set(faultproxy.Faults{Latency: time.Duration(50+rand.IntN(151)) * time.Millisecond})
	before := h.proxy.Requests.Load()
	err = h.pushUntilDone(ctx, ts.bucket, paths, 3*time.Minute)
	ts.faults += int(h.proxy.Requests.Load() - before)
	return err
}

func (h *Harness) trialSlowDown(ctx context.Context, ts *trialState) error {
	paths, err := h.libraryPaths(ctx, ts)
	if err != nil {
		return err
	}
	h.proxy.Set(faultproxy.Faults{SlowDownRate: 0.15, TooManyRate: 0.15 / 0.85})
	return h.pushUntilDone(ctx, ts.bucket, paths, 3*time.Minute)
}

// daemon is a running upload-daemon.
type daemon struct {
	cmd  *exec.Cmd
	log  bytes.Buffer
	done chan error
}

// startDaemon starts upload-daemon on queueDir, uploading through the proxy.
func (h *Harness) startDaemon(queueDir, bucket string, exitWhenEmpty bool) (*daemon, error) {
	args := []string{"--queue", queueDir, "--to", h.storeURL(bucket), "--secret-key", h.keySec,
		"--max-backoff", "1s", "--poll", "50ms"}
	if exitWhenEmpty {
		args = append(args, "--exit-when-empty")
	}
	d := &daemon{cmd: exec.Command(h.cfg.Daemon, args...), done: make(chan error, 1)}
	d.cmd.Env = append(testenv.Environ("NIXCACHE_"), "NIXCACHE_CONFIG="+h.emptyConfig())
	d.cmd.Env = append(d.cmd.Env, h.cfg.S3.Env()...)
	d.cmd.Stdout, d.cmd.Stderr = &d.log, &d.log
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", h.cfg.Daemon, err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	return d, nil
}

// wait waits for the daemon to exit, killing it after timeout.
func (d *daemon) wait(timeout time.Duration) error {
	select {
	case err := <-d.done:
		if err != nil {
			return fmt.Errorf("upload-daemon: %w\n%s", err, d.log.String())
		}
		return nil
	case <-time.After(timeout):
		// SIGQUIT first: the Go runtime prints every goroutine's stack,
		// which says where a hung daemon waits.
		_ = d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		return fmt.Errorf("upload-daemon did not finish within %v\n%s", timeout, d.log.String())
	}
}

// stop sends SIGTERM and waits (in-flight pushes finish).
func (d *daemon) stop() error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	return d.wait(2 * time.Minute)
}

// kill SIGKILLs the daemon and reaps it.
func (d *daemon) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// drain runs the daemon with --exit-when-empty and checks the queue is empty.
func (h *Harness) drain(queueDir, bucket string) error {
	d, err := h.startDaemon(queueDir, bucket, true)
	if err != nil {
		return err
	}
	if err := d.wait(3 * time.Minute); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(queueDir, "entries"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			return fmt.Errorf("queue %s still holds %s after the daemon exited", queueDir, e.Name())
		}
	}
	return nil
}

// enqueue queues paths by hand with `upload-daemon enqueue`.
func (h *Harness) enqueue(queueDir string, paths ...string) error {
	cmd := exec.Command(h.cfg.Daemon, append([]string{"enqueue", "--queue", queueDir}, paths...)...)
	cmd.Env = append(testenv.Environ("NIXCACHE_"), "NIXCACHE_CONFIG="+h.emptyConfig())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("upload-daemon enqueue: %w\n%s", err, out)
	}
	return nil
}

func (h *Harness) trialKill(ctx context.Context, ts *trialState) error {
	qdir := filepath.Join(ts.dir, "queue")
	outs, _, err := h.build(ctx, ts, ts.name+"-a", qdir)
	if err != nil {
		return err
	}
	if err := h.enqueue(qdir, h.big); err != nil {
		return err
	}
	if err := ts.addWant(append(outs, h.big)); err != nil {
		return err
	}
	h.proxy.Set(faultproxy.Faults{Latency: 10 * time.Millisecond})
	for k := range h.cfg.Kills {
		d, err := h.startDaemon(qdir, ts.bucket, false)
		if err != nil {
			return err
		}
		// Kills land after a random number of requests: anywhere from the
		// daemon's first request to the middle of the big path's
		// multipart upload.
		if exited := h.waitRequests(d.done, 1+rand.IntN(30), 5*time.Second); exited {
			err := <-d.done
			return fmt.Errorf("daemon exited before kill %d: %v\n%s", k, err, d.log.String())
		}
		d.kill()
		ts.faults++
		if k == h.cfg.Kills/2 {
			// Builds go on while the daemon is down.
			more, _, err := h.build(ctx, ts, ts.name+"-b", qdir)
			if err != nil {
				return err
			}
			if err := ts.addWant(more); err != nil {
				return err
			}
		}
	}
	return h.drain(qdir, ts.bucket)
}

// fillDisk fills the file system at dir: data blocks and inodes.
func fillDisk(dir string) (filled int, err error) {
	fill := filepath.Join(dir, "fill")
	if err := os.MkdirAll(fill, 0o755); err != nil {
		return 0, err
	}
	f, err := os.Create(filepath.Join(fill, "data"))
	if err == nil {
		buf := make([]byte, 4096)
		for {
			if _, werr := f.Write(buf); werr != nil {
				break
			}
		}
		f.Close()
	}
	for i := 0; ; i++ {
		f, err := os.Create(filepath.Join(fill, fmt.Sprintf("i%d", i)))
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				return i, fmt.Errorf("filling %s: %w", dir, err)
			}
			return i, nil
		}
		f.Close()
		if i > 100000 {
			return i, fmt.Errorf("filling %s: no ENOSPC after %d files", dir, i)
		}
	}
}

func (h *Harness) trialDiskFull(ctx context.Context, ts *trialState) error {
	qdir := filepath.Join(ts.dir, "queue")
	if err := os.MkdirAll(qdir, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64", "tmpfs", qdir).CombinedOutput(); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w: %s", qdir, err, out)
	}
	defer func() {
		if out, err := exec.Command("umount", qdir).CombinedOutput(); err != nil {
			h.cfg.Logf("umount %s: %v: %s", qdir, err, out)
		}
	}()
	// 1. Space left: the hook queues.
	a, _, err := h.build(ctx, ts, ts.name+"-a", qdir)
	if err != nil {
		return err
	}
	// 2. Disk full: the build must succeed, the hook exits 0.
	if _, err := fillDisk(qdir); err != nil {
		return err
	}
	b, stderr, err := h.build(ctx, ts, ts.name+"-b", qdir)
	if err != nil {
		return fmt.Errorf("build with the queue disk full failed: %w", err)
	}
	ts.faults++
	if !strings.Contains(stderr, "nothing queued") {
		h.cfg.Logf("%s: hook did not report a failure with the disk full:\n%s", ts.name, stderr)
	}
	queued := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(qdir, "entries"))
	for _, e := range entries {
		queued[e.Name()] = true
	}
	var unqueued []string
	for _, p := range b {
		if !queued[filepath.Base(p)] {
			unqueued = append(unqueued, p)
		}
	}
	ts.unqueued += len(unqueued)
	// 3. Space freed: later builds queue again.
	if err := os.RemoveAll(filepath.Join(qdir, "fill")); err != nil {
		return err
	}
	c, _, err := h.build(ctx, ts, ts.name+"-c", qdir)
	if err != nil {
		return err
	}
	entries, _ = os.ReadDir(filepath.Join(qdir, "entries"))
	queued = map[string]bool{}
	for _, e := range entries {
		queued[e.Name()] = true
	}
	for _, p := range c {
		if !queued[filepath.Base(p)] {
			return fmt.Errorf("%s not queued after space was freed", p)
		}
	}
	// The operator re-queues what the hook reported as not queued.
	if len(unqueued) > 0 {
		if err := h.enqueue(qdir, unqueued...); err != nil {
			return err
		}
	}
	if err := ts.addWant(append(append(a, b...), c...)); err != nil {
		return err
	}
	return h.drain(qdir, ts.bucket)
}

func (h *Harness) trialConcurrent(ctx context.Context, ts *trialState) error {
	qdir := filepath.Join(ts.dir, "queue")
	h.proxy.Set(faultproxy.Faults{Latency: 5 * time.Millisecond})
	d, err := h.startDaemon(qdir, ts.bucket, false)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	outs := make([][]string, h.cfg.Builds)
	errs := make([]error, h.cfg.Builds)
	for i := range h.cfg.Builds {
		wg.Go(func() {
			outs[i], _, errs[i] = h.build(ctx, ts, fmt.Sprintf("%s-b%d", ts.name, i), qdir)
		})
	}
	wg.Wait()
	ts.faults += h.cfg.Builds
	if err := d.stop(); err != nil {
		return err
	}
	for i := range outs {
		if errs[i] != nil {
			return errs[i]
		}
		if err := ts.addWant(outs[i]); err != nil {
			return err
		}
	}
	return h.drain(qdir, ts.bucket)
}

// WriteTable prints the counts as an aligned table with a total line.
func WriteTable(w io.Writer, counts []Counts) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttrials\tfaults\tpaths checked\tpaths lost\tbroken\tstored\tfailed PUTs\tre-uploads\tneedless re-uploads\tvanished\tunqueued (disk full)\ttime\t")
	var total Counts
	total.Scenario = "total"
	for _, c := range append(counts, Counts{}) {
		if c.Scenario == "" {
			c = total
		} else {
			total.add(c)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", c.Scenario, c.Trials, c.Faults, c.PathsChecked,
			c.PathsLost, c.Broken, c.Stored, c.Failed, c.Retried, c.Needless, c.Vanished, c.Unqueued, c.Duration.Round(100*time.Millisecond))
	}
	return tw.Flush()
}
