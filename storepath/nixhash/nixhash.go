// Package nixhash implements Nix's hash values: an algorithm (md5, sha1,
// sha256 or sha512) and a digest, printed and parsed in the forms Nix uses:
//
//	sha256:<nix32>     the default form in .narinfo files and fingerprints
//	sha256:<base16>    lowercase hex, as in the store database
//	sha256:<base64>    standard padded base64
//	sha256-<base64>    SRI, as printed by newer Nix commands
//
// Like Nix's Hash::parseAny, the parser tells the encoding apart by length,
// and reads base64 as leniently as Nix does (see [Parse]).
package nixhash

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/nixcache/nixcache/internal/nixbase64"
	"github.com/nixcache/nixcache/storepath/nixbase32"
)

// Algorithm is a hash algorithm Nix knows. The zero value is invalid.
type Algorithm uint8

// The algorithms Nix supports.
const (
	MD5 Algorithm = iota + 1
	SHA1
	SHA256
	SHA512
)

// ErrInvalid is wrapped by every parse error of this package; like
// archive/tar's sentinels it carries the package prefix, so errors read
// "nixhash: invalid hash "…": what is wrong".
var ErrInvalid = errors.New("nixhash: invalid hash")

var algoNames = [...]string{MD5: "md5", SHA1: "sha1", SHA256: "sha256", SHA512: "sha512"}
var algoSizes = [...]int{MD5: md5.Size, SHA1: sha1.Size, SHA256: sha256.Size, SHA512: sha512.Size}

// ParseAlgorithm parses an algorithm name as Nix writes it ("sha256").
func ParseAlgorithm(s string) (Algorithm, error) {
	if a := lookupAlgorithm(s); a != 0 {
		return a, nil
	}
	return 0, fmt.Errorf("%w: unknown algorithm %q", ErrInvalid, s)
}

func lookupAlgorithm(name string) Algorithm {
	for a := MD5; a <= SHA512; a++ {
		if algoNames[a] == name {
			return a
		}
	}
	return 0
}

// IsValid reports whether a is one of the known algorithms.
func (a Algorithm) IsValid() bool { return a >= MD5 && a <= SHA512 }

// String returns the algorithm's name as Nix writes it.
func (a Algorithm) String() string {
	if !a.IsValid() {
		return fmt.Sprintf("Algorithm(%d)", uint8(a))
	}
	return algoNames[a]
}

// Size returns the digest length in bytes.
func (a Algorithm) Size() int {
	if !a.IsValid() {
		return 0
	}
	return algoSizes[a]
}

// New returns a new hash.Hash computing the algorithm.
func (a Algorithm) New() hash.Hash {
	switch a {
	case MD5:
		return md5.New()
	case SHA1:
		return sha1.New()
	case SHA256:
		return sha256.New()
	case SHA512:
		return sha512.New()
	}
	panic("nixhash: New of invalid algorithm " + a.String())
}

// Hash is a digest together with its algorithm. It is a comparable value
// type: two Hashes are == when algorithm and digest are equal. The zero Hash
// means "no hash".
type Hash struct {
	algo   Algorithm
	digest [sha512.Size]byte
}

// New returns the Hash of algorithm a with the given digest, whose length
// must be a.Size().
func New(a Algorithm, digest []byte) (Hash, error) {
	if !a.IsValid() {
		return Hash{}, fmt.Errorf("%w: unknown algorithm", ErrInvalid)
	}
	if len(digest) != a.Size() {
		return Hash{}, fmt.Errorf("%w: %s digest has %d bytes, want %d", ErrInvalid, a, len(digest), a.Size())
	}
	h := Hash{algo: a}
	copy(h.digest[:], digest)
	return h, nil
}

// Sum returns the hash of data.
func Sum(a Algorithm, data []byte) Hash {
	hh := a.New()
	hh.Write(data)
	h := Hash{algo: a}
	hh.Sum(h.digest[:0])
	return h
}

// Parse parses "algo:digest", where the digest is nix32, base16 or base64
// (told apart by length, as Nix does), or an SRI string "algo-base64".
//
// Base64 is decoded as Nix's base64::decode does: up to the first '=' (what
// follows is ignored), no padding needed, leftover bits dropped; only the
// decoded length must match the algorithm. An SRI digest may therefore have
// any length that decodes to the digest size; a base64 digest after
// "algo:" must have the padded length ([base64.Encoding.EncodedLen]), which
// is how Nix tells it from base16 and nix32.
func Parse(s string) (Hash, error) {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		a, err := parseAlgorithm(s[:i], s)
		if err != nil {
			return Hash{}, err
		}
		return parseDigest(a, s[i+1:], s)
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		a, err := parseAlgorithm(s[:i], s)
		if err != nil {
			return Hash{}, err
		}
		return parseBase64(a, s[i+1:], s, "SRI")
	}
	return Hash{}, fmt.Errorf("%w %q: missing algorithm prefix", ErrInvalid, s)
}

func parseAlgorithm(name, whole string) (Algorithm, error) {
	if a := lookupAlgorithm(name); a != 0 {
		return a, nil
	}
	return 0, fmt.Errorf("%w %q: unknown algorithm %q", ErrInvalid, whole, name)
}

// ParseAs parses a hash of algorithm a: like Parse (the prefix must then
// name a), or a bare digest in nix32, base16 or base64, as Nix's
// Hash::parseAny with a known algorithm.
func ParseAs(a Algorithm, s string) (Hash, error) {
	if !a.IsValid() {
		return Hash{}, fmt.Errorf("%w: unknown algorithm", ErrInvalid)
	}
	if strings.ContainsAny(s, ":-") {
		h, err := Parse(s)
		if err != nil {
			return Hash{}, err
		}
		if h.algo != a {
			return Hash{}, fmt.Errorf("%w %q: algorithm is %s, want %s", ErrInvalid, s, h.algo, a)
		}
		return h, nil
	}
	return parseDigest(a, s, s)
}

func parseDigest(a Algorithm, d, whole string) (Hash, error) {
	h := Hash{algo: a}
	size := a.Size()
	var buf [2 * sha512.Size]byte // the longest digest, sha512 in base16, without allocating
	switch len(d) {
	case hex.EncodedLen(size):
		if _, err := hex.Decode(h.digest[:size], buf[:copy(buf[:], d)]); err != nil {
			return Hash{}, fmt.Errorf("%w %q: bad base16: %w", ErrInvalid, whole, err)
		}
	case nixbase32.EncodedLen(size):
		if _, err := nixbase32.Decode(h.digest[:size], buf[:copy(buf[:], d)]); err != nil {
			return Hash{}, fmt.Errorf("%w %q: %w", ErrInvalid, whole, err)
		}
	case base64.StdEncoding.EncodedLen(size):
		return parseBase64(a, d, whole, "base64")
	default:
		return Hash{}, fmt.Errorf("%w %q: %d characters is not a %s digest in base16, nix32 or base64", ErrInvalid, whole, len(d), a)
	}
	return h, nil
}

// parseBase64 decodes d by Nix's base64 rules and checks only the decoded
// length (hash.cc: "invalid SRI hash" / "invalid base-64 hash").
func parseBase64(a Algorithm, d, whole, form string) (Hash, error) {
	var buf [sha512.Size + 3]byte
	b, err := nixbase64.AppendDecode(buf[:0], d)
	if err != nil {
		return Hash{}, fmt.Errorf("%w %q: %s: %w", ErrInvalid, whole, form, err)
	}
	if len(b) != a.Size() {
		return Hash{}, fmt.Errorf("%w %q: %s digest decodes to %d bytes, %s needs %d", ErrInvalid, whole, form, len(b), a, a.Size())
	}
	h := Hash{algo: a}
	copy(h.digest[:], b)
	return h, nil
}

// Algorithm returns the hash's algorithm (0 for the zero Hash).
func (h Hash) Algorithm() Algorithm { return h.algo }

// IsZero reports whether h is the zero Hash.
func (h Hash) IsZero() bool { return h.algo == 0 }

// Bytes returns a copy of the digest.
func (h Hash) Bytes() []byte { return append([]byte(nil), h.digest[:h.algo.Size()]...) }

func (h Hash) prefixed(sep string, digest string) string {
	if h.IsZero() {
		return ""
	}
	return h.algo.String() + sep + digest
}

// String returns "algo:<nix32>", the form Nix writes in .narinfo files and
// fingerprints. The zero Hash prints as "".
func (h Hash) String() string { return h.prefixed(":", h.RawBase32()) }

// Base32 is the same as String.
func (h Hash) Base32() string { return h.String() }

// Base16 returns "algo:<lowercase hex>", the form of the store database.
func (h Hash) Base16() string { return h.prefixed(":", h.RawBase16()) }

// Base64 returns "algo:<base64>".
func (h Hash) Base64() string { return h.prefixed(":", h.RawBase64()) }

// SRI returns "algo-<base64>" (Subresource Integrity form).
func (h Hash) SRI() string { return h.prefixed("-", h.RawBase64()) }

// RawBase32 returns the digest in nix32 without the algorithm.
func (h Hash) RawBase32() string { return nixbase32.EncodeToString(h.digest[:h.algo.Size()]) }

// RawBase16 returns the digest in lowercase hex without the algorithm.
func (h Hash) RawBase16() string { return hex.EncodeToString(h.digest[:h.algo.Size()]) }

// RawBase64 returns the digest in padded standard base64 without the algorithm.
func (h Hash) RawBase64() string {
	return base64.StdEncoding.EncodeToString(h.digest[:h.algo.Size()])
}

// MarshalText returns the String form.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses any form Parse accepts.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// Hasher computes a Hash over the bytes written to it and counts them.
type Hasher struct {
	algo Algorithm
	h    hash.Hash
	n    int64
}

// NewHasher returns a Hasher for algorithm a.
func NewHasher(a Algorithm) *Hasher { return &Hasher{algo: a, h: a.New()} }

// Write adds p to the hash. It never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.h.Write(p)
}

// Len returns the number of bytes written so far.
func (h *Hasher) Len() int64 { return h.n }

// Sum appends the current digest to b, as hash.Hash does.
func (h *Hasher) Sum(b []byte) []byte { return h.h.Sum(b) }

// Reset resets the Hasher to its initial state.
func (h *Hasher) Reset() { h.h.Reset(); h.n = 0 }

// Size returns the digest size.
func (h *Hasher) Size() int { return h.h.Size() }

// BlockSize returns the underlying hash's block size.
func (h *Hasher) BlockSize() int { return h.h.BlockSize() }

// SumHash returns the current digest as a Hash.
func (h *Hasher) SumHash() Hash {
	out := Hash{algo: h.algo}
	h.h.Sum(out.digest[:0])
	return out
}
