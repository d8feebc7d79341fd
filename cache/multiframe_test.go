package cache_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

// TestMultiBlockNARsNixReads pushes a path whose NAR is many compression
// blocks long (independent zstd frames, concatenated xz streams) and has
// real Nix check every byte of it: nix store verify downloads, decompresses
// and hashes the NAR.
func TestMultiBlockNARsNixReads(t *testing.T) {
	big := addBigPath(t, 12)
	for _, tc := range []struct{ name, params string }{
		{"zstd-frames", "compression=zstd"},
		{"xz-streams", "compression=xz&parallel-compression=true&compression-level=0"},
	} {
		params := tc.params
		t.Run(tc.name, func(t *testing.T) {
			sec, pub := nixKey(t, "nixcache-multiframe-1")
			dir := t.TempDir()
			c, err := cache.Open(context.Background(), "file://"+dir+"?"+params+"&secret-key="+sec)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Push(context.Background(), openStore(t), []storepath.Path{big}, cache.PushOptions{}); err != nil {
				t.Fatal(err)
			}
			nars, _ := filepath.Glob(filepath.Join(dir, "nar", "*"))
			if len(nars) != 1 {
				t.Fatalf("nar files: %v", nars)
			}
			if fi, _ := os.Stat(nars[0]); fi.Size() < 4<<20 {
				t.Fatalf("compressed NAR is only %d bytes: not multi-block", fi.Size())
			}
			if code := testenv.NixStoreVerify(t, "file://"+dir, pub, string(big)); code != 0 {
				t.Fatalf("nix store verify: exit code %d", code)
			}
		})
	}
}
