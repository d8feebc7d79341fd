package localstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/nixcache/nixcache/storepath"
)

// ErrNeedsDatabase is wrapped by the methods that only Nix's database
// answers (Built, LastID) when the store is read through the nix command
// (ModeCLI).
var ErrNeedsDatabase = fmt.Errorf("localstore: needs Nix's database, not the nix command: %w", errors.ErrUnsupported)

// builtWhere selects the outputs of derivations built for this store: Nix
// marks what it built itself "ultimate" (its registerOutputs sets it) and
// gives every output its deriver. Outputs built on a remote builder and
// copied back carry the deriver but are not ultimate; they are unsigned
// unless the builder signs, unlike substituted paths, which Nix accepts
// only with a trusted signature (require-sigs). So: a deriver, and either
// ultimate or no signature. .drv files and sources added with
// nix-store --add have no deriver.
const builtWhere = `deriver IS NOT NULL AND deriver != '' AND (ultimate = 1 OR sigs IS NULL OR sigs = '')`

// Built lists the valid store paths that Nix built (the outputs a
// post-build hook is run for, see builtWhere) and registered at or after
// since, or whose ValidPaths row id is above afterID, oldest row first. An
// upload daemon uses it after a crash to find what post-build hooks queued
// without waiting for the disk (cache/queue's EnqueueBuilt).
//
// Nix's registrationTime has a resolution of one second and no index, so
// this reads the whole ValidPaths table once: a few milliseconds per 10,000
// paths.
func (s *Store) Built(ctx context.Context, since time.Time, afterID int64) ([]storepath.Path, error) {
	db, ok := s.src.(*dbSource)
	if !ok {
		return nil, ErrNeedsDatabase
	}
	var out []storepath.Path
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, path FROM ValidPaths WHERE (registrationTime >= ? OR id > ?) AND `+builtWhere+` ORDER BY id`, since.Unix(), afterID)
		if err != nil {
			return fmt.Errorf("localstore: database %s: query built paths: %w", db.path, err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			var path string
			if err := rows.Scan(&id, &path); err != nil {
				return fmt.Errorf("localstore: database %s: read built paths: %w", db.path, err)
			}
			p, err := db.dir.Parse(path)
			if err != nil {
				return fmt.Errorf("localstore: database %s: ValidPaths id %d: %w", db.path, id, err)
			}
			out = append(out, p)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("localstore: database %s: read built paths: %w", db.path, err)
		}
		return nil
	})
	return out, err
}

// LastID returns the largest ValidPaths row id: every path Nix registers
// after this call gets a larger one (SQLite numbers a new row one above the
// largest; only when that largest row is deleted first, by garbage
// collection, can a number come back).
func (s *Store) LastID(ctx context.Context) (int64, error) {
	db, ok := s.src.(*dbSource)
	if !ok {
		return 0, ErrNeedsDatabase
	}
	var id sql.NullInt64
	if err := db.db.QueryRowContext(ctx, `SELECT max(id) FROM ValidPaths`).Scan(&id); err != nil {
		return 0, fmt.Errorf("localstore: database %s: query the last ValidPaths id: %w", db.path, err)
	}
	return id.Int64, nil
}
