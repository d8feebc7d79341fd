package cache_test

import (
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
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
		deps := testenv.GoListDeps(t, pkg)
		for _, b := range banned {
			if deps[b] {
				t.Errorf("%s imports %s", pkg, b)
			}
		}
	}
}
