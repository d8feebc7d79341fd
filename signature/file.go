package signature

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Modes nix-store --generate-binary-cache-key gives new key files (Nix 2.8
// sets umask 022 and creates the secret key with mode 0600).
const (
	SecretKeyFileMode fs.FileMode = 0o600
	PublicKeyFileMode fs.FileMode = 0o644
)

// LoadSecretKeyFile reads a secret key file written by
// nix-store --generate-binary-cache-key (or [WriteSecretKeyFile]). The file
// holds "name:base64" with or without a trailing newline. Errors name the
// file but never contain key material. It does not check the file mode;
// call [CheckKeyFileMode] to warn about a readable key.
func LoadSecretKeyFile(path string) (SecretKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SecretKey{}, fmt.Errorf("signature: load secret key: %w", err)
	}
	defer clear(b)
	k, err := ParseSecretKey(string(b))
	if err != nil {
		return SecretKey{}, fmt.Errorf("secret key file %s: %w", path, err)
	}
	return k, nil
}

// LoadPublicKeyFile reads a public key file written by
// nix-store --generate-binary-cache-key, with or without a trailing newline.
func LoadPublicKeyFile(path string) (PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PublicKey{}, fmt.Errorf("signature: load public key: %w", err)
	}
	k, err := ParsePublicKey(strings.TrimRight(string(b), "\n\r \t"))
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key file %s: %w", path, err)
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
