package narinfo

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixcache/nixcache/signature"
)

// TestGolden checks narinfos written by Nix 2.8 (testdata/golden, see its
// README): each parses, marshals back byte for byte, and verifies with the
// key Nix signed it with, which checks our fingerprint against Nix's. It
// needs no Nix.
func TestGolden(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	pk, err := signature.LoadPublicKeyFile(filepath.Join(dir, "golden.pub"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"+Extension))
	if err != nil || len(files) < 4 {
		t.Fatalf("golden narinfos: %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ni, err := Unmarshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := ni.MarshalText(); err != nil || !bytes.Equal(got, want) {
				t.Errorf("MarshalText differs from Nix's narinfo (%v):\n%s\n---\n%s", err, got, want)
			}
			if err := ni.Verify([]signature.PublicKey{pk}); err != nil {
				t.Errorf("Verify with the key Nix signed with: %v", err)
			}
			ni.NarSize++
			if err := ni.Verify([]signature.PublicKey{pk}); !errors.Is(err, signature.ErrInvalidSignature) {
				t.Errorf("Verify after changing NarSize = %v, want ErrInvalidSignature", err)
			}
		})
	}
	want, err := os.ReadFile(filepath.Join(dir, CacheInfoFile))
	if err != nil {
		t.Fatal(err)
	}
	ci, err := ParseCacheInfo(want)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ci.MarshalText(); err != nil || !bytes.Equal(got, want) {
		t.Errorf("nix-cache-info: MarshalText = %q, %v; Nix wrote %q", got, err, want)
	}
}
