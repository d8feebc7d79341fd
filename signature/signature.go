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
// The base64 is read as Nix's base64::decode reads it: up to the first '='
// (the rest is ignored), padding optional, '\n' skipped, leftover bits
// dropped. A signature is parsed as leniently as Nix's Signature::parse: any
// non-empty name without ':' and any non-empty data; its length is checked
// only when a trusted key verifies it. Key names are held to a stricter rule
// (see [ParsePublicKey]) because they end up in settings and narinfo lines
// that we write.
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

	"github.com/nixcache/nixcache/internal/nixbase64"
)

// Sentinel errors, for use with [errors.Is]. Like archive/tar's, they carry
// the package prefix, and the errors wrapping them start with their text.
var (
	// ErrMalformed reports a key or signature that is not "name:base64" with
	// a valid name and the right number of decoded bytes.
	ErrMalformed = errors.New("signature: malformed")
	// ErrUntrusted reports that no signature was made by a trusted key name,
	// which is how Nix decides a path is unsigned ("is not signed by any of
	// the keys in 'trusted-public-keys'").
	ErrUntrusted = errors.New("signature: no signature by a trusted key")
	// ErrInvalidSignature reports a signature by a trusted key name that
	// does not verify over the fingerprint.
	ErrInvalidSignature = errors.New("signature: signature does not verify")
	// ErrInsecureKeyFile reports a secret key file readable or writable by
	// group or others (see [CheckKeyFileMode]).
	ErrInsecureKeyFile = errors.New("signature: secret key file is accessible by group or others")
	// ErrKeyAsFileName reports key material given where the name of a key
	// file belongs (e.g. --secret-key "$(cat key.sec)"); the error never
	// repeats it.
	ErrKeyAsFileName = errors.New("signature: a key itself, not the name of a key file")
)

// MaxChecksPerKey bounds the ed25519 checks [Verify] makes for one trusted
// key: it checks at most this many distinct signatures carrying the key's
// name and ignores the rest. Identical Sig lines cost one check. Ed25519 as
// Nix uses it (libsodium) is deterministic, so a key makes exactly one
// signature per fingerprint; several distinct ones under one name come only
// from re-keying under the same name. Without the bound a narinfo of
// thousands of Sig lines naming a trusted key costs a check each.
const MaxChecksPerKey = 16

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

// Signature is a detached signature with the name of the key that made it,
// written by Nix as "name:base64" (a narinfo "Sig:" value). Like Nix's
// Signature it holds any non-empty data; only a valid one is 64 bytes of
// ed25519. It is comparable; the zero value is not a valid signature.
type Signature struct {
	name string
	sig  string // the raw bytes
}

// validKeyName reports whether name can be a key's name. Nix splits at the
// first ':' and only requires a non-empty name; for keys we also refuse
// white space and control characters, which could not survive the
// space-separated trusted-public-keys setting or the narinfo line a
// signature made with the key is written on. quote says whether the error
// may quote the name (not for secret keys: a mistyped key file may hold
// key material before its first ':').
func validKeyName(name string, quote bool) error {
	if name == "" {
		return fmt.Errorf("%w: empty key name", ErrMalformed)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c == 0x7f || c == ':' {
			if !quote {
				return fmt.Errorf("%w: key name contains %q at offset %d", ErrMalformed, c, i)
			}
			return fmt.Errorf("%w: key name %q contains %q", ErrMalformed, name, c)
		}
	}
	return nil
}

// split parses "name:base64" (Nix's parseColonBase64) into the name and the
// decoded bytes, base64 read by Nix's rules, appended to buf (give it room
// for them: a secret key must not be left behind in a grown-out array).
// Errors name what but quote nothing of s.
func split(what, s string, buf []byte) (string, []byte, error) {
	name, b64, ok := strings.Cut(s, ":")
	if !ok {
		return "", nil, fmt.Errorf("%w: %s has no ':' between name and base64", ErrMalformed, what)
	}
	if name == "" {
		return "", nil, fmt.Errorf("%w: %s: empty key name", ErrMalformed, what)
	}
	data, err := nixbase64.AppendDecode(buf, b64)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return name, data, nil
}

// ParsePublicKey parses a public key in Nix's "name:base64" form, as found in
// trusted-public-keys and written by nix-store --generate-binary-cache-key.
// The key must decode to exactly 32 bytes, and the name must not contain
// white space or control characters (stricter than Nix, which could not
// read such a name back from trusted-public-keys anyway).
func ParsePublicKey(s string) (PublicKey, error) {
	name, data, err := split("public key", s, make([]byte, 0, PublicKeySize))
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
			return nil, fmt.Errorf("key %d of list: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// NewPublicKey returns a public key with the given name and ed25519 key.
func NewPublicKey(name string, key ed25519.PublicKey) (PublicKey, error) {
	if err := validKeyName(name, true); err != nil {
		return PublicKey{}, fmt.Errorf("public key: %w", err)
	}
	if len(key) != PublicKeySize {
		return PublicKey{}, fmt.Errorf("%w: public key %q is %d bytes, want %d", ErrMalformed, name, len(key), PublicKeySize)
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
		return nil, fmt.Errorf("%w: marshal zero public key", ErrMalformed)
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
		return fmt.Errorf("%w: signature by key %q, not %q", ErrUntrusted, sig.name, k.name)
	}
	return k.check(fingerprint, sig)
}

// ed25519Verify is ed25519.Verify; tests count the calls.
var ed25519Verify = ed25519.Verify

// check verifies sig, whose name is k's, as Nix's verifyDetachedAnon: data
// that is not 64 bytes is an invalid signature.
func (k PublicKey) check(fingerprint string, sig Signature) error {
	if len(sig.sig) != SignatureSize {
		return fmt.Errorf("%w: signature by key %q is %d bytes, want %d", ErrInvalidSignature, k.name, len(sig.sig), SignatureSize)
	}
	if !ed25519Verify(k.key[:], []byte(fingerprint), []byte(sig.sig)) {
		return fmt.Errorf("%w: signature by key %q", ErrInvalidSignature, k.name)
	}
	return nil
}

// ParseSecretKey parses a secret key in Nix's "name:base64" form, as written
// by nix-store --generate-binary-cache-key. The key decodes to 64 bytes (seed
// || public key, which must match the seed); a bare 32-byte seed is also
// accepted. Surrounding white space (a trailing newline in a key file) is
// ignored, as Nix's base64 decoder skips newlines. Errors never contain the
// key material: they quote neither the base64 nor a name that is not a
// valid key name.
func ParseSecretKey(s string) (SecretKey, error) {
	s = strings.TrimSpace(s)
	name, data, err := split("secret key", s, make([]byte, 0, len(s)*3/4))
	if err != nil {
		return SecretKey{}, err
	}
	defer clear(data)
	return NewSecretKey(name, data)
}

// NewSecretKey returns a secret key with the given name from an ed25519
// private key (64 bytes: seed || public key, the public half matching the
// seed) or a bare 32-byte seed. Errors never contain the key material.
func NewSecretKey(name string, key []byte) (SecretKey, error) {
	if err := validKeyName(name, false); err != nil {
		return SecretKey{}, fmt.Errorf("secret key: %w", err)
	}
	var priv ed25519.PrivateKey
	switch len(key) {
	case SecretKeySize:
		priv = ed25519.NewKeyFromSeed(key[:SeedSize])
		if string(priv[SeedSize:]) != string(key[SeedSize:]) {
			clear(priv)
			return SecretKey{}, fmt.Errorf("%w: secret key %q: public half does not match the seed", ErrMalformed, name)
		}
	case SeedSize:
		priv = ed25519.NewKeyFromSeed(key)
	default:
		return SecretKey{}, fmt.Errorf("%w: secret key %q is %d bytes, want %d (or a %d-byte seed)", ErrMalformed, name, len(key), SecretKeySize, SeedSize)
	}
	var k SecretKey
	k.name = name
	copy(k.priv[:], priv)
	clear(priv)
	return k, nil
}

// GenerateKey makes a new key pair named name, reading entropy from rand (nil
// means crypto/rand), like nix-store --generate-binary-cache-key. Nix
// convention is to name keys after the cache with a serial, e.g.
// "cache.example.org-1".
func GenerateKey(name string, rand io.Reader) (SecretKey, PublicKey, error) {
	if err := validKeyName(name, true); err != nil {
		return SecretKey{}, PublicKey{}, fmt.Errorf("generate key: %w", err)
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
	return Signature{name: k.name, sig: string(ed25519.Sign(ed25519.PrivateKey(k.priv[:]), []byte(fingerprint)))}
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

// ParseSignature parses a signature in Nix's "name:base64" form, the value
// of a narinfo "Sig:" line, as Nix's Signature::parse does: the name is
// everything before the first ':' and must not be empty, the data is
// decoded by Nix's base64 rules and must not be empty. Its length (64 for a
// valid ed25519 signature) is checked only by [Verify], so a narinfo
// carrying a malformed signature by some other key still reads, as in Nix.
func ParseSignature(s string) (Signature, error) {
	var buf [SignatureSize]byte // the raw bytes are copied into the Signature
	name, data, err := split("signature", s, buf[:0])
	if err != nil {
		return Signature{}, err
	}
	return NewSignature(name, data)
}

// NewSignature returns a signature by the key named name with the given raw
// bytes. As with [ParseSignature], name must be non-empty and free of ':'
// and sig must be non-empty.
func NewSignature(name string, sig []byte) (Signature, error) {
	if name == "" {
		return Signature{}, fmt.Errorf("%w: signature: empty key name", ErrMalformed)
	}
	if strings.IndexByte(name, ':') >= 0 {
		return Signature{}, fmt.Errorf("%w: signature: key name %q contains ':'", ErrMalformed, name)
	}
	if len(sig) == 0 {
		return Signature{}, fmt.Errorf("%w: signature by %q is empty", ErrMalformed, name)
	}
	return Signature{name: name, sig: string(sig)}, nil
}

// Name returns the name of the key that made the signature. It may hold any
// byte but ':' (Nix allows that); a narinfo writer must refuse line breaks.
func (s Signature) Name() string { return s.name }

// Bytes returns a copy of the raw signature bytes (64 for a valid one).
func (s Signature) Bytes() []byte { return []byte(s.sig) }

// IsZero reports whether s is the zero value (no signature).
func (s Signature) IsZero() bool { return s == Signature{} }

// String returns the signature in Nix's "name:base64" form (padded base64,
// as Nix writes it).
func (s Signature) String() string {
	b, _ := s.AppendText(make([]byte, 0, len(s.name)+1+base64.StdEncoding.EncodedLen(len(s.sig))))
	return string(b)
}

// AppendText appends the String form to b without other allocations.
func (s Signature) AppendText(b []byte) ([]byte, error) {
	b = append(b, s.name...)
	b = append(b, ':')
	return base64.StdEncoding.AppendEncode(b, []byte(s.sig)), nil
}

// MarshalText implements [encoding.TextMarshaler] with the form of String.
func (s Signature) MarshalText() ([]byte, error) {
	if s.IsZero() {
		return nil, fmt.Errorf("%w: marshal zero signature", ErrMalformed)
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
// does not verify (including one that is not 64 bytes), and [ErrUntrusted]
// when no signature names a trusted key (including when sigs is empty).
// Signatures by other keys are never looked at, whatever their length.
//
// The work is bounded: repeated signatures are checked once, and at most
// [MaxChecksPerKey] distinct signatures are checked per trusted key.
func Verify(fingerprint string, sigs []Signature, trusted []PublicKey) error {
	var (
		bad     []string // trusted key names with a signature that failed
		lastErr error
		capped  bool
	)
	for _, k := range trusted {
		var checked []string // distinct signature data checked for k
		failed := false
	sigs:
		for _, s := range sigs {
			if s.name != k.name {
				continue
			}
			for _, c := range checked {
				if c == s.sig {
					continue sigs
				}
			}
			if len(checked) == MaxChecksPerKey {
				capped = true
				break
			}
			checked = append(checked, s.sig)
			err := k.check(fingerprint, s)
			if err == nil {
				return nil
			}
			lastErr, failed = err, true
		}
		if failed {
			bad = append(bad, k.name)
		}
	}
	switch {
	case len(bad) == 1 && !capped:
		return lastErr
	case len(bad) > 0:
		msg := ""
		if capped {
			msg = fmt.Sprintf(" (checked the first %d distinct signatures per key)", MaxChecksPerKey)
		}
		return fmt.Errorf("%w: signatures by key %s%s", ErrInvalidSignature, quoteList(bad), msg)
	case len(sigs) == 0:
		return fmt.Errorf("%w: no signatures", ErrUntrusted)
	}
	var names []string
	seen := make(map[string]bool)
	for _, s := range sigs {
		if !seen[s.name] {
			seen[s.name] = true
			names = append(names, s.name)
		}
	}
	tn := make([]string, len(trusted))
	for i, k := range trusted {
		tn[i] = k.name
	}
	return fmt.Errorf("%w: signed by %s, trusted keys are %s", ErrUntrusted, quoteList(names), quoteList(tn))
}

// quoteList quotes at most 8 names, saying how many more there are.
func quoteList(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, x := range xs {
		if i == 8 {
			fmt.Fprintf(&b, " and %d more", len(xs)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", x)
	}
	return b.String()
}
