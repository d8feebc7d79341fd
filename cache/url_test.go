package cache_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/signature"
)

func TestParseURL(t *testing.T) {
	def := func(u cache.URL) *cache.URL {
		if u.Compression == "" {
			u.Compression = "zstd"
		}
		if u.CompressionLevel == 0 {
			u.CompressionLevel = -1
		}
		return &u
	}
	f := func(dir string) cache.Location { return file.Location{Dir: dir} }
	tests := []struct {
		in   string
		want *cache.URL
	}{
		{"file:///srv/cache", def(cache.URL{Scheme: "file", Location: f("/srv/cache")})},
		{"file:///srv/cache/", def(cache.URL{Scheme: "file", Location: f("/srv/cache")})},
		{"file:///srv/my%20cache", def(cache.URL{Scheme: "file", Location: f("/srv/my cache")})},
		{"file:///", def(cache.URL{Scheme: "file", Location: f("/")})},
		{"file:///c?compression=xz", def(cache.URL{Scheme: "file", Location: f("/c"), Compression: "xz"})},
		{"file:///c?compression=none", def(cache.URL{Scheme: "file", Location: f("/c"), Compression: "none"})},
		{"file:///c?compression=zstd&compression-level=19", def(cache.URL{Scheme: "file", Location: f("/c"), CompressionLevel: 19})},
		{"file:///c?compression-level=-1", def(cache.URL{Scheme: "file", Location: f("/c")})},
		{"file:///c?parallel-compression=true", def(cache.URL{Scheme: "file", Location: f("/c"), ParallelCompression: true})},
		{"file:///c?parallel-compression=1", def(cache.URL{Scheme: "file", Location: f("/c"), ParallelCompression: true})},
		{"file:///c?parallel-compression=yes", def(cache.URL{Scheme: "file", Location: f("/c"), ParallelCompression: true})},
		{"file:///c?parallel-compression=false", def(cache.URL{Scheme: "file", Location: f("/c")})},
		{"file:///c?write-nar-listing=true", def(cache.URL{Scheme: "file", Location: f("/c"), WriteNARListing: true})},
		{"file:///c?write-nar-listing=0", def(cache.URL{Scheme: "file", Location: f("/c")})},
		{"file:///c?want-mass-query=true&priority=30", def(cache.URL{Scheme: "file", Location: f("/c"), WantMassQuery: true, Priority: 30})},
		{"file:///c?want-mass-query=no&priority=-5", def(cache.URL{Scheme: "file", Location: f("/c"), Priority: -5})},
		{"file:///c?priority=2147483647", def(cache.URL{Scheme: "file", Location: f("/c"), Priority: 2147483647})},
		{"file:///c?priority=-2147483648", def(cache.URL{Scheme: "file", Location: f("/c"), Priority: -2147483648})},
		{"file:///c?priority=%2B5", def(cache.URL{Scheme: "file", Location: f("/c"), Priority: 5})},
		{"file:///c?secret-key=/k1&secret-key=/k%202", def(cache.URL{Scheme: "file", Location: f("/c"), SecretKeys: []string{"/k1", "/k 2"}})},
		{"file:///c?secret-keys=/k1,/k2&secret-key=/k3", def(cache.URL{Scheme: "file", Location: f("/c"), SecretKeys: []string{"/k1", "/k2", "/k3"}})},
		{"file:///c?secret-key=/a+b", def(cache.URL{Scheme: "file", Location: f("/c"), SecretKeys: []string{"/a+b"}})},
		{"file:///c?", def(cache.URL{Scheme: "file", Location: f("/c")})},
		{"s3://bucket", def(cache.URL{Scheme: "s3", Location: s3.Options{Bucket: "bucket"}})},
		{"s3://bucket/", def(cache.URL{Scheme: "s3", Location: s3.Options{Bucket: "bucket"}})},
		{"s3://my.bucket/team/cache/", def(cache.URL{Scheme: "s3", Location: s3.Options{Bucket: "my.bucket", Prefix: "team/cache"}})},
		{"s3://bucket?region=eu-west-1&endpoint=http://127.0.0.1:9000&profile=ci&addressing-style=path",
			def(cache.URL{Scheme: "s3", Location: s3.Options{Bucket: "bucket",
				Region: "eu-west-1", Endpoint: "http://127.0.0.1:9000", Profile: "ci", AddressingStyle: "path"}})},
		{"s3://bucket?endpoint=http%3A%2F%2Fh%3A9000&compression=xz&secret-key=/k",
			def(cache.URL{Scheme: "s3", Location: s3.Options{Bucket: "bucket", Endpoint: "http://h:9000"}, Compression: "xz", SecretKeys: []string{"/k"}})},
	}
	for _, tt := range tests {
		got, err := cache.ParseURL(tt.in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseURL(%q) =\n %+v, want\n %+v", tt.in, got, tt.want)
		}
		again, err := cache.ParseURL(got.String())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("ParseURL(%q).String() = %q does not round-trip: %+v, %v", tt.in, got.String(), again, err)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct{ in, mention string }{
		{"s3://b?regoin=x", `"regoin": unknown parameter`},
		{"file:///c?region=x", `unknown parameter "region"`},
		{"file:///c?compression=foo", `"compression": unknown method`},
		{"file:///c?compression=br", `"compression": a method Nix reads`},
		{"file:///c?compression=", `"compression"`},
		{"file:///c?compression-level=abc", `"compression-level"`},
		{"file:///c?compression-level=", `"compression-level"`},
		{"file:///c?compression-level=2147483648", `"compression-level": integer out of range`},
		{"file:///c?priority=x", `"priority"`},
		{"file:///c?priority=1.5", `"priority"`},
		{"file:///c?priority=2147483648", `"priority": integer out of range`},
		{"file:///c?priority=-2147483649", `"priority": integer out of range`},
		{"file:///c?parallel-compression=maybe", `"parallel-compression"`},
		{"file:///c?write-nar-listing=TRUE", `"write-nar-listing"`},
		{"file:///c?want-mass-query=", `"want-mass-query"`},
		{"file:///c?secret-key=", `"secret-key"`},
		{"file:///c?priority", `"priority" has no value`},
		{"file:///c?priority=1&priority=2", `"priority" given twice`},
		{"file:///c?narinfo-compression=zstd", `"narinfo-compression"`},
		{"file:///c?a%zz=1", `"a%zz"`},
		{"file://relative/dir", "absolute path"},
		{"file://", "absolute path"},
		{"/srv/cache", "missing scheme"},
		{"", "missing scheme"},
		{"ssh://host/cache", `unknown store type "ssh"`},
		{"FILE:///c", "lower case"},
		{"s3://", "missing bucket"},
		{"s3://ab", "3 to 63"},
		{"s3://bad_bucket!", `invalid character '!'`},
		{"s3://-bucket", "start and end"},
		{"s3://bucket/a//b", `prefix`},
		{"s3://bucket/a/../b", `prefix`},
		{"file:///c#frag", "fragment"},
	}
	if _, err := cache.ParseURL("s3://b?regoin=x"); err == nil || err.Error() != `cache: store URL "s3://b?regoin=***": s3: invalid store URL parameter "regoin": unknown parameter` {
		t.Errorf("error text: %v", err)
	}
	for _, tt := range tests {
		_, err := cache.ParseURL(tt.in)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded, want an error mentioning %s", tt.in, tt.mention)
			continue
		}
		if !errors.Is(err, cache.ErrBadURL) {
			t.Errorf("ParseURL(%q) error does not wrap ErrBadURL: %v", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.mention) || !strings.Contains(err.Error(), "cache: store URL") {
			t.Errorf("ParseURL(%q) error = %q, want it to mention %s", tt.in, err, tt.mention)
		}
	}
}

// TestParseURLNoSecretInErrors: a secret put where a file name or a plain
// value belongs (key material in secret-key, credentials in the endpoint or
// the bucket, a misspelt parameter) never appears in an error; the error
// names the parameter instead.
func TestParseURLNoSecretInErrors(t *testing.T) {
	const secret = "S3CR3Tvalue"
	sk, _, err := signature.GenerateKey("leak-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	keyText := sk.Secret()
	keyB64 := keyText[strings.IndexByte(keyText, ':')+1:]
	for _, tt := range []struct{ url, mention string }{
		{"s3://bucket?endpoint=http://AKIA:" + secret + "@127.0.0.1:9000", `"endpoint"`},
		{"s3://bucket?endpoint=127.0.0.1:9000%2F" + secret + "&scheme=http", `"endpoint"`},
		{"s3://AKIA:" + secret + "@bucket", "credentials"},
		{"s3://AKIA:" + secret + "@bucket/prefix?region=x", "credentials"},
		{"file:///c?secret_key=" + secret, `"secret_key"`},
		{"file:///c?compression=" + secret, `"compression"`},
		{"file:///c?priority=" + secret, `"priority"`},
		{"s3://bucket?addressing-style=" + secret, `"addressing-style"`},
		{"s3://bucket?region=x&" + secret + "=1", "unknown parameter"},
		{"file:///c?secret-key=" + url.QueryEscape(keyText) + "&compression=bad", `"compression"`},
		{"file:///c#" + secret, "fragment"},
		// A password holding '/', '?' or '#' unescaped: the user
		// information still ends at the last '@'.
		{"http://AKIA:ab/" + secret + "@h", "not a valid URL"},
		{"https://AKIA:" + secret + "?x@h/p?priority=1", "parameter name"},
		{"https://AKIA:pw?" + secret + "@h", "parameter name"},
		{"http://AKIA:" + secret + "#x@h", "fragment"},
		{"s3://AKIA:" + secret + "/x@bucket?region=x", "bucket name"},
	} {
		_, err := cache.ParseURL(tt.url)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", tt.url)
			continue
		}
		if strings.Contains(err.Error(), secret) && !strings.Contains(tt.url, secret+"=") {
			t.Errorf("ParseURL(%q) error repeats the secret: %v", tt.url, err)
		}
		if strings.Contains(err.Error(), keyB64) {
			t.Errorf("ParseURL(%q) error repeats the key: %v", tt.url, err)
		}
		if !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("ParseURL(%q) error %q does not mention %s", tt.url, err, tt.mention)
		}
	}
	// Key material where a key file name belongs.
	for _, opt := range []struct {
		url  string
		opts []cache.OpenOption
	}{
		{"file://" + t.TempDir() + "?secret-key=" + url.QueryEscape(keyText), nil},
		{"file://" + t.TempDir() + "?secret-key=" + url.QueryEscape(keyB64), nil},
		{"file://" + t.TempDir(), []cache.OpenOption{cache.WithSecretKeyFiles(keyText)}},
		{"file://" + t.TempDir(), []cache.OpenOption{cache.WithSecretKeyFiles(keyB64)}},
	} {
		_, err := cache.Open(context.Background(), opt.url, opt.opts...)
		if err == nil || strings.Contains(err.Error(), keyB64) || !strings.Contains(err.Error(), "secret") {
			t.Errorf("Open with key material as key file: %v", err)
		}
	}
}

// TestParseURLAgreesWithNix asks real Nix (nix store ping --store URL) which
// file:// URLs it accepts, for the parameters Nix itself validates, and checks
// ParseURL accepts and rejects the same ones. (For unknown parameters Nix only
// warns where ParseURL fails, on purpose; not compared here.)
func TestParseURLAgreesWithNix(t *testing.T) {
	testenv.RequireNix(t)
	dir := t.TempDir()
	for _, q := range []string{
		"write-nar-listing=true", "write-nar-listing=1", "write-nar-listing=yes", "write-nar-listing=no",
		"write-nar-listing=false", "write-nar-listing=0", "write-nar-listing=maybe", "write-nar-listing=TRUE",
		"parallel-compression=2", "want-mass-query=on",
		"compression-level=9", "compression-level=-1", "compression-level=abc", "compression-level=1.5",
		"compression-level=2147483648",
		"priority=40", "priority=x", "priority=", "priority=%2B5", "priority=0x10",
		"priority=2147483647", "priority=2147483648", "priority=-2147483648", "priority=-2147483649",
		"priority=99999999999999999999",
		"compression=xz&compression-level=3",
	} {
		u := "file://" + dir + "?" + q
		_, nixErr := testenv.NixCmd("nix", "store", "ping", "--store", u)
		_, ourErr := cache.ParseURL(u)
		if (nixErr == nil) != (ourErr == nil) {
			t.Errorf("%s: Nix error %v, ParseURL error %v", q, nixErr, ourErr)
		}
	}
	rel := "file://" + strings.TrimPrefix(dir, "/")
	_, nixErr := testenv.NixCmd("nix", "store", "ping", "--store", rel)
	if _, ourErr := cache.ParseURL(rel); nixErr == nil || ourErr == nil {
		t.Errorf("relative file URL: Nix error %v, ParseURL error %v; both should fail", nixErr, ourErr)
	}
}

func TestParseURLUnregistered(t *testing.T) {
	_, err := cache.ParseURL("nosuch://x")
	if !errors.Is(err, cache.ErrUnknownScheme) || !errors.Is(err, cache.ErrBadURL) || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Fatalf("ParseURL(nosuch://x): %v", err)
	}
}

// memLocation is the Location of the memtest scheme TestRegister adds.
type memLocation struct{ size string }

func (l memLocation) Open(context.Context) (cache.Backend, error) { return nil, nil }
func (l memLocation) String() string                              { return "memtest://x?size=" + l.size }

func TestRegister(t *testing.T) {
	parse := func(loc string, params map[string]string) (cache.Location, error) {
		l := memLocation{size: params["size"]}
		delete(params, "size")
		for k := range params {
			return nil, fmt.Errorf("unknown parameter %q", k)
		}
		if l.size == "" {
			return nil, errors.New(`parameter "size" missing`)
		}
		return l, nil
	}
	if !slices.Contains(cache.Schemes(), "memtest") { // -count=N reruns in one process
		cache.Register("memtest", parse)
	}
	u, err := cache.ParseURL("memtest://x?size=3&compression=none")
	if err != nil {
		t.Fatal(err)
	}
	if u.Location != (memLocation{size: "3"}) || u.Compression != "none" {
		t.Fatalf("ParseURL(memtest) = %+v", u)
	}
	if got := u.String(); got != "memtest://x?size=3&compression=none" {
		t.Errorf("String() = %q", got)
	}
	if _, err := cache.ParseURL("memtest://x?colour=3"); err == nil || !strings.Contains(err.Error(), `"colour"`) {
		t.Fatalf("unknown parameter of registered scheme: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("second Register of a scheme did not panic")
		}
	}()
	cache.Register("memtest", parse)
}

func TestValidateKey(t *testing.T) {
	for _, k := range []string{"nix-cache-info", "abc.narinfo", "nar/x.nar.zst", "log/abc-foo.drv", "a/b/c", ".ls", "a..b"} {
		if err := cache.ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q): %v", k, err)
		}
	}
	for _, k := range []string{"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "a\\b", "a\nb", "a\x7fb"} {
		if err := cache.ValidateKey(k); !errors.Is(err, cache.ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
}

func TestExactReader(t *testing.T) {
	tests := []struct {
		data string
		size int64
		ok   bool
	}{
		{"", 0, true}, {"abc", 3, true}, {"ab", 3, false}, {"abcd", 3, false}, {"a", 0, false},
	}
	for _, tt := range tests {
		r := cache.ExactReader(strings.NewReader(tt.data), tt.size)
		buf := make([]byte, tt.size) // read exactly size bytes, as an HTTP body would
		_, err := readFullNoMore(r, buf)
		if tt.ok != (err == nil) {
			t.Errorf("ExactReader(%q, %d): err %v, want ok=%v", tt.data, tt.size, err, tt.ok)
		}
		if !tt.ok && !errors.Is(err, cache.ErrSizeMismatch) {
			t.Errorf("ExactReader(%q, %d): err %v, want ErrSizeMismatch", tt.data, tt.size, err)
		}
	}
}

// readFullNoMore reads len(buf) bytes and returns the first non-EOF error,
// including one returned together with the last bytes.
func readFullNoMore(r interface{ Read([]byte) (int, error) }, buf []byte) (int, error) {
	n := 0
	for {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			if err.Error() == "EOF" {
				return n, nil
			}
			return n, err
		}
		if n == len(buf) && len(buf) > 0 {
			return n, nil
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"file:///srv/cache", "file:///c?compression=xz&compression-level=9&parallel-compression=true",
		"s3://bucket/prefix?region=eu-west-1&endpoint=http://127.0.0.1:9000&addressing-style=path",
		"s3://b?regoin=x", "file://rel", "file:///c?secret-keys=/a,/b&secret-key=/c&priority=40&want-mass-query=1",
		"file:///%zz", "s3://a.b-c/d%2Fe?profile=p&write-nar-listing=no",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := cache.ParseURL(s)
		if err != nil {
			if !errors.Is(err, cache.ErrBadURL) {
				t.Fatalf("error does not wrap ErrBadURL: %v", err)
			}
			return
		}
		if l, ok := u.Location.(file.Location); ok && !filepath.IsAbs(l.Dir) {
			t.Fatalf("file URL %q gave relative path %q", s, l.Dir)
		}
		again, err := cache.ParseURL(u.String())
		if err != nil {
			t.Fatalf("ParseURL(%q).String() = %q fails to parse: %v", s, u.String(), err)
		}
		if !reflect.DeepEqual(again, u) {
			t.Fatalf("round trip of %q via %q: %+v != %+v", s, u.String(), again, u)
		}
	})
}

func ExampleParseURL() {
	u, err := cache.ParseURL("s3://nix-cache/team?region=eu-west-1&compression=xz&secret-key=/etc/nix/cache.sec&want-mass-query=true")
	if err != nil {
		panic(err)
	}
	o := u.Location.(s3.Options)
	os.Stdout.WriteString(o.Bucket + " " + o.Prefix + " " + o.Region + " " + u.Compression + " " + u.SecretKeys[0] + "\n")
	// Output: nix-cache team eu-west-1 xz /etc/nix/cache.sec
}

func BenchmarkParseURL(b *testing.B) {
	s := "s3://nix-cache/team?region=eu-west-1&endpoint=http://127.0.0.1:9000&compression=xz&secret-key=/etc/nix/cache.sec&want-mass-query=true&priority=40"
	for b.Loop() {
		if _, err := cache.ParseURL(s); err != nil {
			b.Fatal(err)
		}
	}
}
