package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// Errors Verify reports for a bad path (wrapped in a *PathError).
var (
	// ErrNarHashMismatch: the decompressed NAR's hash is not the narinfo's NarHash.
	ErrNarHashMismatch = errors.New("cache: NAR hash mismatch")
	// ErrNarSizeMismatch: the decompressed NAR's size is not the narinfo's NarSize.
	ErrNarSizeMismatch = errors.New("cache: NAR size mismatch")
	// ErrFileHashMismatch: the NAR file's hash or size is not the narinfo's FileHash/FileSize.
	ErrFileHashMismatch = errors.New("cache: NAR file hash or size mismatch")
	// ErrBadNarInfo: the narinfo cannot be parsed, or names another store path than its key.
	ErrBadNarInfo = errors.New("cache: bad narinfo")
)

// VerifyOptions tunes Verify.
type VerifyOptions struct {
	// TrustedKeys: a narinfo must carry a valid signature from one of them
	// (Nix's trusted-public-keys). With none, signatures are not checked.
	TrustedKeys []signature.PublicKey
	// Jobs is how many paths are checked at once (default 4).
	Jobs int
	// Result, if set, is called (from several goroutines) for every path
	// checked, with a nil error when the path is good. p is "" when the
	// narinfo could not be read or parsed (without paths to check, the
	// store path is known only from the narinfo); err then names its key.
	Result func(p storepath.Path, err error)
	// Upstream, if set, is where references missing from the cache may be
	// served (see PushOptions.Upstream): Verify checks that every reference
	// of a good narinfo has its narinfo in the cache or, signed by one of
	// UpstreamKeys (required with Upstream), in Upstream; otherwise the
	// path is bad, wrapping ErrReferenceMissing, as Nix could not
	// substitute its closure.
	Upstream     *Cache
	UpstreamKeys []signature.PublicKey
}

// VerifyNarInfo checks one narinfo of the cache the way a substituting Nix
// would: it must parse, be stored under its path's hash part, carry a
// signature from a trusted key, and its NAR file must exist, match
// FileHash/FileSize, and decompress to exactly NarSize bytes with NarHash.
func (c *Cache) VerifyNarInfo(ctx context.Context, key string, trusted []signature.PublicKey) (*narinfo.NarInfo, error) {
	ni, err := c.verifiedNarInfo(ctx, key, trusted)
	if err != nil {
		return ni, err
	}
	rc, err := c.openNAR(ctx, ni, 0)
	if err != nil {
		return ni, err
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	return ni, err
}

// ErrNotACache is returned (wrapped) by Verify when the backend holds no
// nix-cache-info: Nix does not read such a location as a binary cache.
var ErrNotACache = errors.New("cache: no nix-cache-info: not a binary cache")

// Verify checks the given paths (or, with none, every narinfo the backend
// lists) with VerifyNarInfo, and that the narinfos of their references are
// in the cache (or served upstream, see VerifyOptions.Upstream). With no
// paths it also checks the realisations and build logs the cache lists
// (signatures by TrustedKeys, outputs present; see verifyExtras), reporting
// bad ones through Result and the error. It returns the number of paths checked and an
// error joining one *PathError per bad path. A failure to read the cache
// itself (no nix-cache-info, wrapping ErrNotACache; a listing that fails; a
// canceled ctx) is returned alone, never as a *PathError, so that a caller
// can tell "the cache could not be read" from "bad paths found".
func (c *Cache) Verify(ctx context.Context, paths []storepath.Path, opts VerifyOptions) (int, error) {
	if opts.Upstream != nil && len(opts.UpstreamKeys) == 0 {
		return 0, ErrNoUpstreamKey
	}
	var (
		mu   sync.Mutex
		errs []error
		refs refChecker
	)
	report := func(p storepath.Path, err error) {
		if opts.Result != nil {
			opts.Result(p, err)
		}
		if err != nil {
			mu.Lock()
			errs = append(errs, &PathError{Path: p, Err: err})
			mu.Unlock()
		}
	}
	var dir storepath.Dir
	n, err := c.verifyEach(ctx, paths, opts, func(_ string, p storepath.Path, ni *narinfo.NarInfo, err error) {
		if err == nil && ni != nil {
			err = refs.check(ctx, c, ni, opts)
			mu.Lock()
			dir = ni.StorePath.Dir()
			mu.Unlock()
		}
		report(p, err)
	})
	if err != nil {
		return n, err
	}
	if len(paths) == 0 {
		if dir == "" {
			dir = storepath.DefaultDir
		}
		if _, err := c.verifyExtras(ctx, dir, opts, report); err != nil {
			return n, err
		}
	}
	return n, errors.Join(errs...)
}

// verifyEach runs VerifyNarInfo on the narinfo of each path (or, with none,
// of every narinfo listed) on opts.Jobs goroutines and calls fn with the
// narinfo's key, its store path ("" when unknown), the narinfo when it
// parsed, and the result. It returns how many narinfos were checked and an
// error only when the cache itself could not be read (see Verify).
func (c *Cache) verifyEach(ctx context.Context, paths []storepath.Path, opts VerifyOptions, fn func(key string, p storepath.Path, ni *narinfo.NarInfo, err error)) (int, error) {
	if _, err := c.CacheInfo(ctx); errors.Is(err, ErrNotFound) {
		return 0, ErrNotACache
	} else if err != nil {
		return 0, err
	}
	type job struct {
		key  string
		path storepath.Path
	}
	var jobs []job
	if len(paths) > 0 {
		for _, p := range paths {
			jobs = append(jobs, job{NarInfoKey(p), p})
		}
	} else {
		err := c.Backend.List(ctx, "", func(oi ObjectInfo) error {
			if strings.HasSuffix(oi.Key, ".narinfo") && !strings.Contains(oi.Key, "/") {
				jobs = append(jobs, job{key: oi.Key})
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("cache: list narinfos: %w", err)
		}
	}
	jobsN := opts.Jobs
	if jobsN <= 0 {
		jobsN = 4
	}
	err := forEach(ctx, jobs, jobsN, func(j job) error {
		ni, err := c.VerifyNarInfo(ctx, j.key, opts.TrustedKeys)
		p := j.path
		if p == "" && ni != nil {
			p = ni.StorePath
		}
		fn(j.key, p, ni, err)
		return nil
	})
	if err != nil {
		return len(jobs), err
	}
	return len(jobs), ctx.Err()
}

// ErrInconsistent is returned (wrapped) by CheckConsistency when the cache
// breaks the binary cache invariant Nix relies on.
var ErrInconsistent = errors.New("cache: inconsistent")

// CheckConsistency checks the invariant a push must keep at every instant:
// for every narinfo in the backend, its NAR file exists with FileSize bytes
// and the narinfo of every reference exists. It reads narinfos and stats
// NARs only; it returns an error joining every violation.
func (c *Cache) CheckConsistency(ctx context.Context) error {
	var keys []string
	objects := map[string]int64{}
	err := c.Backend.List(ctx, "", func(oi ObjectInfo) error {
		objects[oi.Key] = oi.Size
		if strings.HasSuffix(oi.Key, ".narinfo") && !strings.Contains(oi.Key, "/") {
			keys = append(keys, oi.Key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache: list: %w", err)
	}
	var errs []error
	for _, key := range keys {
		rc, err := c.Backend.Get(ctx, key)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %w", ErrInconsistent, key, err))
			continue
		}
		ni, err := narinfo.Parse(rc)
		rc.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %w", ErrInconsistent, key, err))
			continue
		}
		url, _, _ := strings.Cut(ni.URL, "?")
		size, ok := objects[url]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%w: %s: NAR %s missing", ErrInconsistent, key, url))
		case ni.FileSize != 0 && uint64(size) != ni.FileSize:
			errs = append(errs, fmt.Errorf("%w: %s: NAR %s has %d bytes, FileSize %d", ErrInconsistent, key, url, size, ni.FileSize))
		}
		for _, ref := range ni.References {
			if _, ok := objects[NarInfoKey(ref)]; !ok {
				errs = append(errs, fmt.Errorf("%w: %s: reference %s has no narinfo", ErrInconsistent, key, ref))
			}
		}
	}
	return errors.Join(errs...)
}
