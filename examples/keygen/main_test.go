package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/signature"
)

// TestLikeNix compares keygen's files with those of
// nix-store --generate-binary-cache-key: same shape, same modes, and our
// secret key's public half is our public key file.
func TestLikeNix(t *testing.T) {
	testenv.RequireNix(t)
	dir := t.TempDir()
	testenv.Nix(t, "nix-store", "--generate-binary-cache-key", "k-1", filepath.Join(dir, "nix.sec"), filepath.Join(dir, "nix.pub"))
	if err := generate("k-1", filepath.Join(dir, "our.sec"), filepath.Join(dir, "our.pub")); err != nil {
		t.Fatal(err)
	}
	shape := regexp.MustCompile(`^k-1:[A-Za-z0-9+/]+=*$`)
	for _, f := range []string{"sec", "pub"} {
		n, _ := os.Stat(filepath.Join(dir, "nix."+f))
		o, _ := os.Stat(filepath.Join(dir, "our."+f))
		if n.Mode() != o.Mode() || n.Size() != o.Size() {
			t.Errorf("%s: ours %v %d bytes, Nix's %v %d bytes", f, o.Mode(), o.Size(), n.Mode(), n.Size())
		}
		b, _ := os.ReadFile(filepath.Join(dir, "our."+f))
		if !shape.Match(b) {
			t.Errorf("our %s file %q is not name:base64 without newline", f, b)
		}
	}
	sk, err := signature.LoadSecretKeyFile(filepath.Join(dir, "our.sec"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := signature.LoadPublicKeyFile(filepath.Join(dir, "our.pub"))
	if err != nil || sk.PublicKey() != pk {
		t.Fatalf("public key file does not match the secret key: %v", err)
	}
	if err := generate("k-1", filepath.Join(dir, "our.sec"), filepath.Join(dir, "new.pub")); err == nil {
		t.Error("overwrote an existing secret key file")
	}
	if _, err := os.Stat(filepath.Join(dir, "new.pub")); err == nil {
		t.Error("wrote a public key although the secret key file existed")
	}
}
