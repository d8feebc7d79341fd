package http_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	httpcache "github.com/nixcache/nixcache/cache/http"
)

// FuzzParseLocation: any http(s) store URL either fails with ErrBadURL,
// naming no credentials, or parses to a location that renders back to a
// URL parsing to the same location.
func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:8080", "cache.example.org/a/b/", "u:p@h/x?retry-attempts=3", "h?stall-timeout=5",
		"h:0", "[::1]:80/p", "h/p%20q", "user:s3cr3t@h:99999", "h/%zz", "@h", ":p@h",
	} {
		f.Add("http", s)
	}
	f.Add("https", "cache.nixos.org")
	f.Fuzz(func(t *testing.T, scheme, rest string) {
		if scheme != "http" && scheme != "https" {
			return
		}
		raw := scheme + "://" + rest
		u, err := cache.ParseURL(raw)
		if err != nil {
			if !errors.Is(err, cache.ErrBadURL) {
				t.Fatalf("%q: error %v does not wrap ErrBadURL", raw, err)
			}
			// A password in the user information never shows (as
			// ":password", which the error cannot hold by chance).
			loc, _, _ := strings.Cut(rest, "?")
			if at := strings.LastIndexByte(loc, '@'); at >= 0 {
				if _, pw, ok := strings.Cut(loc[:at], ":"); ok && len(pw) >= 4 && strings.Count(raw, ":"+pw) == 1 && strings.Contains(err.Error(), ":"+pw) {
					t.Fatalf("%q: error shows the password: %v", raw, err)
				}
			}
			return
		}
		o, ok := u.Location.(httpcache.Options)
		if !ok {
			t.Fatalf("%q: location %T", raw, u.Location)
		}
		again, err := cache.ParseURL(u.String())
		if err != nil {
			t.Fatalf("%q renders as %q, which does not parse: %v", raw, u.String(), err)
		}
		if again.Location.(httpcache.Options) != o {
			t.Fatalf("%q: round trip %+v != %+v", raw, again.Location, o)
		}
		if _, err := httpcache.New(o); err != nil {
			t.Fatalf("%q: parsed, but New fails: %v", raw, err)
		}
	})
}

// FuzzDecode: any body under any Content-Encoding is decoded or refused
// with an error, never a panic, and reading it ends.
func FuzzDecode(f *testing.F) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("StorePath: /nix/store/x\n"))
	zw.Close()
	f.Add("gzip", gz.Bytes())
	f.Add("xz", []byte("\xfd7zXZ\x00\x00"))
	f.Add("zstd", []byte("\x28\xb5\x2f\xfd\x00"))
	f.Add("bzip2", []byte("BZh91AY&SY"))
	f.Add("aws-chunked", []byte("a;chunk-signature=00\r\n0123456789"))
	f.Add("identity", []byte("plain"))
	f.Fuzz(func(t *testing.T, encoding string, body []byte) {
		if strings.ContainsAny(encoding, "\r\n\x00") {
			return
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", encoding)
			w.Write(body)
		}))
		defer srv.Close()
		b, err := httpcache.New(httpcache.Options{URL: srv.URL, Retries: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer b.CloseIdleConnections()
		rc, err := b.Get(context.Background(), "x")
		if err != nil {
			return
		}
		io.Copy(io.Discard, io.LimitReader(rc, 64<<20))
		rc.Close()
	})
}
