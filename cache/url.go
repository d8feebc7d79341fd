package cache

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nixcache/nixcache/cache/compress"
)

// ErrBadURL matches (with errors.Is) every error ParseURL returns.
var ErrBadURL = errors.New("cache: invalid store URL")

// URLError is the error ParseURL returns: what is wrong with which URL, e.g.
// `cache: store URL "s3://b?regoin=x": unknown parameter "regoin"`.
type URLError struct {
	URL string // the URL as given
	Err error  // what is wrong, naming the parameter or part
}

func (e *URLError) Error() string { return fmt.Sprintf("cache: store URL %q: %v", e.URL, e.Err) }

// Unwrap returns the underlying error.
func (e *URLError) Unwrap() error { return e.Err }

// Is reports whether target is ErrBadURL.
func (e *URLError) Is(target error) bool { return target == ErrBadURL }

// nixOnlyCompressions are compression names Nix accepts (through libarchive)
// that nixcache does not write.
var nixOnlyCompressions = []string{"br", "bzip2", "gzip", "lz4", "lzip", "lzop", "grzip", "lrzip", "compress"}

// unsupportedParams are binary-cache store parameters Nix knows but nixcache
// does not implement; naming one is an error rather than a silent no-op.
var unsupportedParams = []string{
	"narinfo-compression", "ls-compression", "log-compression",
	"index-debug-info", "local-nar-cache", "trusted", "system-features",
	"path-info-cache-size", "real", "state", "log",
}

// builtinParams lists the backend-specific parameters of the schemes nixcache
// ships, so that ParseURL can reject a misspelt parameter even when the
// backend package is not linked in. A scheme registered with Register adds to
// this with its own parameter names.
var builtinParams = map[string][]string{
	"file": {},
	"s3": {
		"region", "endpoint", "profile", "addressing-style", "scheme",
		"storage-class", "multipart-chunk-size", "buffer-size", "retry-attempts", "stall-timeout",
	},
}

// URL is a parsed Nix store URL such as "file:///srv/cache?compression=xz" or
// "s3://bucket/prefix?region=eu-west-1&secret-key=/etc/nix/key.sec".
//
// Parameters follow Nix's binary-cache store settings: the same names, the
// same value syntax (booleans are true/yes/1 or false/no/0, integers are
// decimal) and percent-decoding of values. Unlike Nix, which only warns about
// an unknown setting, ParseURL rejects one, naming it.
type URL struct {
	// Scheme is the store type: "file", "s3" or a scheme added by Register.
	Scheme string
	// Path is the cache directory of a file:// store: absolute and cleaned,
	// as Nix requires ("file://relative" is not a store Nix can open).
	Path string
	// Bucket is the bucket of an s3:// store (the URL's host part).
	Bucket string
	// Prefix is the key prefix inside the bucket, from the URL path, without
	// leading or trailing slashes; "" means the bucket root.
	Prefix string
	// Params holds the backend-specific parameters (e.g. region, endpoint),
	// percent-decoded, for the backend to validate and use.
	Params map[string]string

	// Compression is the NAR compression: zstd (the default), xz or none.
	Compression string
	// CompressionLevel is the codec level; -1 (the default) means the
	// codec's own default, as in Nix.
	CompressionLevel int
	// ParallelCompression lets the compressor use several cores.
	ParallelCompression bool
	// SecretKeys are the paths of signing key files, from every secret-key
	// parameter and the comma-separated secret-keys parameter, in order.
	SecretKeys []string
	// WriteNARListing asks for a <hash>.ls file listing each NAR.
	WriteNARListing bool
	// Priority is the cache priority advertised in nix-cache-info (lower is
	// preferred); 0 means unset, as in Nix.
	Priority int
	// WantMassQuery is advertised in nix-cache-info (WantMassQuery: 1).
	WantMassQuery bool
}

// ParseURL parses a store URL the way Nix users write them:
// "file:///absolute/dir" or "s3://bucket[/prefix]", each with optional
// "?name=value&..." parameters. Errors wrap ErrBadURL and name the offending
// parameter or part.
func ParseURL(s string) (*URL, error) {
	bad := func(format string, args ...any) error {
		return &URLError{URL: s, Err: fmt.Errorf(format, args...)}
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme == "" {
		return nil, bad("missing scheme (want e.g. file:///dir or s3://bucket)")
	}
	if scheme != strings.ToLower(scheme) {
		return nil, bad("scheme %q must be lower case", scheme)
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		return nil, bad("fragment %q not allowed", rest[i:])
	}
	loc, query, _ := strings.Cut(rest, "?")
	u := &URL{
		Scheme:           scheme,
		Params:           map[string]string{},
		Compression:      compress.Default,
		CompressionLevel: -1,
	}
	known, ok := schemeParams(scheme)
	if !ok {
		return nil, bad("unknown store type %q (nixcache supports file:// and s3://)", scheme)
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		rawName, rawValue, hasValue := strings.Cut(kv, "=")
		name, err := url.PathUnescape(rawName)
		if err != nil {
			return nil, bad("parameter %q: %v", rawName, err)
		}
		value, err := url.PathUnescape(rawValue)
		if err != nil {
			return nil, bad("parameter %q: value %q: %v", name, rawValue, err)
		}
		if !hasValue {
			return nil, bad("parameter %q has no value (want %s=VALUE)", name, name)
		}
		if seen[name] && name != "secret-key" {
			return nil, bad("parameter %q given twice", name)
		}
		seen[name] = true
		if err := u.set(name, value, known); err != nil {
			return nil, bad("%w", err)
		}
	}
	switch scheme {
	case "file":
		if !strings.HasPrefix(loc, "/") {
			return nil, bad("file:// store needs an absolute path (file:///dir), got %q", loc)
		}
		p, err := url.PathUnescape(loc)
		if err != nil {
			return nil, bad("path %q: %v", loc, err)
		}
		u.Path = path.Clean(p)
	case "s3":
		bucket, prefix, _ := strings.Cut(loc, "/")
		if err := validateBucket(bucket); err != nil {
			return nil, bad("%w", err)
		}
		u.Bucket = bucket
		p, err := url.PathUnescape(prefix)
		if err != nil {
			return nil, bad("prefix %q: %v", prefix, err)
		}
		p = strings.Trim(p, "/")
		if p != "" {
			if err := ValidateKey(p); err != nil {
				return nil, bad("prefix %q: %v", p, err)
			}
		}
		u.Prefix = p
	default:
		p, err := url.PathUnescape(loc)
		if err != nil {
			return nil, bad("location %q: %v", loc, err)
		}
		u.Path = p
	}
	return u, nil
}

func (u *URL) set(name, value string, known []string) error {
	switch name {
	case "compression":
		switch value {
		case compress.Zstd, compress.XZ, compress.None:
			u.Compression = value
		default:
			if slices.Contains(nixOnlyCompressions, value) {
				return fmt.Errorf("parameter %q: compression %q is valid in Nix but not written by nixcache (use zstd, xz or none)", name, value)
			}
			return fmt.Errorf("parameter %q: unknown compression %q (use zstd, xz or none)", name, value)
		}
	case "compression-level":
		n, err := parseInt(name, value)
		if err != nil {
			return err
		}
		u.CompressionLevel = n
	case "priority":
		n, err := parseInt(name, value)
		if err != nil {
			return err
		}
		u.Priority = n
	case "parallel-compression", "write-nar-listing", "want-mass-query":
		b, err := ParseBool(name, value)
		if err != nil {
			return err
		}
		switch name {
		case "parallel-compression":
			u.ParallelCompression = b
		case "write-nar-listing":
			u.WriteNARListing = b
		default:
			u.WantMassQuery = b
		}
	case "secret-key":
		if value == "" {
			return fmt.Errorf("parameter %q: empty key file path", name)
		}
		u.SecretKeys = append(u.SecretKeys, value)
	case "secret-keys":
		for _, k := range strings.Split(value, ",") {
			if k = strings.TrimSpace(k); k != "" {
				u.SecretKeys = append(u.SecretKeys, k)
			}
		}
	default:
		if slices.Contains(known, name) {
			u.Params[name] = value
			return nil
		}
		if slices.Contains(unsupportedParams, name) {
			return fmt.Errorf("parameter %q is a Nix setting nixcache does not support", name)
		}
		return fmt.Errorf("unknown parameter %q", name)
	}
	return nil
}

// ParseBool parses a boolean store parameter with Nix's syntax: "true",
// "yes" or "1" for true, "false", "no" or "0" for false. Anything else is an
// error naming the parameter, like Nix's "Boolean setting 'x' has invalid
// value 'y'".
func ParseBool(name, value string) (bool, error) {
	switch value {
	case "true", "yes", "1":
		return true, nil
	case "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("parameter %q: invalid boolean %q (want true or false)", name, value)
}

// parseInt parses a decimal integer parameter as Nix's string2Int does.
func parseInt(name, value string) (int, error) {
	n, err := strconv.Atoi(value)
	if err != nil {
		return 0, fmt.Errorf("parameter %q: invalid integer %q", name, value)
	}
	return n, nil
}

// validateBucket checks an S3 bucket name loosely: 3 to 63 characters of
// letters, digits, '.', '-' and '_', starting and ending with a letter or
// digit (the strict AWS rules forbid upper case and '_', other S3 servers
// allow them).
func validateBucket(b string) error {
	if b == "" {
		return errors.New("missing bucket name (want s3://bucket)")
	}
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters", b)
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !alnum(c) && c != '.' && c != '-' && c != '_' {
			return fmt.Errorf("bucket name %q: invalid character %q", b, c)
		}
	}
	if !alnum(b[0]) || !alnum(b[len(b)-1]) {
		return fmt.Errorf("bucket name %q must start and end with a letter or digit", b)
	}
	if strings.Contains(b, "..") {
		return fmt.Errorf("bucket name %q must not contain \"..\"", b)
	}
	return nil
}

// String renders the URL back in Nix's syntax with parameters sorted by name.
// Only non-default cache options are written. ParseURL(u.String()) gives an
// equal URL.
func (u *URL) String() string {
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteString("://")
	switch u.Scheme {
	case "s3":
		b.WriteString(u.Bucket)
		if u.Prefix != "" {
			b.WriteString("/")
			b.WriteString(escapePath(u.Prefix))
		}
	default:
		b.WriteString(escapePath(u.Path))
	}
	var params []string
	add := func(k, v string) { params = append(params, escapeQuery(k)+"="+escapeQuery(v)) }
	for k, v := range u.Params {
		add(k, v)
	}
	if u.Compression != "" && u.Compression != compress.Default {
		add("compression", u.Compression)
	}
	if u.CompressionLevel != -1 {
		add("compression-level", strconv.Itoa(u.CompressionLevel))
	}
	if u.ParallelCompression {
		add("parallel-compression", "true")
	}
	if u.WriteNARListing {
		add("write-nar-listing", "true")
	}
	if u.WantMassQuery {
		add("want-mass-query", "true")
	}
	if u.Priority != 0 {
		add("priority", strconv.Itoa(u.Priority))
	}
	sort.Strings(params)
	for _, k := range u.SecretKeys {
		add("secret-key", k)
	}
	if len(params) > 0 {
		b.WriteString("?")
		b.WriteString(strings.Join(params, "&"))
	}
	return b.String()
}

func escapePath(p string) string {
	return strings.ReplaceAll(url.PathEscape(p), "%2F", "/")
}

func escapeQuery(s string) string {
	// url.QueryEscape turns ' ' into '+', which Nix does not decode.
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
