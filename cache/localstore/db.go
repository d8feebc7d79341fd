package localstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// batchSize bounds the number of SQL parameters per query (SQLite allows
// 32766; smaller batches keep statements cacheable and short).
const batchSize = 500

type dbSource struct {
	db   *sql.DB
	dir  storepath.Dir
	path string
}

// dsn builds the read-only URI for the database: mode=ro opens the file
// O_RDONLY, so this connection can never take a write lock or change the
// schema; busy_timeout waits out Nix's checkpoints. Nix keeps the database
// in WAL mode: when no Nix process has it open, db.sqlite-wal and
// db.sqlite-shm are absent and SQLite creates them (as Nix itself does on
// open, with the database's owner and mode); a read-only reader cannot
// delete them, Nix does at its next close. While Nix runs (a post-build
// hook, a daemon next to builds) they exist and we create nothing.
func dsn(path string, busy time.Duration) string {
	u := url.URL{Scheme: "file", Path: path}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	// Refuse to follow the database into a schema-changing statement even
	// if a caller misuses the handle.
	q.Add("_pragma", "query_only(1)")
	u.RawQuery = q.Encode()
	return u.String()
}

// driverName is the database/sql driver localstore reads db.sqlite with;
// package cache/localstore/sqlite registers it.
const driverName = "sqlite"

// haveDriver reports whether a driver named driverName is registered.
func haveDriver() bool { return slices.Contains(sql.Drivers(), driverName) }

func openDB(ctx context.Context, path string, dir storepath.Dir, busy time.Duration) (*dbSource, error) {
	if !haveDriver() {
		return nil, ErrNoDriver
	}
	// sqlite would report a missing file as "unable to open": say it plainly.
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("localstore: database %s: %w", path, err)
	}
	db, err := sql.Open(driverName, dsn(path, busy))
	if err != nil {
		return nil, fmt.Errorf("localstore: open database %s: %w", path, err)
	}
	// A few connections: each one is a reader with its own WAL snapshot.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	// Check that this is Nix's schema and that we may read it.
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN ('ValidPaths','Refs','DerivationOutputs')`).Scan(&n)
	if err == nil && n != 3 {
		err = fmt.Errorf("not a Nix store database: missing ValidPaths, Refs or DerivationOutputs table")
	}
	if err == nil {
		// Read one row of each column we use, so a schema without them
		// fails here and the caller falls back to the nix command.
		_, err = db.ExecContext(ctx, `SELECT `+infoColumns+` FROM ValidPaths LIMIT 0`)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("localstore: database %s: %w", path, err)
	}
	return &dbSource{db: db, dir: dir, path: path}, nil
}

func (s *dbSource) close() error { return s.db.Close() }

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

const infoColumns = `id, path, hash, registrationTime, deriver, narSize, ultimate, sigs, ca`

// scanInfo reads one ValidPaths row.
func (s *dbSource) scanInfo(rows *sql.Rows) (int64, *PathInfo, error) {
	var (
		id                int64
		path, hash        string
		regTime           int64
		deriver, sigs, ca sql.NullString
		narSize, ultimate sql.NullInt64
	)
	if err := rows.Scan(&id, &path, &hash, &regTime, &deriver, &narSize, &ultimate, &sigs, &ca); err != nil {
		return 0, nil, fmt.Errorf("localstore: database %s: read ValidPaths row: %w", s.path, err)
	}
	p, err := s.dir.Parse(path)
	if err != nil {
		return 0, nil, fmt.Errorf("localstore: database %s: ValidPaths id %d: %w", s.path, id, err)
	}
	pi := &PathInfo{PathInfo: cache.PathInfo{Path: p, CA: ca.String}, RegistrationTime: time.Unix(regTime, 0), Ultimate: ultimate.Int64 != 0}
	pi.NarHash, err = nixhash.Parse(hash)
	if err != nil {
		return 0, nil, fmt.Errorf("localstore: database %s: %s: hash: %w", s.path, p, err)
	}
	if narSize.Int64 < 0 {
		return 0, nil, fmt.Errorf("localstore: database %s: %s: negative narSize %d", s.path, p, narSize.Int64)
	}
	pi.NarSize = uint64(narSize.Int64)
	if deriver.String != "" {
		pi.Deriver, err = s.dir.Parse(deriver.String)
		if err != nil {
			return 0, nil, fmt.Errorf("localstore: database %s: %s: deriver: %w", s.path, p, err)
		}
	}
	pi.Sigs, err = parseSigs(strings.Fields(sigs.String))
	if err != nil {
		return 0, nil, fmt.Errorf("localstore: database %s: %s: %w", s.path, p, err)
	}
	return id, pi, nil
}

func parseSigs(fields []string) ([]signature.Signature, error) {
	if len(fields) == 0 {
		return nil, nil
	}
	sigs := make([]signature.Signature, 0, len(fields))
	for _, f := range fields {
		sig, err := signature.ParseSignature(f)
		if err != nil {
			return nil, fmt.Errorf("signature %q: %w", f, err)
		}
		sigs = append(sigs, sig)
	}
	return sigs, nil
}

// readInfos runs one ValidPaths query in tx and fills in references.
func (s *dbSource) readInfos(ctx context.Context, tx *sql.Tx, where string, args []any, out map[storepath.Path]*PathInfo) error {
	rows, err := tx.QueryContext(ctx, `SELECT `+infoColumns+` FROM ValidPaths WHERE `+where, args...)
	if err != nil {
		return fmt.Errorf("localstore: database %s: query ValidPaths: %w", s.path, err)
	}
	byID := make(map[int64]*PathInfo)
	var ids []any
	for rows.Next() {
		id, pi, err := s.scanInfo(rows)
		if err != nil {
			rows.Close()
			return err
		}
		byID[id] = pi
		ids = append(ids, id)
		out[pi.Path] = pi
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("localstore: database %s: query ValidPaths: %w", s.path, err)
	}
	rows.Close()
	return s.readRefs(ctx, tx, ids, byID)
}

func (s *dbSource) readRefs(ctx context.Context, tx *sql.Tx, ids []any, byID map[int64]*PathInfo) error {
	for len(ids) > 0 {
		n := min(len(ids), batchSize)
		batch := ids[:n]
		ids = ids[n:]
		rows, err := tx.QueryContext(ctx, `SELECT r.referrer, v.path FROM Refs r JOIN ValidPaths v ON v.id = r.reference WHERE r.referrer IN (`+placeholders(n)+`)`, batch...)
		if err != nil {
			return fmt.Errorf("localstore: database %s: query Refs: %w", s.path, err)
		}
		for rows.Next() {
			var id int64
			var ref string
			if err := rows.Scan(&id, &ref); err != nil {
				rows.Close()
				return fmt.Errorf("localstore: database %s: read Refs row: %w", s.path, err)
			}
			rp, err := s.dir.Parse(ref)
			if err != nil {
				rows.Close()
				return fmt.Errorf("localstore: database %s: reference of %s: %w", s.path, byID[id].Path, err)
			}
			if pi := byID[id]; pi != nil {
				pi.References = append(pi.References, rp)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("localstore: database %s: query Refs: %w", s.path, err)
		}
	}
	for _, pi := range byID {
		pi.References = sortRefs(pi.References)
	}
	return nil
}

// readTx runs fn in one read transaction: every query sees the same WAL
// snapshot, so a path and its references are read consistently while Nix
// writes.
func (s *dbSource) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("localstore: database %s: begin: %w", s.path, err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to undo
	return fn(tx)
}

func (s *dbSource) pathInfos(ctx context.Context, paths []storepath.Path) (map[storepath.Path]*PathInfo, error) {
	out := make(map[storepath.Path]*PathInfo, len(paths))
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		for rest := paths; len(rest) > 0; {
			n := min(len(rest), batchSize)
			args := make([]any, n)
			for i, p := range rest[:n] {
				args[i] = string(p)
			}
			rest = rest[n:]
			if err := s.readInfos(ctx, tx, `path IN (`+placeholders(n)+`)`, args, out); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

func (s *dbSource) closureInfos(ctx context.Context, roots []storepath.Path) (map[storepath.Path]*PathInfo, error) {
	out := make(map[storepath.Path]*PathInfo)
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		// Resolve the roots first, so a missing one is named.
		var rootIDs []any
		for _, r := range roots {
			id, err := s.pathID(ctx, tx, r)
			if err != nil {
				return err
			}
			rootIDs = append(rootIDs, id)
		}
		// One recursive query walks Refs inside SQLite.
		where := `id IN (WITH RECURSIVE closure(id) AS (VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?),", len(rootIDs)), ",") +
			` UNION SELECT r.reference FROM Refs r JOIN closure c ON r.referrer = c.id) SELECT id FROM closure)`
		return s.readInfos(ctx, tx, where, rootIDs, out)
	})
	return out, err
}

// pathID returns p's ValidPaths id; its error wraps ErrNotValid when p is
// not a valid path.
func (s *dbSource) pathID(ctx context.Context, tx *sql.Tx, p storepath.Path) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM ValidPaths WHERE path = ?`, string(p)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("localstore: %s: %w", p, ErrNotValid)
	}
	if err != nil {
		return 0, fmt.Errorf("localstore: database %s: query %s: %w", s.path, p, err)
	}
	return id, nil
}

func (s *dbSource) drvOutputs(ctx context.Context, drv storepath.Path) (map[string]storepath.Path, bool, error) {
	out := make(map[string]storepath.Path)
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		id, err := s.pathID(ctx, tx, drv)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, path FROM DerivationOutputs WHERE drv = ?`, id)
		if err != nil {
			return fmt.Errorf("localstore: database %s: query DerivationOutputs of %s: %w", s.path, drv, err)
		}
		defer rows.Close()
		for rows.Next() {
			var name, path string
			if err := rows.Scan(&name, &path); err != nil {
				return fmt.Errorf("localstore: database %s: read DerivationOutputs of %s: %w", s.path, drv, err)
			}
			p, err := s.dir.Parse(path)
			if err != nil {
				return fmt.Errorf("localstore: database %s: output %q of %s: %w", s.path, name, drv, err)
			}
			out[name] = p
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("localstore: database %s: query DerivationOutputs of %s: %w", s.path, drv, err)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}
