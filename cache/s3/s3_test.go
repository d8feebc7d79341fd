package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/faultproxy"
	"github.com/nixcache/nixcache/internal/testenv"
)

var bucketSeq atomic.Int64

func newBucket(t testing.TB, srv *testenv.S3, public bool) string {
	name := fmt.Sprintf("b%d-%d", os.Getpid(), bucketSeq.Add(1))
	srv.MakeBucket(t, name, public)
	return name
}

func open(t testing.TB, srv *testenv.S3, bucket string, mod func(*s3.Options)) *s3.Backend {
	t.Helper()
	o := s3.Options{
		Bucket: bucket, Endpoint: srv.Endpoint, AddressingStyle: "path",
		Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
	}
	if mod != nil {
		mod(&o)
	}
	b, err := s3.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	srv := testenv.StartS3(t)
	cachetest.TestBackend(t, func(t *testing.T) cache.Backend {
		return open(t, srv, newBucket(t, srv, false), nil)
	})
}

func TestConformancePrefix(t *testing.T) {
	srv := testenv.StartS3(t)
	cachetest.TestBackend(t, func(t *testing.T) cache.Backend {
		bucket := newBucket(t, srv, false)
		// An object outside the prefix must never show up.
		c := srv.Client(t)
		if _, err := c.PutObject(context.Background(), bucket, "other.narinfo", strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		return open(t, srv, bucket, func(o *s3.Options) { o.Prefix = "team/cache"; o.PartSize = s3.MinPartSize })
	})
}

// TestOpenFromURL opens the backend through the store URL and registry, with
// credentials from the environment, as a user would.
func TestOpenFromURL(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	srv.SetEnv(t)
	u, err := cache.ParseURL(srv.URL(bucket+"/pre/fix", "compression=xz"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := u.Location.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(context.Background(), "nix-cache-info", strings.NewReader("StoreDir: /nix/store\n"), 21, "text/x-nix-cache-info"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client(t).StatObject(context.Background(), bucket, "pre/fix/nix-cache-info", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("object not under prefix: %v", err)
	}
}

// TestSharedCredentialsFile takes credentials from a profile of the shared
// credentials file (AWS_SHARED_CREDENTIALS_FILE), as the AWS tools do.
func TestSharedCredentialsFile(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_ACCESS_KEY", "")
	t.Setenv("AWS_SECRET_KEY", "")
	f := filepath.Join(t.TempDir(), "credentials")
	body := "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[nixcache]\naws_access_key_id = " + srv.AccessKey + "\naws_secret_access_key = " + srv.SecretKey + "\n"
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", f)
	u, err := cache.ParseURL(srv.URL(bucket, "profile=nixcache"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Location.Open(context.Background()); err != nil {
		t.Fatalf("profile nixcache: %v", err)
	}
	u, _ = cache.ParseURL(srv.URL(bucket))
	_, err = u.Location.Open(context.Background())
	if !errors.Is(err, s3.ErrAccessDenied) {
		t.Fatalf("default profile (wrong keys): error %v, want ErrAccessDenied", err)
	}
	t.Setenv("AWS_PROFILE", "nixcache")
	if _, err := u.Location.Open(context.Background()); err != nil {
		t.Fatalf("AWS_PROFILE=nixcache: %v", err)
	}
}

// TestPlainHTTPBytes checks that every upload path leaves an object that an
// anonymous HTTP GET (what Nix does) returns byte for byte, with the
// Content-Type given to Put and no aws-chunked Content-Encoding.
func TestPlainHTTPBytes(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, true)
	b := open(t, srv, bucket, func(o *s3.Options) { o.PartSize = s3.MinPartSize })
	cases := []struct {
		key, ctype string
		size       int
		plain      bool
	}{
		{"nix-cache-info", "text/x-nix-cache-info", 21, true},
		{"small.narinfo", "text/x-nix-narinfo", 400, false},
		{"nar/single.nar.zst", "application/x-nix-nar", 3 << 20, false},
		{"nar/multi-readerat.nar.zst", "application/x-nix-nar", 12<<20 + 7, false},
		{"nar/multi-plain.nar.xz", "application/x-nix-nar", 11<<20 + 3, true},
	}
	for i, c := range cases {
		data := cachetest.Data(uint64(i), c.size)
		var r io.Reader = bytes.NewReader(data)
		if c.plain {
			r = cachetest.Plain(data)
		}
		if err := b.Put(context.Background(), c.key, r, int64(len(data)), c.ctype); err != nil {
			t.Fatalf("Put %s: %v", c.key, err)
		}
		if problem := servedAsNixReadsIt(t, srv.Endpoint+"/"+bucket+"/"+c.key, c.ctype, data); problem != "" {
			t.Errorf("GET %s: %s", c.key, problem)
		}
	}
}

// servedAsNixReadsIt fetches url anonymously, as Nix does, and describes
// what would keep Nix from reading it as the object data of type ctype: an
// error status, a Content-Encoding, another Content-Type or other bytes.
// It returns "" when the object is served clean.
func servedAsNixReadsIt(t *testing.T, url, ctype string, data []byte) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	var problems []string
	if ce := resp.Header.Get("Content-Encoding"); ce != "" {
		problems = append(problems, fmt.Sprintf("Content-Encoding %q, want none", ce))
	}
	if ct := resp.Header.Get("Content-Type"); ct != ctype {
		problems = append(problems, fmt.Sprintf("Content-Type %q, want %q", ct, ctype))
	}
	if !bytes.Equal(got, data) {
		problems = append(problems, fmt.Sprintf("%d bytes differ from the %d uploaded", len(got), len(data)))
	}
	return strings.Join(problems, "; ")
}

// TestPlainHTTPControl shows that the check in TestPlainHTTPBytes catches
// the trap it guards against on this server: minio-go's default PutObject
// over http uploads in aws-chunked form, and versitygw then serves the
// object with Content-Encoding: aws-chunked, which Nix cannot read ("input
// compression not recognized"). Should a server version strip the encoding,
// this test fails and TestPlainHTTPBytes no longer proves anything there.
func TestPlainHTTPControl(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, true)
	data := cachetest.Data(77, 1000)
	const ctype = "application/x-nix-nar"
	if _, err := srv.Client(t).PutObject(context.Background(), bucket, "default.nar", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{ContentType: ctype}); err != nil {
		t.Fatal(err)
	}
	problem := servedAsNixReadsIt(t, srv.Endpoint+"/"+bucket+"/default.nar", ctype, data)
	if problem == "" {
		t.Fatal("minio-go's default PutObject over http left a clean object: the aws-chunked trap does not show, so TestPlainHTTPBytes guards nothing on this server")
	}
	t.Logf("default minio-go PutObject: %s", problem)
}

// TestNixSubstitutesFromBucket uploads a cache written by real Nix (nix copy
// --to file://) through the backend and has real Nix substitute the path
// back from the bucket over plain HTTP. The NAR is uncompressed and larger
// than the part size, so it goes up as a parallel multipart upload.
func TestNixSubstitutesFromBucket(t *testing.T) {
	testenv.RequireNix(t)
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, true)
	b := open(t, srv, bucket, func(o *s3.Options) { o.PartSize = s3.MinPartSize })
	nixRoundTrip(t, srv, bucket, b)
}

// nixRoundTrip has Nix write a cache of a fresh store path holding a 13 MiB
// file (nix copy --to file://), uploads its files through b, deletes the
// path and has Nix substitute it from the public bucket over plain HTTP.
func nixRoundTrip(t *testing.T, srv *testenv.S3, bucket string, b *s3.Backend) {
	t.Helper()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "payload")
	os.MkdirAll(src, 0o755)
	big := cachetest.Data(uint64(time.Now().UnixNano()), 13<<20)
	os.WriteFile(filepath.Join(src, "big.bin"), big, 0o644)
	os.WriteFile(filepath.Join(src, "hello"), []byte("hello from "+tmp), 0o644)
	storePath := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", src)))
	t.Cleanup(func() { testenv.NixCmd("nix-store", "--delete", storePath) })
	key := testenv.NixKeyPair(t, "nixcache-s3-test-1")
	sec, pub := key.SecretFile, key.PublicFile
	nixDir := filepath.Join(tmp, "nixwritten")
	testenv.Nix(t, "nix", "copy", "--to", "file://"+nixDir+"?compression=none&secret-key="+sec, storePath)

	ctype := func(key string) string {
		switch {
		case key == "nix-cache-info":
			return "text/x-nix-cache-info"
		case strings.HasSuffix(key, ".narinfo"):
			return "text/x-nix-narinfo"
		case strings.HasPrefix(key, "nar/"):
			return "application/x-nix-nar"
		}
		return "application/octet-stream"
	}
	var keys []string
	err := filepath.WalkDir(nixDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(nixDir, p)
		key := filepath.ToSlash(rel)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, _ := f.Stat()
		keys = append(keys, fmt.Sprintf("%s (%d bytes)", key, st.Size()))
		return b.Put(context.Background(), key, f, st.Size(), ctype(key)) // *os.File: ReaderAt path
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("uploaded %q", keys)

	testenv.Nix(t, "nix-store", "--delete", storePath)
	pk, _ := os.ReadFile(pub)
	testenv.Nix(t, "nix-store", "--realise", storePath, "--max-jobs", "0",
		"--option", "substituters", srv.Endpoint+"/"+bucket,
		"--option", "trusted-public-keys", strings.TrimSpace(string(pk)),
		"--option", "narinfo-cache-negative-ttl", "0")
	got, err := os.ReadFile(filepath.Join(storePath, "big.bin"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("substituted path differs (err %v)", err)
	}
}

func TestErrors(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	ctx := context.Background()

	_, err := s3.New(ctx, s3.Options{Bucket: "nosuchbucket", Endpoint: srv.Endpoint, AddressingStyle: "path",
		Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, "")})
	if !errors.Is(err, s3.ErrBucketNotFound) || !strings.Contains(err.Error(), `"nosuchbucket"`) {
		t.Errorf("missing bucket: %v", err)
	}
	t.Logf("missing bucket: %v", err)

	_, err = s3.New(ctx, s3.Options{Bucket: bucket, Endpoint: srv.Endpoint, AddressingStyle: "path",
		Creds: credentials.NewStaticV4(srv.AccessKey, "wrongsecret", "")})
	if !errors.Is(err, s3.ErrAccessDenied) {
		t.Errorf("wrong secret: %v", err)
	}
	t.Logf("wrong secret: %v", err)
	_, err = s3.New(ctx, s3.Options{Bucket: bucket, Endpoint: srv.Endpoint, AddressingStyle: "path",
		Creds: credentials.NewStaticV4("nosuchuser", "wrongsecret", "")})
	if !errors.Is(err, s3.ErrAccessDenied) {
		t.Errorf("unknown access key: %v", err)
	}
	t.Logf("unknown key: %v", err)

	b := open(t, srv, bucket, func(o *s3.Options) { o.Retries = 3 })
	srv.Stop()
	start := time.Now()
	_, err = b.Stat(ctx, "x.narinfo")
	if !errors.Is(err, s3.ErrUnreachable) {
		t.Errorf("server stopped: %v", err)
	}
	t.Logf("server stopped (%v): %v", time.Since(start).Round(time.Millisecond), err)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stopped server took %v to report", d)
	}
	ctx2, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = b.Put(ctx2, "y", strings.NewReader("y"), 1, "text/plain")
	if err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("Put to stopped server with 300ms deadline: %v after %v", err, time.Since(start))
	}
}

// stopAfter is an io.ReaderAt that stops the server once n bytes were read.
type stopAfter struct {
	r    *bytes.Reader
	n    atomic.Int64
	at   int64
	once sync.Once
	stop func()
}

func (s *stopAfter) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.r.ReadAt(p, off)
	if s.n.Add(int64(n)) > s.at {
		s.once.Do(s.stop)
	}
	return n, err
}

func (s *stopAfter) Read(p []byte) (int, error) { return s.r.Read(p) }

// TestInterruptedMultipart kills the server in the middle of a multipart
// upload. After a restart the key must not exist. minio-go's abort cannot
// reach a dead server, so the parts stay as an incomplete upload until
// AbortIncomplete removes them.
func TestInterruptedMultipart(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	b := open(t, srv, bucket, func(o *s3.Options) { o.PartSize = s3.MinPartSize; o.Retries = 2 })
	data := cachetest.Data(5, 40<<20)
	r := &stopAfter{r: bytes.NewReader(data), at: 12 << 20, stop: srv.Stop}
	err := b.Put(context.Background(), "nar/interrupted.nar", r, int64(len(data)), "application/x-nix-nar")
	if err == nil {
		t.Fatal("Put succeeded although the server was stopped")
	}
	t.Logf("interrupted put: %v", err)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(context.Background(), "nar/interrupted.nar"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("after restart: Stat error %v, want ErrNotFound", err)
	}
	c := srv.Client(t)
	left := 0
	for u := range c.ListIncompleteUploads(context.Background(), bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		left++
	}
	t.Logf("incomplete uploads after restart: %d", left)
	n, err := b.AbortIncomplete(context.Background())
	if err != nil || n != left {
		t.Fatalf("AbortIncomplete = %d, %v; want %d", n, err, left)
	}
	for u := range c.ListIncompleteUploads(context.Background(), bucket, "", true) {
		t.Fatalf("incomplete upload left after AbortIncomplete: %+v", u)
	}
}

// flaky fails the first n requests with a status and S3 error code.
type flaky struct {
	mu       sync.Mutex
	n        int
	status   int
	code     string
	requests int
}

func (f *flaky) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.requests++
	fail := f.n > 0
	if fail {
		f.n--
	}
	f.mu.Unlock()
	if fail {
		if req.Body != nil {
			io.Copy(io.Discard, req.Body)
			req.Body.Close()
		}
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + f.code + `</Code><Message>injected</Message></Error>`
		return &http.Response{StatusCode: f.status, Status: http.StatusText(f.status), Header: http.Header{"Content-Type": {"application/xml"}},
			Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestRetries injects 429, 503 SlowDown and 500 answers: a few are retried
// with backoff and the upload succeeds, plain and multipart; endless ones
// fail after exactly Retries attempts.
func TestRetries(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	for _, tc := range []struct {
		status int
		code   string
	}{{429, "TooManyRequests"}, {503, "SlowDown"}, {500, "InternalError"}} {
		for _, size := range []int{1000, 11 << 20} {
			for _, plain := range []bool{false, true} {
				name := fmt.Sprintf("%d-%d-plain=%v", tc.status, size, plain)
				f := &flaky{n: 2, status: tc.status, code: tc.code}
				b := open(t, srv, bucket, func(o *s3.Options) { o.Transport = f; o.SkipBucketCheck = true; o.PartSize = s3.MinPartSize })
				data := cachetest.Data(uint64(size), size)
				var r io.Reader = bytes.NewReader(data)
				if plain {
					r = cachetest.Plain(data)
				}
				if err := b.Put(context.Background(), name, r, int64(size), "application/x-nix-nar"); err != nil {
					t.Errorf("%s: Put with 2 injected failures: %v", name, err)
					continue
				}
				if got := cachetest.Read(t, b, name); !bytes.Equal(got, data) {
					t.Errorf("%s: content differs", name)
				}
			}
		}
	}
	f := &flaky{n: 1 << 30, status: 503, code: "SlowDown"}
	b := open(t, srv, bucket, func(o *s3.Options) { o.Transport = f; o.SkipBucketCheck = true; o.Retries = 4 })
	start := time.Now()
	err := b.Put(context.Background(), "never", strings.NewReader("x"), 1, "text/plain")
	if err == nil || f.requests != 4 {
		t.Fatalf("endless SlowDown: err %v after %d requests, want an error after 4", err, f.requests)
	}
	t.Logf("endless SlowDown: %d requests in %v: %v", f.requests, time.Since(start).Round(time.Millisecond), err)
}

func TestParseLocation(t *testing.T) {
	tests := []struct {
		url     string
		want    s3.Options
		wantErr string
	}{
		{url: "s3://bucket", want: s3.Options{Bucket: "bucket"}},
		{url: "s3://bucket/a/b?region=eu-west-1&profile=p&addressing-style=virtual&storage-class=STANDARD_IA",
			want: s3.Options{Bucket: "bucket", Prefix: "a/b", Region: "eu-west-1", Profile: "p", AddressingStyle: "virtual", StorageClass: "STANDARD_IA"}},
		{url: "s3://bucket?endpoint=http://127.0.0.1:9000", want: s3.Options{Bucket: "bucket", Endpoint: "http://127.0.0.1:9000"}},
		{url: "s3://bucket?endpoint=minio.local:9000&scheme=http", want: s3.Options{Bucket: "bucket", Endpoint: "http://minio.local:9000"}},
		{url: "s3://bucket?endpoint=minio.local:9000", want: s3.Options{Bucket: "bucket", Endpoint: "https://minio.local:9000"}},
		{url: "s3://bucket?multipart-chunk-size=8388608&retry-attempts=3", want: s3.Options{Bucket: "bucket", PartSize: 8 << 20, Retries: 3}},
		{url: "s3://bucket?buffer-size=5242880", want: s3.Options{Bucket: "bucket", PartSize: 5 << 20}},
		{url: "s3://bucket?stall-timeout=2m", want: s3.Options{Bucket: "bucket", StallTimeout: 2 * time.Minute}},
		{url: "s3://bucket?stall-timeout=45", want: s3.Options{Bucket: "bucket", StallTimeout: 45 * time.Second}},
		{url: "s3://bucket?stall-timeout=250ms", want: s3.Options{Bucket: "bucket", StallTimeout: 250 * time.Millisecond}},
		{url: "s3://bucket?stall-timeout=0", wantErr: `"stall-timeout"`},
		{url: "s3://bucket?max-requests=8", want: s3.Options{Bucket: "bucket", MaxRequests: 8}},
		{url: "s3://bucket?max-requests=0", want: s3.Options{Bucket: "bucket", MaxRequests: -1}},
		{url: "s3://bucket?max-requests=4097", wantErr: `"max-requests"`},
		{url: "s3://bucket?max-requests=-1", wantErr: `"max-requests"`},
		{url: "s3://bucket?max-requests=many", wantErr: `"max-requests"`},
		{url: "s3://bucket?stall-timeout=-1s", wantErr: `"stall-timeout"`},
		{url: "s3://bucket?stall-timeout=25h", wantErr: `"stall-timeout"`},
		{url: "s3://bucket?stall-timeout=soon", wantErr: `"stall-timeout"`},
		{url: "s3://bucket?addressing-style=dns", wantErr: `"addressing-style"`},
		{url: "s3://bucket?multipart-chunk-size=1024", wantErr: `"multipart-chunk-size"`},
		{url: "s3://bucket?multipart-chunk-size=abc", wantErr: `"multipart-chunk-size"`},
		{url: "s3://bucket?retry-attempts=0", wantErr: `"retry-attempts"`},
		{url: "s3://bucket?region=", wantErr: `"region"`},
		{url: "s3://bucket?endpoint=", wantErr: `"endpoint"`},
		{url: "s3://bucket?scheme=http", wantErr: `"scheme"`},
		{url: "s3://bucket?endpoint=http://h:1&scheme=http", wantErr: `"scheme"`},
	}
	for _, tt := range tests {
		u, err := cache.ParseURL(tt.url)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, s3.ErrBadParam) {
				t.Errorf("ParseURL(%q) error = %v, want one naming %s", tt.url, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.url, err)
			continue
		}
		if got := u.Location.(s3.Options); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseURL(%q).Location = %+v, want %+v", tt.url, got, tt.want)
		}
	}
	for _, ep := range []string{"ftp://h", "http://h/path", "http://"} {
		_, err := s3.New(context.Background(), s3.Options{Bucket: "bbb", Endpoint: ep, SkipBucketCheck: true})
		if !errors.Is(err, s3.ErrBadParam) {
			t.Errorf("New(endpoint %q) error = %v, want ErrBadParam", ep, err)
		}
	}
}

// TestFailedPutAborts checks that multipart uploads whose reader was at
// fault (short or long, or a cache.Producer that fails after its bytes) are
// aborted: no object and no incomplete upload remain. (A cancelled Put leaves its upload for the next Put to resume:
// TestCancelledPutResumes.)
func TestFailedPutAborts(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	b := open(t, srv, bucket, func(o *s3.Options) { o.PartSize = s3.MinPartSize })
	size := 23 << 20
	data := cachetest.Data(3, size+1)
	cases := map[string]func() (context.Context, io.Reader){
		"short-plain": func() (context.Context, io.Reader) { return context.Background(), cachetest.Plain(data[:size-1]) },
		"long-plain":  func() (context.Context, io.Reader) { return context.Background(), cachetest.Plain(data) },
		"short-readerat": func() (context.Context, io.Reader) {
			return context.Background(), &shortAt{bytes.NewReader(data[:size]), 9 << 20}
		},
		"short-producer": func() (context.Context, io.Reader) { return context.Background(), &producer{data: data[:size-1]} },
		"long-producer":  func() (context.Context, io.Reader) { return context.Background(), &producer{data: data} },
		// All the bytes, then the check after them fails (a NAR whose
		// NarHash does not match the store database).
		"failing-producer": func() (context.Context, io.Reader) {
			return context.Background(), &producer{data: data[:size], err: errors.New("injected mismatch")}
		},
	}
	for name, mk := range cases {
		c, r := mk()
		if err := b.Put(c, name, r, int64(size), "application/x-nix-nar"); err == nil {
			t.Errorf("%s: Put succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// Put aborts before it returns, but a part request cancelled in flight
	// may still reach the server: poll until no incomplete upload is left.
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left = left[:0]
		for u := range srv.Client(t).ListIncompleteUploads(context.Background(), bucket, "", true) {
			left = append(left, fmt.Sprintf("%s (err %v)", u.Key, u.Err))
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) != 0 {
		t.Errorf("incomplete uploads left after 10 s: %q", left)
	}
	var keys []string
	b.List(context.Background(), "", func(oi cache.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
	if len(keys) != 0 {
		t.Errorf("objects left: %q", keys)
	}
}

// producer is a cache.Producer (what Push gives Put for a NAR it dumps):
// Produce writes data in 64 KiB writes, as the NAR dump does, then returns
// err. Read fails, so a Put that reads it instead fails.
type producer struct {
	data []byte
	err  error
}

func (p *producer) Read([]byte) (int, error) { return 0, errors.New("producer read, not produced") }

func (p *producer) Produce(w io.Writer) error {
	for off := 0; off < len(p.data); off += 64 << 10 {
		if _, err := w.Write(p.data[off:min(off+64<<10, len(p.data))]); err != nil {
			return err
		}
	}
	return p.err
}

// shortAt is an io.ReaderAt whose reads from at fail, though its size
// check (the last byte) passes: a file that cannot be read whole.
type shortAt struct {
	r  *bytes.Reader
	at int64
}

func (s *shortAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > s.at && off < s.r.Size()-1 {
		return 0, errors.New("injected read error")
	}
	return s.r.ReadAt(p, off)
}

func (s *shortAt) Read(p []byte) (int, error) { return s.r.Read(p) }

func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{
		"s3://bucket/a/b?region=eu-west-1&profile=p&addressing-style=virtual",
		"s3://bucket?endpoint=minio.local:9000&scheme=http&multipart-chunk-size=8388608",
		"s3://bucket?retry-attempts=3&storage-class=STANDARD_IA&buffer-size=5242880",
		"s3://bucket?endpoint=http://127.0.0.1:9000&addressing-style=path",
		"s3://bucket?stall-timeout=30s&retry-attempts=2",
		"s3://bucket?max-requests=0&retry-attempts=2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := cache.ParseURL(s)
		if err != nil || u.Scheme != "s3" {
			if err != nil && !errors.Is(err, cache.ErrBadURL) {
				t.Fatalf("error does not wrap ErrBadURL: %v", err)
			}
			return
		}
		o := u.Location.(s3.Options)
		if o.PartSize != 0 && (o.PartSize < s3.MinPartSize || o.PartSize > s3.MaxPartSize) {
			t.Fatalf("part size %d out of range", o.PartSize)
		}
		if o.StallTimeout < 0 || o.StallTimeout > 24*time.Hour {
			t.Fatalf("stall timeout %v out of range", o.StallTimeout)
		}
		again, err := cache.ParseURL(u.String())
		if err != nil || !reflect.DeepEqual(again, u) {
			t.Fatalf("round trip of %q via %q: %+v, %v", s, u.String(), again, err)
		}
	})
}

// stallTimeout is the no-progress timeout of the stall tests.
const stallTimeout = 500 * time.Millisecond

// stalling returns a backend on a fresh public bucket reached through a
// faultproxy, with a short stall timeout and mod applied.
func stalling(t *testing.T, srv *testenv.S3, mod func(*s3.Options)) (*s3.Backend, *faultproxy.Proxy, string) {
	t.Helper()
	bucket := newBucket(t, srv, true)
	p, err := faultproxy.Start(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	b := open(t, srv, bucket, func(o *s3.Options) {
		o.Endpoint = p.URL
		o.StallTimeout = stallTimeout
		o.PartSize = s3.MinPartSize
		if mod != nil {
			mod(o)
		}
	})
	return b, p, bucket
}

// TestStalledServer puts objects through a proxy that stalls requests: one
// that stops reading the body after 1 MiB (single PUT and a part of a
// multipart upload) and one that reads the request and never answers. The
// stalled request must be abandoned after the stall timeout and retried, so
// the Put succeeds within a few timeouts, and the object is served byte for
// byte. With minio-go's own timeouts alone the silent server cost a minute
// per attempt and a body stall hung until the caller's deadline.
func TestStalledServer(t *testing.T) {
	srv := testenv.StartS3(t)
	const mib = 1 << 20
	for _, tc := range []struct {
		name   string
		faults faultproxy.Faults
		size   int
		plain  bool
	}{
		{"body stops at 1 MiB, single PUT", faultproxy.Faults{StallBodyAfter: mib, StallLimit: 1}, 4 * mib, false},
		{"body stops at 1 MiB, multipart from ReaderAt", faultproxy.Faults{StallBodyAfter: mib, StallLimit: 2}, 16 * mib, false},
		{"body stops at 1 MiB, multipart from plain reader", faultproxy.Faults{StallBodyAfter: mib, StallLimit: 2}, 16 * mib, true},
		{"never answers, small PUT", faultproxy.Faults{Silent: true, StallLimit: 1}, 400, true},
		{"never answers, multipart", faultproxy.Faults{Silent: true, StallLimit: 3}, 11 * mib, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, p, bucket := stalling(t, srv, nil)
			p.Set(tc.faults)
			data := cachetest.Data(uint64(tc.size), tc.size)
			var r io.Reader = bytes.NewReader(data)
			if tc.plain {
				r = cachetest.Plain(data)
			}
			start := time.Now()
			err := b.Put(context.Background(), "nar/x.nar", r, int64(len(data)), "application/x-nix-nar")
			took := time.Since(start)
			t.Logf("Put after %d stalls: %v in %v", p.Stalled.Load(), err, took.Round(time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if n := p.Stalled.Load(); n != int64(tc.faults.StallLimit) {
				t.Fatalf("%d requests stalled, want %d: the test did not stall what it meant to", n, tc.faults.StallLimit)
			}
			if limit := time.Duration(tc.faults.StallLimit)*(stallTimeout+2*time.Second) + 5*time.Second; took > limit {
				t.Errorf("Put took %v, want under %v", took, limit)
			}
			if problem := servedAsNixReadsIt(t, srv.Endpoint+"/"+bucket+"/nar/x.nar", "application/x-nix-nar", data); problem != "" {
				t.Error(problem)
			}
		})
	}
}

// TestStalledServerGivesUp checks that a server that stalls every request
// makes Put fail with ErrStalled after Retries attempts of one stall timeout
// each, and that a stalled read fails the same way.
func TestStalledServerGivesUp(t *testing.T) {
	srv := testenv.StartS3(t)
	b, p, _ := stalling(t, srv, func(o *s3.Options) { o.Retries = 3 })
	data := cachetest.Data(9, 3<<20)
	if err := b.Put(context.Background(), "nar/ok.nar", bytes.NewReader(data), int64(len(data)), "application/x-nix-nar"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []faultproxy.Faults{{StallBodyAfter: 1 << 20}, {Silent: true}} {
		p.Set(f)
		before := p.Stalled.Load()
		start := time.Now()
		err := b.Put(context.Background(), "nar/never.nar", bytes.NewReader(data), int64(len(data)), "application/x-nix-nar")
		took := time.Since(start)
		t.Logf("%+v: %v after %v", f, err, took.Round(time.Millisecond))
		if !errors.Is(err, s3.ErrStalled) {
			t.Errorf("%+v: error %v, want ErrStalled", f, err)
		}
		if n := p.Stalled.Load() - before; n != 3 {
			t.Errorf("%+v: %d attempts stalled, want 3 (Retries)", f, n)
		}
		if took > 10*time.Second {
			t.Errorf("%+v: gave up after %v, want about 3 stall timeouts", f, took)
		}
	}
	p.Set(faultproxy.Faults{Silent: true})
	start := time.Now()
	_, err := b.Get(context.Background(), "nar/ok.nar")
	if !errors.Is(err, s3.ErrStalled) || time.Since(start) > 10*time.Second {
		t.Errorf("Get from a silent server: %v after %v, want ErrStalled", err, time.Since(start))
	}
}

// TestStalledPutDoesNotBlockOthers runs a Put that the server stalls for
// good next to Puts it serves: those complete while the stalled one is still
// being retried.
func TestStalledPutDoesNotBlockOthers(t *testing.T) {
	srv := testenv.StartS3(t)
	b, p, _ := stalling(t, srv, func(o *s3.Options) { o.StallTimeout = time.Second; o.Retries = 2 })
	p.Set(faultproxy.Faults{StallBodyAfter: 1 << 20, StallPath: "/nar/stalled"})
	data := cachetest.Data(1, 3<<20)
	stalled := make(chan error, 1)
	start := time.Now()
	go func() {
		stalled <- b.Put(context.Background(), "nar/stalled.nar", bytes.NewReader(data), int64(len(data)), "application/x-nix-nar")
	}()
	for deadline := time.Now().Add(10 * time.Second); p.Stalled.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stalled Put never reached the proxy")
		}
	}
	for i := range 4 {
		key := fmt.Sprintf("nar/other-%d.nar", i)
		if err := b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), "application/x-nix-nar"); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	}
	othersDone := time.Since(start)
	select {
	case err := <-stalled:
		t.Fatalf("the stalled Put ended (%v) before the others were done after %v", err, othersDone)
	default:
	}
	err := <-stalled
	t.Logf("4 other Puts done after %v; stalled Put: %v after %v", othersDone.Round(time.Millisecond), err, time.Since(start).Round(time.Millisecond))
	if !errors.Is(err, s3.ErrStalled) {
		t.Errorf("stalled Put: %v, want ErrStalled", err)
	}
}

// TestStalledServerNixReads uploads a cache written by Nix through a proxy
// that stalls the first requests (never answering the short ones, stopping
// mid-body on a part of the NAR): after the retries, Nix substitutes the
// path from the bucket.
func TestStalledServerNixReads(t *testing.T) {
	testenv.RequireNix(t)
	srv := testenv.StartS3(t)
	b, p, bucket := stalling(t, srv, nil)
	p.Set(faultproxy.Faults{StallBodyAfter: 1 << 20, Silent: true, StallLimit: 3})
	nixRoundTrip(t, srv, bucket, b)
	if n := p.Stalled.Load(); n != 3 {
		t.Fatalf("%d requests stalled, want 3", n)
	}
}

// slowReaderAt pauses for pause once per pass over its data, after the
// first MiB: a slow disk or a slow producer, not a stalled server.
type slowReaderAt struct {
	*bytes.Reader
	pause  time.Duration
	mu     sync.Mutex
	paused bool
}

func (s *slowReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	if off == 0 {
		s.paused = false // a new pass (Content-MD5, then the upload)
	} else if off >= 1<<20 && !s.paused {
		s.paused = true
		time.Sleep(s.pause)
	}
	s.mu.Unlock()
	return s.Reader.ReadAt(p, off)
}

// TestStallTimeoutIgnoresSlowEnds checks that only the network's silence
// counts: a source that pauses for twice the stall timeout while the body
// is sent, and a reader of a GET that pauses as long between reads, cause
// no retry and no error.
func TestStallTimeoutIgnoresSlowEnds(t *testing.T) {
	srv := testenv.StartS3(t)
	b, p, _ := stalling(t, srv, nil)
	// One PUT: minio-go reads the source for Content-MD5, then again while
	// sending (larger objects go up from part buffers read beforehand).
	data := cachetest.Data(4, 3<<20)
	r := &slowReaderAt{Reader: bytes.NewReader(data), pause: 2 * stallTimeout}
	if err := b.Put(context.Background(), "nar/slow.nar", r, int64(len(data)), "application/x-nix-nar"); err != nil {
		t.Fatal(err)
	}
	rc, err := b.Get(context.Background(), "nar/slow.nar")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * stallTimeout) // the consumer is slow, not the server
	rest, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(append(head, rest...), data) {
		t.Fatalf("slow reader of a GET: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); p.InFlight.Load() != 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	for _, r := range p.Log() {
		if r.Failed() {
			t.Errorf("request failed (a retry): %+v", r)
		}
	}
}

// headDown answers every HEAD with 502 once a multipart upload has been
// completed, as a server restarting just then does, and records the
// requests that follow the completion.
type headDown struct {
	mu    sync.Mutex
	done  bool
	after []string
}

func (h *headDown) RoundTrip(req *http.Request) (*http.Response, error) {
	h.mu.Lock()
	done := h.done
	if done {
		h.after = append(h.after, req.Method+" "+req.URL.RawQuery)
	}
	h.mu.Unlock()
	if done && req.Method == http.MethodHead {
		return &http.Response{StatusCode: 502, Status: "502 Bad Gateway", Header: http.Header{},
			Body: io.NopCloser(strings.NewReader("")), Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && req.Method == http.MethodPost && req.URL.Query().Has("uploadId") && resp.StatusCode == 200 {
		h.mu.Lock()
		h.done = true
		h.mu.Unlock()
	}
	return resp, err
}

// TestPutCheckFailsNoReupload: when the check after a completed multipart
// upload cannot reach the server, Put reports the error and does not send
// the object again (the caller's next attempt stats it first): only HEADs
// follow the completion, and the object is there once the server answers.
func TestPutCheckFailsNoReupload(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	h := &headDown{}
	b := open(t, srv, bucket, func(o *s3.Options) {
		o.Transport = h
		o.SkipBucketCheck = true
		o.PartSize = s3.MinPartSize
		o.Retries = 2
	})
	data := cachetest.Data(9, 11<<20)
	err := b.Put(context.Background(), "nar/check.nar", bytes.NewReader(data), int64(len(data)), "application/x-nix-nar")
	if err == nil {
		t.Fatal("Put succeeded although its check could not reach the server")
	}
	t.Logf("Put: %v", err)
	h.mu.Lock()
	after := h.after
	h.mu.Unlock()
	if len(after) == 0 {
		t.Fatal("no request after the completed upload: the check did not run")
	}
	for _, r := range after {
		if !strings.HasPrefix(r, "HEAD ") {
			t.Errorf("after the completed upload and a failed check: %q (want only HEADs, no re-upload)", after)
			break
		}
	}
	if got := cachetest.Read(t, open(t, srv, bucket, nil), "nar/check.nar"); !bytes.Equal(got, data) {
		t.Error("stored object differs")
	}
}
