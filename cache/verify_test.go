package cache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// TestVerifyDetectsDamage: each kind of damage that makes real Nix's
// `nix store verify` fail also makes Verify report that path, with the
// matching sentinel error, and a good cache passes both.
func TestVerifyDetectsDamage(t *testing.T) {
	ctx := context.Background()
	top, closure := buildClosure(t)
	sec, pub := nixKey(t, "nixcache-test-1")
	_, otherPub := nixKey(t, "nixcache-other-1")
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string, ni *narinfo.NarInfo)
		trusted string
		want    error
	}{
		{"good", func(*testing.T, string, *narinfo.NarInfo) {}, pub, nil},
		{"untrusted key", func(*testing.T, string, *narinfo.NarInfo) {}, otherPub, signature.ErrUntrusted},
		{"NAR missing", func(t *testing.T, dir string, ni *narinfo.NarInfo) {
			if err := os.Remove(filepath.Join(dir, ni.URL)); err != nil {
				t.Fatal(err)
			}
		}, pub, cache.ErrNotFound},
		{"NAR modified", func(t *testing.T, dir string, ni *narinfo.NarInfo) {
			f := filepath.Join(dir, ni.URL)
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-20] ^= 1 // inside the last file's contents
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, pub, cache.ErrNarHashMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c, err := cache.Open(ctx, "file://"+dir+"?compression=none&secret-key="+sec)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Push(ctx, openStore(t), []storepath.Path{top}, cache.PushOptions{}); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(dir, cache.NarInfoKey(top)))
			if err != nil {
				t.Fatal(err)
			}
			ni, err := narinfo.Unmarshal(data)
			if err != nil {
				t.Fatal(err)
			}
			tt.damage(t, dir, ni)

			nixCode := testenv.NixStoreVerify(t, "file://"+dir, tt.trusted, pathStrings(closure)...)
			n, err := c.Verify(ctx, nil, cache.VerifyOptions{TrustedKeys: mustPub(t, tt.trusted)})
			if n != 3 {
				t.Errorf("checked %d paths, want 3", n)
			}
			if (nixCode == 0) != (err == nil) {
				t.Fatalf("nix store verify: exit code %d; Verify: %v", nixCode, err)
			}
			if tt.want != nil {
				var pe *cache.PathError
				if !errors.Is(err, tt.want) || !errors.As(err, &pe) {
					t.Fatalf("Verify: %v, want %v", err, tt.want)
				}
				t.Logf("Verify: %v", err)
			}
		})
	}
}

// failingList is a backend whose listing fails.
type failingList struct{ cache.Backend }

func (failingList) List(context.Context, string, func(cache.ObjectInfo) error) error {
	return errors.New("listing refused")
}

// TestVerifyCacheErrors: a location without nix-cache-info, or a listing
// that fails, is an error about the cache, never a bad path.
func TestVerifyCacheErrors(t *testing.T) {
	ctx := context.Background()
	c, err := cache.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var pe *cache.PathError
	n, err := c.Verify(ctx, nil, cache.VerifyOptions{})
	if !errors.Is(err, cache.ErrNotACache) || errors.As(err, &pe) || n != 0 {
		t.Errorf("no nix-cache-info: %d, %v; want ErrNotACache", n, err)
	}
	if err := c.EnsureCacheInfo(ctx, storepath.DirFromEnv()); err != nil {
		t.Fatal(err)
	}
	n, err = cache.New(failingList{c.Backend}, c.Options()).Verify(ctx, nil, cache.VerifyOptions{})
	if err == nil || !strings.Contains(err.Error(), "listing refused") || errors.As(err, &pe) {
		t.Errorf("failing listing: %d, %v", n, err)
	}
}
