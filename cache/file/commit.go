package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nixcache/nixcache/cache"
)

// dirSyncs group-commits directory fsyncs: a caller that renamed a file
// into a directory needs one fsync of the directory that starts after its
// rename. Callers that arrive while one runs wait for the next one and
// share it, so N concurrent Puts into one directory cost about two fsyncs
// of it, not N.
type dirSyncs struct {
	mu   sync.Mutex
	dirs map[string]*dirSync
	// trace, when set (by tests), records the steps that make objects
	// durable, in the order they happen (see durabilityStep).
	trace func(durabilityStep)
}

// durabilityStep is one step that makes an object durable, as tests record
// them: a file's data synced, a rename done, a directory's fsync begun or
// ended (its number counts the fsyncs of that directory).
type durabilityStep struct {
	op   string // "sync", "rename", "dirsync-begin", "dirsync-end"
	path string // the file synced or renamed, the directory synced
	to   string // rename: the new name
	n    uint64 // dirsync: which fsync of the directory
	at   time.Time
}

func (s *dirSyncs) record(op, path, to string, n uint64) {
	if s.trace != nil {
		s.trace(durabilityStep{op: op, path: path, to: to, n: n, at: time.Now()})
	}
}

type dirSync struct {
	mu      sync.Mutex
	cond    sync.Cond
	started uint64 // fsyncs begun
	done    uint64 // the last fsync finished (its number)
	running bool
	err     error // of the last fsync finished
}

// sync returns once an fsync of dir that began after the call has ended,
// with its error.
func (s *dirSyncs) sync(dir string) error {
	s.mu.Lock()
	if s.dirs == nil {
		s.dirs = map[string]*dirSync{}
	}
	d := s.dirs[dir]
	if d == nil {
		d = &dirSync{}
		d.cond.L = &d.mu
		s.dirs[dir] = d
	}
	s.mu.Unlock()

	d.mu.Lock()
	defer d.mu.Unlock()
	// A running fsync may have begun before the caller's rename: only the
	// next one to begin surely covers it.
	need := d.started + 1
	for d.done < need {
		if d.running {
			d.cond.Wait()
			continue
		}
		d.running = true
		d.started++
		n := d.started
		d.mu.Unlock()
		s.record("dirsync-begin", dir, "", n)
		err := syncDir(dir)
		s.record("dirsync-end", dir, "", n)
		d.mu.Lock()
		d.running = false
		d.done, d.err = n, err
		d.cond.Broadcast()
	}
	return d.err
}

// Stage begins an object to be stored under a key in directory dir ("" for
// the root): a temporary file in that directory, locked like Put's, which
// Commit renames into place. cache.Push writes NAR files straight into it.
func (b *Backend) Stage(ctx context.Context, dir string) (cache.Staged, error) {
	full := b.root
	if dir != "" {
		p, err := b.path(dir)
		if err != nil {
			return nil, err
		}
		full = p
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("file: stage in %q: %w", dir, err)
	}
	if err := os.MkdirAll(full, DirMode); err != nil {
		return nil, fmt.Errorf("file: stage in %q: %w", dir, err)
	}
	f, err := os.CreateTemp(full, TempPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("file: stage in %q: %w", dir, err)
	}
	lockTemp(f)
	if err := f.Chmod(ObjectMode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("file: stage in %q: %w", dir, err)
	}
	return &staged{b: b, f: f, dir: full, tmp: f.Name()}, nil
}

// staged is a temporary file becoming an object.
type staged struct {
	b      *Backend
	f      *os.File // nil once synced and closed
	dir    string
	tmp    string
	synced bool
	done   bool // committed or aborted
	err    error
	// written bytes, of which the first queued were handed to
	// startWriteback.
	written, queued int64
}

// writebackStep is how many bytes a staged object's writes gather before
// their writeback starts: a large NAR file is then mostly on the disk when
// Sync comes (a 512 MiB NAR's fsync took about 0.38 s when it wrote
// everything, about 10 ms after this).
const writebackStep = 8 << 20

func (s *staged) Write(p []byte) (int, error) {
	if s.f == nil || s.err != nil {
		if s.err == nil {
			s.err = fmt.Errorf("file: write to a staged object after Sync, Commit or Abort")
		}
		return 0, s.err
	}
	n, err := s.f.Write(p)
	if err != nil {
		s.err = fmt.Errorf("file: write %s: %w", s.tmp, err)
	}
	s.written += int64(n)
	if s.written-s.queued >= writebackStep {
		startWriteback(s.f, s.queued, s.written-s.queued)
		s.queued = s.written
	}
	return n, s.err
}

// Sync fsyncs the file's data and closes it (a staged narinfo may wait
// long for its references; it then holds no descriptor).
func (s *staged) Sync() error {
	if s.err != nil || s.synced {
		return s.err
	}
	if s.f == nil {
		return fmt.Errorf("file: sync of a staged object after Commit or Abort")
	}
	if err := s.f.Sync(); err != nil {
		s.err = fmt.Errorf("file: sync %s: %w", s.tmp, err)
		return s.err
	}
	s.b.syncs.record("sync", s.tmp, "", 0)
	if err := s.f.Close(); err != nil {
		s.err = fmt.Errorf("file: close %s: %w", s.tmp, err)
		return s.err
	}
	s.f, s.synced = nil, true
	return nil
}

// Commit syncs the file (unless Sync did), renames it to key and fsyncs the
// directory (group-committed with concurrent Puts and Commits).
func (s *staged) Commit(ctx context.Context, key string) error {
	if s.done {
		return fmt.Errorf("file: commit %q: staged object already committed or aborted", key)
	}
	p, err := s.b.path(key)
	if err != nil {
		return err
	}
	if filepath.Dir(p) != s.dir {
		return fmt.Errorf("file: commit %q: %w: not in the staged object's directory", key, cache.ErrInvalidKey)
	}
	early := s.synced
	if err := s.Sync(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file: commit %q: %w", key, err)
	}
	if early {
		// Synced long before, maybe: the object's ModTime is its
		// publication (the garbage collector's grace counts from it).
		now := time.Now()
		if err := os.Chtimes(s.tmp, now, now); err != nil {
			return fmt.Errorf("file: commit %q: %w", key, err)
		}
	}
	if err := os.Rename(s.tmp, p); err != nil {
		return fmt.Errorf("file: commit %q: %w", key, err)
	}
	s.b.syncs.record("rename", s.tmp, p, 0)
	s.done = true
	if s.b.ordered {
		// Ordered after every earlier rename; durable at the next Flush.
		s.b.mu.Lock()
		if s.b.dirty == nil {
			s.b.dirty = map[string]bool{}
		}
		s.b.dirty[s.dir] = true
		s.b.mu.Unlock()
		return nil
	}
	if err := s.b.syncs.sync(s.dir); err != nil {
		return fmt.Errorf("file: commit %q: sync directory: %w", key, err)
	}
	return nil
}

// Flush makes every object committed so far durable: it fsyncs the
// directories that Commits renamed into without an fsync (on a file system
// that keeps the order of renames; elsewhere each Commit is durable when it
// returns and Flush has nothing to do).
func (b *Backend) Flush(ctx context.Context) error {
	b.mu.Lock()
	dirs := b.dirty
	b.dirty = nil
	b.mu.Unlock()
	// The root (narinfos) last: what the narinfos point at first.
	order := make([]string, 0, len(dirs))
	for dir := range dirs {
		if dir != b.root {
			order = append(order, dir)
		}
	}
	if dirs[b.root] {
		order = append(order, b.root)
	}
	for _, dir := range order {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("file: flush: %w", err)
		}
		if err := b.syncs.sync(dir); err != nil {
			return fmt.Errorf("file: flush: sync directory: %w", err)
		}
	}
	return nil
}

// Abort removes the temporary file; nothing after Commit.
func (s *staged) Abort() {
	if s.done {
		return
	}
	s.done = true
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	os.Remove(s.tmp)
}
