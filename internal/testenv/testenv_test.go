package testenv_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// The closure's shape, as real Nix records it: path i refers to itself, to
// i-1 and to the leaf; a second output refers to "out"; -qR order puts the
// top's outputs last; the cleanup deletes the paths.
func TestBuildClosure(t *testing.T) {
	t.Parallel()
	var c testenv.Closure
	t.Run("build", func(t *testing.T) {
		c = testenv.BuildClosure(t, testenv.ClosureSpec{Name: "testenv-shape", N: 4, Outputs: []string{"out", "dev"}, Blob: 1000, Root: true})
		if len(c.Paths) != 5 {
			t.Fatalf("closure %v, want 5 paths", c.Paths)
		}
		if got := slices.Sorted(slices.Values(c.Paths[3:])); !slices.Equal(got, slices.Sorted(slices.Values([]string{c.Outputs["dev"], c.Outputs["out"]}))) || c.Top != c.Outputs["out"] {
			t.Fatalf("the top's outputs %v are not last in %v", c.Outputs, c.Paths)
		}
		refs := func(p string) []string {
			return slices.Sorted(slices.Values(strings.Fields(string(testenv.Nix(t, "nix-store", "--query", "--references", p)))))
		}
		leaf := c.Paths[0]
		byName := map[string]string{}
		for _, p := range c.Paths {
			byName[p[strings.Index(p, "-testenv-shape-")+1:]] = p
		}
		for name, want := range map[string][]string{
			"testenv-shape-0":     {leaf},
			"testenv-shape-1":     {leaf, byName["testenv-shape-1"]},
			"testenv-shape-2":     {leaf, byName["testenv-shape-1"], byName["testenv-shape-2"]},
			"testenv-shape-3":     {leaf, byName["testenv-shape-2"], byName["testenv-shape-3"]},
			"testenv-shape-3-dev": {byName["testenv-shape-3"]},
		} {
			slices.Sort(want)
			if got := refs(byName[name]); !slices.Equal(got, want) {
				t.Errorf("%s refers to %v, want %v", name, got, want)
			}
		}
		for i := range 4 {
			if fi, err := os.Stat(filepath.Join(byName[fmt.Sprintf("testenv-shape-%d", i)], "share", "blob")); err != nil || fi.Size() != 1000 {
				t.Errorf("blob of path %d: %v", i, err)
			}
		}
		if target, err := os.Readlink(c.Link); err != nil || target != c.Top {
			t.Errorf("Link %s -> %s, %v; want %s", c.Link, target, err, c.Top)
		}
		if got := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--query", "--deriver", c.Top))); got != c.Drv {
			t.Errorf("Drv %s, nix-store says %s", c.Drv, got)
		}
	})
	for _, p := range c.Paths {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still in the store after the test", p)
		}
	}
}

// GoBuild builds a list of packages once per test binary run.
func TestGoBuild(t *testing.T) {
	t.Parallel()
	pkg := "github.com/nixcache/nixcache/examples/keygen"
	dir := testenv.GoBuild(t, pkg)
	if again := testenv.GoBuild(t, pkg); again != dir {
		t.Errorf("second GoBuild built again into %s (first %s)", again, dir)
	}
	if _, err := exec.Command(filepath.Join(dir, "keygen"), "-h").CombinedOutput(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("run keygen: %v", err)
		}
	}
}

func TestGOROOT(t *testing.T) {
	if _, err := os.Stat(filepath.Join(testenv.GOROOT(t), "src", "net", "net.go")); err != nil {
		t.Fatal(err)
	}
}
