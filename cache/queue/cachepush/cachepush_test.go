package cachepush_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/cache/localstore"
	_ "github.com/nixcache/nixcache/cache/localstore/sqlite" // read db.sqlite directly, as push does
	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/cache/queue/cachepush"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

// A queued path drained through cachepush lands in a file:// cache that
// `nix store verify` accepts with the key, and leaves the queue.
func TestDrainToFileCache(t *testing.T) {
	testenv.RequireNix(t)
	dir := t.TempDir()
	key := testenv.NixKeyPair(t, "cachepush-test-1")
	sec, pubText := key.SecretFile, key.Public
	src := filepath.Join(dir, "cachepush-"+strconv.FormatInt(time.Now().UnixNano(), 10))
	if err := os.WriteFile(src, []byte("cachepush test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := storepath.Path(strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", src))))

	q, err := queue.Open(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(p); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cacheDir := filepath.Join(dir, "cache")
	c, err := cache.Open(ctx, "file://"+cacheDir+"?compression=zstd&secret-key="+sec)
	if err != nil {
		t.Fatal(err)
	}
	store, err := localstore.Open(ctx, localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	opts := queue.DrainOptions{ExitWhenEmpty: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Exists: cachepush.StoreExists(ctx, store)}
	d := queue.NewDrainer(q, cachepush.New(c, store, cache.PushOptions{}), opts)
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.Uploaded != 1 || st.Narinfos != 1 || st.Bytes == 0 {
		t.Fatalf("stats %+v", st)
	}
	if n, _ := q.Len(); n != 0 {
		t.Fatalf("%d entries left", n)
	}
	if code := testenv.NixStoreVerify(t, "file://"+cacheDir, pubText, string(p)); code != 0 {
		t.Fatalf("nix store verify: exit code %d", code)
	}
	if !cachepush.StoreExists(ctx, store)(p) {
		t.Fatal("StoreExists false for a valid path")
	}
	if cachepush.StoreExists(ctx, store)("/nix/store/00000000000000000000000000000000-gone") {
		t.Fatal("StoreExists true for a missing path")
	}
}

// Lazy opens the cache on first use; a failed open marks the push as a
// whole-batch failure and is retried on the next push.
func TestLazyOpenFailure(t *testing.T) {
	opens := 0
	p := cachepush.Lazy(func(ctx context.Context) (*cache.Cache, error) {
		opens++
		return nil, errors.New("server unreachable")
	}, nil, cache.PushOptions{})
	for i := 0; i < 2; i++ {
		_, err := p.Push(context.Background(), []storepath.Path{"/nix/store/00000000000000000000000000000000-x"})
		if !errors.Is(err, queue.ErrWholeBatch) || !strings.Contains(err.Error(), "server unreachable") {
			t.Fatalf("err = %v", err)
		}
	}
	if opens != 2 {
		t.Fatalf("open called %d times, want 2", opens)
	}
}
