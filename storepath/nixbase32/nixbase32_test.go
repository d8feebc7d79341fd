package nixbase32

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

func TestVectors(t *testing.T) {
	tests := []struct {
		hex string
		enc string
	}{
		{"", ""},
		{"1f", "0z"},
		{"8a12321522fd91efbd60ebb2481af88580f61600", "00bgd045z0d4icpbc2yyz4gx48ak44la"},
	}
	for _, tt := range tests {
		raw, _ := hex.DecodeString(tt.hex)
		if got := EncodeToString(raw); got != tt.enc {
			t.Errorf("EncodeToString(%s) = %q, want %q", tt.hex, got, tt.enc)
		}
		dec, err := DecodeString(tt.enc)
		if err != nil || !bytes.Equal(dec, raw) {
			t.Errorf("DecodeString(%q) = %x, %v; want %s", tt.enc, dec, err, tt.hex)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, s := range []string{"0", "z", "zz", "c0", "0t", "0e", "0o", "0u", "0A", "000", "0 ", "\x00\x00"} {
		if _, err := DecodeString(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeString(%q) error = %v, want ErrInvalid", s, err)
		}
		if err := ValidateString(s); err == nil {
			t.Errorf("ValidateString(%q) = nil", s)
		}
	}
}

// TestDecodeErrors checks which fault Decode names when there are several:
// the first in reading order, the padding bits of the first character
// before a bad character after it.
func TestDecodeErrors(t *testing.T) {
	h := "1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0" // 32 bytes
	for _, tc := range []struct{ in, msg string }{
		{"e0", "character 'e' at offset 0"},
		{"0e", "character 'e' at offset 1"},
		{"z0", `non-zero padding bits in "z0"`},
		{"ze", `non-zero padding bits in "ze"`},
		{h[:51] + "e", "character 'e' at offset 51"},
		{h[:20] + "t" + h[21:51] + "u", "character 't' at offset 20"},
		{"z" + h[1:], "non-zero padding bits"},
		{"z" + h[1:51] + "e", "non-zero padding bits"},
		{h[:51], "length 51 is not"},
	} {
		_, err := DecodeString(tc.in)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("DecodeString(%q) = %v, want %q", tc.in, err, tc.msg)
		}
	}
}

// TestAgainstNix checks encoding against nix-hash --to-base32 for every
// digest size Nix uses.
func TestAgainstNix(t *testing.T) {
	testenv.RequireNix(t)
	for _, c := range []struct {
		typ  string
		size int
	}{{"md5", 16}, {"sha1", 20}, {"sha256", 32}, {"sha512", 64}} {
		var hexes []string
		var raws [][]byte
		for i := 0; i < 8; i++ {
			b := make([]byte, c.size)
			rand.Read(b)
			if i == 0 {
				clear(b)
			} else if i == 1 {
				for j := range b {
					b[j] = 0xff
				}
			}
			raws = append(raws, b)
			hexes = append(hexes, hex.EncodeToString(b))
		}
		out, err := exec.Command("nix-hash", append([]string{"--type", c.typ, "--to-base32"}, hexes...)...).Output()
		if err != nil {
			t.Fatalf("nix-hash: %v", err)
		}
		lines := strings.Fields(string(out))
		if len(lines) != len(raws) {
			t.Fatalf("nix-hash printed %d lines, want %d", len(lines), len(raws))
		}
		for i, want := range lines {
			if got := EncodeToString(raws[i]); got != want {
				t.Errorf("%s %x: got %q, nix says %q", c.typ, raws[i], got, want)
			}
			dec, err := DecodeString(want)
			if err != nil || !bytes.Equal(dec, raws[i]) {
				t.Errorf("decode %q = %x, %v", want, dec, err)
			}
		}
	}
}

func FuzzDecodeString(f *testing.F) {
	for _, s := range []string{"", "0z", "00bgd045z0d4icpbc2yyz4gx48ak44la", "zz", "c0", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeString(s)
		if err != nil {
			return
		}
		if enc := EncodeToString(b); enc != s {
			t.Fatalf("round trip %q -> %x -> %q", s, b, enc)
		}
	})
}

func FuzzEncode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x1f})
	f.Add(bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := EncodeToString(b)
		if len(s) != EncodedLen(len(b)) {
			t.Fatalf("length %d, want %d", len(s), EncodedLen(len(b)))
		}
		dec, err := DecodeString(s)
		if err != nil || !bytes.Equal(dec, b) {
			t.Fatalf("round trip %x -> %q -> %x, %v", b, s, dec, err)
		}
	})
}

func BenchmarkEncode32(b *testing.B) {
	src := bytes.Repeat([]byte{0xa5}, 32)
	dst := make([]byte, EncodedLen(32))
	for b.Loop() {
		Encode(dst, src)
	}
}

func BenchmarkDecode32(b *testing.B) {
	src := []byte(EncodeToString(bytes.Repeat([]byte{0xa5}, 32)))
	dst := make([]byte, 32)
	for b.Loop() {
		if _, err := Decode(dst, src); err != nil {
			b.Fatal(err)
		}
	}
}
