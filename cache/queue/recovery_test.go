package queue_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/storepath"
)

// fakeDB stands for Nix's database: the paths it built, with their
// registration times and row ids.
type fakeDB struct {
	mu    sync.Mutex
	rows  []fakeRow
	calls []builtCall
	fail  error // Built's
}

type fakeRow struct {
	id   int64
	path storepath.Path
	reg  time.Time
}

type builtCall struct {
	since   time.Time
	afterID int64
}

func (db *fakeDB) add(p storepath.Path, reg time.Time) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.rows = append(db.rows, fakeRow{id: int64(len(db.rows) + 1), path: p, reg: reg})
}

func (db *fakeDB) LastID(context.Context) (int64, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	return int64(len(db.rows)), nil
}

func (db *fakeDB) Built(_ context.Context, since time.Time, afterID int64) ([]storepath.Path, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.calls = append(db.calls, builtCall{since, afterID})
	if db.fail != nil {
		return nil, db.fail
	}
	var out []storepath.Path
	for _, r := range db.rows {
		if !r.reg.Before(since) || r.id > afterID {
			out = append(out, r.path)
		}
	}
	return out, nil
}

// countSyncs counts the syncs (op "fsync" or "syncfs") of each queue
// directory until the test ends.
func countSyncs(t *testing.T, op string) func(dir string) int {
	var mu sync.Mutex
	n := map[string]int{}
	queue.SetSyncHook(t, func(dir, o string) {
		if o == op {
			mu.Lock()
			n[dir]++
			mu.Unlock()
		}
	})
	return func(dir string) int {
		mu.Lock()
		defer mu.Unlock()
		return n[dir]
	}
}

// TestEnqueueBuiltSkipsFsyncOnlyWithCheckpoint: without a checkpoint a
// hook's entry is fsync'ed as by Enqueue; with one, nothing is fsync'ed
// (the daemon recovers the path from Nix's database after a crash), and
// the entry and its GC root are there all the same.
func TestEnqueueBuiltSkipsFsyncOnlyWithCheckpoint(t *testing.T) {
	roots := filepath.Join(t.TempDir(), "roots")
	q, err := queue.OpenOptions(t.TempDir(), queue.Options{GCRootsDir: roots})
	if err != nil {
		t.Fatal(err)
	}
	syncs := countSyncs(t, "fsync")
	if err := q.EnqueueBuilt(fakePath(1)); err != nil {
		t.Fatal(err)
	}
	if syncs(q.EntriesDir()) != 1 || syncs(roots) != 1 {
		t.Fatalf("without a checkpoint: %d fsyncs of the entries and %d of the roots, want 1 each", syncs(q.EntriesDir()), syncs(roots))
	}
	if err := q.WriteCheckpoint(queue.Checkpoint{BootID: queue.BootID(), Synced: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := q.EnqueueBuilt(fakePath(2), fakePath(3)); err != nil {
		t.Fatal(err)
	}
	if syncs(q.EntriesDir()) != 1 || syncs(roots) != 1 {
		t.Fatalf("with a checkpoint: %d fsyncs of the entries and %d of the roots, want none after the first", syncs(q.EntriesDir())-1, syncs(roots)-1)
	}
	if got := pendingPaths(t, q); len(got) != 3 {
		t.Fatalf("pending %v, want 3 paths", got)
	}
	if links, _ := os.ReadDir(roots); len(links) != 3 {
		t.Fatalf("%d GC roots, want 3", len(links))
	}
	// Enqueue (not a hook's built outputs) stays durable.
	if err := q.Enqueue(fakePath(4)); err != nil {
		t.Fatal(err)
	}
	if syncs(q.EntriesDir()) != 2 {
		t.Fatalf("Enqueue with a checkpoint did not fsync the entries")
	}
}

// drainOnce runs a Drainer with ExitWhenEmpty and returns what it pushed.
func drainOnce(t *testing.T, q *queue.Queue, db queue.Recoverer) map[storepath.Path]int {
	t.Helper()
	p := newFakePusher()
	opts := fastOpts()
	opts.Recover = db
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := queue.Run(ctx, q, p, opts); err != nil {
		t.Fatal(err)
	}
	return p.pushed
}

func readCheckpoint(t *testing.T, q *queue.Queue) queue.Checkpoint {
	t.Helper()
	cp, err := q.ReadCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestRecoveryAfterReboot: hooks queued built paths without fsync, then
// the machine lost power and their entries with it. The daemon, started on
// the new boot, finds them in Nix's database (registered since the
// checkpoint, by time or by row id) and uploads them; paths built before
// the checkpoint's margin are not queued again. Without a reboot nothing
// is recovered.
func TestRecoveryAfterReboot(t *testing.T) {
	q := openNoRoots(t)
	db := &fakeDB{}
	old := time.Now().Add(-time.Hour)
	db.add(fakePath(1), old) // uploaded long ago
	queue.SetBootID(t, "boot-1")
	// A daemon killed while writing a checkpoint left its temporary.
	tmp := filepath.Join(q.Dir(), "."+queue.RecoveryFile+".123")
	if err := os.WriteFile(tmp, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pushed := drainOnce(t, q, db); len(pushed) != 0 {
		t.Fatalf("empty queue: pushed %v", pushed)
	}
	if _, err := os.Lstat(tmp); err == nil {
		t.Errorf("the temporary of an unfinished checkpoint is still there")
	}
	cp := readCheckpoint(t, q)
	if cp.BootID != "boot-1" || cp.LastID != 1 || time.Since(cp.Synced) > time.Minute {
		t.Fatalf("checkpoint %+v, want boot-1, last id 1, synced now", cp)
	}

	// Hooks queue three built paths; one was registered just before the
	// checkpoint (its hook ran just after), two after it.
	db.add(fakePath(2), cp.Synced.Add(-2*time.Second))
	db.add(fakePath(3), cp.Synced.Add(time.Second))
	db.add(fakePath(4), old) // a clock stepped back: found by its row id
	if err := q.EnqueueBuilt(fakePath(2), fakePath(3), fakePath(4)); err != nil {
		t.Fatal(err)
	}
	// The power cut loses the entries.
	for _, i := range []int{2, 3, 4} {
		if err := os.Remove(filepath.Join(q.EntriesDir(), fakePath(i).Base())); err != nil {
			t.Fatal(err)
		}
	}
	// Same boot (a daemon restart, not a power cut): no recovery.
	if pushed := drainOnce(t, q, db); len(pushed) != 0 || len(db.calls) != 0 {
		t.Fatalf("same boot: pushed %v, Built called %v", pushed, db.calls)
	}
	cp = readCheckpoint(t, q)
	if cp.LastID != 4 {
		t.Fatalf("checkpoint %+v after the restart, want last id 4", cp)
	}
	// Roll the checkpoint back to when the power went: after path 2 was
	// registered (its row id is not above LastID, only its time is within
	// the margin), before the other two.
	cp.LastID = 2
	cp.Synced = cp.Synced.Add(-time.Second)
	if err := q.WriteCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	queue.SetBootID(t, "boot-2")
	pushed := drainOnce(t, q, db)
	if len(db.calls) != 1 || db.calls[0].afterID != 2 || !db.calls[0].since.Equal(cp.Synced.Add(-queue.DefaultRecoveryMargin)) {
		t.Fatalf("Built calls %+v, want one since the checkpoint less the margin, after id 2", db.calls)
	}
	got := slices.Sorted(func(yield func(storepath.Path) bool) {
		for p := range pushed {
			if !yield(p) {
				return
			}
		}
	})
	if want := []storepath.Path{fakePath(2), fakePath(3), fakePath(4)}; !slices.Equal(got, want) {
		t.Fatalf("pushed after the reboot %v, want %v", got, want)
	}
	if cp := readCheckpoint(t, q); cp.BootID != "boot-2" || cp.LastID != 4 {
		t.Fatalf("checkpoint after recovery %+v, want boot-2, last id 4", cp)
	}
}

// TestRecoveryFailureKeepsCheckpoint: when the database cannot be read
// after a reboot, the old checkpoint stays (a later recovery still looks
// back far enough) and the next checkpoint retries the recovery.
func TestRecoveryFailureKeepsCheckpoint(t *testing.T) {
	q := openNoRoots(t)
	queue.SetBootID(t, "boot-2")
	old := queue.Checkpoint{BootID: "boot-1", Synced: time.Now().Add(-time.Hour), LastID: 7}
	if err := q.WriteCheckpoint(old); err != nil {
		t.Fatal(err)
	}
	db := &fakeDB{}
	for range 7 {
		db.add(fakePath(99), old.Synced.Add(-time.Hour))
	}
	db.add(fakePath(8), time.Now())
	db.mu.Lock()
	db.fail = errors.New("database locked")
	db.mu.Unlock()
	p := newFakePusher()
	opts := fastOpts()
	opts.Recover = db
	opts.ExitWhenEmpty = false
	opts.CheckpointInterval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- queue.Run(ctx, q, p, opts) }()
	waitUntil(t, "a failed recovery", func() bool {
		db.mu.Lock()
		defer db.mu.Unlock()
		return len(db.calls) >= 2
	})
	if cp := readCheckpoint(t, q); cp.BootID != "boot-1" || cp.LastID != 7 {
		t.Fatalf("checkpoint after a failed recovery: %+v, want the old one", cp)
	}
	db.mu.Lock()
	db.fail = nil
	db.mu.Unlock()
	waitUntil(t, "the recovered path pushed and a new checkpoint", func() bool {
		p.mu.Lock()
		pushed := p.pushed[fakePath(8)]
		p.mu.Unlock()
		cp, err := q.ReadCheckpoint()
		return pushed == 1 && err == nil && cp.BootID == "boot-2"
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestNoRecovererDropsCheckpoint: a daemon that cannot read Nix's database
// removes the checkpoint an earlier daemon left, so hooks fsync again.
func TestNoRecovererDropsCheckpoint(t *testing.T) {
	q := openNoRoots(t)
	if err := q.WriteCheckpoint(queue.Checkpoint{BootID: queue.BootID(), Synced: time.Now()}); err != nil {
		t.Fatal(err)
	}
	drainOnce(t, q, nil)
	if _, err := q.ReadCheckpoint(); err == nil {
		t.Fatal("checkpoint still there after a daemon without a Recoverer")
	}
	syncs := countSyncs(t, "fsync")
	if err := q.EnqueueBuilt(fakePath(1)); err != nil {
		t.Fatal(err)
	}
	if syncs(q.EntriesDir()) != 1 {
		t.Fatal("EnqueueBuilt did not fsync after the checkpoint was dropped")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRecoveryFailureWaitsAnInterval: a recovery that failed is tried
// again after CheckpointInterval, not at every poll (each try reads the
// whole ValidPaths table).
func TestRecoveryFailureWaitsAnInterval(t *testing.T) {
	q := openNoRoots(t)
	queue.SetBootID(t, "boot-2")
	if err := q.WriteCheckpoint(queue.Checkpoint{BootID: "boot-1", Synced: time.Now(), LastID: 1}); err != nil {
		t.Fatal(err)
	}
	db := &fakeDB{fail: errors.New("database locked")}
	opts := fastOpts()
	opts.Recover = db
	opts.ExitWhenEmpty = false
	opts.CheckpointInterval = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- queue.Run(ctx, q, newFakePusher(), opts) }()
	// Wait for many polls: the status file is rewritten every 20 ms.
	status := filepath.Join(q.Dir(), queue.StatusFile)
	var seen []time.Time
	waitUntil(t, "five status writes", func() bool {
		if fi, err := os.Stat(status); err == nil && (len(seen) == 0 || !fi.ModTime().Equal(seen[len(seen)-1])) {
			seen = append(seen, fi.ModTime())
		}
		return len(seen) >= 5
	})
	db.mu.Lock()
	calls := len(db.calls)
	db.mu.Unlock()
	cancel() // the daemon's last checkpoint, on its way out, tries once more
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("Built called %d times within the first interval, want 1", calls)
	}
}
