package localstore

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

// TestCLIValidityNotFromText: the nix command mode must tell an invalid
// path from any other failure without reading Nix's message text, which
// changes between versions. A wrapper around the real nix fails, as newer
// Nix does, the whole call when a path is invalid, with a message that
// does not say "not valid"; validity comes from nix-store
// --check-validity. A failure for another reason must not pass for
// "invalid".
func TestCLIValidityNotFromText(t *testing.T) {
	testenv.RequireNix(t)
	ctx := context.Background()
	out, _ := buildClosure(t, "clierr")
	bogus := storepath.Path(string(out.Dir()) + "/00000000000000000000000000000000-lsx-missing")
	realNix, err := exec.LookPath("nix")
	if err != nil {
		t.Fatal(err)
	}
	realNixStore, err := exec.LookPath("nix-store")
	if err != nil {
		t.Fatal(err)
	}
	wrapper := func(t *testing.T, failWhen string) string {
		dir := t.TempDir()
		script := "#!/bin/sh\ncase \"$*\" in\n*" + failWhen + "*) echo 'error: something went wrong (exit 1)' >&2; exit 1;;\nesac\nexec " + realNix + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(dir, "nix"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(realNixStore, filepath.Join(dir, "nix-store")); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, "nix")
	}

	t.Run("invalid path", func(t *testing.T) {
		s, err := Open(ctx, Options{Mode: ModeCLI, NixBin: wrapper(t, "lsx-missing")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.PathInfo(ctx, bogus); !errors.Is(err, ErrNotValid) || !strings.Contains(err.Error(), string(bogus)) {
			t.Errorf("PathInfo(bogus) = %v, want ErrNotValid naming it", err)
		}
		if ok, err := s.IsValid(ctx, bogus); ok || err != nil {
			t.Errorf("IsValid(bogus) = %v, %v", ok, err)
		}
		if ok, err := s.IsValid(ctx, out); !ok || err != nil {
			t.Errorf("IsValid(out) = %v, %v", ok, err)
		}
		if _, err := s.PathInfos(ctx, []storepath.Path{out, bogus}); !errors.Is(err, ErrNotValid) || !strings.Contains(err.Error(), string(bogus)) {
			t.Errorf("PathInfos(out, bogus) = %v, want ErrNotValid naming bogus", err)
		}
		if _, err := s.Closure(ctx, []storepath.Path{out, bogus}); !errors.Is(err, ErrNotValid) {
			t.Errorf("Closure(out, bogus) = %v, want ErrNotValid", err)
		}
		if c, err := s.Closure(ctx, []storepath.Path{out}); err != nil || len(c) == 0 {
			t.Errorf("Closure(out) = %v, %v", c, err)
		}
	})
	t.Run("other failure", func(t *testing.T) {
		s, err := Open(ctx, Options{Mode: ModeCLI, NixBin: wrapper(t, "path-info")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.PathInfo(ctx, out); err == nil || errors.Is(err, ErrNotValid) {
			t.Errorf("PathInfo(out) with a failing nix = %v, want an error that is not ErrNotValid", err)
		}
		if ok, err := s.IsValid(ctx, out); ok || err == nil {
			t.Errorf("IsValid(out) with a failing nix = %v, %v; want the error", ok, err)
		}
	})
}
