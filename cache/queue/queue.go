// Package queue is a durable, crash-safe upload queue kept in a directory,
// shared by many post-build hooks (which enqueue, see [Queue.Enqueue]) and
// one upload daemon (which drains it through a [Pusher], see [Drainer]).
//
// The package imports only storepath and light standard library packages
// (no network, TLS, crypto or database code), so that a post-build hook
// linking it stays small and starts fast: Nix waits for the hook after
// every build. The daemon's side that needs the cache is package
// cache/queue/cachepush; serving metrics over HTTP is the daemon command's
// job ([Drainer.WriteMetrics] writes them).
//
// Layout of a queue directory DIR (mode 0700, owned by the user running the
// hook and the daemon; Open refuses a directory another user owns):
//
//	DIR/entries/<hash>-<name>   symlink to /nix/store/<hash>-<name>, one per queued path
//	DIR/entries/.*              temporaries of earlier versions (never read; see Clean)
//	DIR/status.json             the daemon's latest Stats, rewritten atomically (mode 0600)
//	DIR/recovery.json           the daemon's crash-recovery Checkpoint (see EnqueueBuilt)
//	DIR/daemon.lock             flock(2)ed by the running daemon (mode 0600)
//
// An entry is created with one symlink(2), which is atomic; its GC root
// (below) is created alongside (the entries and the roots are made and
// their directories fsync'ed concurrently, each directory once), before
// Enqueue returns (EnqueueBuilt, a post-build hook's call, skips the fsyncs
// while the daemon keeps a recovery checkpoint: see [Checkpoint]):
// after a crash an entry is either complete or absent,
// and enqueueing the same path twice merges into one entry (the existing
// link is kept). Entries are removed only after the
// path's narinfo is in the cache (see [Drainer]).
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
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nixcache/nixcache/internal/durable"
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

// ErrNotOwner is wrapped by Open and Lock errors for a queue directory or
// lock file that belongs to another user than the one this process runs as:
// that user could plant entries or hold the daemon lock forever.
var ErrNotOwner = errors.New("queue: queue file owned by another user")

const (
	entriesDir = "entries"
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
	// unjournaled: a directory fsync does not write new entries' inodes
	// here (durable.Unjournaled); syncNew adds a syncfs. Asked on the
	// first sync only: a hook that does not sync never pays for it.
	unjournaled func() bool
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

// OpenOptions opens the queue in dir, creating it (mode 0700) when missing.
// The directory and its entries directory must belong to the user this
// process runs as (the error wraps ErrNotOwner otherwise); access for group
// and others is removed, so that no other user can plant entries, read the
// status or hold the daemon lock.
func OpenOptions(dir string, opts Options) (*Queue, error) {
	if dir == "" {
		return nil, errors.New("queue: empty queue directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("queue: directory %q: %w", dir, err)
	}
	q := &Queue{dir: abs, entries: filepath.Join(abs, entriesDir)}
	if err := q.prepare(); err != nil {
		return nil, err
	}
	q.unjournaled = sync.OnceValue(func() bool { return durable.Unjournaled(q.entries) })
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

// prepare creates DIR and DIR/entries (mode 0700) when missing, checks that
// both belong to this process's user and closes them to others.
func (q *Queue) prepare() error {
	created := false
	for _, d := range []string{q.dir, q.entries} {
		err := os.Mkdir(d, 0o700)
		if errors.Is(err, fs.ErrNotExist) && d == q.dir {
			if err = os.MkdirAll(filepath.Dir(d), 0o755); err == nil {
				err = os.Mkdir(d, 0o700)
			}
		}
		switch {
		case err == nil:
			created = true
		case errors.Is(err, fs.ErrExist):
			fi, err := os.Stat(d)
			if err != nil {
				return fmt.Errorf("queue: %w", err)
			}
			if err := checkOwner(d, fi); err != nil {
				return err
			}
			if !fi.IsDir() {
				return fmt.Errorf("queue: %s is not a directory", d)
			}
			if fi.Mode().Perm()&0o077 != 0 {
				if err := os.Chmod(d, fi.Mode().Perm()&0o700); err != nil {
					return fmt.Errorf("queue: close %s to other users: %w", d, err)
				}
			}
		default:
			return fmt.Errorf("queue: create %s: %w", d, err)
		}
	}
	if created {
		// Make the new directories themselves durable.
		_ = syncDir(q.dir)
		_ = syncDir(filepath.Dir(q.dir))
	}
	return nil
}

// checkOwner returns an error wrapping ErrNotOwner unless fi (the file at
// name) belongs to the effective user of this process.
func checkOwner(name string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("%w: %s belongs to uid %d, this process runs as uid %d", ErrNotOwner, name, st.Uid, euid)
	}
	return nil
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

// rootName is the name of the indirect GC root for an entry:
// nixcache-queue-<16 hex digits>-<entry name>, where the digits are the
// 64-bit FNV-1a hash of the entries directory, so two queues never share a
// root link and `ls` on the roots directory shows what each root protects.
// (FNV rather than a cryptographic hash keeps crypto code out of the hook.)
func (q *Queue) rootName(name string) string {
	h := fnv.New64a()
	h.Write([]byte(q.entries))
	// strconv, not fmt: the hook then runs no fmt code when all goes well.
	hex := strconv.FormatUint(h.Sum64(), 16)
	return rootPrefix + "0000000000000000"[len(hex):] + hex + "-" + name
}

// Enqueue durably adds paths to the queue: when it returns nil, every path has
// a complete entry on disk (fsync'ed) that survives a crash, and a GC root
// (fsync'ed too). Paths already queued are merged. It validates every path
// before writing anything.
//
// The cost is one symlink per path, one symlink per GC root,
// and one fsync per directory touched (the entries directory and the GC
// roots directory), whatever the number of paths. The GC roots are made
// and fsync'ed on a second goroutine while this one makes and fsyncs the
// entries, so the two directories' inode allocations and writes overlap
// instead of adding up (a root made before its entry is harmless: until
// the entry exists it is a stale link, which Nix's collector removes).
// When only the GC roots fail, the entries are still durable and the
// error wraps ErrGCRoot.
func (q *Queue) Enqueue(paths ...storepath.Path) error { return q.enqueue(paths, true) }

// enqueue adds the entries and GC roots of paths, and fsyncs them when
// durable is set.
func (q *Queue) enqueue(paths []storepath.Path, durable bool) error {
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
	if !durable {
		for i, p := range paths {
			if err := q.putEntry(p, names[i]); err != nil {
				return err
			}
		}
		var errs error
		for _, n := range names {
			errs = errors.Join(errs, q.addRoot(n))
		}
		return errs
	}
	var rootErr error
	rootsDone := make(chan struct{})
	if q.roots == "" {
		close(rootsDone)
	} else {
		go func() {
			defer close(rootsDone)
			rootErr = q.addRoots(names)
		}()
	}
	err := q.putEntries(paths, names)
	<-rootsDone
	if err != nil {
		q.dropOrphanRoots(names)
		return err
	}
	return rootErr
}

// dropOrphanRoots removes the GC roots of names that have no well-formed
// entry, after a failed Enqueue: a stale root under gcroots/auto is
// removed by Nix's collector anyway, but not one in another
// Options.GCRootsDir.
func (q *Queue) dropOrphanRoots(names []string) {
	if q.roots == "" {
		return
	}
	for _, n := range names {
		if _, err := q.entry(n); err != nil {
			_ = os.Remove(filepath.Join(q.roots, q.rootName(n)))
		}
	}
}

// putEntries creates the entries and fsyncs the entries directory.
func (q *Queue) putEntries(paths []storepath.Path, names []string) error {
	for i, p := range paths {
		if err := q.putEntry(p, names[i]); err != nil {
			return err
		}
	}
	if err := q.syncNew(q.entries); err != nil {
		return fmt.Errorf("queue: fsync %s: %w", q.entries, err)
	}
	return nil
}

// addRoots creates the GC roots of the named entries and fsyncs the roots
// directory; its error wraps ErrGCRoot.
func (q *Queue) addRoots(names []string) error {
	var errs error
	rooted := false
	for _, n := range names {
		if err := q.addRoot(n); err != nil {
			errs = errors.Join(errs, err)
		} else {
			rooted = true
		}
	}
	if rooted {
		if err := q.syncNew(q.roots); err != nil {
			errs = errors.Join(errs, fmt.Errorf("%w: fsync %s: %w", ErrGCRoot, q.roots, err))
		}
	}
	return errs
}

// putEntry creates the entry symlink name -> p (not yet fsync'ed).
// symlink(2) is atomic: the entry appears complete or not at all, so no
// temporary name is needed. An existing well-formed entry is the same entry
// (its name fixes its target): Enqueue merges into it. A malformed one (a
// hand edit) is replaced.
func (q *Queue) putEntry(p storepath.Path, name string) error {
	full := filepath.Join(q.entries, name)
	for attempt := 0; ; attempt++ {
		err := os.Symlink(string(p), full)
		if errors.Is(err, fs.ErrExist) {
			if _, eerr := q.entry(name); eerr == nil {
				return nil
			}
			if attempt < 3 && os.Remove(full) == nil {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("queue: create entry for %s: %w", p, err)
		}
		return nil
	}
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
			_ = syncDir(filepath.Dir(q.roots)) // the new directory itself
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
	// Queued is when the entry was written (re-enqueueing keeps it).
	Queued time.Time
}

// Pending lists the queued entries, oldest first. Dot files are not
// listed; neither are malformed entries (see Clean).
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

// Clean removes dot files older than maxAge (such as the temporaries that
// enqueuers of earlier versions left when they crashed) and malformed
// entries, returning what it removed. Entries are
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
// entry's creation and the root's leaves an entry without one).
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

// Lock takes the queue's daemon lock (flock on DIR/daemon.lock, mode 0600,
// owned by this process's user) so that only one drainer runs per queue,
// and writes this process's id into the lock file (see LockHolder). It
// returns ErrLocked when another process holds the lock (including, for
// microseconds, a hook's DaemonRunning probe). The lock is released by
// calling the returned function, or when the process dies.
func (q *Queue) Lock() (unlock func(), err error) {
	path := filepath.Join(q.dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue: open lock %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkOwner(path, fi)
	}
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("queue: lock %s is not a regular file", path)
	}
	if err == nil && fi.Mode().Perm() != 0o600 {
		err = f.Chmod(0o600)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("queue: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}

// DaemonRunning reports whether some process holds the queue's daemon lock.
// It does not create the lock file: no file means no daemon ever ran.
func (q *Queue) DaemonRunning() bool {
	running, _ := q.LockHolder()
	return running
}

// LockHolder asks the lock itself whether a daemon runs on the queue (a
// try-lock, never the pid of an old status file) and, when one does,
// returns the process id it wrote into the lock file (0 if unreadable).
func (q *Queue) LockHolder() (running bool, pid int) {
	fd, err := syscall.Open(filepath.Join(q.dir, lockFile), syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false, 0
	}
	defer syscall.Close(fd)
	err = syscall.Flock(fd, syscall.LOCK_SH|syscall.LOCK_NB)
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return false, 0
	}
	var b [32]byte
	n, _ := syscall.Read(fd, b[:])
	if n > 0 {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b[:n])))
	}
	return true, pid
}

// syncNew makes the entries (or roots) just created in dir durable: an
// fsync of dir, preceded, where that fsync does not write the new
// symlinks' own inodes (an ext2/3/4 without a journal, see
// durable.Unjournaled), by a syncfs of its file system, which writes them
// (the fsync after it then flushes the disk's cache).
func (q *Queue) syncNew(dir string) error { return syncDirFS(dir, q.unjournaled()) }

// syncHook, when set (by tests), is called after each syncfs and each
// fsync of a directory, with op "syncfs" or "fsync".
var syncHook func(dir, op string)

// syncDir fsyncs a directory so that renames and creations in it are
// durable.
func syncDir(dir string) error { return syncDirFS(dir, false) }

// syncDirFS fsyncs dir, after a syncfs of its file system when syncfs is
// set. It uses the raw system calls: os.Open would also try to register
// the descriptor with the runtime's poller.
func syncDirFS(dir string, syncfs bool) error {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	step := func(op string, call func(int) error) {
		if err != nil {
			return
		}
		if err = call(fd); err != nil {
			err = &fs.PathError{Op: op, Path: dir, Err: err}
		} else if syncHook != nil {
			syncHook(dir, op)
		}
	}
	if syncfs {
		step("syncfs", durable.Syncfs)
	}
	step("fsync", syscall.Fsync)
	if cerr := syscall.Close(fd); err == nil && cerr != nil {
		err = &fs.PathError{Op: "close", Path: dir, Err: cerr}
	}
	return err
}

// EntriesDir returns the directory holding the entries, DIR/entries.
func (q *Queue) EntriesDir() string { return q.entries }

// Stats are a Drainer's counters, also written to DIR/status.json.
type Stats struct {
	PID          int           `json:"pid"`
	Started      time.Time     `json:"started"`
	Updated      time.Time     `json:"updated"`
	Queued       int           `json:"queued"`    // entries waiting (not in flight), including failing ones
	InFlight     int           `json:"in_flight"` // paths in a Push call now
	Uploaded     int64         `json:"uploaded"`  // queued paths confirmed in the cache since start
	Failures     int64         `json:"failures"`  // failed attempts since start
	Failing      int           `json:"failing"`   // paths waiting for a retry after a failure
	Dropped      int64         `json:"dropped"`   // paths dropped because they left the store
	Bytes        int64         `json:"bytes"`     // NAR bytes uploaded since start
	Narinfos     int64         `json:"narinfos"`  // narinfos written since start (closures included)
	Upstream     int64         `json:"upstream"`  // closure paths not uploaded since start: an upstream cache serves them
	Stopping     bool          `json:"stopping,omitempty"`
	FailingPaths []FailingPath `json:"failing_paths,omitempty"`

	// Checks counts the requests made since start to find which closure
	// paths were already in the cache (HEADs, listing pages).
	Checks int64 `json:"check_requests"`
}

// FailingPath describes a path in backoff.
type FailingPath struct {
	Path      storepath.Path `json:"path"`
	Attempts  int            `json:"attempts"`
	NextTry   time.Time      `json:"next_try"`
	LastError string         `json:"last_error"`
}

// ReadStatus reads the status file the daemon last wrote in the queue
// directory. It wraps fs.ErrNotExist when no daemon has run yet.
func (q *Queue) ReadStatus() (*Stats, error) {
	path := filepath.Join(q.dir, StatusFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("queue: read status %s: %w", path, err)
	}
	var s Stats
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("queue: parse status %s: %w", path, err)
	}
	return &s, nil
}
