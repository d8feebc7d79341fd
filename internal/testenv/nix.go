package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// NixStateDir returns the state directory Nix uses: $NIX_STATE_DIR, else
// /nix/var/nix. The store database is db/db.sqlite under it.
func NixStateDir() string {
	if d := os.Getenv("NIX_STATE_DIR"); d != "" {
		return d
	}
	return "/nix/var/nix"
}

// NixStoreDir returns the store directory Nix uses: $NIX_STORE_DIR, else
// /nix/store.
func NixStoreDir() string {
	if d := os.Getenv("NIX_STORE_DIR"); d != "" {
		return d
	}
	return "/nix/store"
}

var nixChecks sync.Map // state dir + "\x00" + store dir -> string ("" when usable)

// RequireNix skips the test (fails it under CI=true) unless real Nix can
// build into the local store as this user, with no daemon: the nix-store,
// nix-hash, nix and nix-build programs are on PATH, the store database
// ($NIX_STATE_DIR/db/db.sqlite) exists and this user may read and write it
// and its directory, and this user may write the store directory
// ($NIX_STORE_DIR). The answer is computed once per process.
func RequireNix(t TB) {
	t.Helper()
	if why := nixUnusable(); why != "" {
		missing(t, why)
	}
}

// HaveNix reports whether real Nix is usable (as RequireNix checks), for a
// test that cross-checks with Nix when it can. Under -short it reports
// false; a missing Nix is logged, and fails the test under CI=true.
func HaveNix(t TB) bool {
	t.Helper()
	if Short() {
		return false
	}
	why := nixUnusable()
	if why == "" {
		return true
	}
	if inCI() {
		t.Fatalf("%s is required when CI=true (run .ci/run to install it)", why)
	}
	t.Logf("%s not available; the Nix cross-checks are left out (CI=true makes this fatal)", why)
	return false
}

func nixUnusable() string {
	state, store := NixStateDir(), NixStoreDir()
	key := state + "\x00" + store
	if v, ok := nixChecks.Load(key); ok {
		return v.(string)
	}
	why := checkNix(state, store)
	nixChecks.Store(key, why)
	return why
}

// access modes of access(2).
const (
	accessR = 4
	accessW = 2
)

func checkNix(state, store string) string {
	for _, tool := range []string{"nix-store", "nix-hash", "nix", "nix-build"} {
		if lookTool(tool) != nil {
			return "the " + tool + " program"
		}
	}
	db := filepath.Join(state, "db", "db.sqlite")
	if err := access(db, accessR|accessW); err != nil {
		return fmt.Sprintf("a Nix store database this user can read and write (%s: %v; NIX_STATE_DIR picks another)", db, err)
	}
	if err := access(filepath.Dir(db), accessW); err != nil {
		return fmt.Sprintf("a writable Nix database directory (%s: %v)", filepath.Dir(db), err)
	}
	if err := access(store, accessW); err != nil {
		return fmt.Sprintf("a Nix store directory this user can write (%s: %v; NIX_STORE_DIR picks another)", store, err)
	}
	return ""
}

// Nix runs a Nix command with the nix-command feature enabled and no
// substituters, and returns its stdout. It fails the test on error.
func Nix(t TB, name string, args ...string) []byte {
	t.Helper()
	out, err := NixCmd(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// NixCmd runs a Nix command like Nix but returns the error (with stderr in it).
func NixCmd(name string, args ...string) ([]byte, error) {
	full := append([]string{}, args...)
	if name == "nix" {
		full = append([]string{"--extra-experimental-features", "nix-command"}, full...)
	}
	cmd := exec.Command(name, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// NixStoreVerify runs `nix store verify --store STORE --trusted-public-keys
// PUB PATHS...` and returns its exit code, a bitmask: 0 all good, 1 a NAR's
// contents differ, 2 untrusted, 4 failed; Nix's message is logged. PATHS
// may be "--all" for a file:// cache. Other errors fail the test.
func NixStoreVerify(t TB, store, pub string, paths ...string) int {
	t.Helper()
	args := append([]string{"store", "verify", "--store", store, "--trusted-public-keys", pub}, paths...)
	_, err := NixCmd("nix", args...)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Logf("nix store verify: %v", err)
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("nix store verify --store %s: %v", store, err)
	}
	return 0
}

// NixKey is a key pair made by real Nix.
type NixKey struct {
	SecretFile string // the secret key file, as Nix wrote it
	PublicFile string // the public key file, as Nix wrote it
	Public     string // the public key, "name:base64"
}

// NixKeyPair makes a key pair named name with `nix-store
// --generate-binary-cache-key` in a temporary directory.
func NixKeyPair(t TB, name string) NixKey {
	t.Helper()
	dir := t.TempDir()
	k := NixKey{SecretFile: filepath.Join(dir, "key.sec"), PublicFile: filepath.Join(dir, "key.pub")}
	Nix(t, "nix-store", "--generate-binary-cache-key", name, k.SecretFile, k.PublicFile)
	b, err := os.ReadFile(k.PublicFile)
	if err != nil {
		t.Fatalf("%v", err)
	}
	k.Public = strings.TrimSpace(string(b))
	return k
}
