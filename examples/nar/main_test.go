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

// TestCaseHackFlag checks --case-hack against nix-store --option
// use-case-hack true: restore gives Nix's case-hacked names, dump and hash
// undo them as Nix does, with the flag before or after the command.
func TestCaseHackFlag(t *testing.T) {
	testenv.RequireNix(t)
	dir := t.TempDir()
	bin := filepath.Join(testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/nar"), "nar")
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "D"), 0o755)
	os.WriteFile(filepath.Join(tree, "d"), []byte("1"), 0o644)
	os.WriteFile(filepath.Join(tree, "D", "x"), []byte("2"), 0o644)
	os.WriteFile(filepath.Join(tree, "D", "X"), []byte("3"), 0o755)
	want := testenv.Nix(t, "nix-store", "--dump", tree)
	narFile := filepath.Join(dir, "t.nar")
	os.WriteFile(narFile, want, 0o644)
	hack := []string{"--option", "use-case-hack", "true"}

	nixDir := filepath.Join(dir, "nix")
	cmd := exec.Command("nix-store", append(hack, "--restore", nixDir)...)
	cmd.Stdin = bytes.NewReader(want)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nix-store --restore: %v: %s", err, out)
	}
	ours := filepath.Join(dir, "ours")
	if out, err := exec.Command(bin, "restore", "--case-hack", narFile, ours).CombinedOutput(); err != nil {
		t.Fatalf("nar restore --case-hack: %v: %s", err, out)
	}
	if got, want := testenv.Nix(t, "nix-store", "--dump", ours), testenv.Nix(t, "nix-store", "--dump", nixDir); !bytes.Equal(got, want) {
		t.Errorf("nar restore --case-hack gives other names than nix-store --restore with use-case-hack")
	}
	for _, args := range [][]string{{"--case-hack", "dump", nixDir}, {"dump", "--case-hack=true", nixDir}} {
		if got, err := exec.Command(bin, args...).Output(); err != nil || !bytes.Equal(got, want) {
			t.Errorf("nar %v differs from nix-store --dump with use-case-hack (%v)", args, err)
		}
	}
	if got, err := exec.Command(bin, "dump", "--case-hack=false", nixDir).Output(); err != nil || !bytes.Equal(got, testenv.Nix(t, "nix-store", "--dump", nixDir)) {
		t.Errorf("nar dump --case-hack=false differs from plain nix-store --dump (%v)", err)
	}
	wantHash := testenv.Nix(t, "nix-hash", append(hack, "--type", "sha256", "--base32", nixDir)...)
	if got, err := exec.Command(bin, "hash", "--case-hack", nixDir).Output(); err != nil || !bytes.Equal(got, wantHash) {
		t.Errorf("nar hash --case-hack = %q, nix-hash = %q (%v)", got, wantHash, err)
	}
}
