package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixcache/nixcache/storepath"
)

// RecoveryFile is the name of the checkpoint file in the queue directory.
const RecoveryFile = "recovery.json"

// DefaultRecoveryMargin is DrainOptions.RecoveryMargin's default.
const DefaultRecoveryMargin = time.Minute

// Checkpoint is the content of DIR/recovery.json: every entry made before
// Synced, on the boot BootID, was on disk then. It is how a queue's
// entries become cheap without being lost.
//
// A durable entry costs the hook an fsync (and, on an ext2/3/4 without a
// journal, a syncfs) inside every build: most of what the hook costs beyond
// starting a process. The fsync is not needed when what it protects can be
// found again after a crash. A post-build hook enqueues what Nix has just
// built, and Nix registers those outputs in its database before it runs
// the hook; so an upload daemon that reads the database can find every
// path whose entry a power cut lost: the outputs Nix registered since the
// last moment all entries were known to be on disk.
//
// The daemon records that moment in DIR/recovery.json (a Checkpoint):
// it reads the database's last row id and the clock, makes every entry
// made so far durable (Sync), and then writes the checkpoint (atomically,
// durably). While that file exists, EnqueueBuilt (the hook's call) writes
// entries without fsync. When the daemon starts on another boot than the
// one of the checkpoint (a crash of the machine loses unsynced entries;
// a crash of a process does not), it queues again, durably, every path
// Nix built with a row id above the checkpoint's, or registered since
// RecoveryMargin before it, then writes a new checkpoint. A hook creates
// its entry within seconds of the registration (it gives up after 5 s),
// so the margin covers the paths registered just before the checkpoint
// whose entries came just after it; the row id covers the rest, whatever
// the clock does.
//
// Nix's own registration is what makes a path valid: when a power cut
// loses it, the path is no longer valid, Nix builds it again, and the hook
// runs again. What recovery cannot undo: an entry lost with its GC root
// leaves the path unprotected from `nix-store --gc` between the reboot and
// the daemon's start.
type Checkpoint struct {
	// BootID is the Linux kernel's boot id (/proc/sys/kernel/random/boot_id)
	// when the checkpoint was written.
	BootID string `json:"boot_id"`
	// Synced is when the entries were made durable (read before it began).
	Synced time.Time `json:"synced"`
	// LastID is the largest row id of Nix's ValidPaths table, read before
	// Synced: paths registered later have larger ids.
	LastID int64 `json:"last_id"`
}

// Recoverer reads, in Nix's database, what Nix built; *localstore.Store
// implements it.
type Recoverer interface {
	// LastID returns the largest ValidPaths row id.
	LastID(ctx context.Context) (int64, error)
	// Built lists the valid paths Nix built (the outputs post-build hooks
	// run for) registered at or after since or with a row id above afterID.
	Built(ctx context.Context, since time.Time, afterID int64) ([]storepath.Path, error)
}

// bootID reads the kernel's boot id; "" where there is none (not Linux),
// and then no checkpoint is written.
var bootID = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// BootID returns the running kernel's boot id, "" when the system has none
// (only Linux has one).
func BootID() string { return bootID() }

// EnqueueBuilt adds paths that Nix has just built and registered (a
// post-build hook's outputs) to the queue. While the queue's daemon keeps a
// checkpoint (DIR/recovery.json, see Checkpoint), the entries and GC roots
// are written without waiting for the disk: after a crash of the machine,
// the daemon finds the paths again in Nix's database. Without a checkpoint
// it is Enqueue. For other paths, use Enqueue.
func (q *Queue) EnqueueBuilt(paths ...storepath.Path) error {
	fi, err := os.Lstat(filepath.Join(q.dir, RecoveryFile))
	return q.enqueue(paths, err != nil || !fi.Mode().IsRegular())
}

// Sync makes every entry and GC root made so far durable.
func (q *Queue) Sync() error {
	err := q.syncNew(q.entries)
	if err != nil {
		err = fmt.Errorf("queue: %w", err)
	}
	if q.roots != "" {
		if rerr := q.syncNew(q.roots); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("%w: %w", ErrGCRoot, rerr))
		}
	}
	return err
}

// ReadCheckpoint reads DIR/recovery.json; its error wraps fs.ErrNotExist
// when there is none.
func (q *Queue) ReadCheckpoint() (Checkpoint, error) {
	path := filepath.Join(q.dir, RecoveryFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("queue: read checkpoint: %w", err)
	}
	var c Checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return Checkpoint{}, fmt.Errorf("queue: parse checkpoint %s: %w", path, err)
	}
	return c, nil
}

// WriteCheckpoint replaces DIR/recovery.json with c, durably (a new file,
// fsync'ed, renamed over the old one, the directory fsync'ed): after a
// crash the file holds c or the checkpoint before it, never a mix.
func (q *Queue) WriteCheckpoint(c Checkpoint) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("queue: checkpoint: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(q.dir, RecoveryFile), append(b, '\n'), true); err != nil {
		return fmt.Errorf("queue: checkpoint: %w", err)
	}
	return nil
}

// RemoveCheckpoint removes DIR/recovery.json (hooks fsync their entries
// again); no checkpoint is not an error.
func (q *Queue) RemoveCheckpoint() error {
	err := os.Remove(filepath.Join(q.dir, RecoveryFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: remove checkpoint: %w", err)
	}
	return syncDir(q.dir)
}

// hookLimit bounds how long after reading the checkpoint a hook may still
// create an entry (the hook gives up after 5 s).
const hookLimit = 10 * time.Second

// recovery is the Drainer's side of crash recovery.
type recovery struct {
	on       bool        // checkpoints are kept
	from     *Checkpoint // a recovery after a reboot still to do, from this checkpoint
	last     time.Time   // when the last checkpoint was written (or tried)
	lastMod  time.Time   // the entries directory's mtime then
	resyncAt time.Time   // a Sync is due then (after dropping a checkpoint)
}

// startRecovery runs when the Drainer starts: after a reboot it queues
// again what Nix built since the checkpoint, then writes a new checkpoint.
// Without a Recoverer, or when the database cannot be read, it removes a
// checkpoint an earlier daemon left, so that hooks fsync again.
func (d *Drainer) startRecovery(ctx context.Context) {
	// Temporaries of checkpoints a killed daemon did not finish.
	tmps, _ := filepath.Glob(filepath.Join(d.q.dir, "."+RecoveryFile+".*"))
	for _, tmp := range tmps {
		os.Remove(tmp)
	}
	cp, err := d.q.ReadCheckpoint()
	have := !errors.Is(err, fs.ErrNotExist)
	if err != nil && have {
		// Unreadable: recover by its modification time alone.
		d.log.Warn("unreadable checkpoint; recovering from its modification time", "err", err)
		cp = Checkpoint{LastID: math.MaxInt64}
		if fi, serr := os.Stat(filepath.Join(d.q.dir, RecoveryFile)); serr == nil {
			cp.Synced = fi.ModTime()
		}
	}
	boot := BootID()
	var lastID int64
	var why, idErr error
	switch {
	case d.opts.Recover == nil:
		why = errors.New("no Recoverer")
	case boot == "":
		why = errors.New("the system has no boot id")
	default:
		lastID, idErr = d.opts.Recover.LastID(ctx)
		if errors.Is(idErr, errors.ErrUnsupported) {
			why = idErr
		}
	}
	if why != nil {
		if have {
			if cp.BootID != boot {
				d.log.Warn("the machine restarted while post-build hooks queued without fsync, and this daemon cannot read Nix's database to find what they queued: paths built since the checkpoint may be missing from the queue", "checkpoint", cp.Synced, "err", why)
			}
			d.dropCheckpoint()
		}
		return
	}
	d.rec.on = true
	if have && cp.BootID != boot {
		d.rec.from = &cp
	}
	if idErr != nil {
		// A passing failure (a lock held too long): keep the checkpoint
		// and retry after CheckpointInterval.
		d.log.Error("cannot read Nix's database for crash recovery; retrying", "err", idErr)
		d.rec.last = time.Now()
		return
	}
	d.checkpoint(ctx, lastID)
}

// recover queues again, durably, what Nix built since d.rec.from, and
// clears it when done.
func (d *Drainer) recover(ctx context.Context) {
	cp := d.rec.from
	since := cp.Synced.Add(-d.opts.RecoveryMargin)
	paths, err := d.opts.Recover.Built(ctx, since, cp.LastID)
	if err == nil {
		err = d.q.Enqueue(paths...)
		if errors.Is(err, ErrGCRoot) {
			d.log.Warn("cannot register GC roots for recovered paths", "err", err)
			err = nil
		}
	}
	if err != nil {
		d.log.Error("after a restart of the machine: cannot queue again what Nix built since the checkpoint; retrying later", "checkpoint", cp.Synced, "err", err)
		return
	}
	d.rec.from = nil
	d.log.Info("the machine restarted: queued again what Nix built since the checkpoint (paths already in the cache are not uploaded again)", "paths", len(paths), "since", since.Round(time.Second))
}

// checkpoint makes the entries durable and writes a new checkpoint; lastID
// is Nix's last row id, read before. While a recovery is pending the old
// checkpoint stays (its window only grows), and a failed recovery is
// tried again after CheckpointInterval.
func (d *Drainer) checkpoint(ctx context.Context, lastID int64) {
	now := time.Now()
	if d.rec.from != nil {
		if d.recover(ctx); d.rec.from != nil {
			d.rec.last = now
			return
		}
	}
	var mod time.Time
	if fi, err := os.Stat(d.q.entries); err == nil {
		mod = fi.ModTime()
	}
	err := d.q.Sync()
	if errors.Is(err, ErrGCRoot) {
		// The GC roots only protect queued paths from the collector;
		// recovery does not need them (it makes them again).
		d.log.Warn("cannot sync the GC roots of queued paths", "err", err)
		err = d.q.syncNew(d.q.entries)
	}
	if err == nil {
		err = d.q.WriteCheckpoint(Checkpoint{BootID: BootID(), Synced: now, LastID: lastID})
	}
	if err != nil {
		d.log.Error("cannot write the recovery checkpoint", "err", err)
		return
	}
	d.rec.last, d.rec.lastMod = now, mod
}

// maybeCheckpoint renews the checkpoint when entries changed since the last
// one and CheckpointInterval has passed (or at once when final), and runs
// a Sync that dropping a checkpoint made due.
func (d *Drainer) maybeCheckpoint(ctx context.Context, final bool) {
	if !d.rec.resyncAt.IsZero() && (final || time.Now().After(d.rec.resyncAt)) {
		if err := d.q.Sync(); err != nil {
			d.log.Error("cannot sync the queue", "err", err)
		}
		d.rec.resyncAt = time.Time{}
	}
	if !d.rec.on || (!final && time.Since(d.rec.last) < d.opts.CheckpointInterval) {
		return
	}
	if fi, err := os.Stat(d.q.entries); err == nil && fi.ModTime().Equal(d.rec.lastMod) && d.rec.from == nil {
		return
	}
	lastID, err := d.opts.Recover.LastID(ctx)
	if err != nil {
		d.log.Error("cannot read Nix's database for the recovery checkpoint", "err", err)
		d.rec.last = time.Now() // try again after an interval
		return
	}
	d.checkpoint(ctx, lastID)
}

// dropCheckpoint removes the checkpoint and syncs the entries now and once
// more after hookLimit, when hooks that saw the checkpoint have finished.
func (d *Drainer) dropCheckpoint() {
	if err := d.q.RemoveCheckpoint(); err != nil {
		d.log.Error("cannot remove the recovery checkpoint", "err", err)
	}
	if err := d.q.Sync(); err != nil {
		d.log.Error("cannot sync the queue", "err", err)
	}
	d.rec.resyncAt = time.Now().Add(hookLimit)
}
