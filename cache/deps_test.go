package cache_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportGraphCacheSide pins the arrows that keep the cache side light:
// a program that only reads or writes a cache (cache, its backends, the
// verify command) links no store database. Only cache/localstore, the
// source side of an upload, may bring SQLite in.
func TestImportGraphCacheSide(t *testing.T) {
	banned := []string{"modernc.org/sqlite", "database/sql", "github.com/nixcache/nixcache/cache/localstore"}
	for _, pkg := range []string{
		"github.com/nixcache/nixcache/cache",
		"github.com/nixcache/nixcache/cache/compress",
		"github.com/nixcache/nixcache/cache/file",
		"github.com/nixcache/nixcache/cache/s3",
		"github.com/nixcache/nixcache/examples/verify",
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[d] = true
		}
		if !deps[pkg] {
			t.Fatalf("go list -deps %s does not list the package itself: %q", pkg, out)
		}
		for _, b := range banned {
			if deps[b] {
				t.Errorf("%s imports %s", pkg, b)
			}
		}
	}
}
