package main

// End-to-end tests judged by real Nix: nix-build runs the hook binary (built
// here with go build), upload-daemon drains the queue, then `nix store
// verify` checks the cache and Nix substitutes the paths back with signature
// checking.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixcache/nixcache/internal/testenv"
)

// binaries builds post-build-hook and upload-daemon once per test run.
func binaries(t *testing.T) (hook, daemon string) {
	t.Helper()
	dir := testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/post-build-hook", "github.com/nixcache/nixcache/examples/upload-daemon")
	return filepath.Join(dir, "post-build-hook"), filepath.Join(dir, "upload-daemon")
}

type keys struct{ sec, pub, pubText string }

func genKey(t *testing.T) keys {
	t.Helper()
	k := testenv.NixKeyPair(t, "hook-test-1")
	return keys{sec: k.SecretFile, pub: k.PublicFile, pubText: k.Public}
}

// writeExpr writes a Nix file of n small derivations, unique to this call,
// where each refers to the previous one (a real reference chain) and from
// the third on also to the first: a closure in which each output's closure
// holds earlier outputs (testenv.WriteClosureExpr).
func writeExpr(t *testing.T, n int) string {
	t.Helper()
	return writeExprBlob(t, n, 0)
}

// writeExprBlob is writeExpr with blob bytes of random data in each output.
func writeExprBlob(t *testing.T, n, blob int) string {
	t.Helper()
	file, err := testenv.WriteClosureExpr(t.TempDir(), testenv.ClosureSpec{Name: "hooktest", N: n, Blob: blob})
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// nixBuild runs nix-build on expr with the hook and env, returning the
// output paths, stderr and the error.
func nixBuild(t *testing.T, expr, hook string, env []string) (outs []string, stderr string, err error) {
	t.Helper()
	args := []string{expr, "--no-out-link", "--option", "substituters", ""}
	if hook != "" {
		args = append(args, "--option", "post-build-hook", hook)
	}
	cmd := exec.Command("nix-build", args...)
	cmd.Env = append(testenv.Environ("NIXCACHE_"), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err = cmd.Run()
	outs = strings.Fields(so.String())
	return outs, se.String(), err
}

// deletePaths removes the outputs from the store (they have no roots) and
// checks that they are gone.
func deletePaths(t *testing.T, paths []string) {
	t.Helper()
	testenv.Nix(t, "nix-store", append([]string{"--delete"}, paths...)...)
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s still in the store after nix-store --delete", p)
		}
	}
}

// verifyAndSubstitute checks the cache as a user would: `nix store verify`
// accepts every path with the public key, then the paths are deleted and
// Nix substitutes them back from the cache (--max-jobs 0: no rebuilding).
func verifyAndSubstitute(t *testing.T, storeURL string, k keys, outs []string) {
	t.Helper()
	if code := testenv.NixStoreVerify(t, storeURL, k.pubText, outs...); code != 0 {
		t.Fatalf("nix store verify refused the cache: exit code %d", code)
	}
	deletePaths(t, outs)
	args := append([]string{"--realise"}, outs...)
	args = append(args, "--option", "substituters", storeURL, "--option", "trusted-public-keys", k.pubText, "--max-jobs", "0")
	if out, err := testenv.NixCmd("nix-store", args...); err != nil {
		t.Fatalf("Nix could not substitute the paths back: %v\n%s", err, out)
	}
	for _, p := range outs {
		if _, err := os.Lstat(p); err != nil {
			t.Fatalf("%s not substituted: %v", p, err)
		}
	}
}

// checkFileCacheInvariant checks that no narinfo in a file:// cache lacks
// its NAR file, and returns the narinfo count.
func checkFileCacheInvariant(t *testing.T, dir string) int {
	t.Helper()
	infos, _ := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	for _, ni := range infos {
		f, err := os.Open(ni)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		url := ""
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "URL: "); ok {
				url = u
			}
		}
		f.Close()
		if url == "" {
			t.Fatalf("%s has no URL line", ni)
		}
		if _, err := os.Stat(filepath.Join(dir, url)); err != nil {
			t.Fatalf("invariant broken: %s points to missing NAR %s", ni, url)
		}
	}
	return len(infos)
}

// countCacheFiles counts the files in a file:// cache: narinfos, NARs and
// temporaries.
func countCacheFiles(dir string) int {
	a, _ := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	b, _ := filepath.Glob(filepath.Join(dir, "nar", "*"))
	c, _ := filepath.Glob(filepath.Join(dir, "nar", ".*"))
	return len(a) + len(b) + len(c)
}

// waitFor polls cond every 10 ms until it holds, failing the test after
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasNarinfo(dir, p string) bool {
	hash := strings.SplitN(filepath.Base(p), "-", 2)[0]
	_, err := os.Stat(filepath.Join(dir, hash+".narinfo"))
	return err == nil
}

// runHook runs the hook binary directly with env, as Nix would.
func runHook(t *testing.T, hook string, env []string) (code int, stderr string, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hook)
	cmd.Env = append(testenv.Environ("NIXCACHE_"), env...)
	var se bytes.Buffer
	cmd.Stderr = &se
	start := time.Now()
	err := cmd.Run()
	took = time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("the hook hung (killed after %v):\n%s", took, se.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), se.String(), took
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, se.String(), took
}

// Sync mode: nix-build passes its environment to the hook (no daemon runs),
// and every built path lands signed in a file:// cache.
func TestSyncModeFileCache(t *testing.T) {
	testenv.RequireNix(t)
	hook, _ := binaries(t)
	k := genKey(t)
	cacheDir := t.TempDir()
	url := "file://" + cacheDir + "?compression=zstd"
	outs, stderr, err := nixBuild(t, writeExpr(t, 5), hook, []string{
		"NIXCACHE_TO=" + url, "NIXCACHE_SECRET_KEY_FILE=" + k.sec,
	})
	if err != nil {
		t.Fatalf("nix-build: %v\n%s", err, stderr)
	}
	if len(outs) != 5 {
		t.Fatalf("built %d outputs, want 5:\n%s", len(outs), stderr)
	}
	if !strings.Contains(stderr, "msg=uploaded") {
		t.Fatalf("hook did not log uploads:\n%s", stderr)
	}
	for _, p := range outs {
		if !hasNarinfo(cacheDir, p) {
			t.Fatalf("%s not in cache after the build", p)
		}
	}
	checkFileCacheInvariant(t, cacheDir)
	verifyAndSubstitute(t, "file://"+cacheDir, k, outs)
}

// Queue mode: the hook only enqueues, then the daemon uploads; GC roots keep
// the queued paths alive meanwhile.
func TestQueueModeFileCache(t *testing.T) {
	testenv.RequireNix(t)
	hook, daemon := binaries(t)
	k := genKey(t)
	cacheDir, qdir := t.TempDir(), t.TempDir()
	outs, stderr, err := nixBuild(t, writeExpr(t, 5), hook, []string{"NIXCACHE_QUEUE=" + qdir})
	if err != nil {
		t.Fatalf("nix-build: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "queued for upload") {
		t.Fatalf("hook did not queue:\n%s", stderr)
	}
	entries, _ := os.ReadDir(filepath.Join(qdir, "entries"))
	if len(entries) != len(outs) {
		t.Fatalf("%d queue entries for %d outputs", len(entries), len(outs))
	}
	// Queued paths are GC roots: Nix refuses to delete them.
	if _, err := testenv.NixCmd("nix-store", "--delete", outs[len(outs)-1]); err == nil {
		t.Fatal("nix-store --delete removed a queued path")
	}
	out, err := exec.Command(daemon, "status", "--queue", qdir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("queued:   %d paths", len(outs))) {
		t.Fatalf("status: %v\n%s", err, out)
	}
	cmd := exec.Command(daemon, "--queue", qdir, "--to", "file://"+cacheDir+"?compression=zstd", "--secret-key", k.sec, "--exit-when-empty")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("upload-daemon: %v\n%s", err, out)
	}
	if n, _ := os.ReadDir(filepath.Join(qdir, "entries")); len(n) != 0 {
		t.Fatalf("%d entries left after the daemon", len(n))
	}
	checkFileCacheInvariant(t, cacheDir)
	verifyAndSubstitute(t, "file://"+cacheDir, k, outs)
}

// Queue mode against S3 while the server is down: builds are unharmed and
// fast; once the server is back the daemon completes the uploads, and Nix
// substitutes from the bucket over HTTP.
func TestQueueModeS3Down(t *testing.T) {
	testenv.RequireNix(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "hookcache", true)
	hook, daemon := binaries(t)
	k := genKey(t)
	qdir := t.TempDir()
	s3.Stop()

	start := time.Now()
	outs, stderr, err := nixBuild(t, writeExpr(t, 6), hook, []string{"NIXCACHE_QUEUE=" + qdir})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("nix-build with S3 down failed: %v\n%s", err, stderr)
	}
	t.Logf("6 builds with the queue hook and S3 down: %v", took)

	// The daemon retries while S3 is down, then finishes once it is back.
	env := append(testenv.Environ("NIXCACHE_"), s3.Env()...)
	cmd := exec.Command(daemon, "--queue", qdir, "--to", s3.URL("hookcache", "compression=zstd"), "--secret-key", k.sec, "--exit-when-empty", "--max-backoff", "1s")
	cmd.Env = env
	var dlog testenv.Buffer
	cmd.Stdout, cmd.Stderr = &dlog, &dlog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// S3 comes back once the daemon has seen it fail.
	waitFor(t, 30*time.Second, "the daemon to report the outage", func() bool { return strings.Contains(dlog.String(), "will retry") })
	if err := s3.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon: %v\n%s", err, dlog.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("daemon did not drain within 60 s after S3 came back\n%s", dlog.String())
	}
	if !strings.Contains(dlog.String(), "will retry") {
		t.Fatalf("daemon never saw the outage\n%s", dlog.String())
	}
	verifyAndSubstitute(t, s3.Endpoint+"/hookcache", k, outs)
}

// The daemon SIGKILLed at random moments, many times, loses nothing: at the
// end every queued path is in the cache and no narinfo lacks its NAR.
func TestDaemonKilledRepeatedly(t *testing.T) {
	testenv.RequireNix(t)
	hook, daemon := binaries(t)
	k := genKey(t)
	cacheDir, qdir := t.TempDir(), t.TempDir()
	// 512 KiB of random data per path and xz make each upload slow enough
	// (a full drain takes seconds) for kills to land mid-push.
	outs, stderr, err := nixBuild(t, writeExprBlob(t, 24, 512<<10), hook, []string{"NIXCACHE_QUEUE=" + qdir})
	if err != nil {
		t.Fatalf("nix-build: %v\n%s", err, stderr)
	}
	url := "file://" + cacheDir + "?compression=xz"
	args := []string{"--queue", qdir, "--to", url, "--secret-key", k.sec, "--exit-when-empty", "--batch", "4"}
	const trials = 12
	killed := 0
	for i := 0; i < trials; i++ {
		cmd := exec.Command(daemon, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		// Kill once the daemon has written 1 to 4 more files (NARs, their
		// temporaries, narinfos): mid-batch, between a NAR and its narinfo.
		before, more := countCacheFiles(cacheDir), 1+rand.IntN(4)
		waitFor(t, 60*time.Second, "the daemon to write to the cache", func() bool {
			select {
			case <-exited:
				return true
			default:
				return countCacheFiles(cacheDir) >= before+more
			}
		})
		if cmd.Process.Signal(syscall.SIGKILL) == nil {
			killed++
		}
		<-exited
		checkFileCacheInvariant(t, cacheDir)
	}
	mid := checkFileCacheInvariant(t, cacheDir)
	t.Logf("%d SIGKILLs; %d narinfos in the cache before the final run", killed, mid)
	if out, err := exec.Command(daemon, args...).CombinedOutput(); err != nil {
		t.Fatalf("final daemon run: %v\n%s", err, out)
	}
	for _, p := range outs {
		if !hasNarinfo(cacheDir, p) {
			t.Fatalf("%s lost: not in the cache", p)
		}
	}
	if n := checkFileCacheInvariant(t, cacheDir); n != len(outs) {
		t.Fatalf("%d narinfos, want %d", n, len(outs))
	}
	if code := testenv.NixStoreVerify(t, "file://"+cacheDir, k.pubText, "--all"); code != 0 {
		t.Fatalf("nix store verify --all: exit code %d", code)
	}
}

// Four nix-builds at once, each running the hook in queue mode: nothing lost.
func TestConcurrentBuilds(t *testing.T) {
	testenv.RequireNix(t)
	hook, daemon := binaries(t)
	k := genKey(t)
	cacheDir, qdir := t.TempDir(), t.TempDir()
	exprs := make([]string, 4)
	for i := range exprs {
		exprs[i] = writeExpr(t, 6)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []string
	// The daemon runs during the builds.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dcmd := exec.CommandContext(ctx, daemon, "--queue", qdir, "--to", "file://"+cacheDir+"?compression=zstd", "--secret-key", k.sec)
	dcmd.Cancel = func() error { return dcmd.Process.Signal(syscall.SIGTERM) }
	var dlog bytes.Buffer
	dcmd.Stderr = &dlog
	if err := dcmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, e := range exprs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs, stderr, err := nixBuild(t, e, hook, []string{"NIXCACHE_QUEUE=" + qdir})
			if err != nil {
				t.Errorf("nix-build: %v\n%s", err, stderr)
			}
			mu.Lock()
			all = append(all, outs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(all) != 24 {
		t.Fatalf("%d outputs, want 24", len(all))
	}
	waitFor(t, 60*time.Second, "the queue to drain", func() bool {
		n, _ := os.ReadDir(filepath.Join(qdir, "entries"))
		return len(n) == 0
	})
	cancel()
	_ = dcmd.Wait()
	for _, p := range all {
		if !hasNarinfo(cacheDir, p) {
			t.Fatalf("%s lost\n%s", p, dlog.String())
		}
	}
	checkFileCacheInvariant(t, cacheDir)
	if code := testenv.NixStoreVerify(t, "file://"+cacheDir, k.pubText, "--all"); code != 0 {
		t.Fatalf("nix store verify --all: exit code %d", code)
	}
}

// secretValue stands for a credential in a config file: no message may show it.
const secretValue = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"

// Bad configuration: sync mode fails loudly (and nix-build reports the
// hook's message); queue mode logs and exits 0.
func TestBadConfiguration(t *testing.T) {
	testenv.RequireNix(t)
	hook, _ := binaries(t)
	anyPath := os.Args[0] // not a store path
	storeOut := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", writeExpr(t, 1))))
	tmp := t.TempDir()
	notDir := filepath.Join(tmp, "file")
	_ = os.WriteFile(notDir, nil, 0o644)
	badConf := filepath.Join(tmp, "hook.conf")
	_ = os.WriteFile(badConf, []byte("NIXCACHE_TO=file:///x\nNIXCACHE_SECRET_KEYFILE=/k\n"), 0o644)
	fifo := filepath.Join(tmp, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	queueConf := filepath.Join(tmp, "queue.conf")
	_ = os.WriteFile(queueConf, []byte("AWS_SECRET_ACCESS_KEY: "+secretValue+"\nAWS-REGION=x\nNIXCACHE_SECRET_KEYFILE=/k\nNIXCACHE_QUEUE="+tmp+"/q3\n"), 0o600)
	tests := []struct {
		name     string
		env      []string
		wantCode int
		wantMsg  string
	}{
		{"sync: nothing configured", []string{"OUT_PATHS=" + storeOut}, 1, "neither NIXCACHE_QUEUE nor NIXCACHE_TO"},
		{"sync: unknown scheme", []string{"OUT_PATHS=" + storeOut, "NIXCACHE_TO=bogus://x"}, 1, "bogus"},
		{"sync: missing key file", []string{"OUT_PATHS=" + storeOut, "NIXCACHE_TO=file://" + tmp + "/c", "NIXCACHE_SECRET_KEY_FILE=" + tmp + "/nokey"}, 1, "NIXCACHE_SECRET_KEY_FILE: signature: cannot read the secret key file"},
		{"sync: typo in config file", []string{"OUT_PATHS=" + storeOut, "NIXCACHE_CONFIG=" + badConf}, 1, "line 2: NIXCACHE_SECRET_KEYFILE: unknown key"},
		{"sync: config is a FIFO", []string{"OUT_PATHS=" + storeOut, "NIXCACHE_CONFIG=" + fifo}, 1, "not a regular file"},
		{"sync: config is /dev/zero", []string{"OUT_PATHS=" + storeOut, "NIXCACHE_CONFIG=/dev/zero"}, 1, "not a regular file"},
		{"sync: no paths", []string{"NIXCACHE_TO=file://" + tmp + "/c"}, 1, "OUT_PATHS and DRV_PATH are both empty"},
		{"sync: uploader missing", []string{"OUT_PATHS=" + storeOut, "NIXCACHE_TO=file://" + tmp + "/c", "NIXCACHE_UPLOADER=" + tmp + "/none"}, 1, "exec failed"},
		{"queue: queue dir is a file", []string{"OUT_PATHS=" + storeOut, "NIXCACHE_QUEUE=" + notDir}, 0, "nothing queued"},
		{"queue: bad OUT_PATHS", []string{"OUT_PATHS=" + anyPath, "NIXCACHE_QUEUE=" + tmp + "/q"}, 0, "nothing queued"},
		{"queue: no paths", []string{"NIXCACHE_QUEUE=" + tmp + "/q"}, 0, "OUT_PATHS and DRV_PATH are both empty"},
		{"queue: bad DRV_PATH", []string{"DRV_PATH=/nix/store/00000000000000000000000000000000-gone.drv", "NIXCACHE_QUEUE=" + tmp + "/q"}, 0, "gone.drv"},
		{"queue: config typo still queues", []string{"OUT_PATHS=" + storeOut, "NIXCACHE_QUEUE=" + tmp + "/q2", "NIXCACHE_CONFIG=" + badConf}, 0, "queued for upload"},
		{"queue: config is a FIFO", []string{"OUT_PATHS=" + storeOut, "NIXCACHE_QUEUE=" + tmp + "/q2", "NIXCACHE_CONFIG=" + fifo}, 0, "queued for upload"},
		// The documented nix-daemon setup: the queue only in the file, with
		// malformed lines around it (issue 8.1).
		{"queue: only in a config file with bad lines", []string{"OUT_PATHS=" + storeOut, "NIXCACHE_CONFIG=" + queueConf}, 0, "queued for upload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr, took := runHook(t, hook, tt.env)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantMsg) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, tt.wantCode, tt.wantMsg)
			}
			if tt.wantCode == 0 && took > time.Second {
				t.Fatalf("queue mode took %v", took)
			}
			if strings.Contains(stderr, secretValue) {
				t.Fatalf("the hook showed a secret from the config file:\n%s", stderr)
			}
		})
	}
	if e, _ := os.ReadDir(filepath.Join(tmp, "q3", "entries")); len(e) != 1 {
		t.Errorf("queue named only by the config file holds %d entries, want 1", len(e))
	}
	_ = os.RemoveAll(filepath.Join(tmp, "q2")) // its GC root becomes stale; Nix removes it
	_ = os.RemoveAll(filepath.Join(tmp, "q3"))

	// Through nix-build: a failing sync hook makes the build fail with the message.
	_, stderr, err := nixBuild(t, writeExpr(t, 1), hook, []string{"NIXCACHE_TO=bogus://x"})
	if err == nil || !strings.Contains(stderr, "bogus") {
		t.Fatalf("nix-build with a broken sync hook: err=%v\n%s", err, stderr)
	}
}

// TestWatchdog: whatever blocks in queue mode (here the .drv is a FIFO
// with no writer, as a hung file system would block), the hook gives up
// after its 5 s watchdog and exits 0 so the build goes on.
func TestWatchdog(t *testing.T) {
	hook, _ := binaries(t)
	dir := t.TempDir()
	drvPath := filepath.Join(dir, "00000000000000000000000000000000-stuck.drv")
	if err := syscall.Mkfifo(drvPath, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr, took := runHook(t, hook, []string{"DRV_PATH=" + drvPath, "NIXCACHE_QUEUE=" + filepath.Join(dir, "q")})
	if code != 0 || !strings.Contains(stderr, "gave up so the build can go on") {
		t.Fatalf("exit %d after %v:\n%s", code, took, stderr)
	}
	if took < 5*time.Second || took > 15*time.Second {
		t.Fatalf("the watchdog fired after %v, want 5 s", took)
	}
}
