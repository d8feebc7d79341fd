package cache_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

// TestPushS3NixRoundTrip pushes a Nix-built closure to a real S3 server
// (versitygw), then real Nix verifies and substitutes it over plain HTTP
// from the public bucket.
func TestPushS3NixRoundTrip(t *testing.T) {
	for _, params := range [][]string{{"compression=zstd"}, {"compression=xz", "parallel-compression=true", "write-nar-listing=true"}} {
		t.Run(params[0], func(t *testing.T) {
			ctx := context.Background()
			top, closure := buildClosure(t)
			sec, pub := nixKey(t, "nixcache-s3-1")
			s3 := testenv.StartS3(t)
			s3.SetEnv(t)
			s3.MakeBucket(t, "nixcache", true)
			c, err := cache.Open(ctx, s3.URL("nixcache", append(params, "secret-key="+sec)...))
			if err != nil {
				t.Fatal(err)
			}
			sum, err := c.Push(ctx, openStore(t), []storepath.Path{top}, cache.PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Uploaded != 3 {
				t.Fatalf("summary %+v", sum)
			}
			checkConsistent(t, c)
			httpURL := s3.Endpoint + "/nixcache"
			nixVerify(t, httpURL, pub, closure)
			deleteAndSubstitute(t, httpURL, pub, top, closure)
		})
	}
}

// interruptBackend calls stop once after more than after bytes of NAR
// uploads have been read, from inside the backend's Put.
type interruptBackend struct {
	cache.Backend
	after int64
	read  atomic.Int64
	once  sync.Once
	stop  func()
}

type hookReader struct {
	*io.SectionReader
	b *interruptBackend
}

func (h hookReader) hook(n int) {
	if h.b.read.Add(int64(n)) > h.b.after {
		h.b.once.Do(h.b.stop)
	}
}

func (h hookReader) Read(p []byte) (int, error) {
	n, err := h.SectionReader.Read(p)
	h.hook(n)
	return n, err
}

func (h hookReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := h.SectionReader.ReadAt(p, off)
	h.hook(n)
	return n, err
}

func (b *interruptBackend) Put(ctx context.Context, key string, r io.Reader, size int64, ct string) error {
	if sr, ok := r.(*io.SectionReader); ok && strings.HasPrefix(key, "nar/") {
		r = hookReader{sr, b}
	}
	return b.Backend.Put(ctx, key, r, size, ct)
}

// TestPushS3ServerStopped: the S3 server dies in the middle of a large NAR
// upload. Push reports a clear error naming the path, no narinfo is left
// without its NAR, and a rerun after restart completes and Nix accepts it.
func TestPushS3ServerStopped(t *testing.T) {
	ctx := context.Background()
	big := addBigPath(t, 100)
	top, closure := buildClosure(t)
	sec, pub := nixKey(t, "nixcache-s3-1")
	s3 := testenv.StartS3(t)
	s3.SetEnv(t)
	s3.MakeBucket(t, "nixcache", true)
	url := s3.URL("nixcache", "compression=zstd", "secret-key="+sec)
	c, err := cache.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	ib := &interruptBackend{Backend: c.Backend, after: 30 << 20, stop: s3.Stop}
	broken := cache.New(ib, c.Options())
	ctx2, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	_, err = broken.Push(ctx2, openStore(t), []storepath.Path{big, top}, cache.PushOptions{Jobs: 1})
	if err == nil {
		t.Fatal("push succeeded although the server was stopped")
	}
	t.Logf("push with server stopped failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if !strings.Contains(err.Error(), string(big)) {
		t.Errorf("error does not name %s", big)
	}
	if err := s3.Start(); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, c)
	if _, err := c.Backend.Stat(ctx, cache.NarInfoKey(big)); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("narinfo of %s after the failed push: %v, want ErrNotFound", big, err)
	}
	sum, err := c.Push(ctx, openStore(t), []storepath.Path{big, top}, cache.PushOptions{})
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	t.Logf("rerun: %s", sum)
	checkConsistent(t, c)
	nixVerify(t, s3.Endpoint+"/nixcache", pub, append(closure, big))
}

// TestOpenS3Errors: a missing bucket and wrong credentials each give one
// clear error.
func TestOpenS3Errors(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource(t)
	p := src.MustAdd(t, "x", nil, nil)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "exists", false)
	tests := []struct {
		name, bucket, key, secret string
		want                      string
	}{
		{"missing bucket", "nosuchbucket", s3.AccessKey, s3.SecretKey, "nosuchbucket"},
		{"wrong credentials", "exists", s3.AccessKey, "wrong-secret", "exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", tt.key)
			t.Setenv("AWS_SECRET_ACCESS_KEY", tt.secret)
			c, err := cache.Open(ctx, s3.URL(tt.bucket))
			if err == nil {
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				_, err = c.Push(ctx, src, []storepath.Path{p}, cache.PushOptions{})
			}
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
		})
	}
}
