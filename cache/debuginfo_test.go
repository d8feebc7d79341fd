package cache_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

// TestIndexDebugInfoAsNix (issue 14): with index-debug-info=true, Push
// writes the same debuginfo/ objects as `nix copy` to a cache with that
// parameter (both uncompressed, so the NAR URLs agree): one per regular
// lib/debug/.build-id/XX/<38 hex>.debug file, nothing for names Nix
// skips; without the parameter, none.
func TestIndexDebugInfoAsNix(t *testing.T) {
	testenv.RequireNix(t)
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "nixcache-debuginfo-"+filepath.Base(t.TempDir()))
	files := map[string]string{
		"lib/debug/.build-id/ab/0123456789abcdef0123456789abcdef012345.debug": "elf 1",
		"lib/debug/.build-id/cd/fedcba9876543210fedcba9876543210fedcba.debug": "elf 2",
		"lib/debug/.build-id/cd/short.debug":                                  "skipped",
		"lib/debug/.build-id/AB/0123456789abcdef0123456789abcdef012345.debug": "skipped: upper case",
		"lib/debug/.build-id/ef/0123456789abcdef0123456789abcdef012345":       "skipped: no .debug",
		"bin/tool": "x",
	}
	for name, data := range files {
		f := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("ab/0123456789abcdef0123456789abcdef012345.debug", filepath.Join(src, "lib/debug/.build-id/ab/1123456789abcdef0123456789abcdef012345.debug")); err != nil {
		t.Fatal(err)
	}
	p := mustPath(t, strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", src))))
	t.Cleanup(func() { _, _ = testenv.NixCmd("nix-store", "--delete", string(p)) })

	nixDir, ourDir, plainDir := t.TempDir(), t.TempDir(), t.TempDir()
	testenv.Nix(t, "nix", "copy", "--to", "file://"+nixDir+"?compression=none&index-debug-info=true", string(p))
	store := openStore(t)
	for dir, q := range map[string]string{ourDir: "&index-debug-info=true", plainDir: ""} {
		c, err := cache.Open(ctx, "file://"+dir+"?compression=none"+q)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Push(ctx, store, []storepath.Path{p}, cache.PushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(dir string) map[string]string {
		out := map[string]string{}
		names, _ := filepath.Glob(filepath.Join(dir, "debuginfo", "*"))
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			out[filepath.Base(n)] = string(b)
		}
		return out
	}
	want, got := read(nixDir), read(ourDir)
	if len(want) != 2 {
		t.Fatalf("nix copy wrote %d debuginfo objects, expected 2: %v", len(want), want)
	}
	if len(got) != len(want) {
		t.Fatalf("debuginfo objects: got %v, Nix wrote %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("debuginfo/%s = %q, Nix wrote %q", k, got[k], v)
		}
	}
	if plain := read(plainDir); len(plain) != 0 {
		t.Fatalf("debuginfo written without index-debug-info: %v", plain)
	}
}
