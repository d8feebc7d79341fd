// Package queue is a durable, crash-safe upload queue kept in a directory,
// shared by many post-build hooks (which enqueue) and one upload daemon
// (which drains).
//
// Layout of a queue directory DIR:
//
//	DIR/entries/<hash>-<name>   symlink to /nix/store/<hash>-<name>, one per queued path
//	DIR/entries/.tmp-*          a hook's entry being created (never read)
//	DIR/status.json             the daemon's latest Stats, rewritten atomically
//	DIR/daemon.lock             flock(2)ed by the running daemon
//
// An entry is created under a unique temporary name, renamed into place and
// the directory is fsync'ed before Enqueue returns: after a crash an entry is
// either complete or absent, and enqueueing the same path twice merges into
// one entry for free (rename replaces the identical link). Entries are
// removed only after the path's narinfo is in the cache (see [Drainer]).
//
// Nix's post-build hook runs before anything holds a GC root to the new
// outputs (nix-build's result link comes later, and a daemon's client may
// make none), so every entry is also registered as an indirect GC root, the
// way `nix-store --add-root --indirect` does: a symlink in
// /nix/var/nix/gcroots/auto pointing at the entry. Nix's garbage collector
// follows it to the entry and from there to the store path, keeping the path
// alive while it is queued; once the entry is gone the root is stale and
// Nix removes it itself ("removing stale link"), or Done removes it first.
package queue

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nixcache/nixcache/storepath"
)

// ErrNotStorePath is wrapped by Enqueue and Done errors for an argument that
// is not a valid absolute store path (Nix's <store dir>/<32 nix32>-<name>).
var ErrNotStorePath = errors.New("queue: not a store path")

// ErrGCRoot is wrapped (joined) into Enqueue's error when the entries were
// stored durably but the GC root under Nix's gcroots directory could not be
// created, for example when not running as root. The paths are queued; only
// their protection against `nix-store --gc` is missing.
var ErrGCRoot = errors.New("queue: cannot register GC root")

// ErrLocked is returned by Lock when another process holds the queue's
// daemon lock: only one drainer may run per queue directory.
var ErrLocked = errors.New("queue: another daemon holds the queue lock")

const (
	entriesDir = "entries"
	tmpPrefix  = ".tmp-"
	// StatusFile is the name of the daemon's status file inside the queue directory.
	StatusFile = "status.json"
	lockFile   = "daemon.lock"
	rootPrefix = "nixcache-queue-"
)

// Options configures a Queue.
type Options struct {
	// GCRootsDir is where indirect GC roots are made, one symlink per entry.
	// Empty means Nix's own directory for indirect roots,
	// $NIX_STATE_DIR/gcroots/auto (default /nix/var/nix/gcroots/auto).
	// "-" disables GC roots, for queues of paths that are rooted otherwise.
	// When the queue directory itself lies under $NIX_STATE_DIR/gcroots, the
	// entries are direct GC roots and no extra link is made.
	GCRootsDir string
}

// Queue is a queue directory. Its methods are safe for concurrent use, also
// by several processes on the same directory.
type Queue struct {
	dir     string
	entries string
	roots   string // "" when no indirect roots are needed
	seq     atomic.Uint64
}

// StateDir returns Nix's state directory: $NIX_STATE_DIR, else /nix/var/nix.
func StateDir() string {
	if d := os.Getenv("NIX_STATE_DIR"); d != "" && filepath.IsAbs(d) {
		return filepath.Clean(d)
	}
	return "/nix/var/nix"
}

// Open opens the queue in dir, creating it when missing, with default Options.
func Open(dir string) (*Queue, error) { return OpenOptions(dir, Options{}) }

// OpenOptions opens the queue in dir, creating it (mode 0755) when missing.
func OpenOptions(dir string, opts Options) (*Queue, error) {
	if dir == "" {
		return nil, errors.New("queue: empty queue directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("queue: directory %q: %w", dir, err)
	}
	q := &Queue{dir: abs, entries: filepath.Join(abs, entriesDir)}
	if _, err := os.Stat(q.entries); err != nil {
		if err := os.MkdirAll(q.entries, 0o755); err != nil {
			return nil, fmt.Errorf("queue: create %s: %w", q.entries, err)
		}
		// Make the new directories themselves durable.
		_ = syncDir(abs)
		_ = syncDir(filepath.Dir(abs))
	}
	gcroots := filepath.Join(StateDir(), "gcroots")
	switch {
	case opts.GCRootsDir == "-":
	case isUnder(abs, gcroots):
	case opts.GCRootsDir != "":
		q.roots = filepath.Clean(opts.GCRootsDir)
	default:
		q.roots = filepath.Join(gcroots, "auto")
	}
	return q, nil
}

func isUnder(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Dir returns the queue's absolute directory.
func (q *Queue) Dir() string { return q.dir }

// entryName is the entry's file name for p: its base name <hash>-<name>.
func entryName(p storepath.Path) (string, error) {
	if _, err := storepath.Parse(string(p)); err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrNotStorePath, string(p), err)
	}
	return p.Base(), nil
}

// rootName is the name of the indirect GC root for an entry: a hash of the
// entry's absolute path, so two queues never share a root link.
func (q *Queue) rootName(name string) string {
	sum := sha256.Sum256([]byte(filepath.Join(q.entries, name)))
	return rootPrefix + hex.EncodeToString(sum[:16])
}

func (q *Queue) tmpName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return tmpPrefix + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(q.seq.Add(1), 10) + "-" + hex.EncodeToString(b[:])
}

// Enqueue durably adds paths to the queue: when it returns nil, every path has
// a complete entry on disk (fsync'ed) that survives a crash, and a GC root.
// Paths already queued are merged. It validates every path before writing
// anything.
func (q *Queue) Enqueue(paths ...storepath.Path) error {
	names := make([]string, len(paths))
	for i, p := range paths {
		n, err := entryName(p)
		if err != nil {
			return err
		}
		names[i] = n
	}
	if len(paths) == 0 {
		return nil
	}
	for i, p := range paths {
		tmp := filepath.Join(q.entries, q.tmpName())
		if err := os.Symlink(string(p), tmp); err != nil {
			return fmt.Errorf("queue: create entry for %s: %w", p, err)
		}
		if err := os.Rename(tmp, filepath.Join(q.entries, names[i])); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("queue: create entry for %s: %w", p, err)
		}
	}
	if err := syncDir(q.entries); err != nil {
		return fmt.Errorf("queue: fsync %s: %w", q.entries, err)
	}
	// The roots need no fsync: a daemon re-creates missing ones (RepairRoots).
	var rootErr error
	for _, n := range names {
		if err := q.addRoot(n); err != nil {
			rootErr = errors.Join(rootErr, err)
		}
	}
	return rootErr
}

func (q *Queue) addRoot(name string) error {
	if q.roots == "" {
		return nil
	}
	link := filepath.Join(q.roots, q.rootName(name))
	target := filepath.Join(q.entries, name)
	err := os.Symlink(target, link)
	if errors.Is(err, fs.ErrNotExist) {
		if mkErr := os.MkdirAll(q.roots, 0o755); mkErr == nil {
			err = os.Symlink(target, link)
		}
	}
	if err == nil || errors.Is(err, fs.ErrExist) {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrGCRoot, link, err)
}

// Done removes p's entry and GC root: call it only once p's narinfo is in the
// cache. Removing an entry that is not queued is not an error.
func (q *Queue) Done(p storepath.Path) error {
	name, err := entryName(p)
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(q.entries, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: remove entry %s: %w", name, err)
	}
	if q.roots != "" {
		link := filepath.Join(q.roots, q.rootName(name))
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("queue: remove GC root %s: %w", link, err)
		}
	}
	return nil
}

// Entry is one queued path.
type Entry struct {
	// Path is the queued store path (the entry's symlink target).
	Path storepath.Path
	// Queued is when the entry was (last) written.
	Queued time.Time
}

// Pending lists the queued entries, oldest first. Temporary files of
// enqueuers still at work are not listed; neither are malformed entries
// (see Clean).
func (q *Queue) Pending() ([]Entry, error) {
	names, err := q.names()
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(names))
	for _, n := range names {
		e, err := q.entry(n)
		if err != nil {
			continue
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Queued.Before(out[j].Queued) })
	return out, nil
}

// Len returns the number of entries (including malformed ones).
func (q *Queue) Len() (int, error) {
	names, err := q.names()
	return len(names), err
}

// names lists entry names, without temporary files.
func (q *Queue) names() ([]string, error) {
	f, err := os.Open(q.entries)
	if err != nil {
		return nil, fmt.Errorf("queue: read %s: %w", q.entries, err)
	}
	defer f.Close()
	all, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("queue: read %s: %w", q.entries, err)
	}
	names := all[:0]
	for _, n := range all {
		if !strings.HasPrefix(n, ".") {
			names = append(names, n)
		}
	}
	return names, nil
}

// entry reads and checks one entry: a symlink whose target is a store path
// with the entry's name as base name.
func (q *Queue) entry(name string) (Entry, error) {
	full := filepath.Join(q.entries, name)
	fi, err := os.Lstat(full)
	if err != nil {
		return Entry{}, fmt.Errorf("queue: entry %s: %w", name, err)
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return Entry{}, fmt.Errorf("queue: entry %s: not a symlink", name)
	}
	target, err := os.Readlink(full)
	if err != nil {
		return Entry{}, fmt.Errorf("queue: entry %s: %w", name, err)
	}
	p, err := storepath.Parse(target)
	if err != nil || p.Base() != name {
		return Entry{}, fmt.Errorf("queue: entry %s: target %q is not the store path named by the entry", name, target)
	}
	return Entry{Path: p, Queued: fi.ModTime()}, nil
}

// Clean removes temporary files older than maxAge (left by enqueuers that
// crashed) and malformed entries, returning what it removed. Entries are
// never malformed when written by Enqueue; this guards against hand edits.
func (q *Queue) Clean(maxAge time.Duration) ([]string, error) {
	f, err := os.Open(q.entries)
	if err != nil {
		return nil, fmt.Errorf("queue: read %s: %w", q.entries, err)
	}
	all, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("queue: read %s: %w", q.entries, err)
	}
	var removed []string
	for _, n := range all {
		full := filepath.Join(q.entries, n)
		if strings.HasPrefix(n, ".") {
			fi, err := os.Lstat(full)
			if err == nil && time.Since(fi.ModTime()) > maxAge && os.Remove(full) == nil {
				removed = append(removed, n)
			}
			continue
		}
		if _, err := q.entry(n); err != nil {
			fi, lerr := os.Lstat(full)
			if lerr == nil && !fi.IsDir() && os.Remove(full) == nil {
				removed = append(removed, n)
			}
		}
	}
	return removed, nil
}

// RepairRoots makes sure every entry has its GC root (a crash between the
// entry's rename and the root's creation leaves an entry without one).
func (q *Queue) RepairRoots() error {
	if q.roots == "" {
		return nil
	}
	names, err := q.names()
	if err != nil {
		return err
	}
	var errs error
	for _, n := range names {
		if err := q.addRoot(n); err != nil {
			errs = errors.Join(errs, err)
		}
	}
	return errs
}

// Lock takes the queue's daemon lock (flock on DIR/daemon.lock) so that only
// one drainer runs per queue. It returns ErrLocked when another process
// holds it. The lock is released by calling the returned function, or when
// the process dies.
func (q *Queue) Lock() (unlock func(), err error) {
	path := filepath.Join(q.dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("queue: open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("queue: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// DaemonRunning reports whether some process holds the queue's daemon lock.
func (q *Queue) DaemonRunning() bool {
	unlock, err := q.Lock()
	if err != nil {
		return errors.Is(err, ErrLocked)
	}
	unlock()
	return false
}

// syncDir fsyncs a directory so that renames and creations in it are durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFileAtomic writes data to path through a temporary file, fsync and rename.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-status-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
