package cache_test

import (
	"errors"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// nixDoi is a realisation as Nix 2.8's `nix copy` wrote it.
const nixDoi = `{"dependentRealisations":{"sha256:8c611eba97fdcf4c1a5a4d44f482ecd28b96bc581b708cb8323b13355574aa55!out":"h3mak4w549mfngv8w71fdb0ql1vdzl91-cadep"},"id":"sha256:99df72cd52b309864020778aab0b9079ae91811fb1207b5fa23470eb0b6c2447!out","outPath":"dhclv48nx1gjx5x4f7rszvwdvia2n2gj-catop","signatures":[]}`

func TestRealisationRoundTripAndSignature(t *testing.T) {
	r, err := cache.ParseRealisation([]byte(nixDoi), storepath.DefaultDir)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := r.MarshalJSON(); err != nil || string(b) != nixDoi {
		t.Fatalf("MarshalJSON = %s, %v; want Nix's bytes %s", b, err, nixDoi)
	}
	want := `{"dependentRealisations":{"sha256:8c611eba97fdcf4c1a5a4d44f482ecd28b96bc581b708cb8323b13355574aa55!out":"h3mak4w549mfngv8w71fdb0ql1vdzl91-cadep"},"id":"sha256:99df72cd52b309864020778aab0b9079ae91811fb1207b5fa23470eb0b6c2447!out","outPath":"dhclv48nx1gjx5x4f7rszvwdvia2n2gj-catop"}`
	if fp := r.Fingerprint(); fp != want {
		t.Fatalf("Fingerprint = %s", fp)
	}
	sk, pk, err := signature.GenerateKey("test-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := signature.GenerateKey("test-1", nil)
	if err := r.Verify([]signature.PublicKey{pk}); !errors.Is(err, signature.ErrUntrusted) {
		t.Fatalf("unsigned: Verify = %v", err)
	}
	r.Sign(sk)
	r.Sign(sk) // replaces, not duplicates
	if len(r.Signatures) != 1 {
		t.Fatalf("%d signatures", len(r.Signatures))
	}
	if err := r.Verify([]signature.PublicKey{pk}); err != nil {
		t.Fatal(err)
	}
	if err := r.Verify([]signature.PublicKey{other}); !errors.Is(err, signature.ErrUntrusted) {
		t.Fatalf("other key: Verify = %v", err)
	}
	r.OutPath = storepath.Path(storepath.DefaultDir + "/1hmak4w549mfngv8w71fdb0ql1vdzl91-cadep")
	if err := r.Verify([]signature.PublicKey{pk}); !errors.Is(err, signature.ErrUntrusted) {
		t.Fatalf("changed outPath: Verify = %v", err)
	}
}

func TestParseRealisationErrors(t *testing.T) {
	for _, in := range []string{
		``, `{}`, `[]`, `{"id":"sha256:ab!out"}`,
		`{"id":"sha256:xyz!out","outPath":"dhclv48nx1gjx5x4f7rszvwdvia2n2gj-catop"}`,
		`{"id":"sha256:ab","outPath":"dhclv48nx1gjx5x4f7rszvwdvia2n2gj-catop"}`,
		`{"id":"sha256:ab!out","outPath":"../etc"}`,
		`{"id":"sha256:ab!out","outPath":"dhclv48nx1gjx5x4f7rszvwdvia2n2gj-catop","signatures":["x"]}`,
		`{"id":"sha256:ab!out","outPath":"dhclv48nx1gjx5x4f7rszvwdvia2n2gj-catop","dependentRealisations":{"x":"y"}}`,
	} {
		if _, err := cache.ParseRealisation([]byte(in), storepath.DefaultDir); !errors.Is(err, cache.ErrBadRealisation) {
			t.Errorf("ParseRealisation(%q) = %v, want ErrBadRealisation", in, err)
		}
	}
}

func FuzzParseRealisation(f *testing.F) {
	f.Add([]byte(nixDoi))
	f.Add([]byte(`{"id":"sha256:ab!out","outPath":"dhclv48nx1gjx5x4f7rszvwdvia2n2gj-catop","signatures":["k:AAAA"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := cache.ParseRealisation(data, storepath.DefaultDir)
		if err != nil {
			return
		}
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := cache.ParseRealisation(b, storepath.DefaultDir)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if r2.Fingerprint() != r.Fingerprint() {
			t.Fatalf("fingerprint changed: %s vs %s", r2.Fingerprint(), r.Fingerprint())
		}
	})
}
