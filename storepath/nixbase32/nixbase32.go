// Package nixbase32 implements Nix's base-32 encoding ("nix32"), the form of
// store path hash parts and of hashes in .narinfo files.
//
// Nix's base 32 is not RFC 4648: its alphabet is
// "0123456789abcdfghijklmnpqrsvwxyz" (no e, o, u or t), and it writes the
// most significant 5-bit group first, where bit b of the input is bit b%8 of
// byte b/8 (least significant bit first). An n-byte input encodes to
// ceil(8n/5) characters; the unused high bits of the first character must be
// zero, and decoding rejects inputs where they are not.
package nixbase32

import (
	"errors"
	"fmt"
)

// Alphabet is Nix's base-32 alphabet, in digit order.
const Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// ErrInvalid is wrapped by every decoding error.
var ErrInvalid = errors.New("nixbase32: invalid encoding")

var decodeMap = func() (m [256]byte) {
	for i := range m {
		m[i] = 0xff
	}
	for i := 0; i < len(Alphabet); i++ {
		m[Alphabet[i]] = byte(i)
	}
	return m
}()

// EncodedLen returns the length of the encoding of n bytes: ceil(8n/5).
func EncodedLen(n int) int {
	if n <= 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// DecodedLen returns the number of bytes that n characters decode to:
// floor(5n/8). Not every n is a valid encoded length; see [ValidLen].
func DecodedLen(n int) int {
	if n <= 0 {
		return 0
	}
	return n * 5 / 8
}

// ValidLen reports whether n characters can be the encoding of some input.
func ValidLen(n int) bool {
	return n >= 0 && EncodedLen(DecodedLen(n)) == n
}

// Is reports whether c is a character of the alphabet.
func Is(c byte) bool { return decodeMap[c] != 0xff }

// Encode writes the encoding of src to dst, which must have room for
// EncodedLen(len(src)) bytes.
func Encode(dst, src []byte) {
	n := EncodedLen(len(src))
	_ = dst[:n] // bounds check once
	for k := 0; k < n; k++ {
		b := (n - 1 - k) * 5
		i, j := b/8, uint(b%8)
		c := src[i] >> j
		if i+1 < len(src) {
			c |= src[i+1] << (8 - j)
		}
		dst[k] = Alphabet[c&0x1f]
	}
}

// EncodeToString returns the encoding of src.
func EncodeToString(src []byte) string {
	dst := make([]byte, EncodedLen(len(src)))
	Encode(dst, src)
	return string(dst)
}

// Decode decodes src into dst, which must have room for DecodedLen(len(src))
// bytes, and returns the number of bytes written. It rejects characters
// outside the alphabet, impossible lengths, and non-zero padding bits.
func Decode(dst, src []byte) (int, error) {
	n := DecodedLen(len(src))
	if !ValidLen(len(src)) {
		return 0, fmt.Errorf("%w: length %d is not the encoding of whole bytes", ErrInvalid, len(src))
	}
	if len(dst) < n {
		return 0, fmt.Errorf("nixbase32: destination too short: %d < %d", len(dst), n)
	}
	// The last character holds the 5 lowest bits: read backwards, filling
	// dst from its first (least significant) byte, 8 characters (5 bytes)
	// at a time, then the first len(src)%8 characters. decodeMap has 0xff
	// for a byte outside the alphabet, which sets bit 7 of bad.
	dst = dst[:n]
	var bad uint64
	k, o := len(src), 0
	for ; k >= 8 && o+5 <= n; k, o = k-8, o+5 {
		s := src[k-8 : k]
		d0, d1, d2, d3 := uint64(decodeMap[s[0]]), uint64(decodeMap[s[1]]), uint64(decodeMap[s[2]]), uint64(decodeMap[s[3]])
		d4, d5, d6, d7 := uint64(decodeMap[s[4]]), uint64(decodeMap[s[5]]), uint64(decodeMap[s[6]]), uint64(decodeMap[s[7]])
		bad |= d0 | d1 | d2 | d3 | d4 | d5 | d6 | d7
		v := d0<<35 | d1<<30 | d2<<25 | d3<<20 | d4<<15 | d5<<10 | d6<<5 | d7
		d := dst[o : o+5]
		d[0], d[1], d[2], d[3], d[4] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32)
	}
	var acc uint64
	bits := 0
	for k--; k >= 0; k-- {
		d := uint64(decodeMap[src[k]])
		bad |= d
		acc |= d << bits
		bits += 5
		if bits >= 8 && o < n {
			dst[o] = byte(acc)
			o++
			acc >>= 8
			bits -= 8
		}
	}
	// What is left of acc are the bits beyond n bytes: padding.
	if bad&0x80 != 0 || acc != 0 {
		return 0, decodeError(src)
	}
	return n, nil
}

// decodeError returns the error for src, whose length is valid but which
// has a byte outside the alphabet or non-zero padding bits (the high bits of
// its first character beyond the decoded length), whichever comes first.
func decodeError(src []byte) error {
	for k := range src {
		d := decodeMap[src[k]]
		if d == 0xff {
			return fmt.Errorf("%w: character %q at offset %d", ErrInvalid, src[k], k)
		}
		if k == 0 && d>>(5-(len(src)*5-DecodedLen(len(src))*8)) != 0 {
			return fmt.Errorf("%w: non-zero padding bits in %q", ErrInvalid, string(src)) // a copy: src does not escape
		}
	}
	panic("nixbase32: decodeError of a valid encoding")
}

// DecodeString returns the bytes encoded by s.
func DecodeString(s string) ([]byte, error) {
	dst := make([]byte, DecodedLen(len(s)))
	n, err := Decode(dst, []byte(s))
	if err != nil {
		return nil, err
	}
	return dst[:n], nil
}

// ValidateString returns an error unless s is a valid encoding.
func ValidateString(s string) error {
	var buf [64]byte
	var dst []byte
	if n := DecodedLen(len(s)); n > len(buf) {
		dst = make([]byte, n)
	} else {
		dst = buf[:n]
	}
	_, err := Decode(dst, []byte(s))
	return err
}
