package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/nixcache/nixcache/cache/compress"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// CacheInfoKey is the key of the file that describes a binary cache.
const CacheInfoKey = "nix-cache-info"

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
	// WantMassQuery and Priority go into a nix-cache-info this package writes.
	WantMassQuery bool
	// Priority is the cache's priority (lower is preferred); 0 omits the line.
	Priority int
	// SecretKeys sign every narinfo written (secret-key / secret-keys).
	SecretKeys []signature.SecretKey
	// Logger receives warnings (default slog.Default()).
	Logger *slog.Logger

	keyFiles []string // from WithSecretKeyFiles, loaded by Open
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
	rc, err := c.Backend.Get(ctx, CacheInfoKey)
	if err != nil {
		return nil, fmt.Errorf("cache: read %s: %w", CacheInfoKey, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("cache: read %s: %w", CacheInfoKey, err)
	}
	ci, err := narinfo.ParseCacheInfo(data)
	if err != nil {
		return nil, fmt.Errorf("cache: %s: %w", CacheInfoKey, err)
	}
	return ci, nil
}

// EnsureCacheInfo writes nix-cache-info (StoreDir, WantMassQuery, Priority)
// when it is absent, as Nix does, and never replaces it. If it exists with
// another StoreDir, it returns an error wrapping ErrStoreDirMismatch.
func (c *Cache) EnsureCacheInfo(ctx context.Context, dir storepath.Dir) error {
	ci, err := c.CacheInfo(ctx)
	if err == nil {
		if ci.StoreDir != dir {
			return fmt.Errorf("%w: %s says StoreDir %s, pushing paths of %s", ErrStoreDirMismatch, CacheInfoKey, ci.StoreDir, dir)
		}
		return nil
	}
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	ci = &narinfo.CacheInfo{StoreDir: dir, WantMassQuery: c.opts.WantMassQuery, Priority: c.opts.Priority}
	text, err := ci.MarshalText()
	if err != nil {
		return fmt.Errorf("cache: %s: %w", CacheInfoKey, err)
	}
	if err := c.Backend.Put(ctx, CacheInfoKey, bytes.NewReader(text), int64(len(text)), narinfo.CacheInfoMIMEType); err != nil {
		return fmt.Errorf("cache: write %s: %w", CacheInfoKey, err)
	}
	return nil
}

// OpenOption adjusts Open.
type OpenOption func(*Options)

// WithLogger makes the Cache log warnings (such as a secret key file readable
// by group or others) to l.
func WithLogger(l *slog.Logger) OpenOption { return func(o *Options) { o.Logger = l } }

// WithSecretKeyFiles adds secret key files to those the URL's secret-key
// parameters name, without having to escape their paths into the URL.
func WithSecretKeyFiles(files ...string) OpenOption {
	return func(o *Options) { o.keyFiles = append(o.keyFiles, files...) }
}

// OptionsFromURL turns the binary-cache parameters of a parsed store URL
// into Options, loading every secret-key file. An unreadable or malformed
// key file is an error naming the file; a key file that group or others may
// read is only a warning on logger, as Nix does not check either.
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
		WantMassQuery:   u.WantMassQuery,
		Priority:        u.Priority,
		Logger:          logger,
	}
	for _, file := range u.SecretKeys {
		sk, err := signature.LoadSecretKeyFile(file)
		if err != nil {
			return o, fmt.Errorf("cache: secret key file %s: %w", file, err)
		}
		if err := signature.CheckKeyFileMode(file); err != nil {
			logger.Warn("secret key file is readable by group or others", "file", file, "err", err)
		}
		o.SecretKeys = append(o.SecretKeys, sk)
	}
	return o, nil
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
	var o Options
	for _, f := range opts {
		f(&o)
	}
	u.SecretKeys = append(u.SecretKeys, o.keyFiles...)
	o2, err := OptionsFromURL(u, o.Logger)
	if err != nil {
		return nil, err
	}
	b, err := OpenBackend(ctx, u)
	if err != nil {
		return nil, err
	}
	return New(b, o2), nil
}
