package cache_test

import (
	"testing"

	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/signature"
)

// fakeSource is the cache tests' Source (cachetest.Source).
type fakeSource = cachetest.Source

func newFakeSource(t testing.TB) *fakeSource { return cachetest.NewSource(t.TempDir()) }

func mustPub(t testing.TB, s string) []signature.PublicKey {
	t.Helper()
	k, err := signature.ParsePublicKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return []signature.PublicKey{k}
}
