package main_test

// Skipping what an upstream cache serves (issue 10), judged by real Nix:
// the upstream cache is written by `nix copy`, the store database holds
// its signatures because Nix substituted the paths from it, and a cleaned
// store is filled again by Nix from "ours upstream".

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/internal/testenv"
)

var nixCommand = []string{"--extra-experimental-features", "nix-command"}

// nixCopyTo writes paths to a file:// cache signed by key, as an
// upstream's own tooling would.
func nixCopyTo(t *testing.T, dir string, key testenv.NixKey, paths ...string) {
	t.Helper()
	args := append(append(slices.Clone(nixCommand), "copy", "--to", "file://"+dir+"?compression=zstd&secret-key="+key.SecretFile), paths...)
	testenv.Nix(t, "nix", args...)
}

// deleteStorePaths deletes paths, referrers first (callers list them so),
// and checks they are gone.
func deleteStorePaths(t *testing.T, paths ...string) {
	t.Helper()
	testenv.Nix(t, "nix-store", append([]string{"--delete"}, paths...)...)
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s still in the store after nix-store --delete", p)
		}
	}
}

// realise makes Nix substitute paths from substituters, trusting keys,
// without building anything (--max-jobs 0).
func realise(substituters, keys string, paths ...string) ([]byte, error) {
	args := append([]string{"--realise"}, paths...)
	args = append(args, "--option", "substituters", substituters, "--option", "trusted-public-keys", keys,
		"--option", "narinfo-cache-negative-ttl", "0", "--max-jobs", "0")
	return testenv.NixCmd("nix-store", args...)
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

func narinfos(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = strings.TrimSuffix(filepath.Base(m[i]), ".narinfo")
	}
	slices.Sort(m)
	return m
}

func hashPart(p string) string { return strings.SplitN(filepath.Base(p), "-", 2)[0] }

// TestUpstreamSkippedHookQueue is issue 10's first proof. An upstream
// cache (its own key, written by nix copy, served over HTTP) holds a
// closure; the closure is deleted and substituted back from it, so the
// store database holds upstream's signatures. Two derivations built on top,
// with the post-build hook in queue mode, are the only paths the daemon
// uploads (one of them is also found upstream through --upstream and is
// skipped too); verify passes with --upstream and names the missing
// reference without. Then, with the store cleaned, Nix fetches everything from
// "ours upstream" with both keys and --max-jobs 0 (nothing rebuilt), and
// not from ours alone (the documented trade-off, NixOS/nix#4016).
func TestUpstreamSkippedHookQueue(t *testing.T) {
	testenv.RequireNix(t)
	dir := testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/post-build-hook", "github.com/nixcache/nixcache/examples/upload-daemon", "github.com/nixcache/nixcache/examples/verify")
	hook, daemon, verify := filepath.Join(dir, "post-build-hook"), filepath.Join(dir, "upload-daemon"), filepath.Join(dir, "verify")
	upKey, ourKey := testenv.NixKeyPair(t, "upstream-test-1"), testenv.NixKeyPair(t, "ours-test-1")
	base := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "upstream-base", N: 3})
	upDir, ourDir, qdir := t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "q")
	nixCopyTo(t, upDir, upKey, base.Top)
	upURL := testenv.ServeDir(t, upDir)
	deleteStorePaths(t, reversed(base.Paths)...)
	if out, err := realise(upURL, upKey.Public, base.Top); err != nil {
		t.Fatalf("substitute the base from upstream: %v\n%s", err, out)
	}
	if sigs := testenv.Nix(t, "nix", append(slices.Clone(nixCommand), "path-info", "--sigs", base.Top)...); !strings.Contains(string(sigs), "upstream-test-1:") {
		t.Fatalf("the store database holds no upstream signature for %s:\n%s", base.Top, sigs)
	}

	// Two derivations on top of the base: a refers to it, b to a.
	nonce := fmt.Sprint(time.Now().UnixNano())
	expr := filepath.Join(t.TempDir(), "on-top.nix")
	drv := func(name, ref string) string {
		return fmt.Sprintf(`derivation { name = "%s-%s"; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = ["-c" "echo ${%s} > $out"]; }`, name, nonce, ref)
	}
	src := fmt.Sprintf("let base = builtins.storePath %q; in rec {\n a = %s;\n b = %s;\n}\n", base.Top, drv("upstream-a", "base"), drv("upstream-b", "a"))
	if err := os.WriteFile(expr, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nix-build", expr, "--no-out-link", "--option", "substituters", "", "--option", "post-build-hook", hook)
	cmd.Env = append(testenv.Environ("NIXCACHE_"), "NIXCACHE_QUEUE="+qdir, "NIXCACHE_CONFIG="+emptyConfig(t))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-build: %v\n%s", err, out)
	}
	built := strings.Fields(string(out))
	if len(built) != 2 {
		t.Fatalf("nix-build printed %q, want the outputs of a and b", built)
	}
	a, b := built[0], built[1]
	if !strings.Contains(a, "upstream-a-") {
		a, b = b, a
	}
	t.Cleanup(func() { // before the base's own cleanup: a and b refer to it
		_, _ = testenv.NixCmd("nix-store", "--delete", b, a)
	})
	// a is also published upstream (by upstream's own nix copy); the store
	// database holds no upstream signature for it: only --upstream finds it.
	nixCopyTo(t, upDir, upKey, a)

	code, log := run(t, nil, daemon, "--queue", qdir, "--to", "file://"+ourDir+"?compression=zstd", "--secret-key", ourKey.SecretFile,
		"--skip-signed-by", upKey.Public, "--upstream", upURL, "--exit-when-empty")
	if code != 0 {
		t.Fatalf("daemon: exit %d\n%s", code, log)
	}
	if got, want := narinfos(t, ourDir), []string{hashPart(b)}; !slices.Equal(got, want) {
		t.Fatalf("our cache holds narinfos %v, want only b's %v\n%s", got, want, log)
	}
	code, js := run(t, nil, daemon, "status", "--queue", qdir, "--json")
	var r queue.Report
	if err := json.Unmarshal([]byte(js), &r); code != 0 || err != nil {
		t.Fatalf("status --json: exit %d, %v\n%s", code, err, js)
	}
	if r.Status == nil || r.Status.Uploaded != 2 || r.Status.Narinfos != 1 || r.Status.Upstream != int64(len(base.Paths)+1) {
		t.Fatalf("status %+v, want 2 queued paths done, 1 narinfo written, %d served upstream", r.Status, len(base.Paths)+1)
	}
	if code, text := run(t, nil, daemon, "status", "--queue", qdir); code != 0 || !strings.Contains(text, fmt.Sprintf("%d paths served upstream", len(base.Paths)+1)) {
		t.Fatalf("status text: exit %d\n%s", code, text)
	}

	// verify: b's reference a is served upstream only.
	if code, out := run(t, nil, verify, "--from", "file://"+ourDir, "--trusted-key", ourKey.Public); code != 1 || !strings.Contains(out, "reference not in the cache: "+a) {
		t.Fatalf("verify without --upstream: exit %d, want 1 naming the missing reference %s\n%s", code, a, out)
	}
	if code, out := run(t, nil, verify, "--from", "file://"+ourDir, "--trusted-key", ourKey.Public, "--upstream", upURL, "--upstream-key", upKey.Public); code != 0 {
		t.Fatalf("verify --upstream: exit %d, want 0\n%s", code, out)
	}
	if code := testenv.NixStoreVerify(t, "file://"+ourDir, ourKey.Public, b); code != 0 {
		t.Fatalf("nix store verify of our cache: exit %d", code)
	}

	// The cleaned store: ours alone lacks the upstream paths; ours plus
	// upstream, with both keys, gives everything without building.
	// The .drv files of a and b name the base as an input: they go first.
	var drvs []string
	for _, p := range []string{b, a} {
		drvs = append(drvs, strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--query", "--deriver", p))))
	}
	all := append([]string{b, a}, reversed(base.Paths)...)
	deleteStorePaths(t, append(drvs, all...)...)
	if out, err := realise("file://"+ourDir, ourKey.Public, b); err == nil {
		t.Fatalf("Nix substituted b from our cache alone, whose references are upstream:\n%s", out)
	}
	if out, err := realise("file://"+ourDir+" "+upURL, ourKey.Public+" "+upKey.Public, b); err != nil {
		t.Fatalf("substitute from ours + upstream: %v\n%s", err, out)
	}
	for _, p := range all {
		if _, err := os.Lstat(p); err != nil {
			t.Fatalf("%s not substituted: %v", p, err)
		}
	}
	testenv.Nix(t, "nix-store", "--verify-path", b)
}

// TestForgedUpstreamSignatureNotSkipped is issue 10's second proof: the
// store database holds a signature under the upstream key's name made by
// another key (nix store sign with a key pair of the same name). push
// --skip-signed-by uploads the paths anyway; once the real upstream key
// has signed them, it skips them.
func TestForgedUpstreamSignatureNotSkipped(t *testing.T) {
	testenv.RequireNix(t)
	daemon, _ := binaries(t)
	upKey, forger, ourKey := testenv.NixKeyPair(t, "upstream-test-1"), testenv.NixKeyPair(t, "upstream-test-1"), testenv.NixKeyPair(t, "ours-test-1")
	c := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "upstream-forged", N: 2})
	sign := func(k testenv.NixKey) {
		testenv.Nix(t, "nix", append(slices.Clone(nixCommand), "store", "sign", "--key-file", k.SecretFile, "-r", c.Top)...)
	}
	sign(forger)
	if sigs := testenv.Nix(t, "nix", append(slices.Clone(nixCommand), "path-info", "--sigs", c.Top)...); !strings.Contains(string(sigs), "upstream-test-1:") {
		t.Fatalf("nix store sign left no signature named upstream-test-1:\n%s", sigs)
	}
	push := func() string {
		t.Helper()
		code, out := run(t, nil, daemon, "push", "-q", "--to", "file://"+t.TempDir(), "--secret-key", ourKey.SecretFile, "--skip-signed-by", upKey.Public, c.Top)
		if code != 0 {
			t.Fatalf("push: exit %d\n%s", code, out)
		}
		return out
	}
	if out := push(); !strings.Contains(out, "uploaded 2, skipped 0, upstream 0,") {
		t.Fatalf("with a forged upstream signature, want both paths uploaded:\n%s", out)
	}
	sign(upKey)
	if out := push(); !strings.Contains(out, "uploaded 0, skipped 0, upstream 2,") {
		t.Fatalf("with upstream's real signature, want both paths skipped:\n%s", out)
	}
}
