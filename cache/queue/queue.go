// Package queue is a durable, crash-safe upload queue kept in a directory,
// shared by many post-build hooks (which enqueue) and one upload daemon
// (which drains, see [Drainer]).
//
// The directory side (Queue, Config) lives in package queuedir, which has no
// network code and is what a post-build hook should import; this package
// re-exports the Queue and its errors under the same names and adds the
// Drainer. Import queuedir for the hook/daemon configuration.
//
// Layout of a queue directory DIR:
//
//	DIR/entries/<hash>-<name>   symlink to /nix/store/<hash>-<name>, one per queued path
//	DIR/entries/.*              temporaries (never read; see Queue.Clean)
//	DIR/status.json             the daemon's latest Stats, rewritten atomically
//	DIR/daemon.lock             flock(2)ed by the running daemon
//
// An entry is created with one symlink(2), which is atomic, and the
// directory is fsync'ed before Enqueue returns: after a crash an entry is
// either complete or absent, and enqueueing the same path twice merges into
// one entry (the existing link is kept). Entries are
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

import "github.com/nixcache/nixcache/cache/queue/queuedir"

// ErrNotStorePath is wrapped by Enqueue and Done errors for an argument that
// is not a valid absolute store path (Nix's <store dir>/<32 nix32>-<name>).
var ErrNotStorePath = queuedir.ErrNotStorePath

// ErrLocked is returned by Lock when another process holds the queue's
// daemon lock: only one drainer may run per queue directory.
var ErrLocked = queuedir.ErrLocked

// StatusFile is the name of the daemon's status file inside the queue directory.
const StatusFile = queuedir.StatusFile

// Options configures a Queue; see queuedir.Options.
type Options = queuedir.Options

// Queue is a queue directory; see queuedir.Queue.
type Queue = queuedir.Queue

// Entry is one queued path.
type Entry = queuedir.Entry

// StateDir returns Nix's state directory: $NIX_STATE_DIR, else /nix/var/nix.
func StateDir() string { return queuedir.StateDir() }

// Open opens the queue in dir, creating it when missing, with default Options.
func Open(dir string) (*Queue, error) { return queuedir.Open(dir) }

// OpenOptions opens the queue in dir, creating it (mode 0755) when missing.
func OpenOptions(dir string, opts Options) (*Queue, error) { return queuedir.OpenOptions(dir, opts) }
