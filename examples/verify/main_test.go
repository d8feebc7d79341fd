package main_test

// The verify command run as a user runs it, against real caches: a file://
// cache written by our push and accepted by Nix's `nix store verify`, the
// same cache damaged, and caches that cannot be read. Each outcome has its
// own exit status (documented in main.go).

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// verify runs the built command and returns its output and exit status.
func verify(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "verify"), args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("verify: %v", err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func TestVerifyCommand(t *testing.T) {
	testenv.RequireNix(t)
	tmp := t.TempDir()
	bin := testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/push", "github.com/nixcache/nixcache/examples/verify", "github.com/nixcache/nixcache/examples/keygen")
	sec, pubFile := filepath.Join(tmp, "k.sec"), filepath.Join(tmp, "k.pub")
	if out, err := exec.Command(filepath.Join(bin, "keygen"), "verify-test-1", sec, pubFile).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	pubBytes, _ := os.ReadFile(pubFile)
	pub := strings.TrimSpace(string(pubBytes))
	secBytes, _ := os.ReadFile(sec)

	cl := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "verify-cmd", N: 2})
	cacheDir := filepath.Join(tmp, "cache")
	url := "file://" + cacheDir
	if out, err := exec.Command(filepath.Join(bin, "push"), "-q", "--to", url, "--secret-key", sec, cl.Top).CombinedOutput(); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if code := testenv.NixStoreVerify(t, url, pub, cl.Paths...); code != 0 {
		t.Fatalf("nix store verify of the pushed cache: exit %d", code)
	}

	t.Run("good", func(t *testing.T) {
		for _, key := range []string{pub, pubFile} {
			out, errOut, code := verify(t, bin, "--from", url, "--trusted-key", key)
			if code != 0 || out != "" || !strings.Contains(errOut, "checked 2 paths, 0 bad") {
				t.Errorf("verify --trusted-key %s: exit %d\nstdout: %s\nstderr: %s", key, code, out, errOut)
			}
		}
		if _, errOut, code := verify(t, bin, "--from", url, "--trusted-key", pub, cl.Top); code != 0 || !strings.Contains(errOut, "checked 1 paths") {
			t.Errorf("verify of one path: exit %d: %s", code, errOut)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		if code := testenv.NixStoreVerify(t, url, "other-1:"+strings.SplitN(pub, ":", 2)[1], cl.Paths...); code&2 == 0 {
			t.Fatalf("nix store verify with another key name: exit %d, want the untrusted bit", code)
		}
		out, _, code := verify(t, bin, "--from", url, "--trusted-key", "other-1:"+strings.SplitN(pub, ":", 2)[1])
		if code != 1 || strings.Count(out, "\n") != 2 {
			t.Errorf("untrusted key: exit %d, want 1 with two bad paths\n%s", code, out)
		}
	})
	t.Run("cache errors", func(t *testing.T) {
		noInfo := t.TempDir()
		os.WriteFile(filepath.Join(noInfo, "x.narinfo"), []byte("StorePath: /nix/store/x\n"), 0o644)
		// A tree deeper than PATH_MAX: the listing fails part way.
		deep := t.TempDir()
		os.WriteFile(filepath.Join(deep, "nix-cache-info"), []byte("StoreDir: /nix/store\n"), 0o644)
		name := strings.Repeat("d", 250)
		root, err := os.OpenRoot(deep)
		for range 20 { // relative to an open directory, past PATH_MAX
			if err == nil {
				err = root.Mkdir(name, 0o755)
			}
			if err == nil {
				parent := root
				root, err = root.OpenRoot(name)
				parent.Close()
			}
		}
		if err != nil {
			t.Fatalf("deep tree: %v", err)
		}
		root.Close()
		for _, tc := range []struct{ name, url, want string }{
			{"missing directory", "file://" + tmp + "/no/such/dir", "nix-cache-info"},
			{"no nix-cache-info", "file://" + noInfo, "nix-cache-info"},
			{"listing fails", "file://" + deep, "list"},
		} {
			out, errOut, code := verify(t, bin, "--from", tc.url, "--trusted-key", pub)
			if code != 3 || out != "" || !strings.Contains(errOut, tc.want) {
				t.Errorf("%s: exit %d, want 3 with an error mentioning %q\nstdout: %s\nstderr: %s", tc.name, code, tc.want, out, errOut)
			}
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"no key", []string{"--from", url}},
			{"bad URL", []string{"--from", url + "?priority=2147483648", "--trusted-key", pub}},
			{"bad path", []string{"--from", url, "--trusted-key", pub, "not-a-store-path"}},
			{"secret key as trusted key", []string{"--from", url, "--trusted-key", strings.TrimSpace(string(secBytes))}},
			{"missing key file", []string{"--from", url, "--trusted-key", "/no/such/key.pub"}},
		} {
			out, errOut, code := verify(t, bin, tc.args...)
			if code != 2 {
				t.Errorf("%s: exit %d, want 2\nstdout: %s\nstderr: %s", tc.name, code, out, errOut)
			}
			secret := strings.SplitN(strings.TrimSpace(string(secBytes)), ":", 2)[1]
			if strings.Contains(out+errOut, secret) || strings.Contains(out+errOut, "/no/such/key.pub") {
				t.Errorf("%s: the output repeats a --trusted-key value:\n%s%s", tc.name, out, errOut)
			}
		}
	})
	t.Run("damaged NAR", func(t *testing.T) {
		nars, _ := filepath.Glob(filepath.Join(cacheDir, "nar", "*"))
		if len(nars) != 2 {
			t.Fatalf("nar files: %v", nars)
		}
		if err := os.Remove(nars[0]); err != nil {
			t.Fatal(err)
		}
		if code := testenv.NixStoreVerify(t, url, pub, cl.Paths...); code == 0 {
			t.Fatal("nix store verify accepts a cache with a NAR missing")
		}
		out, errOut, code := verify(t, bin, "--from", url, "--trusted-key", pub)
		named := strings.Contains(out, cl.Paths[0]) || strings.Contains(out, cl.Paths[1])
		if code != 1 || strings.Count(out, "\n") != 1 || !named || !strings.Contains(errOut, "1 bad") {
			t.Errorf("NAR missing: exit %d, want 1 with one bad path\nstdout: %s\nstderr: %s", code, out, errOut)
		}
	})
}
