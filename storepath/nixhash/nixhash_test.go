package nixhash

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// TestAgainstNixHash hashes a file with nix-hash in every algorithm and
// encoding and checks that we parse each form to the same value and print
// the same strings.
func TestAgainstNixHash(t *testing.T) {
	testenv.RequireNix(t)
	file := filepath.Join(t.TempDir(), "f")
	data := []byte("hello, nix\n")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	nixHash := func(args ...string) string {
		out, err := exec.Command("nix-hash", args...).Output()
		if err != nil {
			t.Fatalf("nix-hash %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	for _, a := range []Algorithm{MD5, SHA1, SHA256, SHA512} {
		want := Sum(a, data)
		b16 := nixHash("--flat", "--type", a.String(), file)
		b32 := nixHash("--flat", "--base32", "--type", a.String(), file)
		if got := want.RawBase16(); got != b16 {
			t.Errorf("%s base16 = %s, nix %s", a, got, b16)
		}
		if got := want.RawBase32(); got != b32 {
			t.Errorf("%s nix32 = %s, nix %s", a, got, b32)
		}
		forms := []string{a.String() + ":" + b16, a.String() + ":" + b32, want.Base64(), want.SRI()}
		sriOut, err := testenv.NixCmd("nix", "hash", "to-sri", "--type", a.String(), b16)
		if err != nil {
			t.Fatal(err)
		}
		if sri := strings.TrimSpace(string(sriOut)); sri != want.SRI() {
			t.Errorf("%s SRI = %s, nix %s", a, want.SRI(), sri)
		}
		for _, f := range forms {
			h, err := Parse(f)
			if err != nil || h != want {
				t.Errorf("Parse(%q) = %v, %v; want %v", f, h, err, want)
			}
		}
		for _, bare := range []string{b16, b32, want.RawBase64()} {
			h, err := ParseAs(a, bare)
			if err != nil || h != want {
				t.Errorf("ParseAs(%s, %q) = %v, %v", a, bare, h, err)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	good := Sum(SHA256, nil)
	for _, s := range []string{
		"",
		"sha256",
		"sha257:" + good.RawBase32(),
		"sha256:" + good.RawBase32()[1:],
		"sha256:" + strings.Replace(good.RawBase32(), "0", "e", 1),
		"sha256:zz" + good.RawBase32()[2:],
		"sha256:" + strings.ToUpper(good.RawBase16()[:2]) + "x" + good.RawBase16()[3:],
		"sha256-" + good.RawBase32(),
		"md5:" + good.RawBase32(),
		good.RawBase32(),
	} {
		if _, err := Parse(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) error = %v, want ErrInvalid", s, err)
		}
	}
	if _, err := ParseAs(SHA1, good.String()); err == nil {
		t.Errorf("ParseAs(SHA1, sha256 hash) succeeded")
	}
}

// TestParseBase64LikeNix pins Nix's reading of base64 digests (hash.cc
// Hash::Hash via base64::decode): the SRI digest is read up to the first
// '=', needs no padding, may carry anything after the '=', and may end in
// non-zero leftover bits; only the decoded length counts. A base64 digest
// after "algo:" or bare must have the padded length, which is how Nix tells
// it from base16 and nix32, but is decoded just as leniently.
func TestParseBase64LikeNix(t *testing.T) {
	for _, a := range []Algorithm{MD5, SHA1, SHA256, SHA512} {
		want := Sum(a, []byte("nix"))
		b64 := want.RawBase64()
		bare := strings.TrimRight(b64, "=")
		for _, s := range []string{
			a.String() + "-" + b64,
			a.String() + "-" + bare,                         // no padding
			a.String() + "-" + bare + "=",                   // too little padding (sha512 needs "==")
			a.String() + "-" + bare + "====",                // too much padding
			a.String() + "-" + b64 + " trailer",             // ignored after '='
			a.String() + "-" + bare[:10] + "\n" + bare[10:], // newline skipped
		} {
			if h, err := Parse(s); err != nil || h != want {
				t.Errorf("Parse(%q) = %v, %v; want %v", s, h, err, want)
			}
			if h, err := ParseAs(a, s); err != nil || h != want {
				t.Errorf("ParseAs(%s, %q) = %v, %v; want %v", a, s, h, err, want)
			}
		}
		// One character short decodes to one byte too few.
		if _, err := Parse(a.String() + "-" + bare[:len(bare)-2]); !errors.Is(err, ErrInvalid) {
			t.Errorf("short SRI %s accepted: %v", a, err)
		}
		// Past the '=' a whole second digest is ignored, so an extra
		// group before it makes the digest too long.
		if _, err := Parse(a.String() + "-" + bare + "AAAA"); !errors.Is(err, ErrInvalid) {
			t.Errorf("long SRI %s accepted: %v", a, err)
		}
	}
	// Non-zero leftover bits: the last character of a padded sha256 digest
	// carries 2 bits that a strict decoder requires to be 0. Nix drops them.
	h := Sum(SHA256, []byte("x"))
	b64 := []byte(h.RawBase64()) // 43 digits and "="
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b64[42] = alphabet[strings.IndexByte(alphabet, b64[42])|3]
	for _, s := range []string{"sha256-" + string(b64), "sha256:" + string(b64)} {
		if got, err := Parse(s); err != nil || got != h {
			t.Errorf("Parse(%q) = %v, %v; want %v", s, got, err, h)
		}
	}
	if got, err := ParseAs(SHA256, string(b64)); err != nil || got != h {
		t.Errorf("ParseAs(bare %q) = %v, %v; want %v", b64, got, err, h)
	}
	// Unpadded base64 without the SRI form is told apart by length: 43
	// characters is no sha256 digest form.
	if _, err := Parse("sha256:" + string(b64[:43])); !errors.Is(err, ErrInvalid) {
		t.Errorf("unpadded non-SRI base64 accepted: %v", err)
	}
	// A character outside the alphabet before the '=' is an error.
	if _, err := Parse("sha256-" + strings.Repeat("A", 42) + "_="); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad character accepted: %v", err)
	}
}

// TestErrorPrefixedOnce checks that an error names the package once.
func TestErrorPrefixedOnce(t *testing.T) {
	for _, s := range []string{"sha257:x", "sha256:x", "sha256-!!", "x", "sha1-" + strings.Repeat("A", 40)} {
		_, err := Parse(s)
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", s)
		}
		if n := strings.Count(err.Error(), "nixhash:"); n != 1 {
			t.Errorf("Parse(%q) error %q has %d prefixes", s, err, n)
		}
	}
}

func TestZero(t *testing.T) {
	var h Hash
	if !h.IsZero() || h.String() != "" || len(h.Bytes()) != 0 {
		t.Errorf("zero hash: %q %x", h.String(), h.Bytes())
	}
}

func TestHasher(t *testing.T) {
	h := NewHasher(SHA256)
	h.Write([]byte("hello, "))
	h.Write([]byte("nix\n"))
	if h.Len() != 11 || h.SumHash() != Sum(SHA256, []byte("hello, nix\n")) {
		t.Errorf("Hasher: len %d, %v", h.Len(), h.SumHash())
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6",
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		"md5:d41d8cd98f00b204e9800998ecf8427e",
		"sha1:2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
		"sha512:",
		"x:y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := Parse(s)
		if err != nil {
			return
		}
		for _, form := range []string{h.String(), h.Base16(), h.Base64(), h.SRI()} {
			h2, err := Parse(form)
			if err != nil || h2 != h {
				t.Fatalf("%q -> %q -> %v, %v", s, form, h2, err)
			}
		}
	})
}

func BenchmarkParseNix32(b *testing.B) {
	s := Sum(SHA256, []byte("x")).String()
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}
