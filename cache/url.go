package cache

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nixcache/nixcache/cache/compress"
)

// ErrBadURL matches (with errors.Is) every error ParseURL returns.
var ErrBadURL = errors.New("cache: invalid store URL")

// URLError is the error ParseURL returns: what is wrong with which URL, e.g.
// `cache: store URL "s3://b?regoin=***": unknown parameter "regoin"`. It
// never holds a value that may be a secret: URL has every parameter value
// and any user information replaced by "***", and Err names parameters, not
// their values (nor a name no parameter could have, which may be a piece of
// a password pasted unescaped).
type URLError struct {
	URL string // the URL as given, redacted
	Err error  // what is wrong, naming the parameter or part
}

func (e *URLError) Error() string { return fmt.Sprintf("cache: store URL %q: %v", e.URL, e.Err) }

// Unwrap returns the underlying error.
func (e *URLError) Unwrap() error { return e.Err }

// Is reports whether target is ErrBadURL.
func (e *URLError) Is(target error) bool { return target == ErrBadURL }

// redact returns the store URL s with the value of every parameter and any
// user information ("user:password@") replaced by "***", so that an error
// can show which URL and which parameters it is about without repeating a
// secret (a key pasted where a key file belongs, credentials in an endpoint).
// Everything before the last '@' counts as user information: a password
// pasted unescaped may hold '/', '?' or '#', which would otherwise end the
// host before it.
func redact(s string) string {
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		if i := strings.LastIndexByte(rest, '@'); i >= 0 {
			s = scheme + "://***" + rest[i:]
		}
	}
	head, query, hasQuery := strings.Cut(s, "?")
	if i := strings.IndexByte(head, '#'); i >= 0 {
		head = head[:i] + "#***"
	}
	if !hasQuery {
		return head
	}
	var params []string
	for kv := range strings.SplitSeq(query, "&") {
		if name, _, ok := strings.Cut(kv, "="); ok {
			kv = name + "=***"
		}
		params = append(params, kv)
	}
	return head + "?" + strings.Join(params, "&")
}

// unsupportedParams are binary-cache store parameters Nix knows but nixcache
// does not implement; naming one is an error rather than a silent no-op.
var unsupportedParams = []string{
	"narinfo-compression", "ls-compression", "log-compression",
	"local-nar-cache", "trusted", "system-features",
	"path-info-cache-size", "real", "state", "log",
}

// URL is a parsed Nix store URL such as "file:///srv/cache?compression=xz" or
// "s3://bucket/prefix?region=eu-west-1&secret-key=/etc/nix/key.sec".
//
// Parameters follow Nix's binary-cache store settings: the same names, the
// same value syntax (booleans are true/yes/1 or false/no/0, integers are
// decimal and fit in a C int) and percent-decoding of values. Unlike Nix,
// which only warns about an unknown setting, ParseURL rejects one, naming it.
// The binary-cache parameters are fields of URL; the location and the
// backend's own parameters (region, endpoint, ...) are parsed by the backend
// registered for the scheme, into Location.
type URL struct {
	// Scheme is the store type: "file", "s3" or a scheme added by Register.
	Scheme string
	// Location is where the backend keeps the cache (a directory, a bucket
	// and prefix with connection parameters), as its parser read it.
	Location Location

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
	// IndexDebugInfo (index-debug-info) asks for debuginfo/<build-id> links
	// to the NARs holding lib/debug/.build-id files.
	IndexDebugInfo bool
	// Priority is the cache priority advertised in nix-cache-info (lower is
	// preferred); 0 means unset, as in Nix. Nix reads it as a C int, so it
	// is within -2147483648..2147483647.
	Priority int
	// WantMassQuery is advertised in nix-cache-info (WantMassQuery: 1).
	WantMassQuery bool
}

// ParseURL parses a store URL the way Nix users write them:
// "file:///absolute/dir" or "s3://bucket[/prefix]", each with optional
// "?name=value&..." parameters. It reads the binary-cache parameters itself
// and hands the location and the other parameters to the parser the
// scheme's backend registered (import cache/file or cache/s3). Errors wrap
// ErrBadURL, are a *URLError, and name the offending parameter or part,
// never its value.
func ParseURL(s string) (*URL, error) {
	bad := func(err error) error { return &URLError{URL: redact(s), Err: err} }
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme == "" {
		return nil, bad(errors.New("missing scheme (want e.g. file:///dir or s3://bucket)"))
	}
	if scheme != strings.ToLower(scheme) {
		return nil, bad(errors.New("scheme must be lower case"))
	}
	if strings.IndexByte(rest, '#') >= 0 {
		return nil, bad(errors.New("fragment (#...) not allowed"))
	}
	parse, err := schemeParser(scheme)
	if err != nil {
		return nil, bad(err)
	}
	loc, query, _ := strings.Cut(rest, "?")
	u := &URL{
		Scheme:           scheme,
		Compression:      compress.Default,
		CompressionLevel: -1,
	}
	backendParams := map[string]string{}
	seen := map[string]bool{}
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		rawName, rawValue, hasValue := strings.Cut(kv, "=")
		if !plausibleName(rawName) {
			// Not shown: "?" and "&" in a password pasted unescaped
			// make parameter names of its pieces.
			return nil, bad(errors.New("a parameter name holds characters no parameter name has (not shown, as it may be part of a secret)"))
		}
		name, err := url.PathUnescape(rawName)
		if err != nil {
			return nil, bad(fmt.Errorf("parameter %q: bad percent-escape in the name", rawName))
		}
		value, err := url.PathUnescape(rawValue)
		if err != nil {
			return nil, bad(fmt.Errorf("parameter %q: bad percent-escape in the value", name))
		}
		if !hasValue {
			return nil, bad(fmt.Errorf("parameter %q has no value (want %s=VALUE)", name, name))
		}
		if seen[name] && name != "secret-key" {
			return nil, bad(fmt.Errorf("parameter %q given twice", name))
		}
		seen[name] = true
		known, err := u.set(name, value)
		if err != nil {
			return nil, bad(err)
		}
		if !known {
			backendParams[name] = value
		}
	}
	if u.Location, err = parse(loc, backendParams); err != nil {
		return nil, bad(err)
	}
	return u, nil
}

// plausibleName reports whether name (as written, percent-escapes and all)
// could be a parameter name: Nix's and the backends' are made of letters,
// digits, '-', '_' and '.'; '%' is let through for the escape check.
func plausibleName(name string) bool {
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '%':
		default:
			return false
		}
	}
	return true
}

// set stores a binary-cache parameter, or reports known=false for a
// parameter that is the backend's to judge.
func (u *URL) set(name, value string) (known bool, err error) {
	switch name {
	case "compression":
		switch value {
		case compress.Zstd, compress.XZ, compress.None:
			u.Compression = value
		default:
			if slices.Contains(nixOnlyCompressions, value) {
				return true, fmt.Errorf("parameter %q: a method Nix reads but nixcache does not write (use zstd, xz or none)", name)
			}
			return true, fmt.Errorf("parameter %q: unknown method (use zstd, xz or none)", name)
		}
	case "compression-level":
		n, err := parseInt(name, value)
		if err != nil {
			return true, err
		}
		u.CompressionLevel = n
	case "priority":
		n, err := parseInt(name, value)
		if err != nil {
			return true, err
		}
		u.Priority = n
	case "parallel-compression", "write-nar-listing", "want-mass-query", "index-debug-info":
		b, err := ParseBool(name, value)
		if err != nil {
			return true, err
		}
		switch name {
		case "parallel-compression":
			u.ParallelCompression = b
		case "write-nar-listing":
			u.WriteNARListing = b
		case "index-debug-info":
			u.IndexDebugInfo = b
		default:
			u.WantMassQuery = b
		}
	case "secret-key":
		if value == "" {
			return true, fmt.Errorf("parameter %q: empty key file path", name)
		}
		u.SecretKeys = append(u.SecretKeys, value)
	case "secret-keys":
		for _, k := range strings.Split(value, ",") {
			if k = strings.TrimSpace(k); k != "" {
				u.SecretKeys = append(u.SecretKeys, k)
			}
		}
	default:
		if slices.Contains(unsupportedParams, name) {
			return true, fmt.Errorf("parameter %q is a Nix setting nixcache does not support", name)
		}
		return false, nil
	}
	return true, nil
}

// nixOnlyCompressions are compression names Nix accepts (through libarchive)
// that nixcache does not write.
var nixOnlyCompressions = []string{"br", "bzip2", "gzip", "lz4", "lzip", "lzop", "grzip", "lrzip", "compress"}

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
	return false, fmt.Errorf("parameter %q: not a boolean (want true or false)", name)
}

// ParseTimeout parses a timeout store parameter (such as stall-timeout):
// a Go duration such as "30s" or "2m", or whole seconds ("30"), from 1ms
// to 24h. The error names neither the parameter nor the value; the caller
// adds the parameter's name.
func ParseTimeout(value string) (time.Duration, error) {
	d, err := time.ParseDuration(value)
	if n, nerr := strconv.Atoi(value); nerr == nil {
		d, err = time.Duration(n)*time.Second, nil
	}
	if err != nil || d < time.Millisecond || d > 24*time.Hour {
		return 0, errors.New("not a duration from 1ms to 24h (such as 30s)")
	}
	return d, nil
}

// parseInt parses a decimal integer parameter as Nix's string2Int<int>
// does: an optional sign and digits, within a C int's range
// (-2147483648..2147483647). A larger priority would be written to
// nix-cache-info, which Nix then cannot read at all ("error: stoi").
func parseInt(name, value string) (int, error) {
	n, err := strconv.ParseInt(value, 10, 32)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("parameter %q: integer out of range (Nix reads -2147483648 to 2147483647)", name)
	}
	if err != nil {
		return 0, fmt.Errorf("parameter %q: not a decimal integer", name)
	}
	return int(n), nil
}

// String renders the URL back in Nix's syntax: the location and backend
// parameters as the backend renders them, then the non-default
// binary-cache parameters sorted by name, then every secret-key. ParseURL
// (u.String()) gives an equal URL.
func (u *URL) String() string {
	var b strings.Builder
	if u.Location != nil {
		b.WriteString(u.Location.String())
	} else {
		b.WriteString(u.Scheme + "://")
	}
	var params []string
	add := func(k, v string) { params = append(params, EscapeParam(k)+"="+EscapeParam(v)) }
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
	if u.IndexDebugInfo {
		add("index-debug-info", "true")
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
		if strings.Contains(b.String(), "?") {
			b.WriteString("&")
		} else {
			b.WriteString("?")
		}
		b.WriteString(strings.Join(params, "&"))
	}
	return b.String()
}

// EscapePath escapes a store URL's location (a directory, a key prefix)
// so that ParseURL decodes it back; slashes stay.
func EscapePath(p string) string {
	return strings.ReplaceAll(url.PathEscape(p), "%2F", "/")
}

// EscapeParam escapes a store URL parameter name or value so that ParseURL
// (and Nix) decode it back.
func EscapeParam(s string) string {
	// url.QueryEscape turns ' ' into '+', which Nix does not decode.
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
