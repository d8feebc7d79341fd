package localstore

import (
	"compress/bzip2"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/storepath"
)

// LogDir returns Nix's log directory: $NIX_LOG_DIR, else /nix/var/log/nix.
func LogDir() string {
	if d := os.Getenv("NIX_LOG_DIR"); d != "" && filepath.IsAbs(d) {
		return d
	}
	return "/nix/var/log/nix"
}

// BuildLog opens the build log Nix kept for the derivation drv, as `nix log`
// reads it locally: <log dir>/drvs/<first 2 characters of the base
// name>/<rest>, bzip2-compressed (".bz2", Nix's default compress-build-log)
// or plain. The reader yields the uncompressed text. The error wraps
// fs.ErrNotExist when there is no log (the path was substituted, or built
// with keep-build-log off). The log directory is Options.LogDir.
func (s *Store) BuildLog(_ context.Context, drv storepath.Path) (io.ReadCloser, error) {
	if err := s.check(drv); err != nil {
		return nil, err
	}
	base := drv.Base()
	name := filepath.Join(s.logDir, "drvs", base[:2], base[2:])
	if f, err := os.Open(name + ".bz2"); err == nil {
		return struct {
			io.Reader
			io.Closer
		}{bzip2.NewReader(f), f}, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("localstore: build log of %s: %w", drv, err)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("localstore: build log of %s: %w", drv, err)
	}
	return f, nil
}

var _ cache.LogSource = (*Store)(nil)
var _ cache.RealisationSource = (*Store)(nil)

// Realisations returns the realisations the store database records for
// derivation outputs that were realised to p (Nix 2.8's Realisations table,
// written when ca-derivations is enabled: drvPath holds the output id's
// "sha256:<hash modulo>", outputPath the ValidPaths id), each with its
// dependent realisations (RealisationsRefs). A floating content-addressed
// derivation built once has two (its own id and that of the resolved
// derivation Nix built). None for input-addressed or fixed-output paths,
// for a database without the table, and when the store is read through
// the nix command (ModeCLI).
func (s *Store) Realisations(ctx context.Context, p storepath.Path) ([]cache.Realisation, error) {
	if err := s.check(p); err != nil {
		return nil, err
	}
	db, ok := s.src.(*dbSource)
	if !ok {
		return nil, nil
	}
	var out []cache.Realisation
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN ('Realisations','RealisationsRefs')`).Scan(&n); err != nil {
			return err
		}
		if n != 2 {
			return nil
		}
		rows, err := tx.QueryContext(ctx, `SELECT r.id, r.drvPath, r.outputName, coalesce(r.signatures, '')
			FROM Realisations r JOIN ValidPaths v ON r.outputPath = v.id WHERE v.path = ? ORDER BY r.id`, string(p))
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var (
				id              int64
				hash, name, sig string
			)
			if err := rows.Scan(&id, &hash, &name, &sig); err != nil {
				rows.Close()
				return err
			}
			sigs, err := parseSigs(strings.Fields(sig))
			if err != nil {
				rows.Close()
				return fmt.Errorf("realisation %s!%s: %w", hash, name, err)
			}
			ids = append(ids, id)
			out = append(out, cache.Realisation{ID: hash + "!" + name, OutPath: p, Signatures: sigs,
				DependentRealisations: map[string]storepath.Path{}})
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for i, id := range ids {
			deps, err := tx.QueryContext(ctx, `SELECT d.drvPath, d.outputName, v.path FROM RealisationsRefs rr
				JOIN Realisations d ON rr.realisationReference = d.id JOIN ValidPaths v ON d.outputPath = v.id
				WHERE rr.referrer = ?`, id)
			if err != nil {
				return err
			}
			for deps.Next() {
				var hash, name, path string
				if err := deps.Scan(&hash, &name, &path); err != nil {
					deps.Close()
					return err
				}
				dp, err := s.dir.Parse(path)
				if err != nil {
					deps.Close()
					return err
				}
				out[i].DependentRealisations[hash+"!"+name] = dp
			}
			if err := deps.Close(); err != nil {
				return err
			}
			if err := deps.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("localstore: database %s: realisations of %s: %w", db.path, p, err)
	}
	for _, r := range out {
		if err := cache.ValidateRealisationID(r.ID); err != nil {
			return nil, fmt.Errorf("localstore: database %s: %w", db.path, err)
		}
	}
	return out, nil
}
