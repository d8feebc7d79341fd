// Package nixbase64 decodes base64 the way Nix does (base64::decode in
// src/libutil/base-n.cc, base64Decode in Nix 2.8), for the packages that
// read Nix's hashes, keys and signatures.
//
// Nix's decoder is more lenient than encoding/base64: it reads the standard
// alphabet up to the first '=' and ignores the rest of the string, skips
// '\n', needs no padding, and drops leftover bits of an incomplete last
// group whatever their value. Only a character outside the alphabet before
// the first '=' is an error. Callers then check the decoded length, which is
// the only other thing Nix checks.
package nixbase64

import (
	"errors"
	"fmt"
)

// ErrInvalid is wrapped when a character before the first '=' is not in the
// standard base64 alphabet. The error gives its offset, never the character
// or the string, which may be a secret key.
var ErrInvalid = errors.New("invalid base64")

var decodeMap = func() (m [256]int8) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range m {
		m[i] = -1
	}
	for i := 0; i < len(alphabet); i++ {
		m[alphabet[i]] = int8(i)
	}
	return m
}()

// group[k][c] is the value of c as character k of a group of four, in
// place (bits 18-23 for the first), or 1<<24 for a byte outside the alphabet.
var group = func() (g [4][256]uint32) {
	for k := range g {
		for c, v := range decodeMap {
			if v < 0 {
				g[k][c] = 1 << 24
			} else {
				g[k][c] = uint32(v) << (18 - 6*k)
			}
		}
	}
	return g
}()

// AppendDecode appends the bytes s decodes to, by Nix's rules, to dst.
func AppendDecode(dst []byte, s string) ([]byte, error) {
	// Whole groups of four alphabet characters make three bytes; the first
	// group holding anything else ('=', '\n', a bad byte) and what follows
	// go through the general loop below.
	i := 0
	for ; len(s)-i >= 4; i += 4 {
		q := s[i : i+4]
		g := group[0][q[0]] | group[1][q[1]] | group[2][q[2]] | group[3][q[3]]
		if g > 0xffffff {
			break
		}
		dst = append(dst, byte(g>>16), byte(g>>8), byte(g))
	}
	var d uint32
	bits := 0
	for ; i < len(s); i++ {
		c := s[i]
		if c == '=' {
			break
		}
		if c == '\n' {
			continue
		}
		v := decodeMap[c]
		if v < 0 {
			return dst, fmt.Errorf("%w: unexpected character at offset %d", ErrInvalid, i)
		}
		d = d<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			dst = append(dst, byte(d>>bits))
		}
	}
	return dst, nil
}

// Decode returns the bytes s decodes to by Nix's rules.
func Decode(s string) ([]byte, error) {
	return AppendDecode(make([]byte, 0, len(s)*3/4), s)
}
