package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

const nobody = 65534

// asNobody runs a command as user nobody and returns its error.
func asNobody(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// TestQueueClosedToOthers is the regression test for a daemon.lock created
// 0644 in a 0755 queue: any local user could open it and hold the flock,
// and the root daemon then refused to start. The queue is now 0700, its
// lock and status 0600; a queue another user owns is refused.
func TestQueueClosedToOthers(t *testing.T) {
	testenv.RequireRoot(t)
	parent := t.TempDir()
	for _, d := range []string{filepath.Dir(parent), parent} {
		if err := os.Chmod(d, 0o755); err != nil { // let nobody reach the queue
			t.Fatal(err)
		}
	}
	dir := filepath.Join(parent, "queue")
	q, err := queue.OpenOptions(dir, queue.Options{GCRootsDir: "-"})
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := q.Lock()
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	lock := filepath.Join(dir, "daemon.lock")
	// What the attack needs: open the lock file (flock works on any open file).
	if err := asNobody("/bin/sh", "-c", `exec 3<"$1"`, "sh", lock); err == nil {
		t.Fatal("user nobody can open the queue's daemon.lock")
	}
	if err := asNobody("/bin/ls", filepath.Join(dir, "entries")); err == nil {
		t.Fatal("user nobody can list the queue's entries")
	}
	for name, want := range map[string]os.FileMode{dir: 0o700, q.EntriesDir(): 0o700, lock: 0o600} {
		if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode().Perm(), err, want)
		}
	}

	// A queue left open by an earlier version is closed when opened.
	_ = os.Chmod(dir, 0o755)
	_ = os.Chmod(lock, 0o644)
	if q, err = queue.OpenOptions(dir, queue.Options{GCRootsDir: "-"}); err != nil {
		t.Fatal(err)
	}
	if unlock, err = q.Lock(); err != nil {
		t.Fatal(err)
	}
	unlock()
	for name, want := range map[string]os.FileMode{dir: 0o700, lock: 0o600} {
		if fi, _ := os.Stat(name); fi.Mode().Perm() != want {
			t.Errorf("%s left at mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}

	// Files of another user: refused, not used.
	if err := os.Chown(lock, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Lock(); !errors.Is(err, queue.ErrNotOwner) {
		t.Fatalf("Lock on a lock file nobody owns = %v, want ErrNotOwner", err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.OpenOptions(dir, queue.Options{GCRootsDir: "-"}); !errors.Is(err, queue.ErrNotOwner) {
		t.Fatalf("Open of a queue nobody owns = %v, want ErrNotOwner", err)
	}
}

// TestReportAsksTheLock: a status file whose pid is alive (this very test)
// does not make a daemon "running"; only the lock does, and the pid shown
// then is the lock holder's.
func TestReportAsksTheLock(t *testing.T) {
	q := openNoRoots(t)
	st := fmt.Sprintf(`{"pid": %d, "started": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z"}`, os.Getpid())
	if err := os.WriteFile(filepath.Join(q.Dir(), queue.StatusFile), []byte(st), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := queue.ReadReport(q.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_ = r.WriteText(&b)
	if r.Running || !strings.Contains(b.String(), "daemon:   not running") {
		t.Fatalf("stale status file makes the daemon look alive:\n%s", b.String())
	}
	unlock, err := q.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if r, err = queue.ReadReport(q.Dir()); err != nil || !r.Running || r.PID != os.Getpid() {
		t.Fatalf("with the lock held: %+v, %v", r, err)
	}
}

// TestBadEntryDoesNotHoldBackItsBatch is the regression test for one
// queued path that is not in the store failing its whole batch (the
// closure query fails, which names no path: a whole-batch error) and the
// good paths then waiting out a backoff. It also checks how such a path
// is logged: it may never have been valid, so not "no longer in the store".
func TestBadEntryDoesNotHoldBackItsBatch(t *testing.T) {
	q := openNoRoots(t)
	bad := storepath.Path("/nix/store/00000000000000000000000000000000-never-built")
	paths := []storepath.Path{fakePath(1), fakePath(2), bad, fakePath(3)}
	if err := q.Enqueue(paths...); err != nil {
		t.Fatal(err)
	}
	var calls int
	p := queue.PushFunc(func(ctx context.Context, batch []storepath.Path) (queue.PushResult, error) {
		calls++
		for _, x := range batch {
			if x == bad {
				return queue.PushResult{}, fmt.Errorf("%w: closure: path %s is not valid", queue.ErrWholeBatch, x)
			}
		}
		return queue.PushResult{Uploaded: len(batch)}, nil
	})
	var logs testenv.Buffer
	o := fastOpts()
	o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour // a backoff would outlast the test
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	o.Exists = func(x storepath.Path) bool { return x != bad }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := queue.NewDrainer(q, p, o)
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st := d.Stats()
	if st.Uploaded != 3 || st.Dropped != 1 || st.Failing != 0 || calls != 2 {
		t.Fatalf("uploaded %d, dropped %d, failing %d in %d pushes; want 3, 1, 0 in 2\n%s", st.Uploaded, st.Dropped, st.Failing, calls, logs.String())
	}
	if strings.Contains(logs.String(), "no longer") || !strings.Contains(logs.String(), "not in the store") {
		t.Fatalf("a path never built is logged as having left the store:\n%s", logs.String())
	}
}

// TestOnStartAfterLock: OnStart (where the daemon logs that it started)
// runs only once the lock is held; a second drainer never gets there.
func TestOnStartAfterLock(t *testing.T) {
	q := openNoRoots(t)
	unlock, err := q.Lock()
	if err != nil {
		t.Fatal(err)
	}
	started := false
	o := fastOpts()
	o.OnStart = func() { started = true }
	if err := queue.Run(context.Background(), q, newFakePusher(), o); !errors.Is(err, queue.ErrLocked) || started {
		t.Fatalf("Run with the lock taken = %v, OnStart called: %v", err, started)
	}
	unlock()
	if err := queue.Run(context.Background(), q, newFakePusher(), o); err != nil || !started {
		t.Fatalf("Run = %v, OnStart called: %v", err, started)
	}
}

// TestStalledBatchDoesNotHoldBackTheNext: a batch whose upload stalls (a
// server that stops reading) must not hold back the paths queued after it
// (issue 8.9, daemon side): past SlowBatch the next batch starts beside it.
func TestStalledBatchDoesNotHoldBackTheNext(t *testing.T) {
	q := openNoRoots(t)
	stalled := fakePath(99)
	if err := q.Enqueue(stalled); err != nil {
		t.Fatal(err)
	}
	var uploaded testenv.Buffer
	p := queue.PushFunc(func(ctx context.Context, batch []storepath.Path) (queue.PushResult, error) {
		for _, x := range batch {
			if x == stalled {
				<-ctx.Done() // stalls until the drainer gives up on it
				return queue.PushResult{}, ctx.Err()
			}
		}
		for _, x := range batch {
			fmt.Fprintln(&uploaded, x)
		}
		return queue.PushResult{Uploaded: len(batch)}, nil
	})
	o := fastOpts()
	o.ExitWhenEmpty = false
	o.Jobs = 2
	o.SlowBatch = 50 * time.Millisecond
	o.ShutdownGrace = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	d := queue.NewDrainer(q, p, o)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for d.Stats().InFlight == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := q.Enqueue(fakePath(1), fakePath(2), fakePath(3)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.Stats().Uploaded < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("paths queued behind a stalled batch not uploaded within 5 s (stats %+v)", d.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d.Stats().InFlight != 1 {
		t.Fatalf("the stalled push should still be in flight: %+v", d.Stats())
	}
}
