package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/nixcache/nixcache/storepath"
)

// PushResult is what a Pusher reports about one successful push.
type PushResult struct {
	// Uploaded is the number of store paths whose narinfo was written
	// (paths already in the cache are not counted).
	Uploaded int
	// SkippedUpstream is the number of closure paths not uploaded because
	// an upstream cache serves them (cache.PushOptions.SkipSignedBy).
	SkippedUpstream int
	// Bytes is the number of NAR bytes uploaded (uncompressed).
	Bytes int64
	// CheckRequests is the number of requests made to find which closure
	// paths were already in the cache (cache.Summary.Presence), also when
	// the push failed after the check.
	CheckRequests int
}

// Pusher uploads the closures of store paths to a binary cache. Push must
// return nil only once every path's narinfo (and so, by the cache's
// invariant, the narinfos and NARs of its whole closure) is in the cache.
// It must be safe for concurrent use.
type Pusher interface {
	Push(ctx context.Context, paths []storepath.Path) (PushResult, error)
}

// ErrWholeBatch marks a Push error that concerns the whole push rather than
// particular paths (the cache is unreachable, the credentials are wrong):
// the batch then backs off as a whole instead of being split into one push
// per path, which would only multiply failing requests.
var ErrWholeBatch = errors.New("queue: push failed as a whole")

// PushFunc adapts a function to the Pusher interface.
type PushFunc func(ctx context.Context, paths []storepath.Path) (PushResult, error)

// Push calls f.
func (f PushFunc) Push(ctx context.Context, paths []storepath.Path) (PushResult, error) {
	return f(ctx, paths)
}

// DrainOptions configures a Drainer. Zero values mean the defaults below.
type DrainOptions struct {
	// Jobs is the number of pushes in flight at once (default 2): one main
	// batch plus Jobs-1 retries of paths isolated after a batch failure.
	Jobs int
	// BatchSize is the most paths handed to one Push call (default 32). A
	// failing batch is split: each of its paths is retried alone, so one bad
	// path never holds back the others.
	BatchSize int
	// PollInterval is how often the queue directory is checked for new
	// entries (default 250ms).
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff, with jitter,
	// between attempts for a failing path (defaults 1s and 5m).
	MinBackoff, MaxBackoff time.Duration
	// ExitWhenEmpty makes Run return nil once the queue is empty and nothing
	// is in flight.
	ExitWhenEmpty bool
	// SlowBatch is how long a batch of new paths may run before the next
	// batch starts beside it (default 1m): batches normally run one at a
	// time, but one stalled upload must not hold back every path queued
	// after it.
	SlowBatch time.Duration
	// ShutdownGrace is how long in-flight pushes may run on after the
	// context is cancelled before they are cancelled too (default 1m).
	ShutdownGrace time.Duration
	// StatusInterval is how often DIR/status.json is rewritten (default 1s).
	StatusInterval time.Duration
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// Exists reports whether a store path is still present (default: lstat).
	// After a failed push, a queued path that is gone is dropped from the
	// queue with a log line, and the rest of its batch is retried at once.
	Exists func(storepath.Path) bool
	// Recover, when set, lets post-build hooks skip their fsync: Run then
	// keeps a checkpoint in the queue directory (see Checkpoint and
	// EnqueueBuilt), and when it starts after a crash of the machine it
	// queues again, durably, what Nix built since the last checkpoint.
	// *localstore.Store reading Nix's database implements it. Without it
	// (or when it cannot read the database) Run removes a checkpoint an
	// earlier daemon left, so that hooks fsync their entries again.
	Recover Recoverer
	// CheckpointInterval is how often, at most, the checkpoint is renewed
	// while entries come and go (default 1m): how far back a recovery
	// looks beyond the crash.
	CheckpointInterval time.Duration
	// RecoveryMargin is how long before its checkpoint a recovery starts
	// looking, by registration time (default DefaultRecoveryMargin).
	RecoveryMargin time.Duration
	// OnStart, when set, is called once Run holds the queue's daemon lock
	// and has cleaned the queue, before the first push: the place to log
	// that the daemon started (a second daemon never gets there).
	OnStart func()
}

func (o *DrainOptions) defaults() {
	if o.Jobs <= 0 {
		o.Jobs = 2
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 32
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Minute, o.MinBackoff)
	}
	if o.SlowBatch <= 0 {
		o.SlowBatch = time.Minute
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = time.Minute
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Minute
	}
	if o.RecoveryMargin <= 0 {
		o.RecoveryMargin = DefaultRecoveryMargin
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Exists == nil {
		o.Exists = func(p storepath.Path) bool {
			_, err := os.Lstat(string(p))
			return !errors.Is(err, fs.ErrNotExist)
		}
	}
}

type item struct {
	path     storepath.Path
	queued   time.Time
	attempts int
	next     time.Time
	solo     bool
	inFlight bool
	lastErr  string
}

type result struct {
	batch []*item
	main  bool
	res   PushResult
	err   error
	took  time.Duration
}

// Drainer uploads the entries of a Queue through a Pusher until its context
// is cancelled. Create it with NewDrainer and start it with Run.
type Drainer struct {
	q    *Queue
	p    Pusher
	opts DrainOptions
	log  *slog.Logger

	mu    sync.Mutex
	stats Stats
	items map[string]*item

	rec recovery // used by Run's goroutine only
}

// NewDrainer returns a Drainer for q that uploads through p.
func NewDrainer(q *Queue, p Pusher, opts DrainOptions) *Drainer {
	opts.defaults()
	return &Drainer{q: q, p: p, opts: opts, log: opts.Logger, items: map[string]*item{}}
}

// Run is a shorthand for NewDrainer(q, p, opts).Run(ctx).
func Run(ctx context.Context, q *Queue, p Pusher, opts DrainOptions) error {
	return NewDrainer(q, p, opts).Run(ctx)
}

// Run drains the queue: it takes the queue's daemon lock, picks up new entries
// within PollInterval, pushes up to Jobs batches at once, removes an entry
// only after its push succeeded, backs off per failing path, and drops paths
// that left the store. When ctx is cancelled it stops starting pushes, waits
// for those in flight (at most ShutdownGrace), writes the status file and
// returns nil. Entries not yet uploaded stay queued for the next run.
func (d *Drainer) Run(ctx context.Context) error {
	// A hook's DaemonRunning probe holds the lock for microseconds: retry
	// briefly before concluding that another daemon runs.
	unlock, err := d.q.Lock()
	for i := 0; i < 20 && errors.Is(err, ErrLocked); i++ {
		time.Sleep(50 * time.Millisecond)
		unlock, err = d.q.Lock()
	}
	if err != nil {
		return err
	}
	defer unlock()
	if removed, err := d.q.Clean(10 * time.Minute); err != nil {
		return err
	} else if len(removed) > 0 {
		d.log.Warn("removed stale or malformed queue entries", "queue", d.q.Dir(), "names", removed)
	}
	if err := d.q.RepairRoots(); err != nil {
		d.log.Warn("cannot register GC roots for queued paths", "err", err)
	}
	d.startRecovery(ctx)
	now := time.Now()
	d.mu.Lock()
	d.stats = Stats{PID: os.Getpid(), Started: now}
	d.mu.Unlock()
	if d.opts.OnStart != nil {
		d.opts.OnStart()
	}

	// In-flight pushes outlive ctx by at most ShutdownGrace.
	pushCtx, cancelPush := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPush()
	results := make(chan result)
	inFlight := 0
	mains := 0 // main batches in flight
	var lastMain time.Time
	var wg sync.WaitGroup
	defer wg.Wait()

	poll := time.NewTicker(d.opts.PollInterval)
	defer poll.Stop()
	var lastStatus time.Time
	var grace <-chan time.Time
	stopping := false
	var lastMod time.Time
	var lastFull time.Time

	done := func(r result) {
		inFlight--
		if r.main {
			mains--
		}
		d.finish(r)
	}
	for {
		if !stopping {
			if ctx.Err() != nil {
				stopping = true
				d.mu.Lock()
				d.stats.Stopping = true
				d.mu.Unlock()
				d.log.Info("stopping: waiting for in-flight uploads", "in_flight", inFlight)
				grace = time.After(d.opts.ShutdownGrace)
			} else {
				// Rescan when the directory changed, and in full every 5 s
				// in case a change fell within the mtime granularity.
				if fi, err := os.Stat(d.q.EntriesDir()); err != nil {
					d.log.Error("cannot read queue directory", "dir", d.q.EntriesDir(), "err", err)
				} else if !fi.ModTime().Equal(lastMod) || time.Since(lastFull) > 5*time.Second {
					lastMod, lastFull = fi.ModTime(), time.Now()
					d.scan()
				}
				for inFlight < d.opts.Jobs {
					// A main batch that runs longer than SlowBatch (a stalled
					// upload) no longer holds back the next one.
					slow := mains > 0 && time.Since(lastMain) > d.opts.SlowBatch
					batch, main := d.nextBatch(time.Now(), mains > 0 && !slow)
					if len(batch) == 0 {
						break
					}
					if main {
						if mains > 0 {
							d.log.Warn("a batch is slow; starting the next one beside it", "running_for", time.Since(lastMain).Round(time.Second))
						}
						mains++
						lastMain = time.Now()
					}
					inFlight++
					wg.Add(1)
					go func() {
						defer wg.Done()
						results <- d.push(pushCtx, batch, main)
					}()
				}
			}
		}
		if time.Since(lastStatus) >= d.opts.StatusInterval {
			d.writeStatus()
			lastStatus = time.Now()
		}
		if stopping && inFlight == 0 {
			d.maybeCheckpoint(context.WithoutCancel(ctx), true)
			d.writeStatus()
			return nil
		}
		if !stopping {
			d.maybeCheckpoint(ctx, false)
		}
		if !stopping && d.opts.ExitWhenEmpty && inFlight == 0 && d.queuedCount() == 0 {
			// Confirm with a fresh full scan before leaving.
			d.scan()
			if d.queuedCount() == 0 {
				d.maybeCheckpoint(ctx, true)
				d.log.Info("queue empty; exiting")
				d.writeStatus()
				return nil
			}
		}
		select {
		case r := <-results:
			done(r)
		case <-poll.C:
		case <-ctx.Done():
			if stopping {
				// Wait only for results or the grace timeout.
				select {
				case r := <-results:
					done(r)
				case <-grace:
					d.log.Warn("shutdown grace expired; cancelling in-flight uploads", "in_flight", inFlight)
					cancelPush()
					grace = nil
				}
			}
		}
	}
}

// scan merges the directory listing into the in-memory items.
func (d *Drainer) scan() {
	entries, err := d.q.Pending()
	if err != nil {
		d.log.Error("cannot list queue", "err", err)
		return
	}
	seen := make(map[string]bool, len(entries))
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range entries {
		name := e.Path.Base()
		seen[name] = true
		if _, ok := d.items[name]; !ok {
			d.items[name] = &item{path: e.Path, queued: e.Queued}
		}
	}
	for name, it := range d.items {
		if !seen[name] && !it.inFlight {
			delete(d.items, name)
		}
	}
}

func (d *Drainer) queuedCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.items)
}

// nextBatch picks the next push: the oldest ready path that failed in a
// batch (alone), else, when no main batch is in flight, up to BatchSize of
// the oldest ready paths. Main batches run one at a time: their closures
// usually overlap (a build's outputs refer to the ones built just before),
// and cache.Push parallelises and deduplicates within one call, so two
// concurrent main batches would upload the shared paths twice (unless one
// has run longer than SlowBatch, see Run). The other
// Jobs-1 slots serve paths being retried alone, so a slow failing path
// never stalls the main flow.
func (d *Drainer) nextBatch(now time.Time, mainBusy bool) (batch []*item, main bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ready []*item
	for _, it := range d.items {
		if !it.inFlight && !it.next.After(now) && (it.solo || !mainBusy) {
			ready = append(ready, it)
		}
	}
	if len(ready) == 0 {
		return nil, false
	}
	sort.Slice(ready, func(i, j int) bool {
		if ready[i].solo != ready[j].solo {
			return ready[i].solo
		}
		if !ready[i].queued.Equal(ready[j].queued) {
			return ready[i].queued.Before(ready[j].queued)
		}
		return ready[i].path < ready[j].path
	})
	if ready[0].solo {
		batch = ready[:1]
	} else {
		main = true
		batch = ready[:min(len(ready), d.opts.BatchSize)]
	}
	for _, it := range batch {
		it.inFlight = true
	}
	d.stats.InFlight += len(batch)
	return batch, main
}

func (d *Drainer) push(ctx context.Context, batch []*item, main bool) result {
	paths := make([]storepath.Path, len(batch))
	for i, it := range batch {
		paths[i] = it.path
	}
	start := time.Now()
	var res PushResult
	err := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("queue: push panicked: %v", v)
			}
		}()
		res, err = d.p.Push(ctx, paths)
		return err
	}()
	return result{batch: batch, main: main, res: res, err: err, took: time.Since(start)}
}

func (d *Drainer) finish(r result) {
	d.mu.Lock()
	d.stats.InFlight -= len(r.batch)
	d.stats.Checks += int64(r.res.CheckRequests)
	d.mu.Unlock()
	if r.err == nil {
		var doneErr error
		for _, it := range r.batch {
			if err := d.q.Done(it.path); err != nil {
				doneErr = errors.Join(doneErr, err)
			}
		}
		d.mu.Lock()
		for _, it := range r.batch {
			delete(d.items, it.path.Base())
		}
		d.stats.Uploaded += int64(len(r.batch))
		d.stats.Bytes += r.res.Bytes
		d.stats.Narinfos += int64(r.res.Uploaded)
		d.stats.Upstream += int64(r.res.SkippedUpstream)
		d.mu.Unlock()
		for _, it := range r.batch {
			d.log.Info("uploaded", "path", string(it.path), "attempt", it.attempts+1)
		}
		d.log.Debug("push finished", "paths", len(r.batch), "narinfos", r.res.Uploaded, "bytes", r.res.Bytes, "check_requests", r.res.CheckRequests, "took", r.took)
		if doneErr != nil {
			d.log.Error("cannot remove queue entries", "err", doneErr)
		}
		return
	}
	now := time.Now()
	whole := errors.Is(r.err, ErrWholeBatch)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Failures++
	// Paths that are not valid in the store are dropped first: they can
	// never be uploaded, and they may be what failed the batch.
	kept := r.batch[:0:0]
	for _, it := range r.batch {
		it.inFlight = false
		if d.opts.Exists(it.path) {
			kept = append(kept, it)
			continue
		}
		d.log.Warn("dropping queued path: "+notInStoreReason(it.path), "path", string(it.path))
		if err := d.q.Done(it.path); err != nil {
			d.log.Error("cannot remove queue entry", "path", string(it.path), "err", err)
		}
		delete(d.items, it.path.Base())
		d.stats.Dropped++
	}
	switch {
	case len(kept) == 0:
		return
	case len(kept) < len(r.batch):
		// The dropped paths explain the failure: the others are retried
		// now, in a batch, without counting an attempt against them.
		d.log.Warn("upload failed with paths not in the store; retrying the others", "paths", len(kept), "err", r.err)
		return
	case len(kept) > 1 && !whole:
		// Isolate: retry each path of the batch alone, now.
		for _, it := range kept {
			it.solo = true
		}
		d.log.Warn("batch upload failed; retrying its paths one by one", "paths", len(kept), "err", r.err)
		return
	}
	// One delay for the whole batch keeps it together.
	var delay time.Duration
	for _, it := range kept {
		it.attempts++
		it.lastErr = r.err.Error()
		if delay == 0 {
			delay = d.backoff(it.attempts)
		}
		it.next = now.Add(delay)
	}
	attrs := []any{"paths", len(kept), "retry_in", delay.Round(time.Millisecond), "err", r.err}
	if len(kept) == 1 {
		attrs = append(attrs, "path", string(kept[0].path), "attempt", kept[0].attempts)
	}
	d.log.Warn("upload failed; will retry", attrs...)
}

// notInStoreReason says why a path that Exists reported gone is dropped,
// without claiming it was ever valid: an entry may have been made by hand.
func notInStoreReason(p storepath.Path) string {
	if _, err := os.Lstat(string(p)); err == nil {
		return "not a valid store path (on disk, but not registered in the store database)"
	}
	return "not in the store (garbage-collected, or never built here)"
}

// backoff is MinBackoff*2^(attempt-1), capped at MaxBackoff, with jitter in
// [d/2, d).
func (d *Drainer) backoff(attempt int) time.Duration {
	b := d.opts.MinBackoff
	for i := 1; i < attempt && b < d.opts.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.opts.MaxBackoff)
	return b/2 + rand.N(b/2+1)
}

// Stats returns a snapshot of the counters.
func (d *Drainer) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Updated = time.Now()
	s.Queued, s.Failing = 0, 0
	for _, it := range d.items {
		if !it.inFlight {
			s.Queued++
		}
		if it.attempts > 0 {
			s.Failing++
			if len(s.FailingPaths) < 100 {
				s.FailingPaths = append(s.FailingPaths, FailingPath{Path: it.path, Attempts: it.attempts, NextTry: it.next, LastError: it.lastErr})
			}
		}
	}
	sort.Slice(s.FailingPaths, func(i, j int) bool { return s.FailingPaths[i].Path < s.FailingPaths[j].Path })
	return s
}

func (d *Drainer) writeStatus() {
	b, err := json.MarshalIndent(d.Stats(), "", "  ")
	if err == nil {
		err = writeFileAtomic(filepath.Join(d.q.Dir(), StatusFile), append(b, '\n'), false)
	}
	if err != nil {
		d.log.Warn("cannot write status file", "err", err)
	}
}

// WriteMetrics writes the Drainer's counters in the Prometheus text
// exposition format (version 0.0.4).
func (d *Drainer) WriteMetrics(w io.Writer) error {
	s := d.Stats()
	metrics := []struct {
		name, typ, help string
		v               float64
	}{
		{"nixcache_queue_queued_paths", "gauge", "Store paths waiting in the queue.", float64(s.Queued)},
		{"nixcache_queue_in_flight_paths", "gauge", "Store paths being uploaded now.", float64(s.InFlight)},
		{"nixcache_queue_failing_paths", "gauge", "Store paths waiting for a retry after a failure.", float64(s.Failing)},
		{"nixcache_queue_uploaded_paths_total", "counter", "Queued store paths confirmed in the cache.", float64(s.Uploaded)},
		{"nixcache_queue_narinfos_total", "counter", "Narinfos written, closures included.", float64(s.Narinfos)},
		{"nixcache_queue_skipped_upstream_paths_total", "counter", "Closure paths not uploaded because an upstream cache serves them.", float64(s.Upstream)},
		{"nixcache_queue_presence_requests_total", "counter", "Requests made to find which closure paths were already in the cache.", float64(s.Checks)},
		{"nixcache_queue_failures_total", "counter", "Failed upload attempts.", float64(s.Failures)},
		{"nixcache_queue_dropped_paths_total", "counter", "Queued paths dropped because they left the store.", float64(s.Dropped)},
		{"nixcache_queue_uploaded_bytes_total", "counter", "NAR bytes uploaded.", float64(s.Bytes)},
		{"nixcache_queue_start_time_seconds", "gauge", "Unix time the drainer started.", float64(s.Started.Unix())},
	}
	for _, m := range metrics {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", m.name, m.help, m.name, m.typ, m.name, m.v); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file in its
// directory (".<name>.*", mode 0600 from CreateTemp) and a rename. With
// durable, the file is fsync'ed before the rename and the directory after
// it: after a crash, path holds data or what it held before, never a mix.
func writeFileAtomic(path string, data []byte, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if durable {
		return syncDir(dir)
	}
	return nil
}
