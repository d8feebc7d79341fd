package cache

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) by a Backend when an object does not exist.
// Test for it with errors.Is.
var ErrNotFound = errors.New("cache: object not found")

// ErrReadOnly is wrapped by a read-only Backend's Put and Delete (an
// http:// or https:// cache).
var ErrReadOnly = errors.New("cache: backend is read-only")

// ErrNotSupported is wrapped by a Backend that cannot do an operation at
// all, such as List over HTTP (a binary cache served over HTTP cannot be
// listed).
var ErrNotSupported = errors.New("cache: operation not supported by this backend")

// ObjectInfo describes one object of a Backend.
type ObjectInfo struct {
	// Key is the object's name relative to the cache root, such as
	// "nix-cache-info", "<hash>.narinfo" or "nar/<filehash>.nar.zst".
	Key string
	// Size is the object's length in bytes.
	Size int64
	// ModTime is when the object was last written, when the backend knows it.
	ModTime time.Time
}

// Backend is the narrow storage interface a binary cache lives on: a flat
// namespace of immutable objects addressed by slash-separated keys.
//
// Implementations must be safe for concurrent use, and a reader must never see
// a half-written object: Put either makes the whole object visible at once or
// leaves the key as it was.
type Backend interface {
	// Stat returns the object's metadata, or an error wrapping ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// Get opens the object for reading, or returns an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Put stores exactly size bytes read from r under key, replacing any
	// object already there. If r yields fewer or more than size bytes, Put
	// fails and stores nothing. If r also implements io.ReaderAt, the backend
	// may read it in parallel sections.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error
	// Delete removes the object. Deleting a missing object returns an error
	// wrapping ErrNotFound.
	Delete(ctx context.Context, key string) error
	// List calls fn for every object whose key starts with prefix, in no
	// particular order, stopping at the first error fn returns.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}

// Toucher is implemented by backends that can renew an object's ModTime
// without rewriting it (cache/file and cache/s3 do). Push touches the
// objects it reuses (the narinfos of references already in the cache, a NAR
// file already there) so that a concurrent garbage collector sees them as
// young; see Collect.
type Toucher interface {
	// Touch sets the object's ModTime to now. A missing object is an
	// error wrapping ErrNotFound, never created: a touch must not bring
	// back an object a collector just removed.
	Touch(ctx context.Context, key string) error
}

// ErrTouchUnsupported is returned (wrapped) by a Toucher whose server does
// not renew modification times (an S3 server that keeps Last-Modified on a
// copy in place). Push then goes on without touching, as with a backend
// that is no Toucher.
var ErrTouchUnsupported = errors.New("cache: the backend cannot renew modification times")

// Mover is implemented by backends that can rename an object (cache/file
// atomically, cache/s3 as a server-side copy then a delete). The garbage
// collector's trash uses it.
type Mover interface {
	// Move renames the object from to to, replacing any object at to. A
	// missing from is an error wrapping ErrNotFound.
	Move(ctx context.Context, from, to string) error
}

// Producer is implemented by the reader Push gives Backend.Put for a NAR
// it dumps while uploading it (compression=none on a backend that is no
// Stager, such as S3). Put may, instead of reading it, call Produce once
// with a writer: the NAR is then dumped straight into w, in Put's
// goroutine, without the pipe (and its copy) that Read goes through.
// Produce returns nil only when it wrote exactly the size given to Put and
// the dump matched the store database (NarHash, NarSize); otherwise Put
// must not make the object visible, exactly as when a Read fails. An error
// of w ends the dump, and Produce returns it (wrapped).
type Producer interface {
	io.Reader
	Produce(w io.Writer) error
}

// Stager is implemented by backends that can write an object before its key
// is known and then store it under a key without copying it (cache/file: a
// temporary file in the key's directory, renamed into place). Push writes
// NAR files this way, straight from the dump and compressor, since their
// key is the hash of what is written.
type Stager interface {
	// Stage begins an object to be stored under a key in directory dir
	// ("" for the root, "nar" for NAR files).
	Stage(ctx context.Context, dir string) (Staged, error)
}

// Staged is an object begun by Stager.Stage. Nothing is visible under any
// key before Commit, and nothing at all after Abort.
type Staged interface {
	io.Writer
	// Sync makes the bytes written so far durable ahead of Commit, which
	// then has less to wait for; calling it is optional. No Write may
	// follow.
	Sync() error
	// Commit stores the bytes written under key, which must be in the
	// directory given to Stage, replacing any object there, atomically and
	// durably as Put does: once it returns, the object survives a power cut;
	// on a Flusher it may instead be made durable by the next Flush, and
	// never before an object committed earlier.
	Commit(ctx context.Context, key string) error
	// Abort discards the bytes; it does nothing after Commit.
	Abort()
}

// Flusher is implemented by Stagers whose Commit may leave the object's
// durability to a later Flush, where the storage makes commits durable in
// the order they were made (cache/file on xfs and a journaled ext4): an object
// then never survives a crash that an object committed before it did not.
// Push calls Flush once all its narinfos are committed, before it returns
// and before it publishes realisations.
type Flusher interface {
	// Flush makes every object committed so far durable.
	Flush(ctx context.Context) error
}
