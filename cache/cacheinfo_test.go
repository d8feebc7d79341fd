package cache_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

// TestCacheInfoPriorityNixReads: a nix-cache-info whose Priority Nix cannot
// read (std::stoi: not an integer, or outside a C int) makes Nix refuse the
// whole cache ("error: stoi"). EnsureCacheInfo never writes one, and repairs
// one it finds, keeping StoreDir and WantMassQuery; real Nix then opens the
// cache.
func TestCacheInfoPriorityNixReads(t *testing.T) {
	testenv.RequireNix(t)
	ctx := context.Background()
	dir := storepath.DirFromEnv()
	nixOpens := func(cacheDir string) error {
		_, err := testenv.NixCmd("nix", "store", "ping", "--store", "file://"+cacheDir)
		return err
	}

	b, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.New(b, cache.Options{Priority: 1 << 31}).EnsureCacheInfo(ctx, dir); err == nil || !strings.Contains(err.Error(), "priority") {
		t.Errorf("EnsureCacheInfo with priority 2^31: %v, want an error naming the priority", err)
	}
	if _, err := os.Stat(filepath.Join(b.Root(), "nix-cache-info")); !os.IsNotExist(err) {
		t.Errorf("nix-cache-info written with an unreadable priority (%v)", err)
	}

	for _, bad := range []string{"2147483648", "-2147483649", "abc", "99999999999999999999"} {
		t.Run(bad, func(t *testing.T) {
			cacheDir := t.TempDir()
			info := filepath.Join(cacheDir, "nix-cache-info")
			if err := os.WriteFile(info, []byte("StoreDir: "+string(dir)+"\nWantMassQuery: 1\nPriority: "+bad+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := nixOpens(cacheDir); err == nil {
				t.Fatalf("Nix opens a cache with Priority: %s; the test proves nothing", bad)
			}
			c, err := cache.Open(ctx, "file://"+cacheDir+"?priority=30")
			if err != nil {
				t.Fatal(err)
			}
			if err := c.EnsureCacheInfo(ctx, dir); err != nil {
				t.Fatalf("EnsureCacheInfo: %v", err)
			}
			if err := nixOpens(cacheDir); err != nil {
				t.Fatalf("Nix cannot open the repaired cache: %v", err)
			}
			got, _ := os.ReadFile(info)
			if want := "StoreDir: " + string(dir) + "\nWantMassQuery: 1\nPriority: 30\n"; string(got) != want {
				t.Errorf("repaired nix-cache-info = %q, want %q", got, want)
			}
		})
	}
}
