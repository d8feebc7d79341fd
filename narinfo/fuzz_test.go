package narinfo

import (
	"bytes"
	"testing"

	"github.com/nixcache/nixcache/signature"
)

// FuzzParse checks that Unmarshal never panics and that an accepted narinfo
// marshals to text that parses back to the same text (parse -> marshal ->
// parse -> marshal is stable).
func FuzzParse(f *testing.F) {
	f.Add([]byte(netTools))
	f.Add([]byte(curl))
	// testdata/fuzz/FuzzParse also holds narinfos with many Sig lines
	// naming a trusted key (signature.MaxChecksPerKey), a short signature
	// by another key and an unpadded SRI NarHash.
	trusted, err := signature.ParsePublicKey(nixosPublic)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, err := Unmarshal(data)
		if err != nil {
			return
		}
		_ = ni.Verify([]signature.PublicKey{trusted}) // bounded, never panics
		out, err := ni.MarshalText()
		if err != nil {
			// Parsed but not writable: only a non-sha256 hash can cause this.
			return
		}
		ni2, err := Unmarshal(out)
		if err != nil {
			t.Fatalf("re-parse of\n%s\nfailed: %v", out, err)
		}
		out2, err := ni2.MarshalText()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("unstable:\n%s\n---\n%s\n%v", out, out2, err)
		}
	})
}

// FuzzParseCacheInfo checks that ParseCacheInfo never panics and that an
// accepted file round-trips through MarshalText.
func FuzzParseCacheInfo(f *testing.F) {
	f.Add([]byte("StoreDir: /nix/store\n"))
	f.Add([]byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ci, err := ParseCacheInfo(data)
		if err != nil {
			return
		}
		out, err := ci.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText of %+v: %v", ci, err)
		}
		ci2, err := ParseCacheInfo(out)
		if err != nil || *ci2 != *ci {
			t.Fatalf("round trip %q -> %q: %+v, %v", data, out, ci2, err)
		}
	})
}
