package http_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/cache/compress"
	_ "github.com/nixcache/nixcache/cache/file"
	httpcache "github.com/nixcache/nixcache/cache/http"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
)

// seed writes objects into a fresh directory through the file backend and
// serves it on loopback.
func seed(t *testing.T, objects map[string][]byte, wrap ...func(http.Handler) http.Handler) string {
	t.Helper()
	dir := t.TempDir()
	c, err := cache.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	for key, data := range objects {
		if err := c.Backend.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), "application/octet-stream"); err != nil {
			t.Fatal(err)
		}
	}
	return testenv.ServeDir(t, dir, wrap...)
}

func open(t *testing.T, rawURL string) *httpcache.Backend {
	t.Helper()
	c, err := cache.Open(context.Background(), rawURL)
	if err != nil {
		t.Fatalf("cache.Open: %v", err)
	}
	b := c.Backend.(*httpcache.Backend)
	t.Cleanup(b.CloseIdleConnections)
	return b
}

func TestReaderConformance(t *testing.T) {
	cachetest.TestReader(t, func(t *testing.T) cache.Backend {
		return open(t, seed(t, cachetest.Objects())+"/")
	})
}

func TestReaderConformanceUnderPrefix(t *testing.T) {
	cachetest.TestReader(t, func(t *testing.T) cache.Backend {
		objects := map[string][]byte{}
		for k, v := range cachetest.Objects() {
			objects["team/cache/"+k] = v
		}
		return open(t, seed(t, objects)+"/team/cache")
	})
}

// TestStatusMapping checks Nix's rules for HTTP answers: which statuses
// mean "missing", which are retried and which fail at once.
func TestStatusMapping(t *testing.T) {
	for _, tc := range []struct {
		code      int
		notFound  bool
		transient bool
	}{
		{404, true, false}, {410, true, false}, {403, true, false}, {401, true, false}, {407, true, false},
		{400, false, false}, {405, false, false}, {418, false, false},
		{408, false, true}, {429, false, true},
		{500, false, true}, {502, false, true}, {503, false, true}, {504, false, true},
		{501, false, false}, {505, false, false}, {511, false, false},
	} {
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.WriteHeader(tc.code)
		}))
		b := open(t, srv.URL+"?retry-attempts=3")
		_, err := b.Get(context.Background(), "x.narinfo")
		srv.Close()
		if err == nil {
			t.Fatalf("%d: Get succeeded", tc.code)
		}
		if got := errors.Is(err, cache.ErrNotFound); got != tc.notFound {
			t.Errorf("%d: errors.Is(err, ErrNotFound) = %v, want %v (%v)", tc.code, got, tc.notFound, err)
		}
		want := int32(1)
		if tc.transient {
			want = 3
		}
		if hits.Load() != want {
			t.Errorf("%d: %d requests, want %d", tc.code, hits.Load(), want)
		}
		if !strings.Contains(err.Error(), fmt.Sprint(tc.code)) || !strings.Contains(err.Error(), "x.narinfo") {
			t.Errorf("%d: error does not name the status and object: %v", tc.code, err)
		}
	}
}

// TestRetryRecovers: transient failures followed by success give the object.
func TestRetryRecovers(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) < 3 {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "StoreDir: /nix/store\n")
	}))
	defer srv.Close()
	b := open(t, srv.URL)
	rc, err := b.Get(context.Background(), "nix-cache-info")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if string(data) != "StoreDir: /nix/store\n" || hits.Load() != 3 {
		t.Fatalf("got %q after %d requests", data, hits.Load())
	}
}

// TestStall: a server that never answers, or stops sending the body, is
// abandoned after the stall timeout, not waited on forever.
func TestStall(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "1000")
			w.Write(make([]byte, 10))
			w.(http.Flusher).Flush()
		}
		select { // hold until the client gives up
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	b := open(t, srv.URL+"?stall-timeout=200ms&retry-attempts=2")
	start := time.Now()
	_, err := b.Get(context.Background(), "head")
	if !errors.Is(err, httpcache.ErrStalled) || hits.Load() != 2 {
		t.Fatalf("no answer: error %v after %d requests, want ErrStalled after 2", err, hits.Load())
	}
	rc, err := b.Get(context.Background(), "body")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if !errors.Is(err, httpcache.ErrStalled) || n != 10 {
		t.Fatalf("stalled body: %d bytes, error %v, want 10 and ErrStalled", n, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("stalls took %v to notice", d)
	}
}

// TestSlowConsumerIsNoStall: time between the caller's reads is not the
// network's.
func TestSlowConsumerIsNoStall(t *testing.T) {
	data := cachetest.Data(3, 64<<10)
	url := seed(t, map[string][]byte{"nar/x.nar": data})
	b := open(t, url+"?stall-timeout=50ms")
	rc, err := b.Get(context.Background(), "nar/x.nar")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 16<<10)
	var got []byte
	for {
		n, err := rc.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(80 * time.Millisecond) // a consumer slower than the stall timeout
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, want %d", len(got), len(data))
	}
}

// encoded serves every object with a Content-Encoding: body(data) is what
// goes on the wire.
func encoded(encoding string, body func([]byte) []byte) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			if rec.Code != 200 {
				w.WriteHeader(rec.Code)
				return
			}
			out := body(rec.Body.Bytes())
			w.Header().Set("Content-Encoding", encoding)
			w.Header().Set("Content-Length", fmt.Sprint(len(out)))
			w.Write(out)
		})
	}
}

func compressed(method string) func([]byte) []byte {
	return func(data []byte) []byte {
		var buf bytes.Buffer
		if method == "gzip" {
			zw := gzip.NewWriter(&buf)
			zw.Write(data)
			zw.Close()
			return buf.Bytes()
		}
		zw, err := compress.NewWriter(&buf, compress.Options{Method: method})
		if err != nil {
			panic(err)
		}
		zw.Write(data)
		zw.Close()
		return buf.Bytes()
	}
}

// TestContentEncoding: like Nix, a Content-Encoding is undone by the data's
// format, whatever its name; data in no known format is an error.
func TestContentEncoding(t *testing.T) {
	data := cachetest.Data(5, 100000)
	objects := map[string][]byte{"nar/x.nar": data}
	for _, tc := range []struct {
		encoding string
		body     func([]byte) []byte
	}{
		{"gzip", compressed("gzip")},
		{"x-gzip", compressed("gzip")},
		{"xz", compressed(compress.XZ)},
		{"zstd", compressed(compress.Zstd)},
		{"gzip", compressed(compress.Zstd)}, // libarchive goes by the data
		// and peels every layer it knows
		{"gzip", func(b []byte) []byte { return compressed("gzip")(compressed(compress.XZ)(b)) }},
		{"identity", func(b []byte) []byte { return b }},
		{"none", func(b []byte) []byte { return b }},
	} {
		b := open(t, seed(t, objects, encoded(tc.encoding, tc.body)))
		if got := cachetest.Read(t, b, "nar/x.nar"); !bytes.Equal(got, data) {
			t.Errorf("Content-Encoding %s: got %d bytes, want the %d decoded", tc.encoding, len(got), len(data))
		}
	}
	for _, tc := range []struct {
		encoding string
		body     func([]byte) []byte
	}{
		// What some S3 servers serve after a streaming-signed upload.
		{"aws-chunked", func(b []byte) []byte { return append([]byte(fmt.Sprintf("%x;chunk-signature=00\r\n", len(b))), b...) }},
		{"br", compressed("gzip")},
		{"gzip", func(b []byte) []byte { return b }},
	} {
		b := open(t, seed(t, objects, encoded(tc.encoding, tc.body)))
		rc, err := b.Get(context.Background(), "nar/x.nar")
		if err == nil {
			rc.Close()
		}
		if !errors.Is(err, httpcache.ErrEncoding) || !strings.Contains(err.Error(), tc.encoding) {
			t.Errorf("Content-Encoding %s: error %v, want ErrEncoding naming it", tc.encoding, err)
		}
	}
}

// TestCredentialsNeverShown: user:password in the URL is sent as basic
// authentication and never appears in an error.
func TestCredentialsNeverShown(t *testing.T) {
	const user, pw = "ci-reader", "s3cr3t-pa55"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		switch {
		case !ok || u != user || p != pw:
			w.WriteHeader(401)
		case r.URL.Path == "/nix-cache-info":
			io.WriteString(w, "StoreDir: /nix/store\n")
		default:
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	b := open(t, "http://"+user+":"+pw+"@"+host+"/?retry-attempts=1")
	if got := cachetest.Read(t, b, "nix-cache-info"); string(got) != "StoreDir: /nix/store\n" {
		t.Fatalf("with credentials: %q", got)
	}
	_, err500 := b.Get(context.Background(), "x.narinfo")
	_, errPut := b.Stat(context.Background(), "x.narinfo")
	noAuth := open(t, srv.URL)
	_, err401 := noAuth.Get(context.Background(), "nix-cache-info")
	if !errors.Is(err401, cache.ErrNotFound) {
		t.Errorf("401: %v, want ErrNotFound", err401)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	_, errDial := open(t, "http://"+user+":"+pw+"@"+closed+"?retry-attempts=2").Get(context.Background(), "nix-cache-info")
	_, errParse := cache.ParseURL("http://" + user + ":" + pw + "@" + host + "?stall-timeout=x")
	for _, err := range []error{err500, errPut, errDial, errParse} {
		if err == nil {
			t.Fatal("want an error")
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), user) {
			t.Errorf("error shows the credentials: %v", err)
		}
	}
	if b.URL() != srv.URL {
		t.Errorf("URL() = %q, want %q", b.URL(), srv.URL)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"https://cache.example.org/", "https://cache.example.org"},
		{"https://cache.example.org/a/b//", "https://cache.example.org/a/b"},
		{"http://h/p%20q?stall-timeout=5&retry-attempts=2", "http://h/p%20q?retry-attempts=2&stall-timeout=5s"},
		{"https://u:p@h", "https://u:p@h"},
	} {
		u, err := cache.ParseURL(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := u.String(); got != tc.want {
			t.Errorf("%s: String() = %q, want %q", tc.in, got, tc.want)
		}
		again, err := cache.ParseURL(u.String())
		if err != nil || again.String() != u.String() {
			t.Errorf("%s: round trip: %v %v", tc.in, again, err)
		}
	}
	for _, bad := range []string{
		"http://", "http:///path", "http://h?region=x", "http://h?retry-attempts=0",
		"http://h?stall-timeout=forever", "http://h:99999", "http://h:port",
	} {
		if _, err := cache.ParseURL(bad); !errors.Is(err, cache.ErrBadURL) {
			t.Errorf("%s: error %v, want ErrBadURL", bad, err)
		}
	}
}

// TestReadOnly: writing to an HTTP cache is a clear error through the
// Cache API as well.
func TestReadOnly(t *testing.T) {
	c, err := cache.Open(context.Background(), seed(t, cachetest.Objects()))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Backend.Put(context.Background(), "x.narinfo", strings.NewReader("x"), 1, "text/x-nix-narinfo")
	if !errors.Is(err, cache.ErrReadOnly) || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("Put: %v", err)
	}
	err = c.Backend.List(context.Background(), "", func(cache.ObjectInfo) error { return nil })
	if !errors.Is(err, cache.ErrNotSupported) {
		t.Fatalf("List: %v", err)
	}
}

// TestReaderConformanceS3Bucket: the read side holds for a real S3
// server's public bucket read over plain HTTP, as Nix reads one (a missing
// key there is 403 or 404).
func TestReaderConformanceS3Bucket(t *testing.T) {
	s3srv := testenv.StartS3(t)
	s3srv.SetEnv(t)
	n := 0
	cachetest.TestReader(t, func(t *testing.T) cache.Backend {
		n++
		bucket := fmt.Sprintf("reader-%d", n)
		s3srv.MakeBucket(t, bucket, true)
		c, err := cache.Open(context.Background(), s3srv.URL(bucket))
		if err != nil {
			t.Fatal(err)
		}
		for key, data := range cachetest.Objects() {
			if err := c.Backend.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), "application/octet-stream"); err != nil {
				t.Fatal(err)
			}
		}
		return open(t, s3srv.Endpoint+"/"+bucket)
	})
}

// cutWriter passes the first limit bytes of the answer through, then
// breaks the connection.
type cutWriter struct {
	http.ResponseWriter
	limit int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) <= c.limit {
		c.limit -= len(p)
		return c.ResponseWriter.Write(p)
	}
	c.ResponseWriter.Write(p[:c.limit])
	c.ResponseWriter.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

// TestResume: a body cut off mid-way is resumed with a Range request for
// the rest of the same version (If-Range), as Nix resumes a download; the
// reader sees the whole object once.
func TestResume(t *testing.T) {
	data := cachetest.Data(7, 3<<20)
	var gets, ranges atomic.Int32
	cut := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Range") != "" {
				ranges.Add(1)
				if r.Header.Get("If-Range") == "" {
					t.Errorf("Range request without If-Range")
				}
			}
			if gets.Add(1) <= 2 { // the first answer and the first resumption break
				w = &cutWriter{ResponseWriter: w, limit: 1 << 20}
			}
			next.ServeHTTP(w, r)
		})
	}
	b := open(t, seed(t, map[string][]byte{"nar/x.nar": data}, cut)+"?retry-attempts=3")
	if got := cachetest.Read(t, b, "nar/x.nar"); !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, want the %d of the object", len(got), len(data))
	}
	if gets.Load() != 3 || ranges.Load() != 2 {
		t.Fatalf("%d requests, %d with Range; want 3 and 2", gets.Load(), ranges.Load())
	}
	// With one attempt, the cut is an error.
	gets.Store(0)
	b1 := open(t, b.URL()+"?retry-attempts=1")
	rc, err := b1.Get(context.Background(), "nar/x.nar")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err == nil || n != 1<<20 {
		t.Fatalf("one attempt: read %d bytes, error %v; want the cut's error after 1 MiB", n, err)
	}
}
