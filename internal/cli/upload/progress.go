package upload

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/storepath"
)

// Progress reports a push for a person at a terminal: one status line,
// redrawn at most ten times a second, and a line per failure. Use LogEvents
// when the output is not a terminal.
type Progress struct {
	w        io.Writer
	mu       sync.Mutex
	total    int
	done     int
	bytes    map[storepath.Path]uint64
	narTotal uint64
	last     time.Time
}

// NewProgress returns a Progress writing to w (a terminal).
func NewProgress(w io.Writer) *Progress {
	return &Progress{w: w, bytes: map[storepath.Path]uint64{}}
}

// Event is the cache.PushOptions.Progress function.
func (p *Progress) Event(e cache.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.Kind {
	case cache.EventQueued:
		p.total++
		p.narTotal += e.NarSize
	case cache.EventBytes:
		p.bytes[e.Path] = e.Bytes
	case cache.EventUploaded, cache.EventFailed:
		p.done++
		p.bytes[e.Path] = e.NarSize
	}
	if e.Kind == cache.EventFailed {
		fmt.Fprintf(p.w, "\r\033[Kfailed %s: %v\n", e.Path, e.Err)
	}
	if time.Since(p.last) < 100*time.Millisecond && e.Kind != cache.EventUploaded {
		return
	}
	p.last = time.Now()
	var n uint64
	for _, b := range p.bytes {
		n += b
	}
	pct := 100.0
	if p.narTotal > 0 {
		pct = 100 * float64(n) / float64(p.narTotal)
	}
	fmt.Fprintf(p.w, "\r\033[K[%d/%d paths] %.1f/%.1f MiB (%.0f%%)", p.done, p.total,
		float64(n)/(1<<20), float64(p.narTotal)/(1<<20), pct)
}

// Finish ends the status line.
func (p *Progress) Finish() { fmt.Fprintln(p.w) }

// Reporter returns the progress function for a push whose output goes to
// w: a redrawn status line when w is a terminal, else log lines (none in
// quiet mode but failures), and the function that ends the report.
func Reporter(w io.Writer, tty, quiet bool, log *slog.Logger) (event func(cache.Event), finish func()) {
	switch {
	case tty && !quiet:
		p := NewProgress(w)
		return p.Event, p.Finish
	case quiet:
		return func(e cache.Event) {
			if e.Kind == cache.EventFailed {
				log.Error("failed", "path", string(e.Path), "err", e.Err)
			}
		}, func() {}
	}
	return LogEvents(log), func() {}
}
