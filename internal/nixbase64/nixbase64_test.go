package nixbase64

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The rules are Nix's base64::decode (src/libutil/base-n.cc), pinned in Nix
// by src/libutil-tests/base-n.cc (Base64TrailParseTest).
func TestDecodeNixRules(t *testing.T) {
	digest := bytes.Repeat([]byte{0xfe, 0xed, 0x42}, 11)[:32]
	canon := base64.StdEncoding.EncodeToString(digest) // 43 chars + "="
	for _, tc := range []struct {
		name, in string
		want     []byte
	}{
		{"padded", canon, digest},
		{"unpadded", strings.TrimRight(canon, "="), digest},
		{"too much padding", canon + "==", digest},
		{"text after the padding", canon + " cheesecake", digest},
		{"anything after the first =", canon[:43] + "=!!*", digest},
		{"newlines are skipped", canon[:10] + "\n" + canon[10:20] + "\n\n" + canon[20:], digest},
		{"empty", "", []byte{}},
		{"only padding", "==", []byte{}},
		{"one char is no byte", "Q", []byte{}},
		// 'b' is 011011: its last 2 bits (11) are left over and ignored, not
		// required to be 0 as a strict decoder does.
		{"nonzero leftover bits", "QWb=", []byte{'A', 'f'}},
	} {
		got, err := Decode(tc.in)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: Decode(%q) = %x, %v; want %x", tc.name, tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"ab cd", "abc-", "abc_", "\x00", "abc\r\n", "é"} {
		_, err := Decode(in)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Decode(%q) error = %v, want ErrInvalid", in, err)
		}
	}
	if _, err := Decode("secretAAA!"); err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "!") {
		t.Errorf("error %v quotes the input", err)
	}
}

// TestDecodeErrorOffset checks the offset of the first bad character,
// within the first whole groups of four and after a '\n' or at the end.
func TestDecodeErrorOffset(t *testing.T) {
	for _, tc := range []struct {
		in  string
		off int
	}{{"*WJj", 0}, {"QWJjZG*m", 6}, {"QWJjZGVm!", 8}, {"QWJj\nZGV!", 8}, {"QWJjZGVmQWJjZGVmQWJjZGV-", 23}} {
		_, err := Decode(tc.in)
		if want := fmt.Sprintf("offset %d", tc.off); !errors.Is(err, ErrInvalid) || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("Decode(%q) = %v, want an error at %s", tc.in, err, want)
		}
	}
}

// TestDecodeMatchesStd checks the decoder on every canonical encoding of
// short byte strings, where Nix and encoding/base64 agree.
func TestDecodeMatchesStd(t *testing.T) {
	var b []byte
	for n := range 70 {
		b = append(b, byte(n*37+11))
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
			s := enc.EncodeToString(b)
			got, err := Decode(s)
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("Decode(%q) = %x, %v", s, got, err)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("QWJj")
	f.Add("QWb=junk")
	f.Add("a\nb\ncd==")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Decode(s)
		if err != nil {
			return
		}
		if len(got) > len(s)*3/4 {
			t.Fatalf("%d bytes from %d characters", len(got), len(s))
		}
		// Re-encoding and decoding again gives the same bytes.
		again, err := Decode(base64.StdEncoding.EncodeToString(got))
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("round trip of %q: %x, %v", s, again, err)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	s := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa5, 0x3c}, 32)) // a signature's 64 bytes
	buf := make([]byte, 0, 64)
	for b.Loop() {
		if _, err := AppendDecode(buf, s); err != nil {
			b.Fatal(err)
		}
	}
}
