// Package signature implements Nix's binary-cache signing keys and detached
// signatures.
//
// Nix writes all three in the form "name:base64": a secret key is the
// 64-byte ed25519 seed followed by the public key (the layout of
// [crypto/ed25519.PrivateKey]), a public key is 32 bytes, and a signature is
// the 64-byte ed25519 signature over the raw bytes of a fingerprint (no
// pre-hash). The fingerprint itself is built by package narinfo; this package
// only signs and verifies byte strings, so that narinfo can import it.
//
// Secret keys never print: String, GoString, Format and LogValue show the key
// name followed by "<redacted>". [SecretKey.Secret] is the one way to obtain
// the encoded secret, for writing a key file.
package signature

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Sentinel errors, for use with [errors.Is].
var (
	// ErrMalformed reports a key or signature that is not "name:base64" with
	// a non-empty name and the right number of decoded bytes.
	ErrMalformed = errors.New("malformed")
	// ErrUntrusted reports that no signature was made by a trusted key name,
	// which is how Nix decides a path is unsigned ("is not signed by any of
	// the keys in 'trusted-public-keys'").
	ErrUntrusted = errors.New("no signature by a trusted key")
	// ErrInvalidSignature reports a signature by a trusted key name that
	// does not verify over the fingerprint.
	ErrInvalidSignature = errors.New("signature does not verify")
	// ErrInsecureKeyFile reports a secret key file readable or writable by
	// group or others (see [CheckKeyFileMode]).
	ErrInsecureKeyFile = errors.New("secret key file is accessible by group or others")
)

const (
	// PublicKeySize is the decoded size of a Nix public key (ed25519).
	PublicKeySize = ed25519.PublicKeySize
	// SecretKeySize is the decoded size of a Nix secret key: seed || public key.
	SecretKeySize = ed25519.PrivateKeySize
	// SeedSize is the size of a bare ed25519 seed, which [ParseSecretKey]
	// also accepts (as niks3 does); Nix itself requires [SecretKeySize].
	SeedSize = ed25519.SeedSize
	// SignatureSize is the decoded size of a signature (libsodium's
	// crypto_sign_BYTES).
	SignatureSize = ed25519.SignatureSize
)

// PublicKey is a named ed25519 public key, written by Nix as
// "name:base64(32 bytes)" (the format of trusted-public-keys). It is
// comparable; the zero value is not a valid key.
type PublicKey struct {
	name string
	key  [PublicKeySize]byte
}

// SecretKey is a named ed25519 private key, written by Nix as
// "name:base64(64 bytes)" where the 64 bytes are seed || public key. Its
// String, GoString, Format and LogValue methods never reveal the key.
type SecretKey struct {
	name string
	priv [SecretKeySize]byte
}

// Signature is a detached ed25519 signature with the name of the key that
// made it, written by Nix as "name:base64(64 bytes)" (a narinfo "Sig:"
// value). It is comparable; the zero value is not a valid signature.
type Signature struct {
	name string
	sig  [SignatureSize]byte
}

// validName reports whether name can be a key name. Nix splits at the first
// ':' and only requires a non-empty name; we also refuse white space and
// control characters, which could not survive the space-separated
// trusted-public-keys setting or a narinfo line.
func validName(name string) error {
	if name == "" {
		return fmt.Errorf("empty key name: %w", ErrMalformed)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c == 0x7f || c == ':' {
			return fmt.Errorf("key name %q contains %q: %w", name, c, ErrMalformed)
		}
	}
	return nil
}

// split parses "name:base64" into the name and the decoded bytes. Padded and
// unpadded standard base64 are accepted.
func split(what, s string) (string, []byte, error) {
	name, b64, ok := strings.Cut(s, ":")
	if !ok {
		return "", nil, fmt.Errorf("signature: %s has no ':' between name and base64: %w", what, ErrMalformed)
	}
	if err := validName(name); err != nil {
		return "", nil, fmt.Errorf("signature: %s: %w", what, err)
	}
	enc := base64.StdEncoding
	if len(b64)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	data, err := enc.DecodeString(b64)
	if err != nil {
		return "", nil, fmt.Errorf("signature: %s %q: bad base64: %w (%w)", what, name, ErrMalformed, err)
	}
	return name, data, nil
}

// ParsePublicKey parses a public key in Nix's "name:base64" form, as found in
// trusted-public-keys and written by nix-store --generate-binary-cache-key.
// The key must decode to exactly 32 bytes.
func ParsePublicKey(s string) (PublicKey, error) {
	name, data, err := split("public key", s)
	if err != nil {
		return PublicKey{}, err
	}
	return NewPublicKey(name, data)
}

// ParsePublicKeys parses a white-space separated list of public keys, the
// syntax of Nix's trusted-public-keys setting.
func ParsePublicKeys(list string) ([]PublicKey, error) {
	var keys []PublicKey
	for i, f := range strings.Fields(list) {
		k, err := ParsePublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("signature: key %d of list: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// NewPublicKey returns a public key with the given name and ed25519 key.
func NewPublicKey(name string, key ed25519.PublicKey) (PublicKey, error) {
	if err := validName(name); err != nil {
		return PublicKey{}, fmt.Errorf("signature: public key: %w", err)
	}
	if len(key) != PublicKeySize {
		return PublicKey{}, fmt.Errorf("signature: public key %q is %d bytes, want %d: %w", name, len(key), PublicKeySize, ErrMalformed)
	}
	var k PublicKey
	k.name = name
	copy(k.key[:], key)
	return k, nil
}

// Name returns the key name, e.g. "cache.nixos.org-1".
func (k PublicKey) Name() string { return k.name }

// Key returns a copy of the raw ed25519 public key.
func (k PublicKey) Key() ed25519.PublicKey { return append(ed25519.PublicKey(nil), k.key[:]...) }

// IsZero reports whether k is the zero value (no key).
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// String returns the key in Nix's "name:base64" form (padded base64, as Nix
// writes it).
func (k PublicKey) String() string {
	return k.name + ":" + base64.StdEncoding.EncodeToString(k.key[:])
}

// MarshalText implements [encoding.TextMarshaler] with the form of String.
func (k PublicKey) MarshalText() ([]byte, error) {
	if k.IsZero() {
		return nil, fmt.Errorf("signature: marshal zero public key: %w", ErrMalformed)
	}
	return []byte(k.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParsePublicKey].
func (k *PublicKey) UnmarshalText(b []byte) error {
	v, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// Verify checks that sig was made by this key (same name) over the raw bytes
// of fingerprint. It returns nil on success, an error wrapping
// [ErrUntrusted] if sig names another key, and one wrapping
// [ErrInvalidSignature] if the ed25519 check fails.
func (k PublicKey) Verify(fingerprint string, sig Signature) error {
	if sig.name != k.name {
		return fmt.Errorf("signature: signature by key %q, not %q: %w", sig.name, k.name, ErrUntrusted)
	}
	if !ed25519.Verify(k.key[:], []byte(fingerprint), sig.sig[:]) {
		return fmt.Errorf("signature: signature by key %q: %w", k.name, ErrInvalidSignature)
	}
	return nil
}

// ParseSecretKey parses a secret key in Nix's "name:base64" form, as written
// by nix-store --generate-binary-cache-key. The key decodes to 64 bytes (seed
// || public key, which must match the seed); a bare 32-byte seed is also
// accepted. Surrounding white space (a trailing newline in a key file) is
// ignored, as Nix's base64 decoder skips newlines. Errors never contain the
// key material.
func ParseSecretKey(s string) (SecretKey, error) {
	name, data, err := split("secret key", strings.TrimSpace(s))
	if err != nil {
		// The error may quote only the name, never the base64.
		return SecretKey{}, err
	}
	defer clear(data)
	var priv ed25519.PrivateKey
	switch len(data) {
	case SecretKeySize:
		priv = ed25519.NewKeyFromSeed(data[:SeedSize])
		if string(priv[SeedSize:]) != string(data[SeedSize:]) {
			return SecretKey{}, fmt.Errorf("signature: secret key %q: public half does not match the seed: %w", name, ErrMalformed)
		}
	case SeedSize:
		priv = ed25519.NewKeyFromSeed(data)
	default:
		return SecretKey{}, fmt.Errorf("signature: secret key %q is %d bytes, want %d (or a %d-byte seed): %w", name, len(data), SecretKeySize, SeedSize, ErrMalformed)
	}
	var k SecretKey
	k.name = name
	copy(k.priv[:], priv)
	clear(priv)
	return k, nil
}

// NewSecretKey returns a secret key with the given name from an ed25519
// private key (64 bytes) or seed (32 bytes).
func NewSecretKey(name string, key []byte) (SecretKey, error) {
	if err := validName(name); err != nil {
		return SecretKey{}, fmt.Errorf("signature: secret key: %w", err)
	}
	var priv ed25519.PrivateKey
	switch len(key) {
	case SecretKeySize:
		priv = ed25519.NewKeyFromSeed(key[:SeedSize])
	case SeedSize:
		priv = ed25519.NewKeyFromSeed(key)
	default:
		return SecretKey{}, fmt.Errorf("signature: secret key %q is %d bytes, want %d or %d: %w", name, len(key), SecretKeySize, SeedSize, ErrMalformed)
	}
	var k SecretKey
	k.name = name
	copy(k.priv[:], priv)
	return k, nil
}

// GenerateKey makes a new key pair named name, reading entropy from rand (nil
// means crypto/rand), like nix-store --generate-binary-cache-key. Nix
// convention is to name keys after the cache with a serial, e.g.
// "cache.example.org-1".
func GenerateKey(name string, rand io.Reader) (SecretKey, PublicKey, error) {
	if err := validName(name); err != nil {
		return SecretKey{}, PublicKey{}, fmt.Errorf("signature: generate key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return SecretKey{}, PublicKey{}, fmt.Errorf("signature: generate key %q: %w", name, err)
	}
	var sk SecretKey
	sk.name = name
	copy(sk.priv[:], priv)
	clear(priv)
	// The public half of an ed25519 private key is pub.
	return sk, sk.PublicKey(), nil
}

// Name returns the key name.
func (k SecretKey) Name() string { return k.name }

// IsZero reports whether k is the zero value (no key).
func (k SecretKey) IsZero() bool { return k.name == "" && k.priv == [SecretKeySize]byte{} }

// PublicKey returns the public half, with the same name.
func (k SecretKey) PublicKey() PublicKey {
	var pk PublicKey
	pk.name = k.name
	copy(pk.key[:], k.priv[SeedSize:])
	return pk
}

// Sign signs the raw bytes of fingerprint (ed25519 is deterministic: the same
// key and fingerprint always give the same signature, as with libsodium).
// Signing with the zero key panics.
func (k SecretKey) Sign(fingerprint string) Signature {
	if k.IsZero() {
		panic("signature: Sign with zero SecretKey")
	}
	var s Signature
	s.name = k.name
	copy(s.sig[:], ed25519.Sign(ed25519.PrivateKey(k.priv[:]), []byte(fingerprint)))
	return s
}

// Secret returns the key in Nix's "name:base64(64 bytes)" form, without a
// trailing newline, exactly as nix-store --generate-binary-cache-key writes
// the secret key file. It is the only method that reveals the key.
func (k SecretKey) Secret() string {
	return k.name + ":" + base64.StdEncoding.EncodeToString(k.priv[:])
}

// String returns "name:<redacted>"; it never reveals the key.
func (k SecretKey) String() string { return k.name + ":<redacted>" }

// GoString returns a redacted Go-syntax form; it never reveals the key.
func (k SecretKey) GoString() string {
	return fmt.Sprintf("signature.SecretKey{name:%q, <redacted>}", k.name)
}

// Format implements [fmt.Formatter] so that every verb (%v, %+v, %x, %s...)
// prints the redacted String (or GoString for %#v).
func (k SecretKey) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, k.GoString())
		return
	}
	_, _ = io.WriteString(f, k.String())
}

// LogValue implements [slog.LogValuer] with the redacted String.
func (k SecretKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseSecretKey].
// There is deliberately no MarshalText.
func (k *SecretKey) UnmarshalText(b []byte) error {
	v, err := ParseSecretKey(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ParseSignature parses a signature in Nix's "name:base64(64 bytes)" form,
// the value of a narinfo "Sig:" line.
func ParseSignature(s string) (Signature, error) {
	name, data, err := split("signature", s)
	if err != nil {
		return Signature{}, err
	}
	return NewSignature(name, data)
}

// NewSignature returns a signature by the key named name with the given 64
// raw bytes.
func NewSignature(name string, sig []byte) (Signature, error) {
	if err := validName(name); err != nil {
		return Signature{}, fmt.Errorf("signature: %w", err)
	}
	if len(sig) != SignatureSize {
		return Signature{}, fmt.Errorf("signature: signature by %q is %d bytes, want %d: %w", name, len(sig), SignatureSize, ErrMalformed)
	}
	var s Signature
	s.name = name
	copy(s.sig[:], sig)
	return s, nil
}

// Name returns the name of the key that made the signature.
func (s Signature) Name() string { return s.name }

// Bytes returns a copy of the 64 raw signature bytes.
func (s Signature) Bytes() []byte { return append([]byte(nil), s.sig[:]...) }

// IsZero reports whether s is the zero value (no signature).
func (s Signature) IsZero() bool { return s == Signature{} }

// String returns the signature in Nix's "name:base64" form.
func (s Signature) String() string {
	return s.name + ":" + base64.StdEncoding.EncodeToString(s.sig[:])
}

// AppendText appends the String form to b without other allocations.
func (s Signature) AppendText(b []byte) ([]byte, error) {
	b = append(b, s.name...)
	b = append(b, ':')
	return base64.StdEncoding.AppendEncode(b, s.sig[:]), nil
}

// MarshalText implements [encoding.TextMarshaler] with the form of String.
func (s Signature) MarshalText() ([]byte, error) {
	if s.IsZero() {
		return nil, fmt.Errorf("signature: marshal zero signature: %w", ErrMalformed)
	}
	return s.AppendText(nil)
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseSignature].
func (s *Signature) UnmarshalText(b []byte) error {
	v, err := ParseSignature(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Verify reports whether any of sigs is a valid signature of fingerprint by
// one of the trusted keys, matching keys by name as Nix does. It returns nil
// if one is valid. Otherwise the error says why: it wraps
// [ErrInvalidSignature] when some signature carries a trusted key name but
// does not verify, and [ErrUntrusted] when no signature names a trusted key
// (including when sigs is empty).
func Verify(fingerprint string, sigs []Signature, trusted []PublicKey) error {
	var bad []string
	for _, s := range sigs {
		for _, k := range trusted {
			if k.name != s.name {
				continue
			}
			if ed25519.Verify(k.key[:], []byte(fingerprint), s.sig[:]) {
				return nil
			}
			bad = append(bad, s.name)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("signature: signature by key %s: %w", quoteList(bad), ErrInvalidSignature)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("signature: no signatures: %w", ErrUntrusted)
	}
	names := make([]string, len(sigs))
	for i, s := range sigs {
		names[i] = s.name
	}
	tn := make([]string, len(trusted))
	for i, k := range trusted {
		tn[i] = k.name
	}
	return fmt.Errorf("signature: signed by %s, trusted keys are %s: %w", quoteList(names), quoteList(tn), ErrUntrusted)
}

func quoteList(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", x)
	}
	return b.String()
}
