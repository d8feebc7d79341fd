package main_test

// The verify command run as a user runs it, against real caches: a file://
// cache written by our push and accepted by Nix's `nix store verify`, the
// same cache damaged, and caches that cannot be read. Each outcome has its
// own exit status (documented in main.go).

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/cachetest"
	_ "github.com/nixcache/nixcache/cache/file"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/storepath"
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

// TestVerifyRepairAndRotate (issue 10, proof 4) runs the command as a user
// would, on file:// and on the S3 server, with real Nix as the judge: a
// pushed closure with one NAR truncated, another deleted and a narinfo
// garbled fails `nix store verify`; verify reports them (exit 1); verify --repair --secret-key makes
// Nix accept the cache again (exit 0), and a second run writes nothing.
// verify --sign-with NEW (trusting OLD) makes Nix trusting only NEW accept
// every path, OLD's signature kept. A damaged path no longer in the local
// store is reported as not repairable (exit 1).
func TestVerifyRepairAndRotate(t *testing.T) {
	testenv.RequireNix(t)
	bin := testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/push", "github.com/nixcache/nixcache/examples/verify")
	for _, backend := range []string{"file", "s3"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			old, neu := testenv.NixKeyPair(t, "verify-old-1"), testenv.NixKeyPair(t, "verify-new-1")
			var url, nixURL string
			if backend == "file" {
				dir := t.TempDir()
				url, nixURL = "file://"+dir, "file://"+dir
			} else {
				s3 := testenv.StartS3(t)
				s3.SetEnv(t)
				s3.MakeBucket(t, "verify", true)
				url, nixURL = s3.URL("verify"), s3.Endpoint+"/verify"
				// Nix caches narinfos read over http: make it read fresh ones.
				t.Setenv("NIX_CONFIG", "narinfo-cache-positive-ttl = 0\nnarinfo-cache-negative-ttl = 0")
			}
			cl := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "verify-repair", N: 3})
			gone := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "verify-gone", N: 1})
			for _, p := range []string{cl.Top, gone.Top} {
				if out, err := exec.Command(filepath.Join(bin, "push"), "-q", "--to", url, "--secret-key", old.SecretFile, p).CombinedOutput(); err != nil {
					t.Fatalf("push: %v\n%s", err, out)
				}
			}
			testenv.Nix(t, "nix-store", "--delete", gone.Top)
			c, err := cache.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			damage(t, c, storepath.Path(cl.Paths[0]), true)
			damage(t, c, storepath.Path(cl.Paths[1]), false)
			damage(t, c, storepath.Path(gone.Top), false)
			// An unreadable narinfo: its key is all that tells the path.
			garbage := []byte("StorePath: garbage\n")
			if err := c.Backend.Put(ctx, cache.NarInfoKey(storepath.Path(cl.Paths[2])), bytes.NewReader(garbage), int64(len(garbage)), ""); err != nil {
				t.Fatal(err)
			}
			if code := testenv.NixStoreVerify(t, nixURL, old.Public, cl.Paths...); code == 0 {
				t.Fatal("nix store verify accepts the damaged cache")
			}
			trust := []string{"--from", url, "--trusted-key", old.Public}
			out, errOut, code := verify(t, bin, trust...)
			if code != 1 || strings.Count(out, "\n") != 4 || !strings.Contains(errOut, "4 bad") {
				t.Fatalf("verify of the damaged cache: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}

			out, errOut, code = verify(t, bin, append(trust, "--repair", "--secret-key", old.SecretFile)...)
			t.Logf("verify --repair:\n%s%s", out, errOut)
			if code != 1 || strings.Count(out, ": repaired (was: ") != 3 || !strings.Contains(out, cl.Paths[2]+": repaired (was: ") ||
				!strings.Contains(out, gone.Top+": not repaired: ") || !strings.Contains(errOut, "checked 4 paths, 4 bad, 3 repaired") {
				t.Fatalf("verify --repair: exit %d, want 1 with three paths repaired and %s not", code, gone.Top)
			}
			if code := testenv.NixStoreVerify(t, nixURL, old.Public, cl.Paths...); code != 0 {
				t.Fatalf("nix store verify after repair: exit %d", code)
			}
			before := cachetest.Snapshot(t, c.Backend)
			out, errOut, code = verify(t, bin, append(trust, "--repair", "--secret-key", old.SecretFile, cl.Top)...)
			if code != 0 || out != "" || !strings.Contains(errOut, "checked 1 paths, 0 bad, 0 repaired") || cachetest.Snapshot(t, c.Backend) != before {
				t.Fatalf("second repair: exit %d (or the cache changed)\nstdout: %s\nstderr: %s", code, out, errOut)
			}

			// Rotation, twice: the second run signs nothing.
			if code := testenv.NixStoreVerify(t, nixURL, neu.Public, cl.Paths...); code&2 == 0 {
				t.Fatalf("nix store verify trusting only NEW before rotation: exit %d", code)
			}
			for i, want := range []string{"4 signed, 0 not signed", " 0 signed, 0 not signed"} {
				out, errOut, code = verify(t, bin, append(trust, "--sign-with", neu.SecretFile)...)
				// The gone path is signed too (its narinfo verifies) but stays bad.
				if code != 1 || !strings.Contains(errOut, want) || strings.Count(out, "\n") != 1 {
					t.Fatalf("rotation %d: exit %d, want 1 and %q\nstdout: %s\nstderr: %s", i+1, code, want, out, errOut)
				}
			}
			if code := testenv.NixStoreVerify(t, nixURL, neu.Public, cl.Paths...); code != 0 {
				t.Fatalf("nix store verify trusting only NEW after rotation: exit %d", code)
			}
			if code := testenv.NixStoreVerify(t, nixURL, old.Public, cl.Paths...); code != 0 {
				t.Fatalf("nix store verify trusting only OLD after rotation: exit %d", code)
			}
			// Not signed: trusted keys that do not verify the narinfo.
			other := testenv.NixKeyPair(t, "verify-other-1")
			out, _, code = verify(t, bin, "--from", url, "--trusted-key", other.Public, "--sign-with", neu.SecretFile, cl.Top)
			if code != 1 || !strings.Contains(out, "not signed") {
				t.Errorf("rotation trusting another key: exit %d, want 1 with 'not signed'\n%s", code, out)
			}
			// A secret key where a key file belongs is a usage error, never echoed.
			sec, _ := os.ReadFile(old.SecretFile)
			out, errOut, code = verify(t, bin, append(trust, "--sign-with", strings.TrimSpace(string(sec)))...)
			if code != 2 || strings.Contains(out+errOut, strings.SplitN(strings.TrimSpace(string(sec)), ":", 2)[1]) {
				t.Errorf("--sign-with SECRET: exit %d, want 2 without the key\n%s%s", code, out, errOut)
			}
		})
	}
}

// damage truncates (or deletes) the NAR of p's narinfo.
func damage(t *testing.T, c *cache.Cache, p storepath.Path, truncate bool) {
	t.Helper()
	ctx := context.Background()
	ni, err := narinfo.Unmarshal(cachetest.Read(t, c.Backend, cache.NarInfoKey(p)))
	if err != nil {
		t.Fatal(err)
	}
	if !truncate {
		if err := c.Backend.Delete(ctx, ni.URL); err != nil {
			t.Fatal(err)
		}
		return
	}
	data := cachetest.Read(t, c.Backend, ni.URL)[:50]
	if err := c.Backend.Put(ctx, ni.URL, bytes.NewReader(data), int64(len(data)), ""); err != nil {
		t.Fatal(err)
	}
}
