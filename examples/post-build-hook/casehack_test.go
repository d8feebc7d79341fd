package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixcache/nixcache/internal/testenv"
)

// TestSyncModeCaseHack builds, with `--option use-case-hack true` on the
// command line only, an output holding "A" and "a~nix~case~hack~1" (as a
// Mac's store holds a directory {A, a}): Nix registers the NarHash of its
// hacked dump, and hands its settings to the hook in NIX_CONFIG, so the
// hook dumps the path the same way, uploads it, and Nix verifies the cache
// and substitutes the path back. With the
// hook dumping without the hack, the NAR would not match and the build
// would fail.
func TestSyncModeCaseHack(t *testing.T) {
	testenv.RequireNix(t)
	hook, _ := binaries(t)
	k := genKey(t)
	cacheDir := t.TempDir()
	url := "file://" + cacheDir + "?compression=zstd"
	expr := filepath.Join(t.TempDir(), "casehack.nix")
	name := fmt.Sprintf("hook-casehack-%d", time.Now().UnixNano())
	script := `mkdir -p $out/Sub; echo upper > $out/A; echo lower > $out/a~nix~case~hack~1; echo f > $out/Sub/f; echo F > $out/Sub/F~nix~case~hack~1`
	os.WriteFile(expr, []byte(fmt.Sprintf(`derivation { name = %q; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = ["-c" %q]; }`, name, script)), 0o644)
	hack := []string{"--option", "use-case-hack", "true"}
	cmd := exec.Command("nix-build", append(hack, expr, "--no-out-link", "--option", "substituters", "", "--option", "post-build-hook", hook)...)
	cmd.Env = append(testenv.Environ("NIXCACHE_", "NIX_CONFIG"), "NIXCACHE_TO="+url, "NIXCACHE_SECRET_KEY_FILE="+k.sec)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		t.Fatalf("nix-build: %v\n%s", err, se.String())
	}
	out := strings.TrimSpace(so.String())
	if _, err := os.Lstat(filepath.Join(out, "a~nix~case~hack~1")); err != nil {
		t.Fatal(err)
	}
	if !hasNarinfo(cacheDir, out) {
		t.Fatalf("%s not in the cache after the build:\n%s", out, se.String())
	}
	if code := testenv.NixStoreVerify(t, "file://"+cacheDir, k.pubText, out); code != 0 {
		t.Fatalf("nix store verify: exit code %d", code)
	}
	want := testenv.Nix(t, "nix-store", append(hack, "--dump", out)...)
	deletePaths(t, []string{out})
	if _, err := testenv.NixCmd("nix-store", append(hack, "--realise", out, "--option", "substituters", "file://"+cacheDir,
		"--option", "trusted-public-keys", k.pubText, "--max-jobs", "0")...); err != nil {
		t.Fatalf("substitute back: %v", err)
	}
	// Restored, Sub holds "F" and "f~nix~case~hack~1" (NAR order decides
	// which name gets the suffix), but it is the same path to Nix.
	if got := testenv.Nix(t, "nix-store", append(hack, "--dump", out)...); !bytes.Equal(got, want) {
		t.Error("the substituted path dumps differently from the one built")
	}
}
