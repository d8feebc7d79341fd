package main_test

// The fetch command run as a user runs it: a cache written by nix copy,
// read from file:// and over HTTP; each restored tree judged by
// nix-store --dump of the store path; a damaged cache refused with nothing
// left behind; each outcome with its documented exit status.

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

func fetch(t *testing.T, bin string, args ...string) (stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "fetch"), args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("fetch: %v", err)
	}
	if o.Len() > 0 {
		t.Errorf("fetch wrote to stdout: %q", o.String())
	}
	return e.String(), cmd.ProcessState.ExitCode()
}

func dump(t *testing.T, path string) []byte {
	t.Helper()
	return testenv.Nix(t, "nix-store", "--dump", path)
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestFetchCommand(t *testing.T) {
	testenv.RequireNix(t)
	bin := testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/fetch")
	cl := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "fetch-cmd", N: 3, Blob: 20000, Root: true})
	key := testenv.NixKeyPair(t, "fetch-cmd-1")
	cacheDir := filepath.Join(t.TempDir(), "cache")
	testenv.Nix(t, "nix", append([]string{"copy", "--to", "file://" + cacheDir + "?compression=zstd&secret-key=" + key.SecretFile}, cl.Paths...)...)
	served := testenv.ServeDir(t, cacheDir)

	for _, url := range []string{"file://" + cacheDir, served} {
		t.Run("good "+url[:4], func(t *testing.T) {
			work := t.TempDir()
			out := filepath.Join(work, "out")
			for _, k := range []string{key.Public, key.PublicFile} {
				os.RemoveAll(out)
				if errOut, code := fetch(t, bin, "--from", url, "--trusted-key", k, cl.Top, out); code != 0 {
					t.Fatalf("fetch: exit %d: %s", code, errOut)
				}
				if !bytes.Equal(dump(t, out), dump(t, cl.Top)) {
					t.Fatal("the restored tree differs from the store path (nix-store --dump)")
				}
			}
			closure := filepath.Join(work, "closure")
			if errOut, code := fetch(t, bin, "--from", url, "--trusted-key", key.Public, "--closure", cl.Top, closure); code != 0 {
				t.Fatalf("fetch --closure: exit %d: %s", code, errOut)
			}
			if got := entries(t, closure); len(got) != len(cl.Paths) {
				t.Fatalf("closure dir holds %q, want %d paths", got, len(cl.Paths))
			}
			for _, p := range cl.Paths {
				if !bytes.Equal(dump(t, filepath.Join(closure, filepath.Base(p))), dump(t, p)) {
					t.Fatalf("closure: %s differs from the store path", p)
				}
			}
		})
	}

	t.Run("damaged", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad")
		if out, err := exec.Command("cp", "-a", cacheDir, bad).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		// Damage the leaf's NAR: the top path alone is fine, its closure not.
		leaf := cl.Paths[0]
		info, _ := os.ReadFile(filepath.Join(bad, strings.SplitN(filepath.Base(leaf), "-", 2)[0]+".narinfo"))
		narKey := strings.TrimSpace(strings.SplitN(strings.SplitN(string(info), "URL: ", 2)[1], "\n", 2)[0])
		data, _ := os.ReadFile(filepath.Join(bad, narKey))
		data[len(data)/2] ^= 1
		os.WriteFile(filepath.Join(bad, narKey), data, 0o644)
		if code := testenv.NixStoreVerify(t, "file://"+bad, key.Public, leaf); code == 0 {
			t.Fatal("nix store verify passes the damaged NAR")
		}
		for _, url := range []string{"file://" + bad, testenv.ServeDir(t, bad)} {
			work := t.TempDir()
			for _, args := range [][]string{{leaf, filepath.Join(work, "leaf")}, {"--closure", cl.Top, filepath.Join(work, "closure")}} {
				errOut, code := fetch(t, bin, append([]string{"--from", url, "--trusted-key", key.Public}, args...)...)
				if code != 1 || !strings.Contains(errOut, filepath.Base(leaf)) {
					t.Errorf("%s %v: exit %d, want 1 naming the leaf: %s", url, args, code, errOut)
				}
			}
			if got := entries(t, work); len(got) != 0 {
				t.Errorf("%s: left behind %q", url, got)
			}
		}
		other := testenv.NixKeyPair(t, "fetch-cmd-1") // same name, other key
		if errOut, code := fetch(t, bin, "--from", "file://"+cacheDir, "--trusted-key", other.Public, cl.Top, filepath.Join(t.TempDir(), "x")); code != 1 {
			t.Errorf("wrong key: exit %d, want 1: %s", code, errOut)
		}
	})

	t.Run("usage and cache errors", func(t *testing.T) {
		secret, _ := os.ReadFile(key.SecretFile)
		exists := t.TempDir()
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		closed := "http://" + l.Addr().String() + "?retry-attempts=1"
		l.Close()
		noInfo := t.TempDir()
		for _, tc := range []struct {
			name string
			code int
			args []string
		}{
			{"no key", 2, []string{"--from", served, cl.Top, filepath.Join(t.TempDir(), "x")}},
			{"secret key as trusted key", 2, []string{"--from", served, "--trusted-key", strings.TrimSpace(string(secret)), cl.Top, filepath.Join(t.TempDir(), "x")}},
			{"not a store path", 2, []string{"--from", served, "--trusted-key", key.Public, "/tmp/x", filepath.Join(t.TempDir(), "x")}},
			{"DIR exists", 2, []string{"--from", served, "--trusted-key", key.Public, cl.Top, exists}},
			{"bad URL", 2, []string{"--from", served + "?retry-attempts=0", "--trusted-key", key.Public, cl.Top, filepath.Join(t.TempDir(), "x")}},
			{"server down", 3, []string{"--from", closed, "--trusted-key", key.Public, cl.Top, filepath.Join(t.TempDir(), "x")}},
			{"no nix-cache-info", 3, []string{"--from", "file://" + noInfo, "--trusted-key", key.Public, cl.Top, filepath.Join(t.TempDir(), "x")}},
			{"not in the cache", 1, []string{"--from", served, "--trusted-key", key.Public, "/nix/store/00000000000000000000000000000000-none", filepath.Join(t.TempDir(), "x")}},
		} {
			errOut, code := fetch(t, bin, tc.args...)
			if code != tc.code {
				t.Errorf("%s: exit %d, want %d: %s", tc.name, code, tc.code, errOut)
			}
			if s := strings.SplitN(strings.TrimSpace(string(secret)), ":", 2)[1]; strings.Contains(errOut, s) {
				t.Errorf("%s: the secret key appears in the output", tc.name)
			}
		}
		if got := entries(t, exists); len(got) != 0 {
			t.Errorf("DIR exists: fetch wrote into it: %q", got)
		}
	})
}
