package main

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/internal/cli"
)

// enqueue queues the outputs; it logs every problem and never fails.
func enqueue(ctx context.Context, log hookLog, dir string, start time.Time) {
	paths, err := cli.HookOutputs(ctx, os.Getenv)
	mark("outputs")
	if err != nil {
		log.Error("nothing queued", "err", err)
		return
	}
	q, err := queue.Open(dir)
	mark("open")
	if err != nil {
		log.Error("nothing queued: cannot open queue", "queue", dir, "err", err)
		return
	}
	err = q.EnqueueBuilt(paths...)
	mark("enqueue")
	if err != nil && !errors.Is(err, queue.ErrGCRoot) {
		log.Error("nothing queued", "queue", dir, "paths", len(paths), "err", err)
		return
	}
	if err != nil {
		log.Warn("queued, but without GC roots", "err", err)
	}
	log.Info("queued for upload", "paths", len(paths), "took", time.Since(start).Round(10*time.Microsecond))
	mark("logged")
	if !q.DaemonRunning() {
		log.Warn("no upload-daemon is running on the queue; paths wait until it starts", "queue", q.Dir())
	}
	mark("daemoncheck")
}

// logs holds the hook's log lines until it exits (or execs, or its
// watchdog fires), so that they reach Nix's build log in one write: each
// write to the pipe wakes Nix's log reader, which then competes with the
// hook for the CPU.
var logs logBuffer

type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf = append(l.buf, p...)
	l.mu.Unlock()
	return len(p), nil
}

// flush writes the lines held so far to stderr; errors are ignored (a
// closed build log must not fail the hook).
func (l *logBuffer) flush() {
	l.mu.Lock()
	if len(l.buf) > 0 {
		_, _ = os.Stderr.Write(l.buf)
		l.buf = l.buf[:0]
	}
	l.mu.Unlock()
}
