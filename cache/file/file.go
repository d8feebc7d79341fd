// Package file is a cache.Backend on a local directory: the layout Nix
// writes and reads for a file:///dir binary cache (nix-cache-info,
// <hash>.narinfo, nar/<filehash>.nar.<ext>).
//
// # Durability
//
// What a push publishes survives a power cut: a narinfo is never durable
// before its own text, its NAR file, the narinfos of its references and
// nix-cache-info. Nix does not fsync at all; the argument here does not
// rely on the file system keeping the order of renames either (xfs and a
// journaled ext4 do; ext4 without a journal, POSIX in general, do not):
//
//   - A file's data is durable once an fsync of it has returned, and a
//     rename once an fsync of its directory that began after the rename
//     has returned. Until then a power cut may keep or lose it, whatever
//     else was kept: without a journal, ext4 writes directory blocks back
//     in any order and at any moment.
//   - Put writes a temporary file in the key's directory, fsyncs it, renames
//     it over the key and fsyncs the directory, and returns only then.
//     Stage and Commit are the same steps, split so that the bytes can be
//     written (and Staged.Sync'ed) before the key is known.
//   - cache.Push writes nix-cache-info first (durable before any narinfo is
//     renamed), commits a path's NAR file (data fsynced, renamed, nar/
//     fsynced) and writes and fsyncs its narinfo's text under a temporary
//     name, side by side; it renames the narinfo only after both and after
//     the Commits of its references' narinfos have returned (their
//     directory fsyncs included). So whenever a narinfo's rename reaches
//     the disk, everything it needs is already durable.
//
// TestPowerCutKeepsPublishedComplete records the order of these steps in
// real pushes and checks it against that model at every instant; the test
// fails if any fsync above is left out. TestKilledPushLeavesCompleteCache
// SIGKILLs a pusher in the middle of a chain and checks what it left.
//
// So without rename order, a narinfo costs one fsync of the root after
// its references' fsyncs: a chain of 31 paths (each referring to the one
// before) needs 31 fsyncs of the root in sequence, the least that model
// allows; a wide closure shares them (directory fsyncs are group-committed:
// a caller waits for the first fsync of the directory that begins after
// its rename, and everyone whose rename came before it began shares it).
// Push starts the bottom of such chains first (cache.Push orders its
// uploads by NAR size plus the levels of referrers waiting on each path),
// so that this sequence overlaps the other paths' compression and fsyncs.
// Files' fsyncs run in parallel, one per NAR file and per narinfo, bounded
// by Push's jobs. One syncfs(2) in place of them would be one call, but it
// writes back every dirty page of the file system, other programs' too, so
// its cost is set by the rest of the machine: on the shared 2-core VM this
// was measured on, one syncfs after 62 small files took 2 to 43 ms (median
// 7) where 62 parallel fsyncs took 12 to 46 ms (median 15) while little
// else was dirty, but 591 ms once while other programs had dirty data. A
// push would then wait for a concurrent build's output to reach the disk.
// Nor does it replace the fsyncs where they are needed most: on ext4
// without a journal, Linux's sync_filesystem sends the disk its cache
// flush (from ->sync_fs) before its last sync_blockdev writes the block
// device's buffers, where that file system keeps inode tables and
// directory blocks, so a disk with a write-back cache may still lose the
// inodes and renames a syncfs has just returned for. It is not used. On
// such a disk each fsync is one cache flush, and flushes overlap little
// (62 small files: 15-24 ms fsynced one by one, 8-18 ms sixteen at a
// time): a closure push pays about 3.5 of them a path (its NAR file, its
// narinfo, its level's root fsync and a share of nar/'s), and running
// more of them at once (more Ps for Go's threads blocked in fsync) made
// the 31-path push slower, not faster. A staged object's writes start their own writeback every
// writebackStep bytes (sync_file_range, on Linux), so the fsync of a large
// NAR file finds little left to write.
//
// Where the file system keeps the order of renames (xfs, and ext4 with a
// journal: their journal commits whole and in sequence; see
// durable.KeepsRenameOrder), the per-level directory fsyncs are not needed: Commit
// renames without one and Backend.Flush, which Push calls once all its
// narinfos are renamed, fsyncs the directories (nar/ before the root). A
// NAR file's and a narinfo's data are still fsynced before their renames
// (ext4 allocates delayed blocks at writeback: a renamed, unsynced file
// can come back empty), so whatever prefix of the renames survives a crash
// holds only complete files, and a narinfo's rename comes after its NAR
// file's and its references' narinfos' renames (the same test checks this
// against a model that keeps rename order, and that the first model
// rejects it). Put stays durable on return everywhere.
//
// Importing the package registers the "file" store URL scheme with
// cache.Register.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/internal/durable"
)

// TempPrefix starts the name of every temporary file Put writes before
// renaming it into place. List never reports such files, and keys whose last
// segment starts with it are invalid.
const TempPrefix = ".nixcache-tmp-"

// StaleTempAge is how long a temporary file must have gone unmodified before
// New removes it as the leftover of a killed writer. A live writer's file
// is never removed, however old: Put holds a lock on it (flock) while it
// writes, and a locked file is left alone. New looks for such files at most
// once per StaleTempAge per cache (it keeps the time in a file named
// sweepStamp in the root), so opening a large cache stays cheap.
const StaleTempAge = time.Hour

// sweepStamp's modification time is when New last looked for stale
// temporary files. Its name starts with TempPrefix, so List skips it.
const sweepStamp = TempPrefix + "swept"

// ObjectMode is the permission of stored objects: world-readable, as Nix
// (and a web server in front of the directory) must read them.
const ObjectMode fs.FileMode = 0o644

// DirMode is the permission of directories Put creates.
const DirMode fs.FileMode = 0o755

func init() { cache.Register("file", ParseLocation) }

// Location is a file:// store URL's cache directory.
type Location struct {
	// Dir is absolute and clean, as Nix requires ("file://relative" is not
	// a store Nix can open).
	Dir string
}

// ParseLocation reads the location of a file:// store URL ("/srv/cache",
// percent-escapes allowed). A file:// URL has no backend parameters.
func ParseLocation(location string, params map[string]string) (cache.Location, error) {
	for k := range params {
		return nil, fmt.Errorf("unknown parameter %q", k)
	}
	if !strings.HasPrefix(location, "/") {
		return nil, errors.New("file:// store needs an absolute path (file:///dir)")
	}
	p, err := url.PathUnescape(location)
	if err != nil {
		return nil, errors.New("path: bad percent-escape")
	}
	return Location{Dir: path.Clean(p)}, nil
}

// Open opens the backend on the directory, creating it if needed.
func (l Location) Open(context.Context) (cache.Backend, error) { return New(l.Dir) }

// String renders the location as a store URL: "file:///srv/cache".
func (l Location) String() string { return "file://" + cache.EscapePath(l.Dir) }

// Backend stores each object as a file under a root directory. Put is
// atomic: the bytes go to a temporary file in the target's directory, which
// is synced and renamed into place, and then the directory is synced. A
// writer killed mid-Put leaves its temporary file; List never reports it,
// and New removes it once stale.
type Backend struct {
	root  string
	syncs dirSyncs
	// ordered: the file system keeps the order of renames (see the package
	// documentation); Commit then leaves the directory fsync to Flush.
	ordered bool
	mu      sync.Mutex
	dirty   map[string]bool // directories renamed into since their last fsync
}

var (
	_ cache.Backend = (*Backend)(nil)
	_ cache.Toucher = (*Backend)(nil)
	_ cache.Mover   = (*Backend)(nil)
	_ cache.Stager  = (*Backend)(nil)
)

// New returns a backend rooted at dir, creating it (and parents) if needed.
// dir must be absolute, as Nix requires for file:// stores. Unless it did so
// within StaleTempAge, it removes the temporary files that killed writers
// left (see RemoveStaleTemps) unmodified for StaleTempAge; a failure to
// remove them (a read-only cache) is not an error.
func New(dir string) (*Backend, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("file: cache directory %q must be absolute", dir)
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return nil, fmt.Errorf("file: create cache directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("file: cache root %q is not a directory", dir)
	}
	b := &Backend{root: dir, ordered: durable.KeepsRenameOrder(dir)}
	if b.sweepDue() {
		_, _ = b.RemoveStaleTemps(context.Background(), StaleTempAge)
	}
	return b, nil
}

// sweepDue reports whether New should look for stale temporary files: the
// stamp is missing or older than StaleTempAge, and it could be renewed (a
// reader without write access leaves the cleaning to writers).
func (b *Backend) sweepDue() bool {
	stamp := filepath.Join(b.root, sweepStamp)
	if st, err := os.Stat(stamp); err == nil && time.Since(st.ModTime()) < StaleTempAge {
		return false
	}
	now := time.Now()
	if err := os.Chtimes(stamp, now, now); err == nil {
		return true
	}
	f, err := os.OpenFile(stamp, os.O_WRONLY|os.O_CREATE, ObjectMode)
	if err != nil {
		return false
	}
	return f.Close() == nil
}

// RemoveStaleTemps removes the temporary files (names starting with
// TempPrefix) that were not modified for age and that no writer holds: a Put
// killed mid-write leaves its file behind, unlocked. It looks in the root and
// in every directory below it, and returns how many files it removed.
func (b *Backend) RemoveStaleTemps(ctx context.Context, age time.Duration) (int, error) {
	cutoff := time.Now().Add(-age)
	removed := 0
	dirs := []string{b.root}
	for len(dirs) > 0 {
		dir := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		err := eachEntry(dir, func(e fs.DirEntry) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			p := filepath.Join(dir, e.Name())
			switch {
			case e.IsDir():
				dirs = append(dirs, p)
			case e.Type().IsRegular() && strings.HasPrefix(e.Name(), TempPrefix) && p != filepath.Join(b.root, sweepStamp):
				if removeIfStale(p, cutoff) {
					removed++
				}
			}
			return nil
		})
		if err != nil && (dir == b.root || !errors.Is(err, fs.ErrNotExist)) {
			return removed, fmt.Errorf("file: remove stale temporary files: %w", err)
		}
	}
	return removed, nil
}

// eachEntry calls fn for each entry of dir, unsorted and a batch at a time
// (a cache's root and nar/ can hold millions of entries).
func eachEntry(dir string, fn func(fs.DirEntry) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(1024)
		for _, e := range ents {
			if err := fn(e); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// removeIfStale removes the temporary file p if it was last modified before
// cutoff and no writer holds its lock, and reports whether it did.
func removeIfStale(p string, cutoff time.Time) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || !st.ModTime().Before(cutoff) {
		return false
	}
	// A live Put holds LOCK_EX; a killed one's lock went with its process.
	// Where the file system has no locks, the age alone decides.
	if lockedByOther(f) {
		return false
	}
	return os.Remove(p) == nil
}

// Root returns the cache directory.
func (b *Backend) Root() string { return b.root }

func (b *Backend) path(key string) (string, error) {
	if err := cache.ValidateKey(key); err != nil {
		return "", fmt.Errorf("file: %w", err)
	}
	if strings.HasPrefix(key[strings.LastIndexByte(key, '/')+1:], TempPrefix) {
		return "", fmt.Errorf("file: %w %q: names starting with %q are reserved for temporary files", cache.ErrInvalidKey, key, TempPrefix)
	}
	return filepath.Join(b.root, filepath.FromSlash(key)), nil
}

func notFound(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errIsDir) {
		return fmt.Errorf("file: %q: %w", key, cache.ErrNotFound)
	}
	return fmt.Errorf("file: %q: %w", key, err)
}

var errIsDir = errors.New("is a directory")

// Stat returns the size and modification time of the object.
func (b *Backend) Stat(ctx context.Context, key string) (cache.ObjectInfo, error) {
	p, err := b.path(key)
	if err != nil {
		return cache.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return cache.ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if err == nil && !st.Mode().IsRegular() {
		err = errIsDir
	}
	if err != nil {
		return cache.ObjectInfo{}, notFound(key, err)
	}
	return cache.ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// Get opens the object for reading.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := b.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, notFound(key, err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = errIsDir
		}
		return nil, notFound(key, err)
	}
	return f, nil
}

// Put writes exactly size bytes from r to key atomically: to a temporary
// file in the same directory, checked for length, fsynced, renamed over key,
// and the directory fsynced. Missing directories (such as nar/) are created.
// On any error, including a reader that yields fewer or more than size bytes
// (cache.ErrSizeMismatch) or a cancelled ctx, key keeps its old content.
// contentType is not recorded: Nix reading a file:// cache, and web servers
// in front of one, go by the file name.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (err error) {
	p, err := b.path(key)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("file: put %q: negative size %d", key, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file: put %q: %w", key, err)
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("file: put %q: %w", key, err)
	}
	f, err := os.CreateTemp(dir, TempPrefix+"*")
	if err != nil {
		return fmt.Errorf("file: put %q: %w", key, err)
	}
	tmp := f.Name()
	// Hold a lock on the temporary file while writing it, so that
	// RemoveStaleTemps never removes it, however slow the reader. The lock
	// goes away with the process if it is killed. Best effort: some file
	// systems have no locks.
	lockTemp(f)
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(ObjectMode); err != nil {
		return fmt.Errorf("file: put %q: %w", key, err)
	}
	// ExactReader ends with io.EOF only after exactly size bytes, so a
	// copy without error wrote size bytes.
	n, err := io.Copy(f, &ctxReader{ctx: ctx, r: cache.ExactReader(r, size)})
	if err != nil {
		return fmt.Errorf("file: put %q: after %d bytes: %w", key, n, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("file: put %q: sync: %w", key, err)
	}
	b.syncs.record("sync", tmp, "", 0)
	if err := f.Close(); err != nil {
		return fmt.Errorf("file: put %q: close: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file: put %q: %w", key, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("file: put %q: %w", key, err)
	}
	b.syncs.record("rename", tmp, p, 0)
	if err := b.syncs.sync(dir); err != nil {
		return fmt.Errorf("file: put %q: sync directory: %w", key, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// existing returns the file of key, which must be a regular file.
func (b *Backend) existing(ctx context.Context, key string) (string, error) {
	p, err := b.path(key)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if st, err := os.Lstat(p); err != nil || !st.Mode().IsRegular() {
		if err == nil {
			err = errIsDir
		}
		return "", notFound(key, err)
	}
	return p, nil
}

// Delete removes the object and syncs its directory. Empty directories are
// left in place.
func (b *Backend) Delete(ctx context.Context, key string) error {
	p, err := b.existing(ctx, key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return notFound(key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("file: delete %q: sync directory: %w", key, err)
	}
	return nil
}

// Touch sets the object's modification time to now; a missing object is
// cache.ErrNotFound, never created.
func (b *Backend) Touch(ctx context.Context, key string) error {
	p, err := b.existing(ctx, key)
	if err != nil {
		return err
	}
	now := time.Now()
	if err := os.Chtimes(p, now, now); err != nil {
		return notFound(key, err)
	}
	return nil
}

// Move renames the object from to to atomically (one rename), creating
// to's directory if needed, and syncs both directories.
func (b *Backend) Move(ctx context.Context, from, to string) error {
	pt, err := b.path(to)
	if err != nil {
		return err
	}
	pf, err := b.existing(ctx, from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(pt), DirMode); err != nil {
		return fmt.Errorf("file: move %q: %w", from, err)
	}
	if err := os.Rename(pf, pt); err != nil {
		return notFound(from, err)
	}
	if err := syncDir(filepath.Dir(pt)); err != nil {
		return fmt.Errorf("file: move %q: sync directory: %w", from, err)
	}
	if err := syncDir(filepath.Dir(pf)); err != nil {
		return fmt.Errorf("file: move %q: sync directory: %w", from, err)
	}
	return nil
}

// List calls fn for every regular file under the root whose key starts with
// prefix, skipping temporary files.
func (b *Backend) List(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	// Walk only the deepest directory the prefix names.
	start := b.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = filepath.Join(b.root, filepath.FromSlash(prefix[:i]))
		if start != b.root && !strings.HasPrefix(start, b.root+string(filepath.Separator)) {
			return fmt.Errorf("file: list %q: %w", prefix, cache.ErrInvalidKey)
		}
	}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(b.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if p != start && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), TempPrefix) || !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while listing
		}
		if err != nil {
			return err
		}
		return fn(cache.ObjectInfo{Key: key, Size: info.Size(), ModTime: info.ModTime()})
	})
	if err != nil {
		return fmt.Errorf("file: list %q: %w", prefix, err)
	}
	return nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
