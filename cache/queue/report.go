package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// Report is what `upload-daemon status` shows about a queue.
type Report struct {
	Queue string `json:"queue"`
	// Running says whether a daemon holds the queue's lock now (asked of
	// the lock, never inferred from the status file), and PID is the
	// process id it wrote into the lock file.
	Running bool    `json:"daemon_running"`
	PID     int     `json:"daemon_pid,omitempty"`
	Pending []Entry `json:"pending"`
	// Status is the status file a daemon wrote last (nil if none ever ran):
	// the current daemon's when Running, else the last one's.
	Status *Stats `json:"status,omitempty"`
	// Checkpoint is the daemon's crash-recovery checkpoint (nil if none:
	// hooks then fsync their entries; see Checkpoint).
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
}

// ReadReport reports on the queue in dir, which must exist.
func ReadReport(dir string) (*Report, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	q, err := Open(dir)
	if err != nil {
		return nil, err
	}
	r := &Report{Queue: q.Dir()}
	if r.Pending, err = q.Pending(); err != nil {
		return nil, err
	}
	r.Status, err = q.ReadStatus()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if cp, err := q.ReadCheckpoint(); err == nil {
		r.Checkpoint = &cp
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	r.Running, r.PID = q.LockHolder()
	return r, nil
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("queue:    %s\n", r.Queue)
	switch {
	case r.Running && r.PID > 0:
		ew.printf("daemon:   running (pid %d)\n", r.PID)
	case r.Running:
		ew.printf("daemon:   running\n")
	default:
		ew.printf("daemon:   not running\n")
	}
	if cp := r.Checkpoint; cp != nil {
		ew.printf("entries:  written without fsync; recovered from Nix's database after a crash (checkpoint %s)\n", cp.Synced.Format(time.RFC3339))
	} else {
		ew.printf("entries:  fsync'ed by each hook (no recovery checkpoint)\n")
	}
	ew.printf("queued:   %d paths\n", len(r.Pending))
	if st := r.Status; st != nil {
		which := "last run"
		if r.Running {
			which = "this run"
		}
		ew.printf("%s: uploaded %d, in flight %d, failing %d, failures %d, dropped %d, %d NAR bytes, %d paths served upstream (status of %s, pid %d)\n",
			which, st.Uploaded, st.InFlight, st.Failing, st.Failures, st.Dropped, st.Bytes, st.Upstream, st.Updated.Format(time.RFC3339), st.PID)
		for _, f := range st.FailingPaths {
			ew.printf("failing:  %s (attempt %d, next try %s): %s\n", f.Path, f.Attempts, f.NextTry.Format(time.TimeOnly), f.LastError)
		}
	}
	for _, e := range r.Pending {
		ew.printf("  %s  (queued %s)\n", e.Path, e.Queued.Format(time.RFC3339))
	}
	return ew.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
