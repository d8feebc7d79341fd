// Package localstore reads what the local Nix store knows about its paths:
// the NAR hash and size, references, deriver, signatures and content address
// of a valid path, the reference closure of a set of paths, and the outputs of
// a derivation. It is the source side of an upload: a post-build hook or an
// upload daemon asks it what to publish (a *Store is a cache.Source), and
// ResolveStorePath finds the store path a command-line argument such as
// ./result stands for.
//
// Open reads Nix's SQLite database (/nix/var/nix/db/db.sqlite, or
// $NIX_STATE_DIR/db/db.sqlite) read-only, without cgo, in a few milliseconds,
// when the program imports package cache/localstore/sqlite (which registers
// the SQLite driver; it is apart so that a program reading the store only
// now and then links no SQLite). When the database cannot be read (no
// driver, not root, a remote daemon store, another schema), it falls back to
// `nix path-info --json`, accepting the JSON of Nix 2.8 as well as the newer
// shapes.
package localstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/storepath"
	drvfile "github.com/nixcache/nixcache/storepath/drv"
)

var (
	// ErrNotValid is returned (wrapped, naming the path) when a path is not a
	// valid path of the store: Nix has no ValidPaths row for it, so it was
	// never registered, or it was garbage-collected.
	ErrNotValid = errors.New("not a valid store path")

	// ErrCycle is returned by Closure when references form a cycle through
	// more than one path. Nix forbids such cycles ("cycle detected"); only a
	// path referring to itself is allowed.
	ErrCycle = errors.New("reference cycle")

	// ErrBadDerivation is wrapped by every error of the .drv parser; it is
	// drv.ErrMalformed.
	ErrBadDerivation = drvfile.ErrMalformed

	// ErrBadJSON is wrapped by every error of the `nix path-info --json` parser.
	ErrBadJSON = errors.New("malformed path-info JSON")

	// ErrNoStore is returned by Open when neither the database nor the nix
	// command is usable.
	ErrNoStore = errors.New("no usable Nix store")

	// ErrNoDriver is returned by Open in ModeDB when no SQLite driver is
	// registered: import _ "github.com/nixcache/nixcache/cache/localstore/sqlite".
	ErrNoDriver = errors.New("localstore: no SQLite driver: import cache/localstore/sqlite")
)

// PathInfo is what the store records about one valid path, the same fields
// as Nix's ValidPathInfo (and the ValidPaths/Refs tables): the fields a
// narinfo publishes (cache.PathInfo, whose doc states Nix's rule for each),
// and the store's own bookkeeping. References are sorted; Sigs keep the
// store's order. The database stores NarHash as "sha256:<base16>" and Sigs
// space-separated.
type PathInfo struct {
	cache.PathInfo
	// RegistrationTime is when the path became valid (seconds precision).
	RegistrationTime time.Time
	// Ultimate is true when this store built the path itself rather than
	// substituting it (ValidPaths.ultimate).
	Ultimate bool
}

// Mode selects how Open reaches the store.
type Mode uint8

const (
	// ModeAuto reads the database, falling back to the nix command (also
	// when no SQLite driver is registered).
	ModeAuto Mode = iota
	// ModeDB reads only the SQLite database (it needs the driver of package
	// cache/localstore/sqlite).
	ModeDB
	// ModeCLI asks only the nix command (`nix path-info --json`).
	ModeCLI
)

// String returns "auto", "db" or "cli".
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeDB:
		return "db"
	case ModeCLI:
		return "cli"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Options configure Open. The zero value reads the store as Nix itself
// would find it from the environment.
type Options struct {
	// StoreDir is the store directory; default storepath.DirFromEnv()
	// (NIX_STORE_DIR, else /nix/store).
	StoreDir storepath.Dir
	// DBPath is the SQLite database; default $NIX_STATE_DIR/db/db.sqlite,
	// else /nix/var/nix/db/db.sqlite.
	DBPath string
	// Mode chooses database, nix command, or database with fallback.
	Mode Mode
	// NixBin is the nix command for the fallback; default "nix" from PATH.
	NixBin string
	// LogDir is Nix's log directory, where BuildLog finds build logs;
	// default LogDir() ($NIX_LOG_DIR, else /nix/var/log/nix).
	LogDir string
	// BusyTimeout bounds how long a read waits on a lock held by a Nix
	// writer (rare in WAL mode: checkpoints and recovery); default 10s.
	BusyTimeout time.Duration
	// CaseHack, when set, is the store's use-case-hack setting; default
	// what UseCaseHack reads from Nix's configuration (nix.conf,
	// NIX_CONFIG), else Nix's default for the platform (on for darwin).
	CaseHack *bool
}

// DefaultDBPath returns the database Nix uses: $NIX_STATE_DIR/db/db.sqlite,
// else /nix/var/nix/db/db.sqlite.
func DefaultDBPath() string {
	state := os.Getenv("NIX_STATE_DIR")
	if state == "" || !filepath.IsAbs(state) {
		state = "/nix/var/nix"
	}
	return filepath.Join(state, "db", "db.sqlite")
}

// source is one way of reaching the store.
type source interface {
	// pathInfos returns the info of each valid path among paths (absent from
	// the map when not valid).
	pathInfos(ctx context.Context, paths []storepath.Path) (map[storepath.Path]*PathInfo, error)
	// closureInfos returns the info of every path in the closure of roots;
	// it fails with ErrNotValid when a root is not valid.
	closureInfos(ctx context.Context, roots []storepath.Path) (map[storepath.Path]*PathInfo, error)
	// drvOutputs returns a valid derivation's outputs by name, or ok=false
	// when the source does not know them.
	drvOutputs(ctx context.Context, drv storepath.Path) (outs map[string]storepath.Path, ok bool, err error)
	close() error
}

// Store answers questions about the local Nix store. It is safe for
// concurrent use. Close releases the database connection.
type Store struct {
	caseHack bool
	dir      storepath.Dir
	logDir   string
	mode     Mode // ModeDB or ModeCLI: what Open chose
	src      source
}

// Open opens the store. In ModeAuto it opens the database read-only (no
// write lock, no schema change; Nix keeps writing while we read) and falls
// back to the nix command when the database is missing or unreadable.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.StoreDir == "" {
		opts.StoreDir = storepath.DirFromEnv()
	}
	if opts.DBPath == "" {
		opts.DBPath = DefaultDBPath()
	}
	if opts.LogDir == "" {
		opts.LogDir = LogDir()
	}
	if opts.NixBin == "" {
		opts.NixBin = "nix"
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if opts.CaseHack == nil {
		on, err := UseCaseHack(os.Getenv)
		if err != nil {
			return nil, err
		}
		opts.CaseHack = &on
	}
	var dbErr error
	if opts.Mode == ModeAuto || opts.Mode == ModeDB {
		src, err := openDB(ctx, opts.DBPath, opts.StoreDir, opts.BusyTimeout)
		if err == nil {
			return &Store{dir: opts.StoreDir, logDir: opts.LogDir, mode: ModeDB, src: src, caseHack: *opts.CaseHack}, nil
		}
		if opts.Mode == ModeDB {
			return nil, err
		}
		dbErr = err
	}
	src, err := openCLI(ctx, opts.NixBin, opts.StoreDir)
	if err != nil {
		if dbErr != nil {
			return nil, fmt.Errorf("localstore: %w: %w; %w", ErrNoStore, dbErr, err)
		}
		return nil, err
	}
	return &Store{dir: opts.StoreDir, logDir: opts.LogDir, mode: ModeCLI, src: src, caseHack: *opts.CaseHack}, nil
}

// CaseHack reports the store's use-case-hack setting (Options.CaseHack):
// whether Nix dumps its paths with the case hack, so that cache.Push dumps
// them the same way.
func (s *Store) CaseHack() bool { return s.caseHack }

// Mode reports how the store is read: ModeDB or ModeCLI.
func (s *Store) Mode() Mode { return s.mode }

// StoreDir returns the store directory.
func (s *Store) StoreDir() storepath.Dir { return s.dir }

// Close releases the database connection.
func (s *Store) Close() error { return s.src.close() }

func (s *Store) check(p storepath.Path) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("localstore: %w", err)
	}
	if p.Dir() != s.dir {
		return fmt.Errorf("localstore: %s: %w: not in store directory %s", p, ErrNotValid, s.dir)
	}
	return nil
}

// PathInfo returns what the store records about p, or an error wrapping
// ErrNotValid when p is not a valid path.
func (s *Store) PathInfo(ctx context.Context, p storepath.Path) (*PathInfo, error) {
	infos, err := s.PathInfos(ctx, []storepath.Path{p})
	if err != nil {
		return nil, err
	}
	return infos[0], nil
}

// PathInfos returns the infos of paths in the same order, in one batched
// query. It fails, naming the first such path, with ErrNotValid when any
// path is not valid.
func (s *Store) PathInfos(ctx context.Context, paths []storepath.Path) ([]*PathInfo, error) {
	for _, p := range paths {
		if err := s.check(p); err != nil {
			return nil, err
		}
	}
	m, err := s.src.pathInfos(ctx, paths)
	if err != nil {
		return nil, err
	}
	out := make([]*PathInfo, len(paths))
	for i, p := range paths {
		pi, ok := m[p]
		if !ok {
			return nil, fmt.Errorf("localstore: %s: %w", p, ErrNotValid)
		}
		out[i] = pi
	}
	return out, nil
}

// QueryPathInfo is PathInfo without the store's bookkeeping: what the upload
// pipeline needs, so that a *Store is a cache.Source.
func (s *Store) QueryPathInfo(ctx context.Context, p storepath.Path) (*cache.PathInfo, error) {
	pi, err := s.PathInfo(ctx, p)
	if err != nil {
		return nil, err
	}
	return &pi.PathInfo, nil
}

// QueryPathInfos is PathInfos as cache.PathInfo values: with it a *Store
// is a cache.BatchSource.
func (s *Store) QueryPathInfos(ctx context.Context, paths []storepath.Path) ([]*cache.PathInfo, error) {
	infos, err := s.PathInfos(ctx, paths)
	if err != nil {
		return nil, err
	}
	out := make([]*cache.PathInfo, len(infos))
	for i, pi := range infos {
		out[i] = &pi.PathInfo
	}
	return out, nil
}

var _ cache.BatchSource = (*Store)(nil)

// IsValid reports whether p is a valid path of the store.
func (s *Store) IsValid(ctx context.Context, p storepath.Path) (bool, error) {
	if err := s.check(p); err != nil {
		return false, nil
	}
	m, err := s.src.pathInfos(ctx, []storepath.Path{p})
	if err != nil {
		return false, err
	}
	_, ok := m[p]
	return ok, nil
}

// Closure returns the reference closure of paths (what `nix-store --query
// --requisites` prints, as a set), ordered so that every path comes after
// all the paths it refers to. Self-references are allowed; the order is
// deterministic (depth-first from the sorted roots, references in sorted
// order).
func (s *Store) Closure(ctx context.Context, paths []storepath.Path) ([]storepath.Path, error) {
	infos, err := s.ClosureInfos(ctx, paths)
	if err != nil {
		return nil, err
	}
	out := make([]storepath.Path, len(infos))
	for i, pi := range infos {
		out[i] = pi.Path
	}
	return out, nil
}

// ClosureInfos is Closure returning the PathInfo of each path, in the same
// order (references before referrers).
func (s *Store) ClosureInfos(ctx context.Context, paths []storepath.Path) ([]*PathInfo, error) {
	for _, p := range paths {
		if err := s.check(p); err != nil {
			return nil, err
		}
	}
	if len(paths) == 0 {
		return nil, nil
	}
	m, err := s.src.closureInfos(ctx, paths)
	if err != nil {
		return nil, err
	}
	return topoSort(paths, m)
}

// topoSort orders the closure of roots in m so references come first.
func topoSort(roots []storepath.Path, m map[storepath.Path]*PathInfo) ([]*PathInfo, error) {
	const (
		unseen = iota
		active
		done
	)
	state := make(map[storepath.Path]uint8, len(m))
	out := make([]*PathInfo, 0, len(m))
	type frame struct {
		pi   *PathInfo
		next int
	}
	sorted := slices.Clone(roots)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	var stack []frame
	for _, r := range sorted {
		if state[r] != unseen {
			continue
		}
		pi, ok := m[r]
		if !ok {
			return nil, fmt.Errorf("localstore: %s: %w", r, ErrNotValid)
		}
		state[r] = active
		stack = append(stack[:0], frame{pi: pi})
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if f.next == len(f.pi.References) {
				state[f.pi.Path] = done
				out = append(out, f.pi)
				stack = stack[:len(stack)-1]
				continue
			}
			ref := f.pi.References[f.next]
			f.next++
			if ref == f.pi.Path {
				continue
			}
			switch state[ref] {
			case done:
				continue
			case active:
				return nil, fmt.Errorf("localstore: %s refers back to %s: %w", f.pi.Path, ref, ErrCycle)
			}
			rpi, ok := m[ref]
			if !ok {
				return nil, fmt.Errorf("localstore: reference %s of %s: %w", ref, f.pi.Path, ErrNotValid)
			}
			state[ref] = active
			stack = append(stack, frame{pi: rpi})
		}
	}
	return out, nil
}

// DerivationOutputs returns the output paths of the derivation drv, sorted
// (what `nix-store --query --outputs DRV` prints). It reads the database's
// DerivationOutputs table, or parses the .drv file when the store does not
// know them; outputs whose path is not fixed in the .drv (floating
// content-addressed) are left out. It fails with ErrNotValid when drv is
// not a valid path.
func (s *Store) DerivationOutputs(ctx context.Context, drv storepath.Path) ([]storepath.Path, error) {
	m, err := s.DerivationOutputMap(ctx, drv)
	if err != nil {
		return nil, err
	}
	out := make([]storepath.Path, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// DerivationOutputMap is DerivationOutputs keyed by output name ("out",
// "dev", ...).
func (s *Store) DerivationOutputMap(ctx context.Context, drv storepath.Path) (map[string]storepath.Path, error) {
	if err := s.check(drv); err != nil {
		return nil, err
	}
	if !drv.IsDerivation() {
		return nil, fmt.Errorf("localstore: %s: %w: not a .drv path", drv, ErrBadDerivation)
	}
	m, ok, err := s.src.drvOutputs(ctx, drv)
	if err != nil {
		return nil, err
	}
	if ok && len(m) > 0 {
		return m, nil
	}
	outs, err := drvfile.ReadOutputs(string(drv))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("localstore: %s: %w", drv, ErrNotValid)
	}
	if err != nil {
		return nil, err
	}
	for name, p := range outs {
		if p.Dir() != s.dir {
			return nil, fmt.Errorf("localstore: %s: %w: output %q path %s is outside store %s", drv, ErrBadDerivation, name, p, s.dir)
		}
	}
	return outs, nil
}

func sortRefs(refs []storepath.Path) []storepath.Path {
	slices.SortFunc(refs, func(a, b storepath.Path) int { return cmp.Compare(a, b) })
	return slices.Compact(refs)
}
