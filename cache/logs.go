package cache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/nixcache/nixcache/storepath"
)

// LogMIMEType is the content type Nix gives build logs in a binary cache
// (BinaryCacheStore::addBuildLog).
const LogMIMEType = "text/plain; charset=utf-8"

// LogKey is the cache key of a derivation's build log, "log/<drv base
// name>", where `nix store copy-log` writes it and `nix log --store URL`
// reads it (uncompressed).
func LogKey(drv storepath.Path) string { return "log/" + drv.Base() }

// LogSource is implemented by a Source that keeps build logs
// (*localstore.Store reads Nix's log directory). Push uploads them when
// PushOptions.Logs is set and Source implements it.
type LogSource interface {
	// BuildLog opens the log of the derivation drv, uncompressed; the
	// error wraps fs.ErrNotExist when the store has none.
	BuildLog(ctx context.Context, drv storepath.Path) (io.ReadCloser, error)
}

// PushLog uploads the build log of drv from src to "log/<drv base name>",
// unless the cache has it already. It reports whether it uploaded; a
// missing local log is (false, error wrapping fs.ErrNotExist). The log is
// spooled to an unlinked temporary file in tempDir ("" for the default),
// so memory stays bounded whatever its size.
func (c *Cache) PushLog(ctx context.Context, src LogSource, drv storepath.Path, tempDir string) (bool, error) {
	if !drv.IsDerivation() {
		return false, fmt.Errorf("cache: build log of %s: not a .drv path", drv)
	}
	key := LogKey(drv)
	if _, err := c.Backend.Stat(ctx, key); err == nil {
		return false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("cache: stat %s: %w", key, err)
	}
	rc, err := src.BuildLog(ctx, drv)
	if err != nil {
		return false, fmt.Errorf("cache: build log of %s: %w", drv, err)
	}
	defer rc.Close()
	tmp, done, err := anonymousTemp(tempDir, "nixcache-*.log")
	if err != nil {
		return false, fmt.Errorf("cache: %w", err)
	}
	defer done()
	bw := bufio.NewWriterSize(tmp, 64<<10)
	n, err := io.Copy(ctxWriter{ctx, bw}, rc)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return false, fmt.Errorf("cache: build log of %s: %w", drv, err)
	}
	if err := c.Backend.Put(ctx, key, io.NewSectionReader(tmp, 0, n), n, LogMIMEType); err != nil {
		return false, fmt.Errorf("cache: upload %s: %w", key, err)
	}
	return true, nil
}

// pushLogs uploads the logs of the derivers of paths (deduplicated), as
// PushOptions.Logs asks. Paths without a known deriver or whose deriver
// has no local log are skipped: Nix keeps no log for substituted paths.
func (c *Cache) pushLogs(ctx context.Context, src Source, ls LogSource, paths []storepath.Path, infos map[storepath.Path]*PathInfo, opts PushOptions) (int, error) {
	seen := map[storepath.Path]bool{}
	n := 0
	var errs []error
	for _, p := range paths {
		info := infos[p]
		if info == nil {
			var err error
			if info, err = src.QueryPathInfo(ctx, p); err != nil {
				errs = append(errs, &PathError{p, fmt.Errorf("store path info: %w", err)})
				continue
			}
		}
		d := info.Deriver
		if p.IsDerivation() {
			d = p
		}
		if d == "" || seen[d] {
			continue
		}
		seen[d] = true
		up, err := c.PushLog(ctx, ls, d, opts.TempDir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, &PathError{p, err})
			continue
		}
		if up {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// pushExtras publishes what goes with the paths once their narinfos are in
// the cache: realisations (when src is a RealisationSource) for every path
// of the push that is in the cache, then, with opts.Logs, the logs of the
// requested paths' derivers. Upstream and failed paths get neither.
func (c *Cache) pushExtras(ctx context.Context, src Source, requested []storepath.Path, list []*pushItem, opts PushOptions, sum *Summary) error {
	inCache := make([]storepath.Path, 0, len(list))
	infos := make(map[storepath.Path]*PathInfo, len(list))
	ok := make(map[storepath.Path]bool, len(list))
	for _, it := range list {
		if it.err != nil || it.upstream {
			continue
		}
		ok[it.path] = true
		if it.info != nil {
			infos[it.path] = it.info
			// Only content-addressed outputs have realisations.
			if it.info.CA == "" {
				continue
			}
		}
		inCache = append(inCache, it.path)
	}
	var errs []error
	if rs, isRS := src.(RealisationSource); isRS {
		n, err := c.publishRealisations(ctx, rs, inCache)
		sum.Realisations += n
		errs = append(errs, err)
	}
	if ls, isLS := src.(LogSource); isLS && opts.Logs {
		var reqs []storepath.Path
		for _, p := range requested {
			if ok[p] {
				reqs = append(reqs, p)
			}
		}
		n, err := c.pushLogs(ctx, src, ls, reqs, infos, opts)
		sum.Logs += n
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
