package main_test

// End-to-end test of the push and verify commands, judged by real Nix:
// nix store verify accepts what push uploaded, Nix substitutes it back, and
// verify reports a NAR that was tampered with.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func TestPushVerifyCommands(t *testing.T) {
	testenv.RequireNix(t)
	tmp := t.TempDir()
	bin := testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/push", "github.com/nixcache/nixcache/examples/verify", "github.com/nixcache/nixcache/examples/keygen")

	sec, pub := filepath.Join(tmp, "k.sec"), filepath.Join(tmp, "k.pub")
	if out, err := run(t, filepath.Join(bin, "keygen"), "push-test-1", sec, pub); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	pubKey, _ := os.ReadFile(pub)

	// Two derivations, the second referring to the first.
	c := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "push-cmd", N: 2, Root: true})
	top, closure, result := c.Top, c.Paths, c.Link

	cacheDir := filepath.Join(tmp, "cache")
	url := "file://" + cacheDir
	// push takes ./result (a symlink) and uploads the closure.
	if out, err := run(t, filepath.Join(bin, "push"), "-q", "--to", url, "--secret-key", sec, result); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	} else if !strings.Contains(out, "uploaded 2") {
		t.Errorf("push summary does not say 2 uploaded:\n%s", out)
	}
	if out, err := run(t, filepath.Join(bin, "push"), "-q", "--to", url, "--secret-key", sec, top); err != nil || !strings.Contains(out, "uploaded 0") {
		t.Errorf("second push should upload nothing: %v\n%s", err, out)
	}

	// Real Nix accepts the cache.
	if code := testenv.NixStoreVerify(t, url, string(pubKey), closure...); code != 0 {
		t.Fatalf("nix store verify: exit code %d", code)
	}
	// Our verify agrees.
	if out, err := run(t, filepath.Join(bin, "verify"), "--from", url, "--trusted-key", string(pubKey)); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	// And with the wrong key, both refuse.
	other := "other-1:" + strings.SplitN(string(pubKey), ":", 2)[1][:4] + strings.SplitN(string(pubKey), ":", 2)[1][4:]
	if out, err := run(t, filepath.Join(bin, "verify"), "--from", url, "--trusted-key", other); err == nil {
		t.Errorf("verify with an untrusted key succeeded:\n%s", out)
	}

	// Substitute back from the cache.
	os.Remove(result)
	if _, err := testenv.NixCmd("nix-store", "--delete", top); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := testenv.NixCmd("nix-store", "--realise", top, "--option", "substituters", url,
		"--option", "trusted-public-keys", string(pubKey), "--max-jobs", "0"); err != nil {
		t.Fatalf("substitute back: %v", err)
	}

	// Tamper with one NAR: verify names exactly that path and exits 1.
	nars, _ := filepath.Glob(filepath.Join(cacheDir, "nar", "*"))
	if len(nars) != 2 {
		t.Fatalf("nar files: %v", nars)
	}
	// Replace one NAR by the other one: a valid file, but the wrong contents.
	data, _ := os.ReadFile(nars[1])
	if err := os.WriteFile(nars[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	out2, err := run(t, filepath.Join(bin, "verify"), "--from", url, "--trusted-key", string(pubKey))
	if err == nil {
		t.Fatalf("verify accepted a tampered NAR:\n%s", out2)
	}
	bad := 0
	for _, line := range strings.Split(strings.TrimSpace(out2), "\n") {
		if strings.Contains(line, "/nix/store/") {
			bad++
		}
	}
	if bad != 1 {
		t.Errorf("verify should print one line for the one bad path, got:\n%s", out2)
	}
}
