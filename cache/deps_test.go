package cache_test

import (
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// TestImportGraphCacheSide pins the arrows that keep the cache side light:
// a program that only reads or writes a cache (cache, its backends) links no
// store database, and the verify command, which reads the local store only
// for --repair (through the nix command), links no SQLite. Only
// cache/localstore/sqlite brings SQLite in, imported by push and the daemon.
func TestImportGraphCacheSide(t *testing.T) {
	store := []string{"modernc.org/sqlite", "database/sql", "github.com/nixcache/nixcache/cache/localstore"}
	for pkg, banned := range map[string][]string{
		"github.com/nixcache/nixcache/cache":           store,
		"github.com/nixcache/nixcache/cache/compress":  store,
		"github.com/nixcache/nixcache/cache/file":      store,
		"github.com/nixcache/nixcache/cache/s3":        store,
		"github.com/nixcache/nixcache/cache/http":      store,
		"github.com/nixcache/nixcache/examples/verify": {"modernc.org/sqlite", "github.com/nixcache/nixcache/cache/localstore/sqlite"},
	} {
		deps := testenv.GoListDeps(t, pkg)
		for _, b := range banned {
			if deps[b] {
				t.Errorf("%s imports %s", pkg, b)
			}
		}
	}
}
