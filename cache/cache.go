// Package cache is a Nix binary cache: the objects Nix reads
// (nix-cache-info, <hash>.narinfo, nar/<filehash>.nar<.ext>) on a narrow
// storage Backend, and the pipeline that publishes store paths into it
// (Push), checks them as a substituting Nix would (Verify), mends them:
// uploads damaged paths again and adds signatures by new keys (Repair), and
// fetches a store path back out, verified, without Nix (Fetch,
// FetchClosure, FetchNAR).
//
// Open takes a store URL written as Nix users write them: this package
// reads the binary-cache parameters (compression, secret-key, priority,
// ...), and the backend registered for the scheme reads the location and
// its own parameters (import cache/file for file://, cache/s3 for s3://,
// cache/http for the read-only http:// and https://).
// Push reads store paths from a Source (cache/localstore is the local Nix
// store) and compresses NARs with cache/compress. The package links no
// store database and no S3 client.
//
// # Garbage collection beside live pushes
//
// Collect removes what no root needs, with no lock and no database beside
// the cache: pushers on many machines may run while it does. Roots are the
// paths named in the cache under GCRootsPrefix (Push writes one with
// PushOptions.Pin, naming the whole closure, before it publishes
// anything), paths named by the caller, narinfos modified within the grace
// period or GCOptions.KeepRecent, and the newest paths within
// GCOptions.MaxSize; what is kept is closed under References. Collect
// lists the cache once at time L, reads every narinfo, marks, then removes
// narinfos (referrers before references, so a crash leaves no dangling
// reference), then NAR files no remaining narinfo names (several narinfos
// may share one), then .ls listings, build logs ("log/<drv>", of
// derivations no remaining narinfo names as Deriver) and realisations
// (whose output path has no remaining narinfo), then stale temporaries: no
// narinfo is ever left without its NAR. Each removal is preceded by a Stat: the
// object is removed only if its ModTime is still the listed one (to the
// second) and older than L minus the grace period minus 6 s (a margin that
// makes any touch after L visible even at S3's one-second resolution, and
// that covers a push's short gap between writing a NAR file and publishing
// its narinfo); the Stat and the removal end within gcDeleteWindow (1 s) or
// the removal is not made. A narinfo kept at that point keeps its closure.
// Before it removes anything, Collect lists the cache once more and keeps
// every narinfo the first listing did not show, with its closure and NAR
// file: a server may leave out of a listing an object being copied onto
// itself at that moment (MinIO does, and a touch is such a copy), which
// would make a live narinfo's NAR file look unreferenced.
//
// The danger is a push that relies on an object R the collector listed and
// marked as garbage, and publishes a narinfo X the collector never saw: a
// reference whose narinfo the push found present, a NAR file already there,
// or a NAR file the push itself wrote before L. Push therefore touches R
// (Toucher: ModTime := now, never recreating a missing object) at time t,
// waits ReuseSettle (2 s), checks R is still there, and only then publishes
// X; a NAR file it wrote or touched more than freshWindow (3 s) before X's
// publication is touched again first. Take any collector C and let s be the
// time of its last Stat of R. If s < t, C's removal of R ended before
// s+1 s < t+2 s, so the push's check finds R missing and X is not published
// (the push fails with ErrCollected; pushing again uploads R). If s > t,
// either C listed R before the touch, and sees a ModTime other than the
// listed one and keeps R; or C listed R after the touch, so L > t: for a
// NAR file, X is published before t+6 s, so L < t+6 s and the NAR file is
// young to C; for a narinfo, R is kept by the push's pin (written before
// t) or, for an unpinned push, by the grace period as long as the push
// publishes X within the grace of t (an hour by default: pushes that may
// take longer, or collectors run with --grace 0, need a pin). New narinfos
// of the push are not in C's listing or are pinned; a touched narinfo that
// C keeps keeps its closure, so the references below R that the push did
// not touch stay too. Temporary files are removed only after an hour. A
// backend without Toucher gets no touches: collectors beside such pushes
// need a grace longer than any push. The argument assumes requests take
// effect before the client's deadline passes and complete in well under
// 3 s, and clocks (collector, pushers, server) within a second of each
// other, or a grace covering their skew.
//
// Pins written after the listing: while it removes narinfos, Collect
// looks at gcroots/ again every 250 ms and keeps the closures of new or
// changed pins; a pinned Push waits ReuseSettle after writing its pin
// before it checks what the cache holds, so every removal of a pinned path
// that could still happen has ended by then, and a path found present
// stays (proved on both backends by TestCollectRace, which failed on S3
// without it: a path found present was removed after the push).
//
// The collector's lease: waiting ReuseSettle is needed only when a
// collector may be running. A collector that removes objects first stores
// a lease under GCLeasePrefix, renews it every 10 s (a new object each
// time, the previous one deleted after), ends no removal later than 30 s
// after the start of its last successful renewal (it stops with an error
// instead), and deletes its lease one gcDeleteWindow (1 s) after the
// deadline of its last removal (the margin ReuseSettle leaves for a request
// the server carries out late). After its touches (and after writing its
// pin), Push lists GCLeasePrefix; when no lease is live (ModTime within 30 s plus 3 s of clock margin), it skips
// the wait and goes straight to its checks that the reused objects are
// still there. That is safe: a collector C that looked at R before the
// touch t either still held a live lease at the listing, which began after
// t, or had ended every removal by then, so the check after the listing
// finds R missing if C removed it; a collector that stores its lease after
// the listing began lists the cache after t, sees R's new ModTime and the
// pin, and keeps them, as above. A collector of an older version (without
// leases) must not run beside pushers of this one.
//
// On S3, Touch is a copy of the object onto itself, which renews
// Last-Modified on AWS; a server that keeps it (versitygw 1.8, our test
// server) makes Touch report ErrTouchUnsupported, and Push then goes on
// without touches: there, reused objects are protected by pins, the grace
// period and the 6 s margin only.
//
// Cost at scale: Collect makes one List (1,000 keys a page on S3; two when
// it removes), one GET per narinfo, and for each object removed one Stat and one delete (two
// requests on S3), independent of NAR sizes. Measured with BenchmarkGC
// (examples/gc) on 2 shared cores: 100,000 narinfos on file:// take 16.7 s
// and 108 MiB peak RSS to plan (100,002 requests), and 57 s and 126 MiB to
// remove 60,000 of 110,000 paths (120,000 objects, each directory synced);
// targets 60 s and 256 MiB. On the S3 server (versitygw, same 2 cores)
// 10,000 narinfos take 37 s and 22 MiB to plan (270 GETs a second at the
// default 16 in flight; 100,000 would take about 6 minutes there; writing
// 200,000 objects to it was too slow to measure more). Peak RSS grows by about 1.1 KiB per narinfo
// (parsed narinfos are garbage the Go runtime keeps until its next cycle;
// the index itself is about 200 bytes each). For 10 million paths on S3
// that is 10,000 LISTs and 10 million GETs (about 4 USD at 0.0004 USD per
// 1,000 GETs), plus two requests per object removed (DELETE is free, HEAD
// is a GET); about 11 GB of peak memory at the measured rate (a GOMEMLIMIT
// lowers it at some CPU cost); and, with --jobs 64, at 30 ms a GET
// (about 2,000 a second), about 85 minutes to plan.
package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"

	"github.com/nixcache/nixcache/cache/compress"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// ErrStoreDirMismatch is returned (wrapped) when the cache's nix-cache-info
// names another store directory than the paths being pushed. Nix refuses
// such a cache, so we refuse to write to it.
var ErrStoreDirMismatch = errors.New("cache: store directory mismatch")

// Options are the binary-cache settings of a Cache, as Nix's store URL
// parameters name them.
type Options struct {
	// Compression is compression, compression-level and
	// parallel-compression. An empty Method means compress.Default.
	Compression compress.Options
	// WriteNARListing is write-nar-listing: also store "<hashpart>.ls".
	WriteNARListing bool
	// IndexDebugInfo is index-debug-info: also store "debuginfo/<build-id>"
	// links for the ELF debug files of each NAR (see DebugInfoKeys).
	IndexDebugInfo bool
	// WantMassQuery and Priority go into a nix-cache-info this package writes.
	WantMassQuery bool
	// Priority is the cache's priority (lower is preferred); 0 omits the
	// line. Nix reads it as a C int: EnsureCacheInfo refuses a value
	// outside -2147483648..2147483647.
	Priority int
	// SecretKeys sign every narinfo written (secret-key / secret-keys).
	SecretKeys []signature.SecretKey
	// Logger receives warnings (default slog.Default()).
	Logger *slog.Logger
}

// Cache is a Nix binary cache on a Backend, with the settings to write to it.
// It is safe for concurrent use.
type Cache struct {
	// Backend stores the cache's objects.
	Backend Backend
	opts    Options
}

// New returns a Cache on b with the given options.
func New(b Backend, opts Options) *Cache {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Cache{Backend: b, opts: opts}
}

// Options returns the cache's settings.
func (c *Cache) Options() Options { return c.opts }

// CacheInfo reads and parses the cache's nix-cache-info. The error wraps
// ErrNotFound when the file is absent.
func (c *Cache) CacheInfo(ctx context.Context) (*narinfo.CacheInfo, error) {
	data, err := c.readCacheInfo(ctx)
	if err != nil {
		return nil, err
	}
	ci, err := narinfo.ParseCacheInfo(data)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return ci, nil
}

func (c *Cache) readCacheInfo(ctx context.Context) ([]byte, error) {
	rc, err := c.Backend.Get(ctx, narinfo.CacheInfoFile)
	if err != nil {
		return nil, fmt.Errorf("cache: read %s: %w", narinfo.CacheInfoFile, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("cache: read %s: %w", narinfo.CacheInfoFile, err)
	}
	return data, nil
}

// nixReadsPriority reports whether Nix can read a nix-cache-info Priority:
// it parses the value with std::stoi, which fails ("error: stoi") on
// anything that does not fit a C int, and then cannot open the cache at
// all.
func nixReadsPriority(p int) bool { return p >= math.MinInt32 && p <= math.MaxInt32 }

// EnsureCacheInfo writes nix-cache-info (StoreDir, WantMassQuery, Priority)
// when it is absent, as Nix does, and otherwise leaves it as it is, with
// one exception: a Priority line Nix cannot read (not an integer, or
// outside a C int), which makes Nix refuse the whole cache, is repaired by
// rewriting the file with the same StoreDir and WantMassQuery and the
// cache's own Priority, with a warning. If the file names another
// StoreDir, it returns an error wrapping ErrStoreDirMismatch.
func (c *Cache) EnsureCacheInfo(ctx context.Context, dir storepath.Dir) error {
	if !nixReadsPriority(c.opts.Priority) {
		return fmt.Errorf("cache: priority %d is outside the range Nix reads (-2147483648 to 2147483647)", c.opts.Priority)
	}
	data, err := c.readCacheInfo(ctx)
	if errors.Is(err, ErrNotFound) {
		return c.writeCacheInfo(ctx, &narinfo.CacheInfo{StoreDir: dir, WantMassQuery: c.opts.WantMassQuery, Priority: c.opts.Priority})
	}
	if err != nil {
		return err
	}
	ci, err := narinfo.ParseCacheInfo(data)
	var perr *narinfo.ParseError
	repair := err == nil && !nixReadsPriority(ci.Priority)
	if errors.As(err, &perr) && perr.Key == "Priority" {
		// Read the rest of the file without its Priority lines.
		var kept []string
		for l := range strings.Lines(string(data)) {
			if k, _, _ := strings.Cut(l, ":"); k != "Priority" {
				kept = append(kept, l)
			}
		}
		ci, err = narinfo.ParseCacheInfo([]byte(strings.Join(kept, "")))
		repair = true
	}
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if ci.StoreDir != dir {
		return fmt.Errorf("%w: %s says StoreDir %s, pushing paths of %s", ErrStoreDirMismatch, narinfo.CacheInfoFile, ci.StoreDir, dir)
	}
	if !repair {
		return nil
	}
	c.opts.Logger.Warn("nix-cache-info has a Priority Nix cannot read (it then refuses the cache); rewriting it", "priority", c.opts.Priority)
	ci.Priority = c.opts.Priority
	return c.writeCacheInfo(ctx, ci)
}

func (c *Cache) writeCacheInfo(ctx context.Context, ci *narinfo.CacheInfo) error {
	text, err := ci.MarshalText()
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if err := c.Backend.Put(ctx, narinfo.CacheInfoFile, bytes.NewReader(text), int64(len(text)), narinfo.CacheInfoMIMEType); err != nil {
		return fmt.Errorf("cache: write %s: %w", narinfo.CacheInfoFile, err)
	}
	return nil
}

// An OpenOption adjusts Open. Only WithLogger and WithSecretKeyFiles make
// one: the binary-cache settings come from the store URL.
type OpenOption struct{ apply func(*openConfig) }

type openConfig struct {
	logger   *slog.Logger
	keyFiles []string
}

// WithLogger makes the Cache log warnings (such as a secret key file readable
// by group or others) to l.
func WithLogger(l *slog.Logger) OpenOption {
	return OpenOption{func(c *openConfig) { c.logger = l }}
}

// WithSecretKeyFiles adds secret key files to those the URL's secret-key
// parameters name, without having to escape their paths into the URL.
func WithSecretKeyFiles(files ...string) OpenOption {
	return OpenOption{func(c *openConfig) { c.keyFiles = append(c.keyFiles, files...) }}
}

// OptionsFromURL turns the binary-cache parameters of a parsed store URL
// into Options, loading every secret-key file. An unreadable or malformed
// key file is an error naming the parameter; a key file that group or
// others may read is only a warning on logger, as Nix does not check either.
func OptionsFromURL(u *URL, logger *slog.Logger) (Options, error) {
	if logger == nil {
		logger = slog.Default()
	}
	o := Options{
		Compression: compress.Options{
			Method:   u.Compression,
			Level:    u.CompressionLevel,
			Parallel: u.ParallelCompression,
		},
		WriteNARListing: u.WriteNARListing,
		IndexDebugInfo:  u.IndexDebugInfo,
		WantMassQuery:   u.WantMassQuery,
		Priority:        u.Priority,
		Logger:          logger,
	}
	var err error
	o.SecretKeys, err = loadSecretKeys("secret-key parameter", u.SecretKeys, logger)
	return o, err
}

// loadSecretKeys loads key files, each named in errors by what and its
// position, never by its path: a value may be key material pasted where a
// file name belongs.
func loadSecretKeys(what string, files []string, logger *slog.Logger) ([]signature.SecretKey, error) {
	var keys []signature.SecretKey
	for i, file := range files {
		sk, err := signature.LoadSecretKeyFile(file)
		if err != nil {
			return nil, fmt.Errorf("cache: %s %d of %d: %w", what, i+1, len(files), err)
		}
		if err := signature.CheckKeyFileMode(file); err != nil {
			logger.Warn("secret key file is readable by group or others", "file", file, "err", err)
		}
		keys = append(keys, sk)
	}
	return keys, nil
}

// Open opens the binary cache at a Nix store URL such as
// "file:///srv/cache?compression=zstd&secret-key=/etc/nix/key.sec" or
// "s3://bucket?endpoint=http://127.0.0.1:9000": it parses the URL, loads the
// signing keys and opens the backend registered for the scheme (import
// cache/file or cache/s3 to register them).
func Open(ctx context.Context, rawURL string, opts ...OpenOption) (*Cache, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	var cfg openConfig
	for _, o := range opts {
		if o.apply != nil {
			o.apply(&cfg)
		}
	}
	o, err := OptionsFromURL(u, cfg.logger)
	if err != nil {
		return nil, err
	}
	more, err := loadSecretKeys("secret key file", cfg.keyFiles, o.Logger)
	if err != nil {
		return nil, err
	}
	o.SecretKeys = append(o.SecretKeys, more...)
	b, err := u.Location.Open(ctx)
	if err != nil {
		return nil, err
	}
	return New(b, o), nil
}
