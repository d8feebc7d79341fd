package cache

import (
	"io"

	"github.com/nixcache/nixcache/storepath"
)

// EventKind says what happened to a store path during a push.
type EventKind uint8

const (
	// EventQueued: the path is missing from the cache and will be uploaded.
	EventQueued EventKind = iota + 1
	// EventSkipped: the path's narinfo is already in the cache.
	EventSkipped
	// EventStarted: the path's NAR is being dumped and compressed.
	EventStarted
	// EventBytes: more of the path's NAR has been read (Bytes is the running total).
	EventBytes
	// EventUploaded: the path's narinfo is stored; the path is now valid in the cache.
	EventUploaded
	// EventFailed: the path could not be uploaded (Err says why).
	EventFailed
	// EventSkippedUpstream: the path is not uploaded because an upstream
	// cache serves it (PushOptions.SkipSignedBy, PushOptions.Upstream).
	EventSkippedUpstream
)

// String returns the event kind's lower-case name.
func (k EventKind) String() string {
	switch k {
	case EventQueued:
		return "queued"
	case EventSkipped:
		return "skipped"
	case EventStarted:
		return "started"
	case EventBytes:
		return "bytes"
	case EventUploaded:
		return "uploaded"
	case EventFailed:
		return "failed"
	case EventSkippedUpstream:
		return "skipped-upstream"
	}
	return "unknown"
}

// Event reports progress on one store path. Events for different paths may
// arrive from different goroutines, so a callback must be safe for
// concurrent use.
type Event struct {
	Kind EventKind
	Path storepath.Path
	// NarSize is the path's NAR size from the store database (0 if unknown).
	NarSize uint64
	// Bytes is the number of NAR bytes read so far (EventBytes), or the
	// final NAR size (EventUploaded).
	Bytes uint64
	// FileSize is the compressed size (EventUploaded).
	FileSize uint64
	// Err is set for EventFailed.
	Err error
}

// progressWriter counts bytes written and reports them every step bytes.
type progressWriter struct {
	n, last uint64
	step    uint64
	report  func(uint64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.n += uint64(len(b))
	if p.report != nil && p.n-p.last >= p.step {
		p.last = p.n
		p.report(p.n)
	}
	return len(b), nil
}

var _ io.Writer = (*progressWriter)(nil)
