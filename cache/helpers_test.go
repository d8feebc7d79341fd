package cache_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/localstore"
	_ "github.com/nixcache/nixcache/cache/localstore/sqlite" // read db.sqlite directly, as push does
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

// nixKey makes a key pair with nix-store --generate-binary-cache-key and
// returns the secret key file and the public key.
func nixKey(t testing.TB, name string) (secFile, pub string) {
	t.Helper()
	k := testenv.NixKeyPair(t, name)
	if err := os.Chmod(k.SecretFile, 0o600); err != nil {
		t.Fatal(err)
	}
	return k.SecretFile, k.Public
}

// buildClosure builds a fresh three-path closure with references (no GC
// root, so a test may delete and substitute it) and returns the top path and
// its closure as nix-store -qR lists it.
func buildClosure(t testing.TB) (top storepath.Path, closure []storepath.Path) {
	t.Helper()
	c := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "nixcache", N: 3, Blob: 100000})
	for _, p := range c.Paths {
		closure = append(closure, mustPath(t, p))
	}
	return mustPath(t, c.Top), closure
}

// addBigPath adds a directory of n MiB of random data with nix-store --add.
func addBigPath(t testing.TB, mib int) storepath.Path {
	t.Helper()
	testenv.RequireNix(t)
	dir := filepath.Join(t.TempDir(), fmt.Sprintf("nixcache-big-%d", time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range mib / 4 {
		f, err := os.Open("/dev/urandom")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4<<20)
		if _, err := f.Read(buf); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("chunk-%03d", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := testenv.Nix(t, "nix-store", "--add", dir)
	return mustPath(t, strings.TrimSpace(string(out)))
}

func mustPath(t testing.TB, s string) storepath.Path {
	t.Helper()
	p, err := storepath.Parse(s)
	if err != nil {
		t.Fatalf("store path %q: %v", s, err)
	}
	return p
}

func pathStrings(ps []storepath.Path) []string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return s
}

// openStore opens the local store (database, falling back to the nix command).
func openStore(t testing.TB) *localstore.Store {
	t.Helper()
	s, err := localstore.Open(context.Background(), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// nixVerify runs nix store verify against the cache (the judge of signatures,
// NAR presence and hashes).
func nixVerify(t testing.TB, storeURL, pub string, paths []storepath.Path) {
	t.Helper()
	if code := testenv.NixStoreVerify(t, storeURL, pub, pathStrings(paths)...); code != 0 {
		t.Fatalf("nix store verify --store %s: exit code %d", storeURL, code)
	}
}

// deleteAndSubstitute deletes the closure from the local store and makes Nix
// substitute it back from substituter, trusting only pub.
func deleteAndSubstitute(t testing.TB, substituter, pub string, top storepath.Path, closure []storepath.Path) {
	t.Helper()
	testenv.Nix(t, "nix-store", append([]string{"--delete"}, pathStrings(closure)...)...)
	for _, p := range closure {
		if _, err := os.Lstat(string(p)); err == nil {
			t.Fatalf("%s still exists after nix-store --delete", p)
		}
	}
	if out, err := testenv.NixCmd("nix-store", "--realise", string(top),
		"--option", "substituters", substituter,
		"--option", "trusted-public-keys", pub,
		"--option", "narinfo-cache-negative-ttl", "0",
		"--max-jobs", "0"); err != nil {
		t.Fatalf("nix-store --realise %s from %s: %v\n%s", top, substituter, err, out)
	}
	for _, p := range closure {
		if _, err := os.Lstat(string(p)); err != nil {
			t.Fatalf("%s not substituted back: %v", p, err)
		}
	}
	// Nix itself checks the restored contents against the NarHash.
	testenv.Nix(t, "nix-store", "--verify-path", string(top))
}

// checkConsistent is the invariant checker: every narinfo has its NAR with
// FileSize bytes and the narinfos of all its references.
func checkConsistent(t testing.TB, c *cache.Cache) {
	t.Helper()
	if err := c.CheckConsistency(context.Background()); err != nil {
		t.Fatalf("cache inconsistent:\n%v", err)
	}
}

// zstdCache makes an empty cache on backend "file" (a temporary directory)
// or "s3" (a public bucket on a fresh S3 server, credentials in the
// environment): url is our URL for it (zstd), nixURL what Nix reads
// (file:// or the bucket over plain HTTP, with Nix's narinfo disk cache
// off so it sees rewritten narinfos).
func zstdCache(t *testing.T, backend, bucket string) (url, nixURL string) {
	t.Helper()
	if backend == "file" {
		dir := t.TempDir()
		return "file://" + dir + "?compression=zstd", "file://" + dir
	}
	s3 := testenv.StartS3(t)
	s3.SetEnv(t)
	s3.MakeBucket(t, bucket, true)
	t.Setenv("NIX_CONFIG", "narinfo-cache-positive-ttl = 0\nnarinfo-cache-negative-ttl = 0")
	return s3.URL(bucket, "compression=zstd"), s3.Endpoint + "/" + bucket
}
