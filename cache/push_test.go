package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// TestPushFileNixRoundTrip pushes a closure built by Nix to a file:// cache
// with each compression, then lets real Nix judge: nix store verify must
// accept it, and after deleting the closure Nix must substitute it back.
func TestPushFileNixRoundTrip(t *testing.T) {
	tests := []struct {
		name, params string
		ext          string
		xzBlock      int
	}{
		{"zstd", "compression=zstd", ".nar.zst", 0},
		{"zstd-level19", "compression=zstd&compression-level=19", ".nar.zst", 0},
		{"xz", "compression=xz", ".nar.xz", 0},
		{"xz-parallel", "compression=xz&parallel-compression=true", ".nar.xz", 0},
		{"xz-parallel-64k-streams", "compression=xz&parallel-compression=true", ".nar.xz", 64 << 10},
		{"none", "compression=none", ".nar", 0},
		{"zstd-listing", "compression=zstd&write-nar-listing=true&priority=30&want-mass-query=true", ".nar.zst", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			top, closure := buildClosure(t)
			sec, pub := nixKey(t, "nixcache-test-1")
			dir := t.TempDir()
			url := "file://" + dir + "?" + tt.params + "&secret-key=" + sec
			c, err := cache.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			if tt.xzBlock > 0 {
				// Many concatenated xz streams per NAR: Nix must read them all.
				o := c.Options()
				o.Compression.BlockSize = tt.xzBlock
				c = cache.New(c.Backend, o)
			}
			var mu sync.Mutex
			events := map[cache.EventKind]int{}
			sum, err := c.Push(ctx, openStore(t), []storepath.Path{top}, cache.PushOptions{
				Progress: func(e cache.Event) { mu.Lock(); events[e.Kind]++; mu.Unlock() },
			})
			if err != nil {
				t.Fatalf("push: %v", err)
			}
			if sum.Uploaded != 3 || sum.Skipped != 0 || sum.Failed != 0 {
				t.Fatalf("summary %+v, want 3 uploaded", sum)
			}
			if events[cache.EventUploaded] != 3 || events[cache.EventStarted] != 3 {
				t.Errorf("events %v", events)
			}
			nars, _ := filepath.Glob(filepath.Join(dir, "nar", "*"+tt.ext))
			if len(nars) != 3 {
				t.Errorf("nar/*%s: %d files, want 3", tt.ext, len(nars))
			}
			if strings.Contains(tt.params, "write-nar-listing") {
				for _, p := range closure {
					if _, err := os.Stat(filepath.Join(dir, p.HashPart()+".ls")); err != nil {
						t.Errorf("listing of %s: %v", p, err)
					}
				}
				info, _ := os.ReadFile(filepath.Join(dir, "nix-cache-info"))
				if !strings.Contains(string(info), "Priority: 30") || !strings.Contains(string(info), "WantMassQuery: 1") {
					t.Errorf("nix-cache-info:\n%s", info)
				}
			}
			checkConsistent(t, c)
			nixVerify(t, "file://"+dir, pub, closure)
			if n, err := c.Verify(ctx, nil, cache.VerifyOptions{TrustedKeys: mustPub(t, pub)}); err != nil || n != 3 {
				t.Errorf("Verify: %d paths, %v", n, err)
			}
			deleteAndSubstitute(t, "file://"+dir, pub, top, closure)
		})
	}
}

// TestPushTwiceAndConcurrently: a second push uploads nothing, and two
// overlapping pushes at once both succeed and leave a consistent cache.
func TestPushTwiceAndConcurrently(t *testing.T) {
	ctx := context.Background()
	top, closure := buildClosure(t)
	sec, pub := nixKey(t, "nixcache-test-1")
	dir := t.TempDir()
	c, err := cache.Open(ctx, "file://"+dir+"?compression=zstd&secret-key="+sec)
	if err != nil {
		t.Fatal(err)
	}
	store := openStore(t)

	// Two overlapping pushes: one of the top, one of the middle path.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []storepath.Path{top, closure[1]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Push(ctx, store, []storepath.Path{p}, cache.PushOptions{Jobs: 2})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	checkConsistent(t, c)
	nixVerify(t, "file://"+dir, pub, closure)

	sum, err := c.Push(ctx, store, []storepath.Path{top}, cache.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Uploaded != 0 || sum.Skipped != 3 {
		t.Fatalf("second push: %+v, want 0 uploaded, 3 skipped", sum)
	}
}

// TestPushRefusesNarHashMismatch: a path whose dumped NAR differs from what
// the store database says is never published.
func TestPushRefusesNarHashMismatch(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource(t)
	good := src.MustAdd(t, "good", nil, nil)
	bad := src.MustAdd(t, "bad", []storepath.Path{good}, nil)
	src.Infos[bad].NarSize++ // the database disagrees with the disk
	dir := t.TempDir()
	c, err := cache.Open(ctx, "file://"+dir+"?compression=zstd")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.Push(ctx, src, []storepath.Path{bad}, cache.PushOptions{})
	if !errors.Is(err, cache.ErrNarMismatch) {
		t.Fatalf("err = %v, want ErrNarMismatch", err)
	}
	var pe *cache.PathError
	if !errors.As(err, &pe) || pe.Path != bad {
		t.Fatalf("error %v does not name %s", err, bad)
	}
	if !strings.Contains(err.Error(), src.Infos[bad].NarHash.String()) {
		t.Errorf("error does not name the database hash: %v", err)
	}
	if sum.Uploaded != 1 || sum.Failed != 1 {
		t.Errorf("summary %+v", sum)
	}
	if _, err := os.Stat(filepath.Join(dir, bad.HashPart()+".narinfo")); !os.IsNotExist(err) {
		t.Errorf("narinfo of the bad path was written (%v)", err)
	}
	checkConsistent(t, c)
}

// TestPushStoreDirMismatch: an existing nix-cache-info for another store
// directory is a hard error, as in Nix.
func TestPushStoreDirMismatch(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource(t)
	p := src.MustAdd(t, "x", nil, nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /gnu/store\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, src, []storepath.Path{p}, cache.PushOptions{}); !errors.Is(err, cache.ErrStoreDirMismatch) {
		t.Fatalf("err = %v, want ErrStoreDirMismatch", err)
	}
}

// TestPushCanceled: a canceled push leaves no narinfo and no temp file.
func TestPushCanceled(t *testing.T) {
	src := newFakeSource(t)
	p := src.MustAdd(t, "x", nil, nil)
	dir, tmp := t.TempDir(), t.TempDir()
	c, err := cache.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureCacheInfo(context.Background(), src.Dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Push(ctx, src, []storepath.Path{p}, cache.PushOptions{TempDir: tmp}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("temp files left: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(dir, p.HashPart()+".narinfo")); !os.IsNotExist(err) {
		t.Errorf("narinfo written by a canceled push")
	}
}

// TestOpenErrors: bad URL and unreadable key each give one clear error.
func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	badKey := filepath.Join(dir, "garbage.sec")
	os.WriteFile(badKey, []byte("not a key"), 0o600)
	tests := []struct {
		name, url, want string
		is              error
	}{
		{"no scheme", "/tmp/x", "missing scheme", cache.ErrBadURL},
		{"unknown param", "file:///tmp/x?compresion=zstd", "compresion", cache.ErrBadURL},
		// The value of a key file that cannot be read is not repeated: it
		// may be key material given where a file name belongs.
		{"missing key file", "file:///tmp/x?secret-key=" + dir + "/nope.sec", "secret-key parameter 1 of 1: signature: cannot read the secret key file", os.ErrNotExist},
		{"garbage key file", "file:///tmp/x?secret-key=" + badKey, "secret-key parameter 1 of 1: signature: malformed", signature.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cache.Open(ctx, tt.url)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}

// TestOpenWarnsInsecureKey: a secret key file readable by group or others is
// used, with a warning naming it (Nix does not check at all).
func TestOpenWarnsInsecureKey(t *testing.T) {
	sec, _ := nixKey(t, "nixcache-test-1")
	if err := os.Chmod(sec, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	c, err := cache.Open(context.Background(), "file://"+t.TempDir()+"?secret-key="+sec, cache.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Options().SecretKeys) != 1 || c.Options().SecretKeys[0].Name() != "nixcache-test-1" {
		t.Errorf("keys not loaded: %v", c.Options().SecretKeys)
	}
	if !strings.Contains(buf.String(), sec) {
		t.Errorf("no warning naming %s: %q", sec, buf.String())
	}
}

// emptyDirBackend fails a NAR Put if dir holds any file at that moment.
type emptyDirBackend struct {
	cache.Backend
	dir  string
	puts int
}

func (b *emptyDirBackend) Put(ctx context.Context, key string, r io.Reader, size int64, ct string) error {
	if strings.HasPrefix(key, "nar/") {
		b.puts++
		if ents, _ := os.ReadDir(b.dir); len(ents) != 0 {
			return fmt.Errorf("temp dir %s holds %v during the upload", b.dir, ents)
		}
	}
	return b.Backend.Put(ctx, key, r, size, ct)
}

// TestPushTempFileUnlinked: the compressed NAR lives in an already-unlinked
// temp file, so a killed push (kill -9) leaves no file behind.
func TestPushTempFileUnlinked(t *testing.T) {
	src := newFakeSource(t)
	p := src.MustAdd(t, "x", nil, nil)
	tmp := t.TempDir()
	c, err := cache.Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := &emptyDirBackend{Backend: c.Backend, dir: tmp}
	if _, err := cache.New(b, c.Options()).Push(context.Background(), src, []storepath.Path{p}, cache.PushOptions{TempDir: tmp}); err != nil {
		t.Fatal(err)
	}
	if b.puts != 1 {
		t.Fatalf("%d NAR puts, want 1", b.puts)
	}
}
