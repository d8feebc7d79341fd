package narinfo

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath/nixbase32"
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

// BenchmarkParseManyRefs parses curl with 1000 references (a large
// closure's top path), where the per-reference work dominates.
func BenchmarkParseManyRefs(b *testing.B) {
	refs := make([]string, 1000)
	for i := range refs {
		refs[i] = nixbase32.EncodeToString([]byte(fmt.Sprintf("%020d", i))) + "-ref-" + strconv.Itoa(i)
	}
	i := strings.Index(curl, "References: ") + len("References: ")
	data := []byte(curl[:i] + strings.Join(refs, " ") + curl[i+strings.IndexByte(curl[i:], '\n'):])
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		ni, err := Unmarshal(data)
		if err != nil || len(ni.References) != len(refs) {
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

// BenchmarkVerifySigHeavy parses and verifies a 1.6 MB narinfo of Sig lines
// naming the trusted key (issue 8.6), all alike or all distinct, the good
// signature last; the time is mostly parsing. Before the bound every line cost an ed25519 check: 9.4 s
// for the repeated zero signature on the reporting machine.
func BenchmarkVerifySigHeavy(b *testing.B) {
	good := curl[strings.Index(curl, "Sig: test1:"):]
	head := curl[:strings.Index(curl, "Sig: ")]
	sk, _ := signature.ParseSecretKey(test1Secret)
	trusted := []signature.PublicKey{sk.PublicKey()}
	for _, distinct := range []bool{false, true} {
		var t strings.Builder
		t.WriteString(head)
		raw := make([]byte, signature.SignatureSize)
		for i := 0; t.Len() < 1600<<10; i++ {
			if distinct {
				raw[0], raw[1], raw[2] = byte(i), byte(i>>8), byte(i>>16)
			}
			s, _ := signature.NewSignature("test1", raw)
			t.WriteString("Sig: " + s.String() + "\n")
		}
		t.WriteString(good)
		data := []byte(t.String())
		name := "repeated"
		if distinct {
			name = "distinct"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				ni, err := Unmarshal(data)
				if err != nil {
					b.Fatal(err)
				}
				// Repeated: two distinct signatures, the good one found.
				// Distinct: the good one lies past the bound, refused.
				if err := ni.Verify(trusted); (err == nil) == distinct {
					b.Fatalf("Verify = %v", err)
				}
			}
		})
	}
}
