// Package storepath parses and validates Nix store paths.
//
// A store path is <store dir>/<hash part>-<name>, where the store directory
// is /nix/store unless NIX_STORE_DIR says otherwise, the hash part is 32
// characters of nix32 (see package nixbase32, 160 bits), and the name
// follows Nix's checkName rule (see [ValidateName]).
package storepath

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/nixcache/nixcache/storepath/nixbase32"
)

// HashPartLen is the length of a store path's hash part in characters.
const HashPartLen = 32

// MaxNameLen is the longest name Nix accepts (Nix's MaxPathLen, 211).
const MaxNameLen = 211

// ErrInvalid is wrapped by every error about a malformed store path or name.
var ErrInvalid = errors.New("invalid store path")

// Dir is a store directory, an absolute, clean path such as /nix/store.
// See [ValidateDir] for the rule.
type Dir string

// DefaultDir is Nix's default store directory.
const DefaultDir Dir = "/nix/store"

// DirFromEnv returns the store directory Nix would use: $NIX_STORE_DIR,
// cleaned, when it is set to a valid store directory (see [ValidateDir]),
// else DefaultDir.
func DirFromEnv() Dir {
	if d := os.Getenv("NIX_STORE_DIR"); d != "" && path.IsAbs(d) {
		if c := path.Clean(d); checkDir(c) == nil {
			return Dir(c)
		}
	}
	return DefaultDir
}

// String returns the directory as a string.
func (d Dir) String() string { return string(d) }

// ValidateDir checks a store directory: an absolute, clean path (Nix keeps
// its store directory canonical, and a binary cache's nix-cache-info
// StoreDir must equal it), other than "/", without white space, control
// characters, ';' or ','. Nix itself never has such bytes in its store
// directory in practice; we refuse them because a store path is written on
// one narinfo line and in the ';'- and ','-separated fingerprint that is
// signed, where they would let a value forge lines or fields.
func ValidateDir(d string) error {
	if err := checkDir(d); err != nil {
		return fmt.Errorf("storepath: store directory %q: %w", d, err)
	}
	return nil
}

// Validate checks d with [ValidateDir].
func (d Dir) Validate() error { return ValidateDir(string(d)) }

func checkDir(d string) error {
	if !path.IsAbs(d) {
		return fmt.Errorf("%w: store directory is not absolute", ErrInvalid)
	}
	if d == "/" {
		return fmt.Errorf("%w: store directory is /", ErrInvalid)
	}
	if err := checkDirBytes(d); err != nil {
		return err
	}
	if _, clean := splitClean(d); !clean {
		return fmt.Errorf("%w: store directory is not a clean path", ErrInvalid)
	}
	return nil
}

// checkDirBytes is the part of checkDir about single bytes.
func checkDirBytes(d string) error {
	for i := 0; i < len(d); i++ {
		switch c := d[i]; {
		case c <= ' ' || c == 0x7f:
			return fmt.Errorf("%w: store directory has control character or space %q at offset %d", ErrInvalid, c, i)
		case c == ';' || c == ',':
			return fmt.Errorf("%w: store directory has %q at offset %d", ErrInvalid, c, i)
		}
	}
	return nil
}

// splitClean reports whether the absolute path p is clean (path.Clean(p) ==
// p: no empty, "." or ".." element, no trailing '/' unless p is "/") and
// gives the offset of its last '/'.
func splitClean(p string) (lastSlash int, clean bool) {
	if p == "/" {
		return 0, true
	}
	for i := 0; ; {
		j := strings.IndexByte(p[i+1:], '/')
		elem := p[i+1:]
		if j >= 0 {
			elem = elem[:j]
		}
		if elem == "" || elem == "." || elem == ".." {
			return i, false
		}
		if j < 0 {
			return i, true
		}
		i += 1 + j
	}
}

// Parse parses abs, which must be a store path directly inside d.
func (d Dir) Parse(abs string) (Path, error) {
	p, err := Parse(abs)
	if err != nil {
		return "", err
	}
	if p.Dir() != d {
		return "", fmt.Errorf("storepath: %q: %w: not in store directory %s", abs, ErrInvalid, d)
	}
	return p, nil
}

// FromBase returns the store path d/base after validating d and base.
func (d Dir) FromBase(base string) (Path, error) {
	if err := d.Validate(); err != nil {
		return "", err
	}
	if err := ValidateBase(base); err != nil {
		return "", err
	}
	return Path(string(d) + "/" + base), nil
}

// Path is an absolute store path such as
// /nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432.
// Values made by Parse, Dir.Parse and Dir.FromBase are valid; the zero
// value "" means "no path".
type Path string

// Parse parses an absolute store path. The parent directory is taken as the
// store directory if it is a valid one (see [ValidateDir]); use Dir.Parse to
// insist on one.
func Parse(abs string) (Path, error) {
	if !path.IsAbs(abs) {
		return "", fmt.Errorf("storepath: %q: %w: not an absolute path", abs, ErrInvalid)
	}
	slash, clean := splitClean(abs)
	if !clean {
		return "", fmt.Errorf("storepath: %q: %w: not a clean path", abs, ErrInvalid)
	}
	if slash == 0 {
		return "", fmt.Errorf("storepath: %q: %w: no store directory", abs, ErrInvalid)
	}
	// The directory of a clean path is absolute, clean and not "/": only
	// its bytes remain to be checked (see checkDir).
	if err := checkDirBytes(abs[:slash]); err != nil {
		return "", fmt.Errorf("storepath: %q: %w", abs, err)
	}
	if err := checkBase(abs[slash+1:]); err != nil {
		return "", fmt.Errorf("storepath: %q: %w", abs, err)
	}
	return Path(abs), nil
}

// ValidateBase checks a store path's base name "<hash part>-<name>".
func ValidateBase(base string) error {
	if err := checkBase(base); err != nil {
		return fmt.Errorf("storepath: %q: %w", base, err)
	}
	return nil
}

func checkBase(base string) error {
	if len(base) < HashPartLen+2 {
		return fmt.Errorf("%w: too short for <32-char hash>-<name>", ErrInvalid)
	}
	if base[HashPartLen] != '-' {
		return fmt.Errorf("%w: character %d must be '-'", ErrInvalid, HashPartLen+1)
	}
	if !allIn(base[:HashPartLen], nix32Char) {
		for i := 0; i < HashPartLen; i++ {
			if !nixbase32.Is(base[i]) {
				return fmt.Errorf("%w: hash part has %q, not a nix32 character", ErrInvalid, base[i])
			}
		}
	}
	return checkName(base[HashPartLen+1:])
}

// ValidateName checks a store path name as Nix's checkName does: 1 to 211
// characters from [A-Za-z0-9+-._?=], not "." or "..", and not starting
// with a dash-component "." or ".." (".-x", "..-x").
func ValidateName(name string) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("storepath: name %q: %w", name, err)
	}
	return nil
}

func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalid)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: name has %d characters, at most %d allowed", ErrInvalid, len(name), MaxNameLen)
	}
	if name[0] == '.' {
		// Nix: a name may not be "." or "..", nor start with ".-" or "..-".
		if name == "." || name == ".." || strings.HasPrefix(name, ".-") || strings.HasPrefix(name, "..-") {
			return fmt.Errorf("%w: name may not be %q or start with \".-\" or \"..-\"", ErrInvalid, name)
		}
	}
	if !allIn(name, nameChar) {
		for i := 0; i < len(name); i++ {
			if c := name[i]; charClass[c]&nameChar == 0 {
				return fmt.Errorf("%w: name has illegal character %q at offset %d", ErrInvalid, c, i)
			}
		}
	}
	return nil
}

// Bits of charClass.
const (
	nameChar  = 1 << iota // [A-Za-z0-9+-._?=], allowed in a name
	nix32Char             // in nixbase32.Alphabet
)

var charClass = func() (t [256]uint8) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-._?=") {
		t[c] |= nameChar
	}
	for _, c := range []byte(nixbase32.Alphabet) {
		t[c] |= nix32Char
	}
	return t
}()

// allIn reports whether every byte of s has the class bit (4 bytes a step,
// without a branch per byte).
func allIn(s string, bit uint8) bool {
	ok := bit
	for ; len(s) >= 4; s = s[4:] {
		ok &= charClass[s[0]] & charClass[s[1]] & charClass[s[2]] & charClass[s[3]]
	}
	for i := 0; i < len(s); i++ {
		ok &= charClass[s[i]]
	}
	return ok != 0
}

// Dir returns the store directory the path is in.
func (p Path) Dir() Dir { return Dir(path.Dir(string(p))) }

// Base returns "<hash part>-<name>".
func (p Path) Base() string { return path.Base(string(p)) }

// HashPart returns the 32-character nix32 hash part, which names the
// path's .narinfo in a binary cache.
func (p Path) HashPart() string {
	b := p.Base()
	if len(b) < HashPartLen {
		return ""
	}
	return b[:HashPartLen]
}

// Name returns the part after "<hash part>-".
func (p Path) Name() string {
	b := p.Base()
	if len(b) <= HashPartLen+1 {
		return ""
	}
	return b[HashPartLen+1:]
}

// Digest returns the 20 bytes the hash part encodes.
func (p Path) Digest() []byte {
	d, err := nixbase32.DecodeString(p.HashPart())
	if err != nil {
		return nil
	}
	return d
}

// IsDerivation reports whether the path is a store derivation (".drv").
func (p Path) IsDerivation() bool { return strings.HasSuffix(string(p), ".drv") }

// String returns the absolute path.
func (p Path) String() string { return string(p) }

// Validate checks that p is a valid store path.
func (p Path) Validate() error {
	_, err := Parse(string(p))
	return err
}

// MarshalText returns the absolute path.
func (p Path) MarshalText() ([]byte, error) { return []byte(p), nil }

// UnmarshalText parses an absolute store path.
func (p *Path) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}
