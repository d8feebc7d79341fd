package signature

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/nixcache/nixcache/internal/regularfile"
)

// Modes nix-store --generate-binary-cache-key gives new key files (Nix 2.8
// sets umask 022 and creates the secret key with mode 0600).
const (
	SecretKeyFileMode fs.FileMode = 0o600
	PublicKeyFileMode fs.FileMode = 0o644
)

// MaxKeyFileSize bounds a key file: a key file holds "name:base64" (under
// 200 bytes); anything much larger is not one.
const MaxKeyFileSize = 64 << 10

// LoadSecretKeyFile reads a secret key file written by
// nix-store --generate-binary-cache-key (or [WriteSecretKeyFile]). The file
// holds "name:base64" with or without a trailing newline. It reads only a
// regular file of at most [MaxKeyFileSize] bytes, so a FIFO or a device
// named by mistake cannot block or exhaust it. Its errors contain neither
// key material nor path (a path may be a key pasted where a file name
// belongs: when path itself is a secret key the error wraps
// [ErrKeyAsFileName]); callers say which setting named the file. It does
// not check the file mode; call [CheckKeyFileMode] to warn about a readable
// key.
func LoadSecretKeyFile(path string) (SecretKey, error) {
	if _, err := ParseSecretKey(path); err == nil {
		return SecretKey{}, ErrKeyAsFileName
	}
	b, err := regularfile.Read(path, MaxKeyFileSize)
	if err != nil {
		return SecretKey{}, fmt.Errorf("signature: cannot read the secret key file: %w", err)
	}
	defer clear(b)
	k, err := ParseSecretKey(strings.TrimRight(string(b), "\n\r \t"))
	if err != nil {
		return SecretKey{}, err
	}
	return k, nil
}

// LoadPublicKeyFile reads a public key file written by
// nix-store --generate-binary-cache-key, with or without a trailing newline,
// with the same limits as [LoadSecretKeyFile]; its errors do not contain
// the path either, and wrap [ErrKeyAsFileName] when path is a secret key.
func LoadPublicKeyFile(path string) (PublicKey, error) {
	if _, err := ParseSecretKey(path); err == nil {
		return PublicKey{}, ErrKeyAsFileName
	}
	b, err := regularfile.Read(path, MaxKeyFileSize)
	if err != nil {
		return PublicKey{}, fmt.Errorf("signature: cannot read the public key file: %w", err)
	}
	k, err := ParsePublicKey(strings.TrimRight(string(b), "\n\r \t"))
	if err != nil {
		return PublicKey{}, err
	}
	return k, nil
}

// CheckKeyFileMode returns an error wrapping [ErrInsecureKeyFile] when the
// file at path grants any permission to group or others (mode & 0o077 != 0),
// and nil when only the owner can access it. Nix itself does not check; a
// caller is expected to log the error as a warning and carry on, or refuse
// to start, as it sees fit.
func CheckKeyFileMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("signature: check key file mode: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %#o", ErrInsecureKeyFile, path, m)
	}
	return nil
}

// WriteSecretKeyFile writes sk to a new file at path in the format of
// nix-store --generate-binary-cache-key: "name:base64" with no trailing
// newline, mode 0600 whatever the umask. Unlike Nix, it refuses to overwrite
// an existing file (the error wraps [fs.ErrExist]).
func WriteSecretKeyFile(path string, sk SecretKey) error {
	if sk.IsZero() {
		return fmt.Errorf("%w: write secret key file %s: zero key", ErrMalformed, path)
	}
	secret := []byte(sk.Secret())
	defer clear(secret)
	return writeNew(path, secret, SecretKeyFileMode)
}

// WritePublicKeyFile writes pk to a new file at path in the format of
// nix-store --generate-binary-cache-key: "name:base64" with no trailing
// newline, mode 0644 whatever the umask. It refuses to overwrite an existing
// file (the error wraps [fs.ErrExist]).
func WritePublicKeyFile(path string, pk PublicKey) error {
	if pk.IsZero() {
		return fmt.Errorf("%w: write public key file %s: zero key", ErrMalformed, path)
	}
	return writeNew(path, []byte(pk.String()), PublicKeyFileMode)
}

func writeNew(path string, data []byte, mode fs.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("signature: create key file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("signature: close key file %s: %w", path, cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	// Set the exact mode, as the umask may have removed bits from 0644.
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("signature: chmod key file %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("signature: write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("signature: sync key file %s: %w", path, err)
	}
	return nil
}
