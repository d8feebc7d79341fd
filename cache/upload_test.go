package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/nar"
	"github.com/nixcache/nixcache/storepath"
)

// eagerBackend's Put reads exactly size bytes and stores them, without
// looking for the end of the reader: the laziest Put the Backend contract
// could be read to allow. A NAR that streams into it must still never be
// stored when its dump does not match the store database.
type eagerBackend struct{ cache.Backend }

func (b eagerBackend) Put(ctx context.Context, key string, r io.Reader, size int64, ct string) error {
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		return err
	}
	return b.Backend.Put(ctx, key, bytes.NewReader(buf), size, ct)
}

// narObjects lists the keys under nar/.
func narObjects(t *testing.T, c *cache.Cache) []string {
	t.Helper()
	var keys []string
	if err := c.Backend.List(context.Background(), "nar/", func(oi cache.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// tempFiles lists the temporary files left under a file:// cache's root.
func tempFiles(t *testing.T, root string) []string {
	t.Helper()
	var left []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), file.TempPrefix) && !strings.HasSuffix(d.Name(), "swept") {
			left = append(left, p)
		}
		return nil
	})
	return left
}

// TestPushStreamMismatchStoresNothing: with compression=none the NAR
// streams into the upload while it is dumped, under the key its database
// NarHash names. A dump that turns out not to match the database (other
// hash, longer, shorter) must leave no narinfo, no NAR object, no
// temporary file and no incomplete multipart upload, on every backend and
// whether the NAR goes up in one request or in parts; a matching one is
// stored. Each case pushes a good path first, so that the bad one's
// failure is its own.
func TestPushStreamMismatchStoresNothing(t *testing.T) {
	type backend struct {
		name string
		open func(t *testing.T) (*cache.Cache, func() int)
	}
	backends := []backend{
		{"file", func(t *testing.T) (*cache.Cache, func() int) {
			dir := t.TempDir()
			c, err := cache.Open(context.Background(), "file://"+dir+"?compression=none")
			if err != nil {
				t.Fatal(err)
			}
			return c, func() int { return len(tempFiles(t, dir)) }
		}},
		{"eager", func(t *testing.T) (*cache.Cache, func() int) {
			dir := t.TempDir()
			c, err := cache.Open(context.Background(), "file://"+dir+"?compression=none")
			if err != nil {
				t.Fatal(err)
			}
			return cache.New(eagerBackend{c.Backend}, c.Options()), func() int { return len(tempFiles(t, dir)) }
		}},
		{"s3", func(t *testing.T) (*cache.Cache, func() int) {
			srv := testenv.StartS3(t)
			srv.SetEnv(t)
			srv.MakeBucket(t, "stream", false)
			// 5 MiB parts: the 12 MiB path goes up as a multipart upload.
			c, err := cache.Open(context.Background(), srv.URL("stream", "compression=none", "multipart-chunk-size=5242880"))
			if err != nil {
				t.Fatal(err)
			}
			return c, func() int {
				n, err := c.Backend.(*s3.Backend).AbortIncomplete(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			c, leftovers := be.open(t)
			src := newFakeSource(t)
			big := bytes.Repeat([]byte("0123456789abcdef"), (12<<20)/16)
			other := src.MustAdd(t, "other", nil, nil)
			for _, size := range []string{"small", "big"} {
				for _, bad := range []string{"hash", "longer", "shorter", "good"} {
					t.Run(size+"-"+bad, func(t *testing.T) {
						files := map[string][]byte{"f": []byte("small " + bad)}
						if size == "big" {
							files = map[string][]byte{"f": append([]byte(bad), big...)}
						}
						p := src.MustAdd(t, size+"-"+bad, nil, files)
						info := src.Infos[p]
						switch bad {
						case "hash":
							info.NarHash = src.Infos[other].NarHash
						case "longer":
							info.NarSize-- // the dump is one byte longer than the database says
						case "shorter":
							info.NarSize++
						}
						sum, err := c.Push(context.Background(), src, []storepath.Path{p}, cache.PushOptions{})
						if bad == "good" {
							if err != nil || sum.Uploaded != 1 {
								t.Fatalf("push: %v, %+v", err, sum)
							}
							checkConsistent(t, c)
							rc, err := c.Backend.Get(context.Background(), "nar/"+info.NarHash.RawBase32()+".nar")
							if err != nil {
								t.Fatal(err)
							}
							defer rc.Close()
							var want bytes.Buffer
							if err := nar.DumpPath(&want, string(p)); err != nil {
								t.Fatal(err)
							}
							if got, _ := io.ReadAll(rc); !bytes.Equal(got, want.Bytes()) {
								t.Fatalf("stored NAR differs from the dump (%d vs %d bytes)", len(got), want.Len())
							}
							return
						}
						if !errors.Is(err, cache.ErrNarMismatch) {
							t.Fatalf("err = %v, want ErrNarMismatch", err)
						}
						if _, err := c.Backend.Stat(context.Background(), cache.NarInfoKey(p)); !errors.Is(err, cache.ErrNotFound) {
							t.Errorf("narinfo of the bad path: %v", err)
						}
						for _, k := range narObjects(t, c) {
							if k == "nar/"+info.NarHash.RawBase32()+".nar" && bad != "hash" {
								t.Errorf("NAR object %s stored for a mismatching dump", k)
							}
						}
						if n := leftovers(); n != 0 {
							t.Errorf("%d temporary files or incomplete uploads left", n)
						}
						checkConsistent(t, c)
					})
				}
			}
			// Only the good paths' NARs (and the "hash" case's key, which is
			// the other path's NAR name: never pushed, so absent too).
			if got := len(narObjects(t, c)); got != 2 {
				t.Errorf("%d NAR objects, want 2 (the good paths'): %v", got, narObjects(t, c))
			}
		})
	}
}

// TestPushNoneS3NixRoundTrip: a path pushed to S3 with compression=none,
// streamed while dumped in 5 MiB parts, is accepted by real Nix over HTTP.
func TestPushNoneS3NixRoundTrip(t *testing.T) {
	ctx := context.Background()
	big := addBigPath(t, 12)
	sec, pub := nixKey(t, "nixcache-s3-1")
	srv := testenv.StartS3(t)
	srv.SetEnv(t)
	srv.MakeBucket(t, "plain", true)
	c, err := cache.Open(ctx, srv.URL("plain", "compression=none", "multipart-chunk-size=5242880", "secret-key="+sec))
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := c.Push(ctx, openStore(t), []storepath.Path{big}, cache.PushOptions{}); err != nil || sum.Uploaded != 1 {
		t.Fatalf("push: %v, %+v", err, sum)
	}
	checkConsistent(t, c)
	nixVerify(t, srv.Endpoint+"/plain", pub, []storepath.Path{big})
}

// TestPushFileStagedNoTemp: on file:// the NAR is written straight into
// the file that becomes the object (no temporary file in TempDir), and a
// cancelled or failed push leaves no temporary file in the cache.
func TestPushFileStagedNoTemp(t *testing.T) {
	for _, method := range []string{"zstd", "xz", "none"} {
		t.Run(method, func(t *testing.T) {
			src := newFakeSource(t)
			p := src.MustAdd(t, "x", nil, map[string][]byte{"f": bytes.Repeat([]byte("x"), 3<<20)})
			bad := src.MustAdd(t, "bad", nil, nil)
			src.Infos[bad].NarSize++
			dir, tmp := t.TempDir(), t.TempDir()
			c, err := cache.Open(context.Background(), "file://"+dir+"?compression="+method)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Push(context.Background(), src, []storepath.Path{p}, cache.PushOptions{TempDir: tmp}); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("TempDir used: %v", ents)
			}
			if _, err := c.Push(context.Background(), src, []storepath.Path{bad}, cache.PushOptions{}); !errors.Is(err, cache.ErrNarMismatch) {
				t.Fatalf("err = %v, want ErrNarMismatch", err)
			}
			if left := tempFiles(t, dir); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
			checkConsistent(t, c)
			if n := len(narObjects(t, c)); n != 1 {
				t.Errorf("%d NAR objects, want 1", n)
			}
		})
	}
}

// slowBackend takes delay before each NAR Put (as a slow upload would) and
// counts touches: an object is dated by the end of its Put, like on most
// S3 servers and files.
type slowBackend struct {
	cache.Backend
	delay   time.Duration
	touches atomic.Int32
}

func (b *slowBackend) Put(ctx context.Context, key string, r io.Reader, size int64, ct string) error {
	if strings.HasPrefix(key, "nar/") {
		time.Sleep(b.delay)
	}
	return b.Backend.Put(ctx, key, r, size, ct)
}

func (b *slowBackend) Touch(ctx context.Context, key string) error {
	b.touches.Add(1)
	return b.Backend.(cache.Toucher).Touch(ctx, key)
}

// TestPushSlowUploadNotTouched: a NAR whose upload took longer than the
// freshness window is dated by the object's ModTime, not by when its
// upload began, so it is not touched again before its narinfo (a touch
// costs a whole rewrite on servers that cannot renew modification times:
// it made a streamed S3 push under load twice as long).
func TestPushSlowUploadNotTouched(t *testing.T) {
	src := newFakeSource(t)
	p := src.MustAdd(t, "slow", nil, nil)
	c, err := cache.Open(context.Background(), "file://"+t.TempDir()+"?compression=none")
	if err != nil {
		t.Fatal(err)
	}
	b := &slowBackend{Backend: c.Backend, delay: 3500 * time.Millisecond}
	if _, err := cache.New(b, c.Options()).Push(context.Background(), src, []storepath.Path{p}, cache.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := b.touches.Load(); n != 0 {
		t.Errorf("%d touches of the NAR just written, want 0", n)
	}
	checkConsistent(t, c)
}
