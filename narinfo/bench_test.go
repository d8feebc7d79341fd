package narinfo

import (
	"strings"
	"testing"

	"github.com/nixcache/nixcache/signature"
)

// The notes' figures for one narinfo with 4 refs and 1 sig: nix-community
// 177 µs / 1.05 MB, zombiezen 4.0 µs / 1.5 KB. curl has 4 refs and 2 sigs.

func BenchmarkParse(b *testing.B) {
	data := []byte(curl)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseReader(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(strings.NewReader(curl)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshal(b *testing.B) {
	ni, _ := Unmarshal([]byte(curl))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ni.MarshalText(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFingerprint(b *testing.B) {
	ni, _ := Unmarshal([]byte(curl))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ni.Fingerprint(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	ni, _ := Unmarshal([]byte(curl))
	sk, _ := signature.ParseSecretKey(test1Secret)
	b.ReportAllocs()
	for b.Loop() {
		if err := ni.Sign(sk); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	ni, _ := Unmarshal([]byte(curl))
	sk, _ := signature.ParseSecretKey(test1Secret)
	trusted := []signature.PublicKey{sk.PublicKey()}
	b.ReportAllocs()
	for b.Loop() {
		if err := ni.Verify(trusted); err != nil {
			b.Fatal(err)
		}
	}
}
