package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixcache/nixcache/storepath"
)

// ErrCollected is returned (wrapped) by Push when an object it reused (a
// reference's narinfo, a NAR file already there) was removed by a garbage
// collector running at the same time. Nothing that relied on it was
// published; pushing again uploads it anew.
var ErrCollected = errors.New("cache: reused object removed by a concurrent garbage collector")

// reuse is how a Push keeps what it reuses from a concurrent Collect: it
// touches each reused object (its ModTime becomes young, and differs from
// what any collector listed before), waits ReuseSettle, and checks the
// object is still there before it publishes a narinfo relying on it. A
// collector that looked at the object before the touch has removed it by
// then (its removal ends within gcDeleteWindow of its look), and one that
// looks after the touch sees a changed object and keeps it. See the
// package documentation. The wait is skipped when no collector holds a
// live lease after the touch (see GCLeasePrefix).
type reuse struct {
	c       *Cache
	toucher Toucher     // nil: the backend cannot touch; nothing to do
	off     atomic.Bool // the server does not renew ModTime (ErrTouchUnsupported)
	at      time.Time
	keys    []string
	once    sync.Once
	err     error

	waitMu  sync.Mutex
	clearAt time.Time    // when the last look that found no live lease began
	waits   atomic.Int64 // Summary.CollectorWaits
}

func newReuse(c *Cache) *reuse {
	t, _ := c.Backend.(Toucher)
	return &reuse{c: c, toucher: t}
}

// touchWarned: the ErrTouchUnsupported warning was logged (once a process).
var touchWarned atomic.Bool

// touchNarInfos touches the narinfos of paths (found present), jobs at a
// time. A path found missing now was collected since the check: the push
// cannot rely on it.
func (r *reuse) touchNarInfos(ctx context.Context, paths []storepath.Path, jobs int) error {
	if r.toucher == nil || len(paths) == 0 {
		return nil
	}
	err := forEach(ctx, paths, jobs, func(p storepath.Path) error {
		if _, err := r.touch(ctx, NarInfoKey(p)); err != nil {
			return &PathError{p, fmt.Errorf("refresh reused narinfo: %w", err)}
		}
		return nil
	})
	r.at = time.Now()
	for _, p := range paths {
		r.keys = append(r.keys, NarInfoKey(p))
	}
	return err
}

// confirm waits until ReuseSettle after the touches, then checks once that
// every touched narinfo is still there.
func (r *reuse) confirm(ctx context.Context) error {
	if r.toucher == nil || r.off.Load() || len(r.keys) == 0 {
		return nil
	}
	r.once.Do(func() {
		if r.err = r.settled(ctx, r.at); r.err != nil {
			return
		}
		r.err = forEach(ctx, r.keys, 16, func(key string) error {
			return r.c.stillThere(ctx, key, -1)
		})
	})
	return r.err
}

// touch touches one reused object and returns when; the zero time when
// the backend cannot touch.
func (r *reuse) touch(ctx context.Context, key string) (time.Time, error) {
	if r.toucher == nil || r.off.Load() {
		return time.Time{}, nil
	}
	for try := 1; ; try++ {
		err := r.toucher.Touch(ctx, key)
		switch {
		case errors.Is(err, ErrTouchUnsupported):
			if !r.off.Swap(true) && !touchWarned.Swap(true) {
				r.c.opts.Logger.Warn("the cache's server does not renew modification times: reused objects are not protected from a concurrent garbage collector beyond its grace period and pins", "err", err)
			}
			return time.Time{}, nil
		case errors.Is(err, ErrNotFound) && try < touchTries:
			// Collected, or read while another writer overwrote it.
			if _, err := r.c.confirmMissing(ctx, key); err != nil {
				return time.Time{}, err
			}
			continue // there after all: touch it again
		case errors.Is(err, ErrNotFound):
			return time.Time{}, fmt.Errorf("refresh reused %s: found missing %d times, there in between: %w", key, touchTries, err)
		case err != nil:
			return time.Time{}, fmt.Errorf("refresh reused %s: %w", key, err)
		}
		return time.Now(), nil
	}
}

// touchTries is how many times touch tries an object that a Stat finds
// there after a Touch found it missing.
const touchTries = 3

// missingRechecks are the pauses before the checks that confirm an object
// found missing: a server may answer 404 for a moment to a read of a key
// that another writer is overwriting (MinIO does, minio issue 20200: a
// second pusher's PUT of the same narinfo, or its touch), which must not
// pass for an object a collector removed. A collector's removal stays, so
// an object collected is missing at every check.
// Their sum (twice, for a NAR file and a narinfo) stays well inside
// gcClockMargin's room beyond freshWindow + ReuseSettle.
var missingRechecks = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}

// confirmMissing checks again, after a moment, an object just found
// missing: ErrCollected (wrapped) when it stays missing, else what a Stat
// of it returned.
func (c *Cache) confirmMissing(ctx context.Context, key string) (ObjectInfo, error) {
	for _, d := range missingRechecks {
		if err := sleepUntil(ctx, time.Now().Add(d)); err != nil {
			return ObjectInfo{}, err
		}
		oi, err := c.Backend.Stat(ctx, key)
		switch {
		case err == nil:
			return oi, nil
		case !errors.Is(err, ErrNotFound):
			return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
		}
	}
	return ObjectInfo{}, fmt.Errorf("%w: %s", ErrCollected, key)
}

// touchNAR touches a NAR file; where the server cannot renew
// modification times it writes the file again (read back and put, which
// renews it; bringing back a NAR file a collector just removed is harmless,
// unlike a narinfo).
func (r *reuse) touchNAR(ctx context.Context, key string, size int64) (time.Time, error) {
	at, err := r.touch(ctx, key)
	if err != nil || !at.IsZero() || r.toucher == nil {
		return at, err
	}
	start := time.Now()
	rc, err := r.c.Backend.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		if _, err := r.c.confirmMissing(ctx, key); err != nil {
			return time.Time{}, err
		}
		rc, err = r.c.Backend.Get(ctx, key)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("refresh reused %s: %w", key, err)
	}
	defer rc.Close()
	if err := r.c.Backend.Put(ctx, key, rc, size, "application/x-nix-nar"); err != nil {
		return time.Time{}, fmt.Errorf("refresh reused %s: %w", key, err)
	}
	return start, nil
}

// settle waits until ReuseSettle after at and checks key is still there
// with size bytes; nothing when at is zero.
func (r *reuse) settle(ctx context.Context, at time.Time, key string, size int64) error {
	if at.IsZero() {
		return nil
	}
	if err := r.settled(ctx, at); err != nil {
		return err
	}
	return r.c.stillThere(ctx, key, size)
}

// settled returns once every removal that a collector may have decided
// before at has ended: at once when a look at the collectors' leases begun
// at or after at finds none live (a collector still running would hold
// one; one that ended released it after its last removal, and one that
// starts later lists the cache after at), else at at plus ReuseSettle.
// Concurrent callers share a look.
func (r *reuse) settled(ctx context.Context, at time.Time) error {
	r.waitMu.Lock()
	defer r.waitMu.Unlock()
	if !r.clearAt.IsZero() && !r.clearAt.Before(at) {
		return ctx.Err()
	}
	look := time.Now()
	if r.c.noCollector(ctx) {
		r.clearAt = look
		return ctx.Err()
	}
	r.waits.Add(1)
	return sleepUntil(ctx, at.Add(ReuseSettle))
}

// freshWindow is the longest a narinfo is published after its NAR file was
// written or touched; an older NAR file is touched again (and settled)
// first. ReuseSettle plus freshWindow stay below gcClockMargin, so that a
// collector that lists the NAR file before the narinfo is published finds
// it young.
const freshWindow = 3 * time.Second

// written returns when the object key that a Put begun at start has just
// stored was last modified, for freshNAR: start itself (no later than the
// object's ModTime on any server), or, for an upload that took a good part
// of freshWindow (a large NAR streamed while dumped), the ModTime the
// backend reports when that is later: most servers date an object by the
// end of its upload, and a NAR file is then not written or touched again
// needlessly (where a server cannot renew modification times, a touch
// means reading the whole file back and writing it again). AWS dates a
// multipart object by the start of its upload, so it keeps start.
func (r *reuse) written(ctx context.Context, key string, start time.Time) time.Time {
	if r.toucher == nil || time.Since(start) < freshWindow/2 {
		return start
	}
	oi, err := r.c.Backend.Stat(ctx, key)
	if err != nil || !oi.ModTime.After(start) || oi.ModTime.After(time.Now()) {
		return start
	}
	return oi.ModTime
}

// freshNAR makes the NAR file of up safe to publish a narinfo on: touched
// within freshWindow (or written since), and, when touched, still there
// ReuseSettle after the touch.
func (r *reuse) freshNAR(ctx context.Context, up *uploaded) error {
	if r.toucher == nil || up.narAt.IsZero() {
		return nil
	}
	if time.Since(up.narAt) > freshWindow {
		at, err := r.touchNAR(ctx, up.url, int64(up.fileSize))
		if err != nil {
			return err
		}
		up.narAt, up.narTouched = at, true
	}
	if !up.narTouched || up.narAt.IsZero() {
		return nil
	}
	return r.settle(ctx, up.narAt, up.url, int64(up.fileSize))
}

// stillThere checks that key is there (with size bytes, when size >= 0),
// confirming a 404 before it reports ErrCollected.
func (c *Cache) stillThere(ctx context.Context, key string, size int64) error {
	oi, err := c.Backend.Stat(ctx, key)
	if errors.Is(err, ErrNotFound) {
		if oi, err = c.confirmMissing(ctx, key); err != nil {
			return err
		}
	}
	switch {
	case errors.Is(err, ErrNotFound), err == nil && size >= 0 && oi.Size != size:
		return fmt.Errorf("%w: %s", ErrCollected, key)
	case err != nil:
		return fmt.Errorf("stat %s: %w", key, err)
	}
	return nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
