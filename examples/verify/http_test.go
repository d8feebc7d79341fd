package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// TestVerifyOverHTTP: verify reads a cache over HTTP for the paths named,
// as Nix does; without paths (HTTP cannot list) it is a usage error that
// says so.
func TestVerifyOverHTTP(t *testing.T) {
	testenv.RequireNix(t)
	bin := testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/verify")
	cl := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "verify-http", N: 2, Root: true})
	key := testenv.NixKeyPair(t, "verify-http-1")
	dir := filepath.Join(t.TempDir(), "cache")
	testenv.Nix(t, "nix", append([]string{"copy", "--to", "file://" + dir + "?secret-key=" + key.SecretFile}, cl.Paths...)...)
	url := testenv.ServeDir(t, dir)
	if code := testenv.NixStoreVerify(t, url, key.Public, cl.Paths...); code != 0 {
		t.Fatalf("nix store verify --store %s: exit %d", url, code)
	}
	out, errOut, code := verify(t, bin, append([]string{"--from", url, "--trusted-key", key.Public}, cl.Paths...)...)
	if code != 0 || out != "" || !strings.Contains(errOut, "checked 2 paths, 0 bad") {
		t.Fatalf("verify over HTTP: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	out, errOut, code = verify(t, bin, "--from", url, "--trusted-key", key.Public)
	if code != 2 || !strings.Contains(errOut, "cannot be listed") || !strings.Contains(errOut, "name the store paths") {
		t.Fatalf("verify over HTTP without paths: exit %d, want 2 saying it cannot list\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	// A damaged NAR over HTTP is a bad path, as for Nix.
	nars, _ := filepath.Glob(filepath.Join(dir, "nar", "*"))
	os.Truncate(nars[0], 10)
	if code := testenv.NixStoreVerify(t, url, key.Public, cl.Paths...); code == 0 {
		t.Fatal("nix store verify passes a truncated NAR")
	}
	if out, errOut, code := verify(t, bin, append([]string{"--from", url, "--trusted-key", key.Public}, cl.Paths...)...); code != 1 || strings.Count(out, "\n") != 1 {
		t.Fatalf("verify over HTTP, one NAR truncated: exit %d, want 1 with one bad path\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}
