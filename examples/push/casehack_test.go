package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// TestPushCaseHackedPath pushes a store path that Nix added with its case
// hack on (nix-store --option use-case-hack true --add: on disk it holds
// "a~nix~case~hack~1", its NarHash is that of the NAR naming it "a"), as
// on a Mac. With use-case-hack = true in Nix's configuration, push dumps it
// as Nix does and nix store verify accepts the cache; with false (the
// Linux default) the dump cannot match the store's NarHash and nothing is
// published.
func TestPushCaseHackedPath(t *testing.T) {
	testenv.RequireNix(t)
	tmp := t.TempDir()
	bin := filepath.Join(testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/push"), "push")
	key := testenv.NixKeyPair(t, "casehack-test-1")

	tree := filepath.Join(tmp, "tree")
	os.MkdirAll(filepath.Join(tree, "Sub"), 0o755)
	os.WriteFile(filepath.Join(tree, "A"), []byte("upper"), 0o644)
	os.WriteFile(filepath.Join(tree, "a"), []byte("lower"), 0o755)
	os.WriteFile(filepath.Join(tree, "Sub", "f"), []byte(tmp), 0o644) // unique per run
	os.WriteFile(filepath.Join(tree, "Sub", "F"), []byte("F"), 0o644)
	hack := []string{"--option", "use-case-hack", "true"}
	p := strings.TrimSpace(string(testenv.Nix(t, "nix-store", append(hack, "--add", tree)...)))
	root := filepath.Join(tmp, "root")
	testenv.Nix(t, "nix-store", "--realise", p, "--add-root", root)
	t.Cleanup(func() {
		os.Remove(root)
		testenv.NixCmd("nix-store", "--delete", p)
	})
	if _, err := os.Lstat(filepath.Join(p, "a~nix~case~hack~1")); err != nil {
		t.Fatalf("Nix did not restore the path with the case hack: %v", err)
	}

	push := func(url string, env ...string) (string, error) {
		cmd := exec.Command(bin, "-q", "--to", url, "--secret-key", key.SecretFile, p)
		cmd.Env = append(testenv.Environ("NIXCACHE_", "NIX_CONF_DIR", "NIX_CONFIG"), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// Off, from a nix.conf in NIX_CONF_DIR: the NAR does not match.
	conf := filepath.Join(tmp, "conf")
	os.Mkdir(conf, 0o755)
	os.WriteFile(filepath.Join(conf, "nix.conf"), []byte("# as on Linux\nuse-case-hack = false\n"), 0o644)
	offDir := filepath.Join(tmp, "off")
	if out, err := push("file://"+offDir, "NIX_CONF_DIR="+conf); err == nil || !strings.Contains(out, "does not match") {
		t.Errorf("push with use-case-hack = false: %v, want a NAR mismatch\n%s", err, out)
	}
	if narinfos, _ := filepath.Glob(filepath.Join(offDir, "*.narinfo")); len(narinfos) != 0 {
		t.Errorf("a mismatching path was published: %v", narinfos)
	}

	// On, from NIX_CONFIG (which Nix applies after nix.conf): Nix accepts it.
	onDir := filepath.Join(tmp, "on")
	url := "file://" + onDir
	if out, err := push(url, "NIX_CONF_DIR="+conf, "NIX_CONFIG=use-case-hack = true"); err != nil {
		t.Fatalf("push with use-case-hack = true: %v\n%s", err, out)
	}
	if code := testenv.NixStoreVerify(t, url, key.Public, p); code != 0 {
		t.Fatalf("nix store verify: exit code %d", code)
	}

	// Nix substitutes it back, restoring the hacked names.
	want := testenv.Nix(t, "nix-store", "--dump", p)
	os.Remove(root)
	if _, err := testenv.NixCmd("nix-store", "--delete", p); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := testenv.NixCmd("nix-store", append(hack, "--realise", p, "--option", "substituters", url,
		"--option", "trusted-public-keys", key.Public, "--add-root", root)...); err != nil {
		t.Fatalf("substitute back: %v", err)
	}
	if got := testenv.Nix(t, "nix-store", "--dump", p); !bytes.Equal(got, want) {
		t.Error("the substituted path differs on disk from the one pushed")
	}
}
