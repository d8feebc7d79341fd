package cache_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// leases returns the keys under GCLeasePrefix. It may run outside the
// test's goroutine (in a Progress callback): a failure is an Error.
func leases(t testing.TB, b cache.Backend) []string {
	t.Helper()
	var keys []string
	if err := b.List(context.Background(), cache.GCLeasePrefix, func(oi cache.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Errorf("list leases: %v", err)
	}
	return keys
}

// putLease stores a lease object as a collector on another machine would,
// modified age ago.
func putLease(t *testing.T, g *gens, name string, age time.Duration) {
	t.Helper()
	if err := g.b.Put(context.Background(), cache.GCLeasePrefix+name, strings.NewReader("x\n"), 2, "text/plain"); err != nil {
		t.Fatal(err)
	}
	if age > 0 {
		p := filepath.Join(g.dir, cache.GCLeasePrefix+name)
		if err := os.Chtimes(p, time.Now().Add(-age), time.Now().Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPushWaitsOnlyForLiveLease: a push that reuses a narinfo already in
// the cache (top2 reuses shared) and pins its closure waits ReuseSettle
// only while a collector's lease is live: not on a cache without one, not
// beside a lease that lapsed (a crashed collector's), and twice (after the
// pin, after the touch) beside a live one.
func TestPushWaitsOnlyForLiveLease(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lease time.Duration // age of a foreign lease; < 0: none
		waits int
	}{
		{"no-lease", -1, 0},
		{"lapsed-lease", 40 * time.Second, 0},
		{"live-lease", 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGens(t, false)
			if tc.lease >= 0 {
				putLease(t, g, "elsewhere-1-1", tc.lease)
			}
			sum, err := g.c.Push(context.Background(), g.src, []storepath.Path{g.top2}, cache.PushOptions{Pin: "p"})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Uploaded != 1 || sum.Skipped != 2 {
				t.Fatalf("summary: %s, want top2 uploaded and shared, leaf reused", sum)
			}
			if sum.CollectorWaits != tc.waits {
				t.Errorf("push waited for a collector %d times, want %d", sum.CollectorWaits, tc.waits)
			}
			g.check(t, []storepath.Path{g.top2, g.shared, g.leaf}, nil)
		})
	}
}

// leaseWatch records, at each phase of a collection, the leases there.
type leaseWatch struct {
	mu     sync.Mutex
	phases map[string][]string
}

// TestCollectHoldsLease: a collection that removes objects stores a lease
// before it lists the cache, holds it through its removals, and deletes it
// after them, with the lapsed leases of collectors that crashed long ago;
// a live foreign lease stays. A dry run stores none.
func TestCollectHoldsLease(t *testing.T) {
	g := newGens(t, false)
	ctx := context.Background()
	putLease(t, g, "crashed-1-7", 10*time.Minute)
	putLease(t, g, "running-2-1", 0)
	w := &leaseWatch{phases: map[string][]string{}}
	progress := func(p cache.GCProgress) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.phases[p.Phase]; !ok {
			w.phases[p.Phase] = leases(t, g.b)
		}
	}
	if _, err := g.c.Collect(ctx, cache.GCOptions{Progress: progress}); err != nil {
		t.Fatal(err)
	}
	if n := len(w.phases["list"]); n != 2 {
		t.Errorf("dry run: %d leases while listing, want only the 2 foreign ones: %v", n, w.phases["list"])
	}
	w.phases = map[string][]string{}
	rep, err := g.c.Collect(ctx, cache.GCOptions{Delete: true, Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Removed.Count == 0 {
		t.Fatalf("nothing removed: %s", rep)
	}
	for _, phase := range []string{"list", "narinfos"} {
		own := 0
		for _, k := range w.phases[phase] {
			if !strings.HasPrefix(k, cache.GCLeasePrefix+"crashed-") && !strings.HasPrefix(k, cache.GCLeasePrefix+"running-") {
				own++
			}
		}
		if own != 1 {
			t.Errorf("phase %s: leases %v, want one of the collector's own", phase, w.phases[phase])
		}
	}
	if got := leases(t, g.b); len(got) != 1 || got[0] != cache.GCLeasePrefix+"running-2-1" {
		t.Errorf("after the collection: leases %v, want only the live foreign one", got)
	}
	g.check(t, nil, []storepath.Path{g.top1, g.old, g.top2})
}

// TestCollectStopsWhenLeaseLapses: a collector whose lease lapsed (here at
// once: a lease of no length) removes nothing more and says why.
func TestCollectStopsWhenLeaseLapses(t *testing.T) {
	g := newGens(t, false)
	cache.SetGCLease(t, 0, time.Hour)
	_, err := g.c.Collect(context.Background(), cache.GCOptions{Delete: true})
	if err == nil || !strings.Contains(err.Error(), "lease lapsed") {
		t.Fatalf("collect with a lapsed lease: %v", err)
	}
	g.check(t, []storepath.Path{g.top1, g.old, g.shared, g.leaf}, nil)
}

// leaseFailBackend refuses to store leases.
type leaseFailBackend struct{ cache.Backend }

var errRefused = errors.New("refused")

func (b leaseFailBackend) Put(ctx context.Context, key string, r io.Reader, size int64, ct string) error {
	if strings.HasPrefix(key, cache.GCLeasePrefix) {
		return errRefused
	}
	return b.Backend.Put(ctx, key, r, size, ct)
}

// TestCollectNeedsLease: a collector that cannot store its lease removes
// nothing (pushes would not wait for it) and names the lease.
func TestCollectNeedsLease(t *testing.T) {
	g := newGens(t, false)
	_, err := cache.New(leaseFailBackend{g.b}, cache.Options{}).Collect(context.Background(), cache.GCOptions{Delete: true})
	if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), cache.GCLeasePrefix) {
		t.Fatalf("collect without a lease: %v", err)
	}
	g.check(t, []storepath.Path{g.top1, g.old, g.shared, g.leaf}, nil)
}

// TestNoClosureTouchesReferences: a push of top2 alone (NoClosure) with an
// upstream key set relies on its reference shared, already in our cache;
// like any reused narinfo, shared's is touched (so a collector that listed
// it before keeps it) and, while a collector's lease is live, the push
// waits before publishing top2's.
func TestNoClosureTouchesReferences(t *testing.T) {
	g := newGens(t, false)
	putLease(t, g, "elsewhere-1-1", 0)
	_, upPub, err := signature.GenerateKey("upstream-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(g.dir, cache.NarInfoKey(g.shared))
	before, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := g.c.Push(context.Background(), g.src, []storepath.Path{g.top2}, cache.PushOptions{NoClosure: true, SkipSignedBy: []signature.PublicKey{upPub}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Uploaded != 1 {
		t.Fatalf("summary: %s, want top2 uploaded", sum)
	}
	after, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().After(before.ModTime().Add(30 * time.Minute)) {
		t.Errorf("%s not touched: ModTime %v, was %v", key, after.ModTime(), before.ModTime())
	}
	if sum.CollectorWaits == 0 {
		t.Error("push relied on shared without waiting for the live collector lease")
	}
	g.check(t, []storepath.Path{g.top2, g.shared, g.leaf}, nil)
}
