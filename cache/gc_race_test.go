package cache_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

var gcRace = flag.Duration("gc.race", 0, "how long TestCollectRace runs at least on each backend (default: 2m under CI=true, 5s with -short, else 15s; or $NIXCACHE_GC_RACE); it goes on until it has seen enough to prove anything, for at most as long again (a minute or more)")

func raceDuration(t *testing.T) time.Duration {
	if *gcRace > 0 {
		return *gcRace
	}
	if s := os.Getenv("NIXCACHE_GC_RACE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("NIXCACHE_GC_RACE: %v", err)
		}
		return d
	}
	switch {
	case os.Getenv("CI") == "true":
		return 2 * time.Minute // the minimum
	case testing.Short():
		return 5 * time.Second
	}
	return 15 * time.Second
}

// buildPool builds n derivations with real Nix, each referring to one to
// three earlier ones (a fixed random DAG), and returns their outputs.
func buildPool(t *testing.T, n int) []storepath.Path {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	fmt.Fprintf(&b, `let
  mk = name: deps: derivation {
    inherit name deps; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
    nonce = %q;
    args = ["-c" "mkdir $out; echo $nonce > $out/n; for d in $deps; do echo $d >> $out/refs; done; head -c 3000 /dev/urandom > $out/blob"];
  };
`, fmt.Sprint(time.Now().UnixNano()))
	for i := range n {
		var deps []string
		if i > 0 {
			for range 1 + rng.IntN(3) {
				deps = append(deps, fmt.Sprintf("p%d", rng.IntN(i)))
			}
		}
		fmt.Fprintf(&b, "  p%d = mk \"gcrace-%d\" [ %s ];\n", i, i, strings.Join(deps, " "))
	}
	b.WriteString("in [")
	for i := range n {
		fmt.Fprintf(&b, " p%d", i)
	}
	b.WriteString(" ]\n")
	file := filepath.Join(t.TempDir(), "pool.nix")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := testenv.Nix(t, "nix-build", file, "--no-out-link", "--option", "substituters", "")
	pool := make([]storepath.Path, n)
	for _, l := range strings.Fields(string(out)) {
		p := mustPath(t, l)
		var i int
		if _, err := fmt.Sscanf(p.Name(), "gcrace-%d", &i); err != nil || i >= n {
			t.Fatalf("unexpected output %s", l)
		}
		pool[i] = p
	}
	return pool
}

// TestCollectRace: pushers push closures that share old paths (each
// pinning its latest closure, which unpins its previous one) while a
// collector runs in a loop with grace 0 and Delete, on file:// and on the
// S3 server. Every push that reports success must verify at once (its
// closure is pinned until that pusher's next push); at the end each
// pusher's last closure verifies with Nix, and the cache is consistent.
func TestCollectRace(t *testing.T) {
	testenv.RequireNix(t)
	pool := buildPool(t, 40)
	key := testenv.NixKeyPair(t, "gc-race-1")
	d := raceDuration(t)
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		raceOn(t, "file://"+dir+"?compression=none", "", "file://"+dir, key, pool, d)
	})
	t.Run("s3", func(t *testing.T) {
		s := testenv.StartS3(t)
		s.MakeBucket(t, "gcrace", true)
		s.SetEnv(t)
		raceOn(t, s.URL("gcrace", "compression=none"), "", s.Endpoint+"/gcrace", key, pool, d)
	})
	// MinIO renews Last-Modified on a copy onto itself (versitygw does not):
	// here pushes touch what they reuse, as on AWS.
	t.Run("minio", func(t *testing.T) {
		s := testenv.StartMinIO(t)
		s.MakeBucket(t, "gcrace", true)
		s.SetEnv(t)
		raceOn(t, s.URL("gcrace", "compression=none"), "", s.Endpoint+"/gcrace", key, pool, d)
	})
}

// raceOn runs the race on the cache at url; the collector uses gcURL
// when set (the same cache through another server), and Nix reads nixURL.
func raceOn(t *testing.T, url, gcURL, nixURL string, key testenv.NixKey, pool []storepath.Path, d time.Duration) {
	ctx := context.Background()
	c, err := cache.Open(ctx, url, cache.WithSecretKeyFiles(key.SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	gc := c
	if gcURL != "" {
		if gc, err = cache.Open(ctx, gcURL); err != nil {
			t.Fatal(err)
		}
	}
	// The collector's removals, for the report of a failure (a removal the
	// server carries out after the collector gave up on it would show as
	// a failed one shortly before).
	dels := &deleteLog{Backend: gc.Backend}
	gc = cache.New(dels, gc.Options())
	if err := c.EnsureCacheInfo(ctx, pool[0].Dir()); err != nil {
		t.Fatal(err)
	}
	store := openStore(t)
	trusted := mustPub(t, key.Public)
	// The race runs for d, and then on (up to d plus another d, at least a
	// minute) until it has seen what the checks below need: collections
	// that removed something, pushes that waited for a collector's lease
	// and pushes that found none (a short run, -short's 5 s, often has not).
	start := time.Now()
	deadline, hardDeadline := start.Add(d), start.Add(d+max(d, time.Minute))
	var (
		pushes, collectedRetries, collections atomic.Int64
		waited, unwaited                      atomic.Int64 // pushes that waited for a live lease, and not
		removed, refreshed                    atomic.Int64
		mu                                    sync.Mutex
		last                                  = map[int][]storepath.Path{}
		wg                                    sync.WaitGroup
	)
	enough := func() bool {
		return collections.Load() >= 2 && pushes.Load() >= 2 && removed.Load() > 0 && waited.Load() > 0 && unwaited.Load() > 0
	}
	running := func() bool {
		now := time.Now()
		return now.Before(deadline) || (!enough() && now.Before(hardDeadline))
	}
	const pushers = 2
	for i := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for running() && !t.Failed() {
				top := pool[len(pool)/2+rng.IntN(len(pool)/2)]
				sum, err := c.Push(ctx, store, []storepath.Path{top}, cache.PushOptions{Pin: fmt.Sprintf("pusher-%d", i), Jobs: 2})
				if sum.CollectorWaits > 0 {
					waited.Add(1)
				} else {
					unwaited.Add(1)
				}
				if errors.Is(err, cache.ErrCollected) {
					collectedRetries.Add(1)
					continue
				}
				if err != nil {
					t.Errorf("pusher %d: %v", i, err)
					return
				}
				pushes.Add(1)
				closure, err := store.Closure(ctx, []storepath.Path{top})
				if err != nil {
					t.Error(err)
					return
				}
				// Still pinned (only this pusher replaces its pin).
				if _, err := c.Verify(ctx, closure, cache.VerifyOptions{TrustedKeys: trusted}); err != nil {
					t.Errorf("pusher %d: closure of %s reported uploaded does not verify: %v\n%s", i, top.Name(), err, dels.report(time.Now().Add(-10*time.Second)))
					return
				}
				mu.Lock()
				last[i] = closure
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(99, 7))
		for running() && !t.Failed() {
			rep, err := gc.Collect(ctx, cache.GCOptions{Delete: true, Grace: 0, Jobs: 4})
			if err != nil {
				t.Errorf("collect: %v", err)
				return
			}
			collections.Add(1)
			removed.Add(int64(rep.Removed.Count))
			refreshed.Add(int64(rep.KeptRefreshed.Count))
			// Pauses between collections, so that pushes also start,
			// and look at the leases, while none runs.
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		}
	}()
	wg.Wait()
	t.Logf("%s: %d collections (%d paths removed, %d kept as refreshed by a push), %d pushes succeeded, %d pushes lost a reused path to the collector and were retried; %d pushes waited for a collector's live lease, %d found none",
		time.Since(start).Round(time.Second), collections.Load(), removed.Load(), refreshed.Load(), pushes.Load(), collectedRetries.Load(), waited.Load(), unwaited.Load())
	if t.Failed() {
		return
	}
	if !enough() {
		t.Fatalf("too little happened to prove anything in %s", time.Since(start).Round(time.Second))
	}
	checkConsistent(t, c)
	for i, closure := range last {
		if code := testenv.NixStoreVerify(t, nixURL, key.Public, pathStrings(closure)...); code != 0 {
			t.Errorf("pusher %d's last closure: nix store verify exit code %d", i, code)
		}
	}
}

// deleteLog records the Deletes made through it.
type deleteLog struct {
	cache.Backend
	mu  sync.Mutex
	log []deleteEvent
}

type deleteEvent struct {
	key        string
	start, end time.Time
	err        error
}

func (d *deleteLog) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := d.Backend.Delete(ctx, key)
	d.mu.Lock()
	d.log = append(d.log, deleteEvent{key, start, time.Now(), err})
	d.mu.Unlock()
	return err
}

// report lists the failed Deletes, and every Delete that ended after since.
func (d *deleteLog) report(since time.Time) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "collector's removals (failed ones, and all since %s):\n", since.Format("15:04:05.000"))
	for _, e := range d.log {
		if e.err != nil || e.end.After(since) {
			fmt.Fprintf(&b, "  %s  %s .. %s  err=%v\n", e.key, e.start.Format("15:04:05.000"), e.end.Format("15:04:05.000"), e.err)
		}
	}
	return b.String()
}
