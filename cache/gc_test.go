package cache_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/storepath"
)

// ageFiles moves the modification time of every file under dir back by d,
// as if the cache had been written d earlier.
func ageFiles(t testing.TB, dir string, d time.Duration) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		return os.Chtimes(p, st.ModTime().Add(-d), st.ModTime().Add(-d))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// listing returns every key of b with its size, sorted.
func listing(t testing.TB, b cache.Backend) []string {
	t.Helper()
	var keys []string
	if err := b.List(context.Background(), "", func(oi cache.ObjectInfo) error {
		keys = append(keys, oi.Key+" "+oi.ModTime.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

func exists(t testing.TB, b cache.Backend, key string) bool {
	t.Helper()
	_, err := b.Stat(context.Background(), key)
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// narOf returns the NAR key a path's narinfo names.
func narOf(t testing.TB, c *cache.Cache, p storepath.Path) string {
	t.Helper()
	ni, err := c.VerifyNarInfo(context.Background(), cache.NarInfoKey(p), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ni.URL
}

// twoGenerations pushes generation 1 (top1: shared -> leaf, and old) and,
// an hour later, generation 2 (top2 -> shared) pinned as "release"; the
// cache then looks two hours older.
type gens struct {
	dir                           string
	b                             *file.Backend
	c                             *cache.Cache
	src                           *fakeSource
	leaf, shared, old, top1, top2 storepath.Path
}

func newGens(t *testing.T, pinSecond bool) *gens {
	t.Helper()
	ctx := context.Background()
	g := &gens{dir: t.TempDir(), src: newFakeSource(t)}
	var err error
	if g.b, err = file.New(g.dir); err != nil {
		t.Fatal(err)
	}
	g.c = cache.New(g.b, cache.Options{})
	g.leaf = g.src.MustAdd(t, "leaf", nil, nil)
	g.shared = g.src.MustAdd(t, "shared", []storepath.Path{g.leaf}, nil)
	g.old = g.src.MustAdd(t, "old-only", nil, nil)
	g.top1 = g.src.MustAdd(t, "top1", []storepath.Path{g.shared, g.old}, nil)
	g.top2 = g.src.MustAdd(t, "top2", []storepath.Path{g.shared}, nil)
	if _, err := g.c.Push(ctx, g.src, []storepath.Path{g.top1}, cache.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	ageFiles(t, g.dir, time.Hour)
	if pinSecond {
		if _, err := g.c.Push(ctx, g.src, []storepath.Path{g.top2}, cache.PushOptions{Pin: "release"}); err != nil {
			t.Fatal(err)
		}
	}
	ageFiles(t, g.dir, time.Hour)
	return g
}

func (g *gens) check(t *testing.T, kept, removed []storepath.Path) {
	t.Helper()
	for _, p := range kept {
		if !exists(t, g.b, cache.NarInfoKey(p)) || !exists(t, g.b, narOf(t, g.c, p)) {
			t.Errorf("%s was removed, want it kept", p.Name())
		}
	}
	for _, p := range removed {
		if exists(t, g.b, cache.NarInfoKey(p)) {
			t.Errorf("%s is still there, want it removed", p.Name())
		}
	}
	checkConsistent(t, g.c)
	if _, err := g.c.Verify(context.Background(), nil, cache.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestCollectKeepsPinnedGeneration(t *testing.T) {
	g := newGens(t, true)
	ctx := context.Background()
	nars := []string{narOf(t, g.c, g.top1), narOf(t, g.c, g.old)}
	before := listing(t, g.b)
	rep, err := g.c.Collect(ctx, cache.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after := listing(t, g.b); !slices.Equal(before, after) {
		t.Fatalf("dry run changed the cache:\nbefore %v\nafter  %v", before, after)
	}
	if !rep.DryRun || rep.Removed.Count != 2 || rep.NARs.Count != 2 || rep.KeptPinned.Count != 3 {
		t.Fatalf("dry run plan: %s", rep)
	}
	rep, err = g.c.Collect(ctx, cache.GCOptions{Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	if rep.Removed.Count != 2 || rep.NARs.Count != 2 || rep.Kept.Count != 3 {
		t.Fatalf("report: %s", rep)
	}
	g.check(t, []storepath.Path{g.top2, g.shared, g.leaf}, []storepath.Path{g.top1, g.old})
	for _, n := range nars {
		if exists(t, g.b, n) {
			t.Errorf("NAR %s of a removed path is still there", n)
		}
	}
}

func TestCollectRoots(t *testing.T) {
	ctx := context.Background()
	t.Run("explicit", func(t *testing.T) {
		g := newGens(t, false)
		if _, err := g.c.Collect(ctx, cache.GCOptions{Delete: true, Keep: []storepath.Path{g.shared}}); err != nil {
			t.Fatal(err)
		}
		g.check(t, []storepath.Path{g.shared, g.leaf}, []storepath.Path{g.top1, g.old})
	})
	t.Run("grace", func(t *testing.T) {
		g := newGens(t, false)
		if _, err := g.c.Collect(ctx, cache.GCOptions{Delete: true, Grace: 3 * time.Hour}); err != nil {
			t.Fatal(err)
		}
		g.check(t, []storepath.Path{g.top1, g.old, g.shared, g.leaf}, nil)
	})
	t.Run("recent", func(t *testing.T) {
		g := newGens(t, true)
		if err := g.b.Delete(ctx, cache.GCRootsPrefix+"release"); err != nil {
			t.Fatal(err)
		}
		// top2 was pushed an hour after top1 and refreshed shared.
		rep, err := g.c.Collect(ctx, cache.GCOptions{Delete: true, KeepRecent: 90 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		g.check(t, []storepath.Path{g.top2, g.shared, g.leaf}, []storepath.Path{g.top1, g.old})
		if rep.KeptRecent.Count != 3 {
			t.Fatalf("report: %s", rep)
		}
	})
	t.Run("max-size", func(t *testing.T) {
		g := newGens(t, true)
		if err := g.b.Delete(ctx, cache.GCRootsPrefix+"release"); err != nil {
			t.Fatal(err)
		}
		var size int64
		for _, p := range []storepath.Path{g.top2, g.shared, g.leaf} {
			oi, err := g.b.Stat(ctx, narOf(t, g.c, p))
			if err != nil {
				t.Fatal(err)
			}
			size += oi.Size
		}
		if _, err := g.c.Collect(ctx, cache.GCOptions{Delete: true, MaxSize: size}); err != nil {
			t.Fatal(err)
		}
		g.check(t, []storepath.Path{g.top2, g.shared, g.leaf}, []storepath.Path{g.top1, g.old})
	})
}

func TestCollectTrashRestore(t *testing.T) {
	g := newGens(t, true)
	ctx := context.Background()
	rep, err := g.c.Collect(ctx, cache.GCOptions{Delete: true, Trash: "trash/1/"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Removed.Count != 2 || !exists(t, g.b, "trash/1/"+cache.NarInfoKey(g.top1)) {
		t.Fatalf("report %s; trash holds %v", rep, listing(t, g.b))
	}
	g.check(t, []storepath.Path{g.top2}, []storepath.Path{g.top1, g.old})
	n, err := g.c.Restore(ctx, "trash/1/")
	if err != nil || n != 4 {
		t.Fatalf("restore: %d objects, %v", n, err)
	}
	g.check(t, []storepath.Path{g.top1, g.old, g.top2, g.shared, g.leaf}, nil)
	for _, bad := range []string{"nar/", "gcroots/x/", "trash"} {
		if _, err := g.c.Collect(ctx, cache.GCOptions{Delete: true, Trash: bad}); err == nil {
			t.Errorf("trash prefix %q accepted", bad)
		}
	}
}

// TestCollectKeepsReusedNarInfo: a collector decides that shared (and leaf)
// are garbage; before it removes anything, a push of top2 reuses shared.
// The push's touch makes the collector keep shared and its closure.
func TestCollectKeepsReusedNarInfo(t *testing.T) {
	g := newGens(t, false)
	ctx := context.Background()
	var once sync.Once
	rep, err := g.c.Collect(ctx, cache.GCOptions{Delete: true, Progress: func(p cache.GCProgress) {
		if p.Phase == "read" && p.Done == p.Total {
			once.Do(func() {
				if _, err := g.c.Push(ctx, g.src, []storepath.Path{g.top2}, cache.PushOptions{}); err != nil {
					t.Error(err)
				}
			})
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	// shared and leaf, touched; top2, published after the first listing
	// and found by the second.
	if rep.KeptRefreshed.Count != 3 {
		t.Errorf("report: %s", rep)
	}
	g.check(t, []storepath.Path{g.top2, g.shared, g.leaf}, []storepath.Path{g.top1, g.old})
}

// raceBackend lets the collector Stat shared, then the pusher touch it,
// then the collector delete it: the order a touch cannot prevent.
type raceBackend struct {
	cache.Backend
	key              string
	gc               bool // the collector's side (hooks Stat), else the pusher's (hooks Touch)
	statted, touched chan struct{}
}

func (r *raceBackend) Stat(ctx context.Context, key string) (cache.ObjectInfo, error) {
	oi, err := r.Backend.Stat(ctx, key)
	if key == r.key && r.gc {
		close(r.statted)
		select { // a push that never touches must not hang the test
		case <-r.touched:
		case <-time.After(10 * time.Second):
		}
	}
	return oi, err
}

func (r *raceBackend) Touch(ctx context.Context, key string) error {
	if key == r.key && !r.gc {
		<-r.statted
		defer close(r.touched)
	}
	return r.Backend.(cache.Toucher).Touch(ctx, key)
}

// TestPushLosesReuseRace: when the collector looked at shared before the
// push touched it and removes it after, the push must notice (after
// ReuseSettle) and publish nothing that refers to it.
func TestPushLosesReuseRace(t *testing.T) {
	g := newGens(t, false)
	ctx := context.Background()
	key := cache.NarInfoKey(g.shared)
	statted, touched := make(chan struct{}), make(chan struct{})
	gcSide := cache.New(&raceBackend{Backend: g.b, key: key, gc: true, statted: statted, touched: touched}, cache.Options{})
	pushSide := cache.New(&raceBackend{Backend: g.b, key: key, statted: statted, touched: touched}, cache.Options{})
	var (
		pushErr error
		sum     *cache.Summary
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sum, pushErr = pushSide.Push(ctx, g.src, []storepath.Path{g.top2}, cache.PushOptions{})
	}()
	if _, err := gcSide.Collect(ctx, cache.GCOptions{Delete: true}); err != nil {
		t.Fatal(err)
	}
	<-done
	if !errors.Is(pushErr, cache.ErrCollected) {
		t.Fatalf("push: %v, want ErrCollected", pushErr)
	}
	if sum.CollectorWaits != 1 {
		t.Errorf("the push waited for the collector %d times, want once (its lease was live)", sum.CollectorWaits)
	}
	if exists(t, g.b, cache.NarInfoKey(g.top2)) {
		t.Fatal("top2 published although shared was collected")
	}
	checkConsistent(t, g.c)
	if _, err := g.c.Push(ctx, g.src, []storepath.Path{g.top2}, cache.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	g.check(t, []storepath.Path{g.top2, g.shared, g.leaf}, nil)
}

func TestPinNames(t *testing.T) {
	g := newGens(t, false)
	for _, bad := range []string{"", "../x", "a//b"} {
		if err := g.c.Pin(context.Background(), bad, nil); err == nil {
			t.Errorf("pin name %q accepted", bad)
		}
	}
	if err := g.b.Put(context.Background(), cache.GCRootsPrefix+"bad", strings.NewReader("not a path\n"), 11, "text/plain"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.c.Collect(context.Background(), cache.GCOptions{Delete: true}); err == nil || !strings.Contains(err.Error(), "gcroots/bad line 1") {
		t.Fatalf("collect with a bad root: %v", err)
	}
	g.check(t, []storepath.Path{g.top1, g.old, g.shared, g.leaf}, nil)
}

// blinkBackend answers 404 for key a few times, as MinIO does for a moment
// to a read of a key another writer is overwriting (minio issue 20200):
// touches (touchMisses) and, once touched, Stats (statMisses).
type blinkBackend struct {
	cache.Backend
	key                     string
	touchMisses, statMisses atomic.Int32
	touched                 atomic.Bool
}

func (b *blinkBackend) Touch(ctx context.Context, key string) error {
	if key == b.key {
		b.touched.Store(true)
		if b.touchMisses.Add(-1) >= 0 {
			return fmt.Errorf("touch %s: %w", key, cache.ErrNotFound)
		}
	}
	return b.Backend.(cache.Toucher).Touch(ctx, key)
}

func (b *blinkBackend) Stat(ctx context.Context, key string) (cache.ObjectInfo, error) {
	if key == b.key && b.touched.Load() && b.statMisses.Add(-1) >= 0 {
		return cache.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, cache.ErrNotFound)
	}
	return b.Backend.Stat(ctx, key)
}

// TestPushReuseTransient404: a reused narinfo that answers 404 for a moment
// (to the touch, or to the check after ReuseSettle) but is there is not
// taken for a collected one: the push succeeds. One that stays missing is
// (TestPushLosesReuseRace).
func TestPushReuseTransient404(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		touchMisses, statMisses int32
	}{
		{"touch", 1, 0},
		{"touch-and-recheck", 1, 1},
		{"check", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGens(t, false)
			b := &blinkBackend{Backend: g.b, key: cache.NarInfoKey(g.shared)}
			b.touchMisses.Store(tc.touchMisses)
			b.statMisses.Store(tc.statMisses)
			if _, err := cache.New(b, cache.Options{}).Push(context.Background(), g.src, []storepath.Path{g.top2}, cache.PushOptions{}); err != nil {
				t.Fatalf("push reusing a narinfo that answered 404 for a moment: %v", err)
			}
			if !b.touched.Load() {
				t.Fatal("shared's narinfo was not touched")
			}
			g.check(t, []storepath.Path{g.top2, g.shared, g.leaf}, nil)
		})
	}
}

// hideBackend leaves key out of the first listing, as MinIO leaves out an
// object that is being copied onto itself (a push's touch) at that moment.
type hideBackend struct {
	cache.Backend
	key    string
	listed atomic.Int32
}

func (h *hideBackend) List(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	first := prefix == "" && h.listed.Add(1) == 1
	return h.Backend.List(ctx, prefix, func(oi cache.ObjectInfo) error {
		if first && oi.Key == h.key {
			return nil
		}
		return fn(oi)
	})
}

// TestCollectNarInfoMissingFromListing: a narinfo the collector's listing
// did not show (a push was touching it, which it does to a narinfo it
// reuses) is still there, young: the collector lists again before it
// removes anything, and keeps it, its NAR file and its closure, which the
// first listing alone made garbage (a stray NAR file, unrooted paths).
func TestCollectNarInfoMissingFromListing(t *testing.T) {
	g := newGens(t, false)
	ctx := context.Background()
	key := cache.NarInfoKey(g.top1)
	now := time.Now()
	if err := os.Chtimes(filepath.Join(g.dir, key), now, now); err != nil {
		t.Fatal(err)
	}
	h := &hideBackend{Backend: g.b, key: key}
	rep, err := cache.New(h, cache.Options{}).Collect(ctx, cache.GCOptions{Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	if h.listed.Load() < 2 {
		t.Errorf("the collector listed the cache %d times", h.listed.Load())
	}
	if rep.Removed.Count != 0 || rep.NARs.Count != 0 {
		t.Errorf("report: %s", rep)
	}
	g.check(t, []storepath.Path{g.top1, g.shared, g.leaf, g.old}, nil)
}
