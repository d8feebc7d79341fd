package signature

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// Published vectors (zombiezen/go-nix signature_test.go, nix-community/go-nix
// narinfo tests); the cache.nixos.org signature was made by Hydra.
const (
	test1Secret  = "test1:jbX9NxZp8WB/coK8k7yLf0gNYmBbIbCrOFwgJgI7OV+0sASf4R5oFQlioSlN3bJ56uvshzr7S9Z75pcv+9hSkQ=="
	test1Public  = "test1:tLAEn+EeaBUJYqEpTd2yeerr7Ic6+0vWe+aXL/vYUpE="
	nixosPublic  = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="
	curlFP       = "1;/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin;sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0;196040;/nix/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0,/nix/store/6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115,/nix/store/j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12,/nix/store/yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n"
	curlTest1Sig = "test1:519iiVLx/c4Rdt5DNt6Y2Jm6hcWE9+XY69ygiWSZCNGVcmOcyL64uVAJ3cV8vaTusIZdbTnYo9Y7vDNeTmmMBQ=="
	curlNixosSig = "cache.nixos.org-1:TsTTb3WGTZKphvYdBHXwo6weVILmTytUjLB+vcX89fOjjRicCHmKA4RCPMVLkj6TMJ4GMX3HPVWRdD1hkeKZBQ=="
	netToolsFP   = "1;/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432;sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6;464152;/nix/store/7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27"
	netToolsSig  = "cache.nixos.org-1:sn5s/RrqEI+YG6/PjwdbPjcAC7rcta7sJU4mFOawGvJBLsWkyLtBrT2EuFt/LJjWkTZ+ZWOI9NTtjo/woMdvAg=="
)

func mustPub(t testing.TB, s string) PublicKey {
	t.Helper()
	k, err := ParsePublicKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSig(t testing.TB, s string) Signature {
	t.Helper()
	k, err := ParseSignature(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVectors(t *testing.T) {
	sk, err := ParseSecretKey(test1Secret)
	if err != nil {
		t.Fatal(err)
	}
	if got := sk.PublicKey().String(); got != test1Public {
		t.Errorf("PublicKey() = %s, want %s", got, test1Public)
	}
	if got := sk.Secret(); got != test1Secret {
		t.Errorf("Secret() round trip = %q", got)
	}
	if got := sk.Sign(curlFP).String(); got != curlTest1Sig {
		t.Errorf("Sign(curl) = %s, want %s", got, curlTest1Sig)
	}
	trusted := []PublicKey{mustPub(t, nixosPublic), mustPub(t, test1Public)}
	for _, tc := range []struct {
		fp, sig string
	}{
		{curlFP, curlTest1Sig},
		{curlFP, curlNixosSig},
		{netToolsFP, netToolsSig},
	} {
		if err := Verify(tc.fp, []Signature{mustSig(t, tc.sig)}, trusted); err != nil {
			t.Errorf("Verify(%.40s..., %.30s...) = %v", tc.fp, tc.sig, err)
		}
	}
	if err := mustPub(t, nixosPublic).Verify(netToolsFP, mustSig(t, netToolsSig)); err != nil {
		t.Errorf("PublicKey.Verify(net-tools) = %v", err)
	}
}

func TestVerifyErrors(t *testing.T) {
	nixos, test1 := mustPub(t, nixosPublic), mustPub(t, test1Public)
	good := mustSig(t, curlTest1Sig)
	flipped := good.Bytes()
	flipped[0] ^= 1
	bad, _ := NewSignature("test1", flipped)
	other, _ := NewSignature("test2", good.Bytes())
	tests := []struct {
		name    string
		sigs    []Signature
		trusted []PublicKey
		want    error
		msg     string
	}{
		{"good", []Signature{good}, []PublicKey{test1}, nil, ""},
		{"bad then good", []Signature{bad, good}, []PublicKey{test1}, nil, ""},
		{"good then bad", []Signature{good, bad}, []PublicKey{test1}, nil, ""},
		{"no sigs", nil, []PublicKey{test1}, ErrUntrusted, "no signatures"},
		{"untrusted name", []Signature{other}, []PublicKey{test1, nixos}, ErrUntrusted, `signed by "test2"`},
		{"no trusted keys", []Signature{good}, nil, ErrUntrusted, "trusted keys are none"},
		{"bad sig", []Signature{bad}, []PublicKey{test1}, ErrInvalidSignature, `key "test1"`},
		{"bad and untrusted", []Signature{other, bad}, []PublicKey{test1}, ErrInvalidSignature, `key "test1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(curlFP, tc.sigs, tc.trusted)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
		})
	}
	if err := test1.Verify(curlFP, other); !errors.Is(err, ErrUntrusted) {
		t.Errorf("PublicKey.Verify(other name) = %v", err)
	}
	if err := test1.Verify(curlFP, bad); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("PublicKey.Verify(bad) = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	seed := strings.Repeat("A", 43) + "=" // 32 zero bytes
	tests := []struct {
		what string
		in   string
		ok   bool
		msg  string
	}{
		{"pub", test1Public, true, ""},
		{"pub", "test1:tLAEn+EeaBUJYqEpTd2yeerr7Ic6+0vWe+aXL/vYUpE", true, ""}, // unpadded
		{"pub", "tLAEn+EeaBUJYqEpTd2yeerr7Ic6+0vWe+aXL/vYUpE=", false, "no ':'"},
		{"pub", ":tLAEn+EeaBUJYqEpTd2yeerr7Ic6+0vWe+aXL/vYUpE=", false, "empty key name"},
		{"pub", "a b:tLAEn+EeaBUJYqEpTd2yeerr7Ic6+0vWe+aXL/vYUpE=", false, "contains"},
		{"pub", "test1:tLAEn+EeaBUJYqEpTd2yeerr7Ic6+0vWe+aXL/vYUp", false, "is 31 bytes"},
		{"pub", "test1:" + strings.Repeat("A", 44), false, "is 33 bytes"},
		{"pub", "test1:", false, "is 0 bytes"},
		{"pub", "test1:tLAEn+EeaBUJYqEpTd2yeerr7Ic6+0vWe+aXL/vYUpE=\n", true, ""}, // Nix stops at '='
		{"pub", "test1:tLAEn+EeaBUJYqEpTd2yeerr7Ic6+0vWe+aXL/vYUpE*", false, "invalid base64"},
		{"sec", test1Secret, true, ""},
		{"sec", test1Secret + "\n", true, ""}, // key file with trailing newline
		{"sec", "s:" + seed, true, ""},        // 32-byte seed
		{"sec", "test1:" + strings.Repeat("A", 86) + "==", false, "public half does not match"},
		{"sec", "test1:" + strings.Repeat("A", 20), false, "is 15 bytes"},
		{"sec", "test1:!!!!", false, "invalid base64"},
		{"sig", curlTest1Sig, true, ""},
		{"sig", "test1:" + seed, true, ""}, // Nix checks the length only when verifying
		{"sig", "te\x00st:" + curlTest1Sig[6:], true, ""},
		{"sig", "test1", false, "no ':'"},
		{"sig", "test1:", false, "empty"},
		{"sig", "test1:==", false, "empty"},
		{"sig", ":" + curlTest1Sig[6:], false, "empty key name"},
		{"sig", "test1:" + curlTest1Sig[6:20] + "!", false, "invalid base64"},
	}
	for _, tc := range tests {
		var err error
		switch tc.what {
		case "pub":
			_, err = ParsePublicKey(tc.in)
		case "sec":
			_, err = ParseSecretKey(tc.in)
		case "sig":
			_, err = ParseSignature(tc.in)
		}
		if tc.ok {
			if err != nil {
				t.Errorf("Parse %s %q: %v", tc.what, tc.in, err)
			}
			continue
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse %s %q = %v, want ErrMalformed", tc.what, tc.in, err)
		} else if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Parse %s %q = %q, want it to contain %q", tc.what, tc.in, err, tc.msg)
		}
		if tc.what == "sec" && err != nil && strings.Contains(err.Error(), tc.in[strings.IndexByte(tc.in, ':')+1:]) && len(tc.in) > 10 {
			t.Errorf("error %q leaks the secret", err)
		}
	}
}

// TestParseSignatureLikeNix pins Nix's Signature::parse (libutil
// signature/local-keys.cc): a non-empty name of any bytes but ':' and
// non-empty data in Nix's base64. The length is not checked here.
func TestParseSignatureLikeNix(t *testing.T) {
	good := mustSig(t, curlTest1Sig)
	b64 := curlTest1Sig[len("test1:"):]
	for _, tc := range []struct {
		in, name string
		n        int
	}{
		{"test1:" + strings.TrimRight(b64, "="), "test1", 64},          // unpadded
		{"test1:" + b64 + "= and then some", "test1", 64},              // after '=' ignored
		{"test1:" + b64[:40] + "\n" + b64[40:], "test1", 64},           // newline skipped
		{"test1:" + b64[:80], "test1", 60},                             // short
		{"test1:" + b64 + b64[:4] + "=", "test1", 64},                  // "==" ends it first
		{"test1:" + strings.TrimRight(b64, "=") + "AAAA", "test1", 67}, // long
		{"a b:" + b64, "a b", 64},
		{"a\nb:" + b64, "a\nb", 64},
		{"\x00:" + b64, "\x00", 64},
	} {
		s, err := ParseSignature(tc.in)
		if err != nil {
			t.Errorf("ParseSignature(%q): %v", tc.in, err)
			continue
		}
		if s.Name() != tc.name || len(s.Bytes()) != tc.n {
			t.Errorf("ParseSignature(%q) = name %q, %d bytes; want %q, %d", tc.in, s.Name(), len(s.Bytes()), tc.name, tc.n)
		}
		if tc.n == 64 && string(s.Bytes()) != string(good.Bytes()) {
			t.Errorf("ParseSignature(%q) bytes differ from the canonical form's", tc.in)
		}
		// String is canonical and reads back to the same value.
		if s2, err := ParseSignature(s.String()); err != nil || s2 != s {
			t.Errorf("round trip of %q via %q: %v", tc.in, s.String(), err)
		}
	}
}

// TestVerifyMalformedSignature: the length of a signature matters only when
// its name is trusted (Nix's verifyDetached looks the name up first).
func TestVerifyMalformedSignature(t *testing.T) {
	test1 := mustPub(t, test1Public)
	good := mustSig(t, curlTest1Sig)
	short := mustSig(t, "test1:"+curlTest1Sig[6:86])
	otherShort := mustSig(t, "other:"+curlTest1Sig[6:86])
	if err := Verify(curlFP, []Signature{otherShort, good}, []PublicKey{test1}); err != nil {
		t.Errorf("good signature beside another key's short one: %v", err)
	}
	if err := Verify(curlFP, []Signature{short, good}, []PublicKey{test1}); err != nil {
		t.Errorf("good signature beside a short one of the same key: %v", err)
	}
	err := Verify(curlFP, []Signature{short}, []PublicKey{test1})
	if !errors.Is(err, ErrInvalidSignature) || !strings.Contains(err.Error(), "60 bytes") {
		t.Errorf("short trusted signature: %v, want ErrInvalidSignature naming its length", err)
	}
	if err := Verify(curlFP, []Signature{otherShort}, []PublicKey{test1}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("short untrusted signature: %v, want ErrUntrusted", err)
	}
	if err := test1.Verify(curlFP, short); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("PublicKey.Verify(short) = %v", err)
	}
}

// countChecks replaces the ed25519 check with a counting one for the test.
func countChecks(t *testing.T) *int {
	n := new(int)
	orig := ed25519Verify
	ed25519Verify = func(pub ed25519.PublicKey, msg, sig []byte) bool {
		*n++
		return orig(pub, msg, sig)
	}
	t.Cleanup(func() { ed25519Verify = orig })
	return n
}

// TestVerifyBounded is the regression test for many Sig lines naming a
// trusted key (issue 8.6): each used to cost an ed25519 check. Repeated
// signatures are now checked once and at most MaxChecksPerKey distinct ones
// per key.
func TestVerifyBounded(t *testing.T) {
	test1 := mustPub(t, test1Public)
	good := mustSig(t, curlTest1Sig)
	flip := func(i int) Signature {
		b := good.Bytes()
		b[0] ^= byte(i)
		b[1] ^= byte(i >> 8)
		s, _ := NewSignature("test1", b)
		return s
	}
	bad := flip(1)
	var same []Signature
	for range 10000 {
		same = append(same, bad)
	}
	n := countChecks(t)
	if err := Verify(curlFP, same, []PublicKey{test1}); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("Verify(10000 copies of a bad signature) = %v", err)
	}
	if *n != 1 {
		t.Errorf("10000 identical signatures cost %d checks, want 1", *n)
	}
	// A good signature after the repeats is still found.
	*n = 0
	if err := Verify(curlFP, append(same, good), []PublicKey{test1}); err != nil || *n != 2 {
		t.Errorf("good after repeats: %v after %d checks, want nil after 2", err, *n)
	}
	var distinct []Signature
	for i := 1; i <= 10000; i++ {
		distinct = append(distinct, flip(i))
	}
	*n = 0
	err := Verify(curlFP, append(distinct, good), []PublicKey{test1})
	if !errors.Is(err, ErrInvalidSignature) || !strings.Contains(err.Error(), "first 16") {
		t.Errorf("Verify(10000 distinct bad, then good) = %v, want the capped ErrInvalidSignature", err)
	}
	if *n != MaxChecksPerKey {
		t.Errorf("10000 distinct signatures cost %d checks, want %d", *n, MaxChecksPerKey)
	}
	// Within the bound, a good signature is found wherever it is.
	*n = 0
	if err := Verify(curlFP, append(distinct[:MaxChecksPerKey-1], good), []PublicKey{test1}); err != nil {
		t.Errorf("good signature as check %d: %v", MaxChecksPerKey, err)
	}
	// The untrusted error lists each name once, and a bounded number.
	var names []Signature
	for i := range 1000 {
		s, _ := NewSignature(fmt.Sprintf("k%d", i%100), good.Bytes())
		names = append(names, s)
	}
	err = Verify(curlFP, names, []PublicKey{test1})
	if !errors.Is(err, ErrUntrusted) || len(err.Error()) > 300 || !strings.Contains(err.Error(), "and 92 more") {
		t.Errorf("untrusted error = %q", err)
	}
}

func TestNewSecretKeyChecksPublicHalf(t *testing.T) {
	sk, err := ParseSecretKey(test1Secret)
	if err != nil {
		t.Fatal(err)
	}
	raw := append([]byte(nil), sk.priv[:]...)
	if k, err := NewSecretKey("test1", raw); err != nil || k != sk {
		t.Fatalf("NewSecretKey(valid) = %v, %v", k, err)
	}
	raw[40] ^= 1 // public half no longer matches the seed
	if _, err := NewSecretKey("test1", raw); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("NewSecretKey(mismatched public half) = %v, want ErrMalformed", err)
	}
}

// TestSecretKeyErrorsQuoteNoKey: whatever is wrong with a secret key, the
// error quotes no part of it but a valid key name.
func TestSecretKeyErrorsQuoteNoKey(t *testing.T) {
	b64 := test1Secret[len("test1:"):]
	for _, in := range []string{
		b64,                 // no name
		"test1:" + b64[:60], // truncated
		"test1:" + b64[:50] + "*" + b64[51:],
		b64[:30] + " " + b64[30:60] + ":" + b64,   // key material as name
		"test1:" + strings.Repeat("A", 86) + "==", // public half mismatch
	} {
		_, err := ParseSecretKey(in)
		if err == nil {
			t.Fatalf("ParseSecretKey(%q) succeeded", in)
		}
		for i := 0; i+8 <= len(b64); i++ {
			if strings.Contains(err.Error(), b64[i:i+8]) {
				t.Errorf("error %q quotes key material", err)
				break
			}
		}
		if n := strings.Count(err.Error(), "signature:"); n != 1 {
			t.Errorf("error %q has %d package prefixes", err, n)
		}
	}
}

func TestSecretKeyRedacted(t *testing.T) {
	sk, err := ParseSecretKey(test1Secret)
	if err != nil {
		t.Fatal(err)
	}
	b64 := test1Secret[len("test1:"):]
	var logbuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logbuf, nil)).Info("key", "sk", sk)
	outs := []string{
		sk.String(), sk.GoString(),
		fmt.Sprint(sk), fmt.Sprintf("%v %+v %#v %s %q %x %X %d", sk, sk, sk, sk, sk, sk, sk, sk),
		fmt.Sprintf("%v", struct{ K SecretKey }{sk}), fmt.Sprintf("%+v", &sk),
		logbuf.String(),
	}
	raw := []byte(sk.priv[:])
	for _, out := range outs {
		if strings.Contains(out, b64[:20]) || strings.Contains(out, fmt.Sprintf("%x", raw[:8])) || strings.Contains(out, fmt.Sprint(raw[:4])[1:8]) {
			t.Errorf("secret key printed: %q", out)
		}
		if !strings.Contains(out, "redacted") {
			t.Errorf("output %q lacks redacted", out)
		}
	}
}

func TestGenerateKey(t *testing.T) {
	sk, pk, err := GenerateKey("cache.example.org-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if sk.PublicKey() != pk {
		t.Fatal("public key mismatch")
	}
	sk2, err := ParseSecretKey(sk.Secret())
	if err != nil || sk2 != sk {
		t.Fatalf("ParseSecretKey(Secret()) = %v, %v", sk2, err)
	}
	sig := sk.Sign("hello")
	if err := pk.Verify("hello", sig); err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pk.Key(), []byte("hello"), sig.Bytes()) {
		t.Fatal("raw ed25519 verify failed")
	}
	if _, _, err := GenerateKey("bad:name", nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("GenerateKey(bad:name) = %v", err)
	}
}

func TestParsePublicKeys(t *testing.T) {
	ks, err := ParsePublicKeys("  " + nixosPublic + "\n\t" + test1Public + " ")
	if err != nil || len(ks) != 2 || ks[1].Name() != "test1" {
		t.Fatalf("ParsePublicKeys = %v, %v", ks, err)
	}
	if _, err := ParsePublicKeys(nixosPublic + " junk"); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "key 2") {
		t.Errorf("ParsePublicKeys(junk) = %v", err)
	}
}

func TestTextMarshal(t *testing.T) {
	var pk PublicKey
	if err := pk.UnmarshalText([]byte(test1Public)); err != nil {
		t.Fatal(err)
	}
	if b, _ := pk.MarshalText(); string(b) != test1Public {
		t.Errorf("MarshalText = %s", b)
	}
	var s Signature
	if err := s.UnmarshalText([]byte(curlTest1Sig)); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.MarshalText(); string(b) != curlTest1Sig {
		t.Errorf("MarshalText = %s", b)
	}
	if _, err := (Signature{}).MarshalText(); !errors.Is(err, ErrMalformed) {
		t.Errorf("zero MarshalText = %v", err)
	}
	var sk SecretKey
	if err := sk.UnmarshalText([]byte(test1Secret)); err != nil || sk.Name() != "test1" {
		t.Fatal(err)
	}
}

func BenchmarkSign(b *testing.B) {
	sk, _ := ParseSecretKey(test1Secret)
	b.ReportAllocs()
	for b.Loop() {
		_ = sk.Sign(curlFP)
	}
}

func BenchmarkVerify(b *testing.B) {
	trusted := []PublicKey{mustPub(b, nixosPublic), mustPub(b, test1Public)}
	sigs := []Signature{mustSig(b, curlNixosSig), mustSig(b, curlTest1Sig)}
	b.ReportAllocs()
	for b.Loop() {
		if err := Verify(curlFP, sigs, trusted); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyManySigs verifies a signature set like a 1.6 MB narinfo's
// of Sig lines naming a trusted key: before the bound each cost a check.
func BenchmarkVerifyManySigs(b *testing.B) {
	trusted := []PublicKey{mustPub(b, test1Public)}
	good := mustSig(b, curlTest1Sig)
	var sigs []Signature
	for i := range 14000 {
		raw := good.Bytes()
		raw[0], raw[1] = byte(i), byte(i>>8)|0x80 // never the good one
		s, _ := NewSignature("test1", raw)
		sigs = append(sigs, s)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := Verify(curlFP, sigs, trusted); err == nil {
			b.Fatal("verified")
		}
	}
}

func BenchmarkParseSignature(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSignature(curlTest1Sig); err != nil {
			b.Fatal(err)
		}
	}
}
