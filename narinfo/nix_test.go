package narinfo

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// buildClosure builds three fresh input-addressed paths a -> b -> c (a also
// refers to c, each refers to itself) and returns the closure, deleted at
// the end of the test.
func buildClosure(t *testing.T) (top string, closure []storepath.Path) {
	t.Helper()
	c := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "narinfo", N: 3, Root: true})
	for _, l := range c.Paths {
		p, err := storepath.Parse(l)
		if err != nil {
			t.Fatal(err)
		}
		closure = append(closure, p)
	}
	return c.Top, closure
}

func nixVerify(t *testing.T, cache, pub string, paths []storepath.Path) int {
	t.Helper()
	args := make([]string, len(paths))
	for i, p := range paths {
		args[i] = string(p)
	}
	return testenv.NixStoreVerify(t, "file://"+cache, pub, args...)
}

func readNarinfos(t *testing.T, cache string, closure []storepath.Path) map[storepath.Path][]byte {
	t.Helper()
	m := map[storepath.Path][]byte{}
	for _, p := range closure {
		b, err := os.ReadFile(filepath.Join(cache, p.HashPart()+Extension))
		if err != nil {
			t.Fatal(err)
		}
		m[p] = b
	}
	return m
}

func TestNixConformance(t *testing.T) {
	testenv.RequireNix(t)
	_, closure := buildClosure(t)
	tmp := t.TempDir()

	// A key pair made by Nix, and one made by us.
	nixKey := testenv.NixKeyPair(t, "nix-made-1")
	nixSec, nixPub := nixKey.SecretFile, nixKey.PublicFile
	nixSK, err := signature.LoadSecretKeyFile(nixSec)
	if err != nil {
		t.Fatal(err)
	}
	nixPK, err := signature.LoadPublicKeyFile(nixPub)
	if err != nil {
		t.Fatal(err)
	}
	ourSK, ourPK, err := signature.GenerateKey("ours-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	ourSec, ourPub := filepath.Join(tmp, "our.sec"), filepath.Join(tmp, "our.pub")
	if err := signature.WriteSecretKeyFile(ourSec, ourSK); err != nil {
		t.Fatal(err)
	}
	if err := signature.WritePublicKeyFile(ourPub, ourPK); err != nil {
		t.Fatal(err)
	}
	top := closure[len(closure)-1]

	for _, kc := range []struct {
		name    string
		secFile string
		sk      signature.SecretKey
		pk      signature.PublicKey
	}{{"nix key", nixSec, nixSK, nixPK}, {"our key", ourSec, ourSK, ourPK}} {
		t.Run(kc.name, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "cache")
			testenv.Nix(t, "nix", "copy", "--to", "file://"+cache+"?compression=zstd&secret-key="+kc.secFile, string(top))
			for p, raw := range readNarinfos(t, cache, closure) {
				ni, err := Unmarshal(raw)
				if err != nil {
					t.Fatalf("%s: Nix's narinfo does not parse: %v\n%s", p, err, raw)
				}
				if len(ni.References) == 0 || ni.Deriver == "" {
					t.Errorf("%s: expected references and a deriver:\n%s", p, raw)
				}
				// Order and duplicates in References must not matter, as
				// Nix keeps a sorted set.
				slices.Reverse(ni.References)
				ni.References = append(ni.References, ni.References[0])
				got, err := ni.MarshalText()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, raw) {
					t.Errorf("%s: MarshalText differs from Nix's narinfo\nnix:\n%s\nours:\n%s", p, raw, got)
				}
				if err := ni.Verify([]signature.PublicKey{kc.pk}); err != nil {
					t.Errorf("%s: our Verify rejects Nix's signature: %v", p, err)
				}
				if err := ni.Verify([]signature.PublicKey{nixPK, ourPK}); err != nil {
					t.Errorf("%s: Verify with both keys: %v", p, err)
				}
				nixSig := ni.Sigs[0]
				ni.Sigs = nil
				if err := ni.Sign(kc.sk); err != nil {
					t.Fatal(err)
				}
				if ni.Sigs[0] != nixSig {
					t.Errorf("%s: our signature %v, Nix's %v", p, ni.Sigs[0], nixSig)
				}
			}
			ciRaw, err := os.ReadFile(filepath.Join(cache, CacheInfoFile))
			if err != nil {
				t.Fatal(err)
			}
			ci, err := ParseCacheInfo(ciRaw)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := ci.MarshalText(); !bytes.Equal(got, ciRaw) || ci.StoreDir != storepath.DefaultDir {
				t.Errorf("nix-cache-info: Nix wrote %q, we parsed %+v and wrote %q", ciRaw, ci, got)
			}
		})
	}

	// Narinfos we sign and write are accepted by nix store verify with our
	// key and refused (exit bit 2) with another.
	t.Run("we sign", func(t *testing.T) {
		cache := filepath.Join(t.TempDir(), "cache")
		testenv.Nix(t, "nix", "copy", "--to", "file://"+cache+"?compression=zstd", string(top))
		if code := nixVerify(t, cache, nixPK.String(), closure); code&2 == 0 {
			t.Fatalf("unsigned cache verified: exit %d", code)
		}
		for p, raw := range readNarinfos(t, cache, closure) {
			ni, err := Unmarshal(raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(ni.Sigs) != 0 {
				t.Fatalf("%s: unexpected Sig", p)
			}
			if err := ni.Sign(ourSK); err != nil {
				t.Fatal(err)
			}
			out, err := ni.MarshalText()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(cache, p.HashPart()+Extension), out, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		pubText, _ := os.ReadFile(ourPub)
		if code := nixVerify(t, cache, string(pubText), closure); code != 0 {
			t.Errorf("nix store verify with our key: exit %d, want 0", code)
		}
		if code := nixVerify(t, cache, nixPK.String(), closure); code&2 == 0 {
			t.Errorf("nix store verify with the wrong key: exit %d, want bit 2", code)
		}
	})
}
