package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// A Location is where a backend keeps a cache, as the parser its scheme
// registered read it from a store URL: a directory for file://, a bucket,
// a key prefix and connection parameters for s3://.
type Location interface {
	// Open opens the backend at the location.
	Open(ctx context.Context) (Backend, error)
	// String renders the location and the backend's parameters as a store
	// URL, scheme included, that the same parser reads back to an equal
	// Location: "file:///srv/cache", "s3://bucket/team?region=eu-west-1".
	String() string
}

// ParseFunc parses a store URL's backend part: location is what follows
// "scheme://" up to "?", as written (percent-escapes intact, so that the
// backend can split it first), and params holds every parameter that is not
// a binary-cache parameter, percent-decoded. It must reject a parameter it
// does not know, and name the parameter or part that is wrong, never its
// value (a value may be a secret).
type ParseFunc func(location string, params map[string]string) (Location, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]ParseFunc{}
)

// ErrUnknownScheme is wrapped by ParseURL when no backend is registered
// for the URL's scheme.
var ErrUnknownScheme = errors.New("cache: no backend registered for store URL scheme")

// ErrInvalidKey is wrapped by backends when an object key is not a clean,
// relative, slash-separated path (empty, absolute, containing "." or ".."
// or empty segments, a backslash or a NUL byte).
var ErrInvalidKey = errors.New("cache: invalid object key")

// ErrSizeMismatch is wrapped by Backend.Put when the reader yields fewer or
// more bytes than the announced size; nothing is stored in that case.
var ErrSizeMismatch = errors.New("cache: object size mismatch")

// Register makes a backend available to ParseURL and Open under a URL
// scheme, the way database/sql drivers register: backend packages call it
// from init, so a program enables a backend by importing it (import _
// ".../cache/s3"). The backend owns its location and parameters: parse
// reads them. Register panics if parse is nil or the scheme is registered
// twice.
func Register(scheme string, parse ParseFunc) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if parse == nil {
		panic("cache: Register parse func is nil for scheme " + scheme)
	}
	if _, dup := registry[scheme]; dup {
		panic("cache: Register called twice for scheme " + scheme)
	}
	registry[scheme] = parse
}

// Schemes returns the registered URL schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	s := make([]string, 0, len(registry))
	for k := range registry {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// schemeParser returns the parser registered for scheme. For an
// unregistered scheme the error wraps ErrUnknownScheme and names the import
// that provides the backend.
func schemeParser(scheme string) (ParseFunc, error) {
	registryMu.RLock()
	parse := registry[scheme]
	registryMu.RUnlock()
	if parse != nil {
		return parse, nil
	}
	return nil, unknownScheme(scheme)
}

// unknownScheme is the error for an unregistered scheme; it matches
// ErrUnknownScheme and names the import that provides the backend.
type unknownScheme string

func (e unknownScheme) Error() string {
	switch e {
	case "file", "s3", "http":
		return fmt.Sprintf("unknown store type %q (import _ \"github.com/nixcache/nixcache/cache/%s\")", string(e), string(e))
	case "https":
		return fmt.Sprintf("unknown store type %q (import _ \"github.com/nixcache/nixcache/cache/http\")", string(e))
	}
	return fmt.Sprintf("unknown store type %q (nixcache has file://, s3://, http:// and https://)", string(e))
}

func (e unknownScheme) Is(target error) bool { return target == ErrUnknownScheme }

// ValidateKey checks that key is a valid object key: a non-empty relative
// slash-separated path with no empty, "." or ".." segments, no backslash and
// no NUL or other control byte. Keys of a Nix binary cache look like
// "nix-cache-info", "<hash>.narinfo" or "nar/<filehash>.nar.zst".
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("%w %q: absolute", ErrInvalidKey, key)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("%w %q: byte %q not allowed", ErrInvalidKey, key, c)
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w %q: empty path segment", ErrInvalidKey, key)
		case ".", "..":
			return fmt.Errorf("%w %q: %q segment", ErrInvalidKey, key, seg)
		}
	}
	return nil
}

// ExactReader returns a reader that yields the bytes of r and fails with an
// error wrapping ErrSizeMismatch if r ends before size bytes or holds more
// than size bytes. The excess is detected together with the last expected
// bytes, so a consumer that reads exactly size bytes (an HTTP request body
// with a Content-Length) still sees the error and aborts.
func ExactReader(r io.Reader, size int64) io.Reader {
	return &exactReader{r: r, left: size, size: size}
}

type exactReader struct {
	r          io.Reader
	left, size int64
	err        error
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if e.left == 0 {
		// Probe for excess bytes (when size is 0 or the caller reads on).
		e.err = e.probe()
		return 0, e.err
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	switch {
	case err == io.EOF && e.left > 0:
		e.err = fmt.Errorf("%w: reader ended after %d of %d bytes", ErrSizeMismatch, e.size-e.left, e.size)
		return n, e.err
	case err != nil && err != io.EOF:
		e.err = err
		return n, err
	}
	if e.left == 0 {
		e.err = e.probe()
		return n, e.err
	}
	return n, nil
}

func (e *exactReader) probe() error {
	var b [1]byte
	for range 100 {
		n, err := e.r.Read(b[:])
		if n > 0 {
			return fmt.Errorf("%w: reader has more than %d bytes", ErrSizeMismatch, e.size)
		}
		if err == io.EOF {
			return io.EOF
		}
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("cache: reader returned no data and no EOF after %d bytes", e.size)
}
