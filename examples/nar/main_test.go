package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// TestCommand runs the built command against real Nix: dump and hash must
// print exactly what nix-store --dump and nix-hash print, restore must
// give a tree Nix dumps identically.
func TestCommand(t *testing.T) {
	testenv.RequireNix(t)
	dir := t.TempDir()
	bin := filepath.Join(testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/nar"), "nar")
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.WriteFile(filepath.Join(tree, "sub", "x"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("sub/x", filepath.Join(tree, "l"))

	run := func(args ...string) []byte {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("nar %v: %v", args, err)
		}
		return out
	}
	want := testenv.Nix(t, "nix-store", "--dump", tree)
	if got := run("dump", tree); !bytes.Equal(got, want) {
		t.Errorf("nar dump differs from nix-store --dump")
	}
	if got, want := run("hash", tree), testenv.Nix(t, "nix-hash", "--type", "sha256", "--base32", tree); !bytes.Equal(got, want) {
		t.Errorf("nar hash = %q, nix-hash = %q", got, want)
	}
	narFile := filepath.Join(dir, "t.nar")
	os.WriteFile(narFile, want, 0o644)
	out := filepath.Join(dir, "restored")
	run("restore", narFile, out)
	if got := testenv.Nix(t, "nix-store", "--dump", out); !bytes.Equal(got, want) {
		t.Errorf("nar restore output dumps differently")
	}
	// nar ls prints the .ls listing Nix writes with write-nar-listing=true.
	sp := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", tree)))
	cache := filepath.Join(dir, "cache")
	testenv.Nix(t, "nix", "copy", "--to", "file://"+cache+"?write-nar-listing=true&compression=none", sp)
	wantLs, err := os.ReadFile(filepath.Join(cache, filepath.Base(sp)[:32]+".ls"))
	if err != nil {
		t.Fatal(err)
	}
	if ls := run("ls", narFile); !bytes.Equal(ls, append(wantLs, '\n')) {
		t.Errorf("nar ls = %s, Nix's .ls = %s", ls, wantLs)
	}
}
