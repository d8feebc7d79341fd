package queue_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
	"golang.org/x/sys/unix"
)

// fakePath returns a syntactically valid store path; the queue never needs
// the path to exist, except for the drainer's "dropped" rule.
func fakePath(i int) storepath.Path {
	h := fmt.Sprintf("%032d", i)
	return storepath.Path("/nix/store/" + h + "-p" + strconv.Itoa(i))
}

func openNoRoots(t testing.TB) *queue.Queue {
	t.Helper()
	q, err := queue.OpenOptions(t.TempDir(), queue.Options{GCRootsDir: "-"})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func pendingPaths(t testing.TB, q *queue.Queue) []storepath.Path {
	t.Helper()
	es, err := q.Pending()
	if err != nil {
		t.Fatal(err)
	}
	var ps []storepath.Path
	for _, e := range es {
		ps = append(ps, e.Path)
	}
	slices.Sort(ps)
	return ps
}

func TestEnqueueRules(t *testing.T) {
	tests := []struct {
		name    string
		in      []storepath.Path
		want    int
		wantErr error
	}{
		{"one", []storepath.Path{fakePath(1)}, 1, nil},
		{"duplicates merge", []storepath.Path{fakePath(1), fakePath(1), fakePath(2)}, 2, nil},
		{"none", nil, 0, nil},
		{"relative path refused", []storepath.Path{"nix/store/00000000000000000000000000000000-x"}, 0, queue.ErrNotStorePath},
		{"bad hash refused", []storepath.Path{"/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x"}, 0, queue.ErrNotStorePath},
		{"drv path accepted", []storepath.Path{"/nix/store/00000000000000000000000000000000-x.drv"}, 1, nil},
		{"all-or-nothing validation", []storepath.Path{fakePath(3), "/tmp/x"}, 0, queue.ErrNotStorePath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := openNoRoots(t)
			err := q.Enqueue(tt.in...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Enqueue error = %v, want %v", err, tt.wantErr)
			}
			if got := len(pendingPaths(t, q)); got != tt.want {
				t.Fatalf("pending = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestDoneAndOrder(t *testing.T) {
	q := openNoRoots(t)
	base := time.Now().Add(-time.Hour)
	for i := 1; i <= 3; i++ {
		if err := q.Enqueue(fakePath(i)); err != nil {
			t.Fatal(err)
		}
		// The entry's own mtime (not its target's) orders the queue.
		when := base.Add(time.Duration(i) * time.Second)
		tv := []unix.Timeval{unix.NsecToTimeval(when.UnixNano()), unix.NsecToTimeval(when.UnixNano())}
		if err := unix.Lutimes(filepath.Join(q.EntriesDir(), fakePath(i).Base()), tv); err != nil {
			t.Fatal(err)
		}
	}
	es, _ := q.Pending()
	if len(es) != 3 || es[0].Path != fakePath(1) || es[2].Path != fakePath(3) {
		t.Fatalf("pending not oldest first: %v", es)
	}
	if err := q.Done(fakePath(2)); err != nil {
		t.Fatal(err)
	}
	if err := q.Done(fakePath(2)); err != nil {
		t.Fatalf("second Done: %v", err)
	}
	if got := pendingPaths(t, q); !slices.Equal(got, []storepath.Path{fakePath(1), fakePath(3)}) {
		t.Fatalf("after Done: %v", got)
	}
	if err := q.Done("junk"); !errors.Is(err, queue.ErrNotStorePath) {
		t.Fatalf("Done(junk) = %v", err)
	}
}

// Crash safety: whatever a crashed enqueuer left (a temp link, a partial
// hand-made entry), Pending lists only complete entries and Clean removes
// the rest.
func TestCrashLeftovers(t *testing.T) {
	q := openNoRoots(t)
	if err := q.Enqueue(fakePath(1)); err != nil {
		t.Fatal(err)
	}
	entries := filepath.Join(q.Dir(), "entries")
	// An enqueuer killed between symlink and rename.
	if err := os.Symlink(string(fakePath(2)), filepath.Join(entries, ".tmp-999-1-abc")); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	// os.Chtimes follows symlinks; use a plain file for the aged temp.
	if err := os.WriteFile(filepath.Join(entries, ".tmp-998-1-abc"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(filepath.Join(entries, ".tmp-998-1-abc"), old, old)
	// Malformed entries: wrong name for its target, a regular file.
	_ = os.Symlink(string(fakePath(3)), filepath.Join(entries, fakePath(4).Base()))
	_ = os.WriteFile(filepath.Join(entries, "garbage"), []byte("x"), 0o644)

	if got := pendingPaths(t, q); !slices.Equal(got, []storepath.Path{fakePath(1)}) {
		t.Fatalf("pending = %v, want only the complete entry", got)
	}
	removed, err := q.Clean(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{".tmp-998-1-abc", fakePath(4).Base(), "garbage"}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Fatalf("Clean removed %v, want %v (a fresh temp must stay)", removed, want)
	}
	if n, _ := q.Len(); n != 1 {
		t.Fatalf("Len = %d after Clean", n)
	}
}

// Many goroutines enqueue overlapping paths at once: nothing is lost, every
// path appears exactly once, and no temp file is left.
func TestConcurrentEnqueueGoroutines(t *testing.T) {
	q := openNoRoots(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := q.Enqueue(fakePath(i), fakePath(g*1000+i+100)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := len(pendingPaths(t, q)); got != 25+8*25 {
		t.Fatalf("pending = %d, want %d", got, 25+8*25)
	}
	all, _ := os.ReadDir(filepath.Join(q.Dir(), "entries"))
	for _, e := range all {
		if strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("temp file left: %s", e.Name())
		}
	}
}

// TestHelperEnqueue is run as a child process by TestConcurrentEnqueueProcesses.
func TestHelperEnqueue(t *testing.T) {
	dir := os.Getenv("QUEUE_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	id, _ := strconv.Atoi(os.Getenv("QUEUE_HELPER_ID"))
	q, err := queue.OpenOptions(dir, queue.Options{GCRootsDir: "-"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		if err := q.Enqueue(fakePath(i), fakePath(id*1000+i+100)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentEnqueueProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs = 4
	var cmds []*exec.Cmd
	for i := 0; i < procs; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperEnqueue$")
		cmd.Env = append(os.Environ(), "QUEUE_HELPER_DIR="+dir, "QUEUE_HELPER_ID="+strconv.Itoa(i))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	q, _ := queue.OpenOptions(dir, queue.Options{GCRootsDir: "-"})
	if got := len(pendingPaths(t, q)); got != 40+procs*40 {
		t.Fatalf("pending = %d, want %d", got, 40+procs*40)
	}
}

func TestLock(t *testing.T) {
	q := openNoRoots(t)
	if q.DaemonRunning() {
		t.Fatal("DaemonRunning with no daemon")
	}
	unlock, err := q.Lock()
	if err != nil {
		t.Fatal(err)
	}
	// flock locks are per open file description: a second Lock fails.
	if _, err := q.Lock(); !errors.Is(err, queue.ErrLocked) {
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	if !q.DaemonRunning() {
		t.Fatal("DaemonRunning false while locked")
	}
	unlock()
	if q.DaemonRunning() {
		t.Fatal("still locked after unlock")
	}
}

// GC-root protection judged by real Nix: a queued path survives
// `nix-store --delete`; after Done it can be deleted.
func TestGCRootWithNix(t *testing.T) {
	testenv.RequireNix(t)
	src := filepath.Join(t.TempDir(), "gcroot-test")
	if err := os.WriteFile(src, []byte("queue gc root test "+strconv.FormatInt(time.Now().UnixNano(), 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := storepath.Path(strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", src))))
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Done(p) })
	if out, err := testenv.NixCmd("nix-store", "--delete", string(p)); err == nil {
		t.Fatalf("nix-store --delete of a queued path succeeded: %s", out)
	} else if !strings.Contains(err.Error(), "still alive") {
		t.Fatalf("unexpected refusal: %v", err)
	}
	roots := testenv.Nix(t, "nix-store", "--query", "--roots", string(p))
	if !strings.Contains(string(roots), filepath.Join(q.Dir(), "entries")) {
		t.Fatalf("nix-store --query --roots does not show the queue entry:\n%s", roots)
	}
	// A lost root (crash before addRoot) is repaired.
	_ = q.Done(p)
	if err := q.Enqueue(p); err != nil {
		t.Fatal(err)
	}
	links, _ := filepath.Glob(filepath.Join(queue.StateDir(), "gcroots", "auto", "nixcache-queue-*"))
	for _, l := range links {
		if tgt, _ := os.Readlink(l); strings.HasPrefix(tgt, q.Dir()) {
			_ = os.Remove(l)
		}
	}
	if err := q.RepairRoots(); err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.NixCmd("nix-store", "--delete", string(p)); err == nil {
		t.Fatal("path deleted after RepairRoots")
	}
	if err := q.Done(p); err != nil {
		t.Fatal(err)
	}
	testenv.Nix(t, "nix-store", "--delete", string(p))
	if _, err := os.Lstat(string(p)); err == nil {
		t.Fatal("path still present after Done and delete")
	}
}

// A queue under Nix's gcroots directory (the recommended place: one
// symlink and one fsync per enqueued path) needs no indirect roots: its
// entries are direct GC roots, judged by real Nix.
func TestQueueUnderGCRootsWithNix(t *testing.T) {
	testenv.RequireNix(t)
	testenv.RequireRoot(t)
	src := filepath.Join(t.TempDir(), "gcroot-test")
	if err := os.WriteFile(src, []byte("queue under gcroots "+testenv.Nonce()), 0o644); err != nil {
		t.Fatal(err)
	}
	p := storepath.Path(strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", src))))
	dir := filepath.Join(queue.StateDir(), "gcroots", "nixcache-test-"+testenv.Nonce())
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	q, err := queue.Open(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(p); err != nil {
		t.Fatal(err)
	}
	links, _ := filepath.Glob(filepath.Join(queue.StateDir(), "gcroots", "auto", "nixcache-queue-*"))
	for _, l := range links {
		if tgt, _ := os.Readlink(l); strings.HasPrefix(tgt, dir) {
			t.Errorf("indirect root %s made for a queue under gcroots", l)
		}
	}
	if out, err := testenv.NixCmd("nix-store", "--delete", string(p)); err == nil {
		t.Fatalf("nix-store --delete of a queued path succeeded: %s", out)
	} else if !strings.Contains(err.Error(), "still alive") {
		t.Fatalf("unexpected refusal: %v", err)
	}
	roots := testenv.Nix(t, "nix-store", "--query", "--roots", string(p))
	if !strings.Contains(string(roots), filepath.Join(q.Dir(), "entries", p.Base())) {
		t.Fatalf("nix-store --query --roots does not show the queue entry:\n%s", roots)
	}
	if err := q.Done(p); err != nil {
		t.Fatal(err)
	}
	testenv.Nix(t, "nix-store", "--delete", string(p))
	if _, err := os.Lstat(string(p)); err == nil {
		t.Fatal("path still present after Done and delete")
	}
}

// --- Drainer ---

type fakePusher struct {
	mu      sync.Mutex
	pushed  map[storepath.Path]int
	fail    map[storepath.Path]bool // always fails when in the batch
	failN   atomic.Int32            // fail the next N calls
	calls   atomic.Int32
	delay   time.Duration
	maxConc atomic.Int32
	conc    atomic.Int32
}

func newFakePusher() *fakePusher {
	return &fakePusher{pushed: map[storepath.Path]int{}, fail: map[storepath.Path]bool{}}
}

func (f *fakePusher) Push(ctx context.Context, paths []storepath.Path) (queue.PushResult, error) {
	f.calls.Add(1)
	c := f.conc.Add(1)
	defer f.conc.Add(-1)
	for {
		m := f.maxConc.Load()
		if c <= m || f.maxConc.CompareAndSwap(m, c) {
			break
		}
	}
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return queue.PushResult{}, ctx.Err()
		}
	}
	if f.failN.Add(-1) >= 0 {
		return queue.PushResult{}, errors.New("injected failure")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range paths {
		if f.fail[p] {
			return queue.PushResult{}, fmt.Errorf("%s: broken", p)
		}
	}
	for _, p := range paths {
		f.pushed[p]++
	}
	return queue.PushResult{Uploaded: len(paths), Bytes: int64(100 * len(paths))}, nil
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func fastOpts() queue.DrainOptions {
	return queue.DrainOptions{
		PollInterval: 10 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		ExitWhenEmpty: true, Logger: quietLogger(), StatusInterval: 20 * time.Millisecond,
		Exists: func(storepath.Path) bool { return true },
	}
}

func TestDrainRules(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		setup    func(*fakePusher)
		opts     func(*queue.DrainOptions)
		dropped  int64
		exists   func(storepath.Path) bool
		checkMax int32
	}{
		{name: "all uploaded", n: 40},
		{name: "transient failures retried", n: 10, setup: func(f *fakePusher) { f.failN.Store(3) }},
		{name: "one bad path does not stall the others", n: 20, setup: func(f *fakePusher) { f.fail[fakePath(5)] = true }},
		// Main batches (overlapping closures) run one at a time.
		{name: "main batches serialized", n: 30, setup: func(f *fakePusher) { f.delay = 5 * time.Millisecond },
			opts: func(o *queue.DrainOptions) { o.Jobs = 3; o.BatchSize = 4 }, checkMax: 1},
		// Isolated retries use the other slots, at most Jobs in all.
		{name: "bounded concurrency", n: 30, setup: func(f *fakePusher) { f.delay = 20 * time.Millisecond; f.fail[fakePath(29)] = true },
			exists: func(p storepath.Path) bool { return p != fakePath(29) }, dropped: 1,
			opts: func(o *queue.DrainOptions) { o.Jobs = 3; o.BatchSize = 4 }, checkMax: 3},
		{name: "vanished paths dropped", n: 6, setup: func(f *fakePusher) { f.fail[fakePath(2)] = true },
			exists: func(p storepath.Path) bool { return p != fakePath(2) }, dropped: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := openNoRoots(t)
			for i := 0; i < tt.n; i++ {
				if err := q.Enqueue(fakePath(i)); err != nil {
					t.Fatal(err)
				}
			}
			f := newFakePusher()
			if tt.setup != nil {
				tt.setup(f)
			}
			o := fastOpts()
			if tt.opts != nil {
				tt.opts(&o)
			}
			if tt.exists != nil {
				o.Exists = tt.exists
			}
			bad := len(f.fail) - int(tt.dropped)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d := queue.NewDrainer(q, f, o)
			if bad > 0 {
				// Stop once every good path is done and every bad one failed.
				go func() {
					for ctx.Err() == nil {
						if st := d.Stats(); st.Uploaded == int64(tt.n-len(f.fail)) && st.Failing == bad {
							cancel()
							return
						}
						time.Sleep(5 * time.Millisecond)
					}
				}()
			}
			if err := d.Run(ctx); err != nil {
				t.Fatal(err)
			}
			st := d.Stats()
			wantUp := int64(tt.n - len(f.fail))
			if st.Uploaded != wantUp {
				t.Fatalf("uploaded %d, want %d (stats %+v)", st.Uploaded, wantUp, st)
			}
			if st.Dropped != tt.dropped {
				t.Fatalf("dropped %d, want %d", st.Dropped, tt.dropped)
			}
			left := pendingPaths(t, q)
			if len(left) != bad {
				t.Fatalf("left in queue %v, want %d bad paths", left, bad)
			}
			if bad > 0 && st.Failing != bad {
				t.Fatalf("failing = %d, want %d", st.Failing, bad)
			}
			if tt.checkMax > 0 && f.maxConc.Load() > tt.checkMax {
				t.Fatalf("max concurrency %d > %d", f.maxConc.Load(), tt.checkMax)
			}
			s, err := q.ReadStatus()
			if err != nil {
				t.Fatal(err)
			}
			if s.Uploaded != st.Uploaded {
				t.Fatalf("status file says %d uploaded, drainer %d", s.Uploaded, st.Uploaded)
			}
		})
	}
}

// New entries are picked up while the drainer runs, and ctx cancellation
// waits for the in-flight push (which completes and is removed).
func TestDrainPicksUpAndStops(t *testing.T) {
	q := openNoRoots(t)
	f := newFakePusher()
	f.delay = 100 * time.Millisecond
	o := fastOpts()
	o.ExitWhenEmpty = false
	ctx, cancel := context.WithCancel(context.Background())
	d := queue.NewDrainer(q, f, o)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for !q.DaemonRunning() { // the drainer has started
		time.Sleep(time.Millisecond)
	}
	if err := q.Enqueue(fakePath(1)); err != nil {
		t.Fatal(err)
	}
	// Wait until the push is in flight, then cancel.
	deadline := time.Now().Add(2 * time.Second)
	for d.Stats().InFlight == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if d.Stats().InFlight == 0 {
		t.Fatal("entry not picked up within 2 s")
	}
	if !q.DaemonRunning() {
		t.Fatal("drainer does not hold the lock")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, _ := q.Len(); n != 0 || f.pushed[fakePath(1)] != 1 {
		t.Fatalf("in-flight push not finished on cancel: len=%d pushed=%v", n, f.pushed)
	}
	// A second drainer refuses while one runs.
	unlock, _ := q.Lock()
	if err := queue.Run(context.Background(), q, f, o); !errors.Is(err, queue.ErrLocked) {
		t.Fatalf("second drainer: %v", err)
	}
	unlock()
}

// A failure of the whole push (cache unreachable) backs the batch off as
// one, instead of splitting it into a push per path.
func TestDrainWholeBatchFailure(t *testing.T) {
	q := openNoRoots(t)
	for i := 0; i < 10; i++ {
		_ = q.Enqueue(fakePath(i))
	}
	var calls atomic.Int32
	p := queue.PushFunc(func(ctx context.Context, paths []storepath.Path) (queue.PushResult, error) {
		if calls.Add(1) <= 3 {
			return queue.PushResult{}, fmt.Errorf("%w: connection refused", queue.ErrWholeBatch)
		}
		return queue.PushResult{Uploaded: len(paths)}, nil
	})
	d := queue.NewDrainer(q, p, fastOpts())
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got != 4 {
		t.Fatalf("%d Push calls, want 4 (3 failed whole batches, then one success)", got)
	}
	if st := d.Stats(); st.Uploaded != 10 || st.Failures != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMetrics(t *testing.T) {
	q := openNoRoots(t)
	_ = q.Enqueue(fakePath(1))
	d := queue.NewDrainer(q, newFakePusher(), fastOpts())
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := d.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# TYPE nixcache_queue_uploaded_paths_total counter\n", "nixcache_queue_uploaded_paths_total 1\n", "nixcache_queue_uploaded_bytes_total 100\n", "nixcache_queue_queued_paths 0\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
}

// TestMetricsUpstream: paths a push reports as served upstream are counted
// apart, in the stats (status.json) and the metrics.
func TestMetricsUpstream(t *testing.T) {
	q := openNoRoots(t)
	_ = q.Enqueue(fakePath(1))
	push := queue.PushFunc(func(_ context.Context, paths []storepath.Path) (queue.PushResult, error) {
		return queue.PushResult{Uploaded: len(paths), SkippedUpstream: 7, CheckRequests: 33}, nil
	})
	d := queue.NewDrainer(q, push, fastOpts())
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.Upstream != 7 || st.Narinfos != 1 || st.Checks != 33 {
		t.Fatalf("stats %+v, want 7 upstream, 1 narinfo, 33 check requests", st)
	}
	var b strings.Builder
	if err := d.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nixcache_queue_skipped_upstream_paths_total 7\n", "nixcache_queue_presence_requests_total 33\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
}

// BenchmarkEnqueue enqueues one new path per iteration: "indirect" is a
// queue outside Nix's gcroots (an entry plus an indirect GC root, two
// directory fsyncs), "under-gcroots" one inside it (the entry is the
// root: one symlink, one fsync). NIX_STATE_DIR points into the
// benchmark's directory.
func BenchmarkEnqueue(b *testing.B) {
	b.Run("indirect", func(b *testing.B) {
		q, err := queue.OpenOptions(b.TempDir(), queue.Options{GCRootsDir: filepath.Join(b.TempDir(), "roots")})
		if err != nil {
			b.Fatal(err)
		}
		benchEnqueue(b, q)
	})
	b.Run("under-gcroots", func(b *testing.B) {
		state := b.TempDir()
		b.Setenv("NIX_STATE_DIR", state)
		q, err := queue.Open(filepath.Join(state, "gcroots", "nixcache", "queue"))
		if err != nil {
			b.Fatal(err)
		}
		benchEnqueue(b, q)
		if links, _ := filepath.Glob(filepath.Join(state, "gcroots", "auto", "*")); len(links) != 0 {
			b.Fatalf("indirect roots made for a queue under gcroots: %v", links)
		}
	})
}

func benchEnqueue(b *testing.B, q *queue.Queue) {
	for i := 0; b.Loop(); i++ {
		if err := q.Enqueue(fakePath(i)); err != nil {
			b.Fatal(err)
		}
	}
}
