package signature

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// nixKeyPair runs nix-store --generate-binary-cache-key and returns the paths.
func nixKeyPair(t *testing.T, name string) (secPath, pubPath string) {
	t.Helper()
	k := testenv.NixKeyPair(t, name)
	return k.SecretFile, k.PublicFile
}

func TestNixGeneratedKeyFiles(t *testing.T) {
	testenv.RequireNix(t)
	secPath, pubPath := nixKeyPair(t, "nix-made-1")
	sk, err := LoadSecretKeyFile(secPath)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := LoadPublicKeyFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if sk.PublicKey() != pk {
		t.Errorf("public half of Nix's secret key %v != Nix's public key %v", sk.PublicKey(), pk)
	}
	secBytes, _ := os.ReadFile(secPath)
	pubBytes, _ := os.ReadFile(pubPath)
	if sk.Secret() != string(secBytes) {
		t.Errorf("Secret() differs from Nix's secret key file")
	}
	if pk.String() != string(pubBytes) {
		t.Errorf("String() = %q, Nix's file %q", pk.String(), pubBytes)
	}
	if err := CheckKeyFileMode(secPath); err != nil {
		t.Errorf("CheckKeyFileMode(Nix's secret key) = %v", err)
	}
	if err := CheckKeyFileMode(pubPath); !errors.Is(err, ErrInsecureKeyFile) {
		t.Errorf("CheckKeyFileMode(0644 file) = %v, want ErrInsecureKeyFile", err)
	}
}

// TestNixKeyFileFormat checks that WriteSecretKeyFile/WritePublicKeyFile
// produce files shaped exactly like Nix's: same modes, no trailing newline,
// same length for the same name.
func TestNixKeyFileFormat(t *testing.T) {
	testenv.RequireNix(t)
	nixSec, nixPub := nixKeyPair(t, "same-name")
	sk, pk, err := GenerateKey("same-name", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ourSec, ourPub := filepath.Join(dir, "sec"), filepath.Join(dir, "pub")
	if err := WriteSecretKeyFile(ourSec, sk); err != nil {
		t.Fatal(err)
	}
	if err := WritePublicKeyFile(ourPub, pk); err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{nixSec, ourSec}, {nixPub, ourPub}} {
		nfi, _ := os.Stat(pair[0])
		ofi, _ := os.Stat(pair[1])
		if nfi.Mode() != ofi.Mode() || nfi.Size() != ofi.Size() {
			t.Errorf("%s: mode %v size %d; Nix's %s: mode %v size %d", pair[1], ofi.Mode(), ofi.Size(), pair[0], nfi.Mode(), nfi.Size())
		}
	}
	if err := WriteSecretKeyFile(ourSec, sk); !errors.Is(err, os.ErrExist) {
		t.Errorf("overwrite = %v, want ErrExist", err)
	}
}

// addPath builds a fresh input-addressed store path (not content-addressed:
// Nix trusts CA paths without signatures; it refers to itself) and returns it.
func addPath(t *testing.T) string {
	t.Helper()
	return testenv.BuildClosure(t, testenv.ClosureSpec{Name: "sigtest", N: 1, Root: true}).Top
}

func sigLine(t *testing.T, narinfo string) string {
	t.Helper()
	f, err := os.Open(narinfo)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Sig: "); ok {
			return v
		}
	}
	t.Fatalf("%s has no Sig line", narinfo)
	return ""
}

// TestNixSignsWithOurKey: nix copy signs with a key we generated; Nix
// accepts the signature with our public key file, rejects it with another
// key, our Verify accepts Nix's signature, and our Sign gives the same bytes.
func TestNixSignsWithOurKey(t *testing.T) {
	testenv.RequireNix(t)
	sk, pk, err := GenerateKey("ours-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secPath, pubPath := filepath.Join(dir, "sec"), filepath.Join(dir, "pub")
	if err := WriteSecretKeyFile(secPath, sk); err != nil {
		t.Fatal(err)
	}
	if err := WritePublicKeyFile(pubPath, pk); err != nil {
		t.Fatal(err)
	}
	p := addPath(t)
	cache := filepath.Join(t.TempDir(), "cache")
	testenv.Nix(t, "nix", "copy", "--to", "file://"+cache+"?compression=none&secret-key="+secPath, p)

	pubText, _ := os.ReadFile(pubPath)
	if code := testenv.NixStoreVerify(t, "file://"+cache, string(pubText), p); code != 0 {
		t.Errorf("nix store verify with our public key: exit %d, want 0", code)
	}
	_, otherPub := nixKeyPair(t, "ours-1") // same name, different key
	otherText, _ := os.ReadFile(otherPub)
	if code := testenv.NixStoreVerify(t, "file://"+cache, string(otherText), p); code&2 == 0 {
		t.Errorf("nix store verify with a wrong key: exit %d, want bit 2", code)
	}

	hash := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--query", "--hash", p)))
	size := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--query", "--size", p)))
	refs := strings.Fields(string(testenv.Nix(t, "nix-store", "--query", "--references", p)))
	slices.Sort(refs)
	fp := "1;" + p + ";" + hash + ";" + size + ";" + strings.Join(refs, ",")
	nixSig := sigLine(t, filepath.Join(cache, strings.SplitN(filepath.Base(p), "-", 2)[0]+".narinfo"))
	sig, err := ParseSignature(nixSig)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(fp, []Signature{sig}, []PublicKey{pk}); err != nil {
		t.Errorf("our Verify of Nix's signature: %v", err)
	}
	if got := sk.Sign(fp).String(); got != nixSig {
		t.Errorf("our Sign = %s, Nix signed %s", got, nixSig)
	}
}
