package signature

import (
	"strings"
	"testing"
)

// Each target checks that parsing never panics and that an accepted value
// prints back in canonical form and re-parses to the same value.

func FuzzParsePublicKey(f *testing.F) {
	f.Add(test1Public)
	f.Add(nixosPublic)
	f.Add("a:")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParsePublicKey(s)
		if err != nil {
			return
		}
		k2, err := ParsePublicKey(k.String())
		if err != nil || k2 != k {
			t.Fatalf("round trip of %q: %v, %v", s, k2, err)
		}
	})
}

func FuzzParseSecretKey(f *testing.F) {
	f.Add(test1Secret)
	f.Add("s:" + strings.Repeat("A", 43) + "=")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseSecretKey(s)
		if err != nil {
			return
		}
		k2, err := ParseSecretKey(k.Secret())
		if err != nil || k2 != k {
			t.Fatalf("round trip of %q failed: %v", s, err)
		}
		if err := k.PublicKey().Verify("x", k.Sign("x")); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	f.Add(curlTest1Sig)
	f.Add(netToolsSig)
	// Accepted as Nix's Signature::parse does: short data, odd names,
	// no padding, text after the padding.
	f.Add("cache.nixos.org-1:o1DTsjCz0PofLJ216P2RBuSulI8BAb6zHxWE4N+tzlcELk5Uk/GO2SCxWTRN5wJutLZZ+cHTMdWqOHF8")
	f.Add("a b\n:u01BybwQhyI5H1bW1EIWXssMDhDDIvXOG5uh8Qzgdyjz6U1qg6DH")
	f.Add("test1:519iiVLx/c4Rdt5DNt6Y2Jm6hcWE9+XY69ygiWSZCNGVcmOcyL64uVAJ3cV8vaTusIZdbTnYo9Y7vDNeTmmMBQ")
	f.Add("test1:519iiVLx/c4Rdt5DNt6Y2Jm6hcWE9+XY69ygiWSZCNGVcmOcyL64uVAJ3cV8vaTusIZdbTnYo9Y7vDNeTmmMBQ==junk")
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseSignature(s)
		if err != nil {
			return
		}
		sig2, err := ParseSignature(sig.String())
		if err != nil || sig2 != sig {
			t.Fatalf("round trip of %q: %v, %v", s, sig2, err)
		}
	})
}
