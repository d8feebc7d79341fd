package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// ErrNoUpstreamKey is returned by Push when PushOptions.Upstream is set
// without SkipSignedBy: an upstream narinfo is trusted only with a valid
// signature by one of those keys, as Nix trusts a substituter only through
// trusted-public-keys.
var ErrNoUpstreamKey = errors.New("cache: an upstream cache needs SkipSignedBy keys to trust its narinfos")

// SignedBy reports whether info.Sigs (the signatures the store database
// records for the path) include a valid signature by one of keys over the
// path's fingerprint (Nix's ValidPathInfo::fingerprint: path, NarHash,
// NarSize, references). A signature that carries a key's name but does
// not verify counts for nothing, as it does for Nix.
func SignedBy(info *PathInfo, keys []signature.PublicKey) bool {
	if len(keys) == 0 || len(info.Sigs) == 0 {
		return false
	}
	fp, err := narinfo.Fingerprint(info.Path, info.NarHash, info.NarSize, info.References)
	if err != nil {
		return false
	}
	return signature.Verify(fp, info.Sigs, keys) == nil
}

// ServesPath reports whether c, seen as an upstream substituter, serves
// exactly the path info describes: its narinfo is there, names the path,
// has the NarHash and NarSize info records, and carries a valid signature
// by one of trusted. A missing narinfo is (false, nil); any other failure
// to read it is an error.
func (c *Cache) ServesPath(ctx context.Context, info *PathInfo, trusted []signature.PublicKey) (bool, error) {
	ni, err := c.readNarInfo(ctx, info.Path)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if ni.StorePath != info.Path || ni.NarHash != info.NarHash || ni.NarSize != info.NarSize {
		return false, nil
	}
	return ni.Verify(trusted) == nil, nil
}

// readNarInfo reads and parses the narinfo of p. A missing one wraps
// ErrNotFound.
func (c *Cache) readNarInfo(ctx context.Context, p storepath.Path) (*narinfo.NarInfo, error) {
	return c.readNarInfoKey(ctx, NarInfoKey(p))
}

// readNarInfoKey reads and parses the narinfo at key.
func (c *Cache) readNarInfoKey(ctx context.Context, key string) (*narinfo.NarInfo, error) {
	rc, err := c.Backend.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("cache: read %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, narinfo.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("cache: read %s: %w", key, err)
	}
	ni, err := narinfo.Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadNarInfo, key, err)
	}
	return ni, nil
}

// skipper applies PushOptions.SkipSignedBy and PushOptions.Upstream.
type skipper struct {
	c        *Cache
	src      Source
	keys     []signature.PublicKey
	upstream *Cache
	// lookupErrs counts upstream lookups that failed (the path is then
	// uploaded: safe, only slower); the first error is kept for the log.
	lookupErrs atomic.Int64
	firstErr   atomic.Value
}

func newSkipper(c *Cache, src Source, opts PushOptions) (*skipper, error) {
	if opts.Upstream != nil && len(opts.SkipSignedBy) == 0 {
		return nil, ErrNoUpstreamKey
	}
	if len(opts.SkipSignedBy) == 0 {
		return nil, nil
	}
	return &skipper{c: c, src: src, keys: opts.SkipSignedBy, upstream: opts.Upstream}, nil
}

// local decides from the store database alone (no request): it loads the
// path info and reports whether the store holds a valid signature by one of
// the keys.
func (s *skipper) local(ctx context.Context, it *pushItem) (bool, error) {
	if it.info == nil {
		info, err := s.src.QueryPathInfo(ctx, it.path)
		if err != nil {
			return false, &PathError{it.path, fmt.Errorf("store path info: %w", err)}
		}
		it.info = info
	}
	return SignedBy(it.info, s.keys), nil
}

// remote asks the upstream cache, if any. A lookup that fails for another
// reason than a missing narinfo does not fail the push: the path is
// uploaded, and the failures are logged once at the end (see report).
func (s *skipper) remote(ctx context.Context, info *PathInfo) (bool, error) {
	if s.upstream == nil {
		return false, nil
	}
	ok, err := s.upstream.ServesPath(ctx, info, s.keys)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if s.lookupErrs.Add(1) == 1 {
			s.firstErr.Store(err)
		}
		return false, nil
	}
	return ok, nil
}

// report logs the failed upstream lookups, if any.
func (s *skipper) report() {
	if n := s.lookupErrs.Load(); n > 0 {
		s.c.opts.Logger.Warn("upstream lookups failed; those paths are uploaded instead", "failed", n, "first_error", s.firstErr.Load())
	}
}

// references handles NoClosure pushes: a reference outside the pushed
// paths that is not in our cache but is served upstream (signed in the
// store database, or found upstream) counts as present for the narinfos
// that refer to it. It adds such references to items, already done. One
// in our cache is left out: publishNarInfo checks it again and touches it,
// as it does any reused narinfo, so that a concurrent collector keeps it.
func (s *skipper) references(ctx context.Context, missing []*pushItem, items map[storepath.Path]*pushItem, jobs int) error {
	var refs []*pushItem
	seen := map[storepath.Path]bool{}
	for _, it := range missing {
		for _, r := range it.info.References {
			if _, in := items[r]; !in && !seen[r] {
				seen[r] = true
				refs = append(refs, &pushItem{path: r, done: make(chan struct{})})
			}
		}
	}
	if err := forEach(ctx, refs, jobs, func(it *pushItem) error {
		if ok, err := s.c.hasNarInfo(ctx, it.path); err != nil || ok {
			return err
		}
		if ok, err := s.local(ctx, it); err != nil || ok {
			// A reference the store cannot describe is left to
			// publishNarInfo, which reports it missing.
			it.present = ok
			return nil
		}
		var err error
		it.present, err = s.remote(ctx, it.info)
		return err
	}); err != nil {
		return err
	}
	for _, it := range refs {
		if it.present {
			close(it.done)
			items[it.path] = it
		}
	}
	return nil
}

// refChecker checks the references of the narinfos Verify reads, each
// reference once however many narinfos name it.
type refChecker struct {
	seen sync.Map // storepath.Path -> *refResult
}

type refResult struct {
	once sync.Once
	err  error
}

// check returns an error wrapping ErrReferenceMissing naming the first
// reference of ni that neither the cache nor opts.Upstream serves.
func (r *refChecker) check(ctx context.Context, c *Cache, ni *narinfo.NarInfo, opts VerifyOptions) error {
	for _, ref := range ni.References {
		if ref == ni.StorePath {
			continue
		}
		v, _ := r.seen.LoadOrStore(ref, &refResult{})
		res := v.(*refResult)
		res.once.Do(func() { res.err = c.referencePresent(ctx, ref, opts) })
		if res.err != nil {
			return res.err
		}
	}
	return nil
}

func (c *Cache) referencePresent(ctx context.Context, ref storepath.Path, opts VerifyOptions) error {
	ok, err := c.hasNarInfo(ctx, ref)
	if err != nil || ok {
		return err
	}
	if opts.Upstream == nil {
		return fmt.Errorf("%w: %s", ErrReferenceMissing, ref)
	}
	ni, err := opts.Upstream.readNarInfo(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %s (nor upstream)", ErrReferenceMissing, ref)
	}
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	if ni.StorePath != ref {
		return fmt.Errorf("%w: %s: upstream's narinfo names %s", ErrReferenceMissing, ref, ni.StorePath)
	}
	if err := ni.Verify(opts.UpstreamKeys); err != nil {
		return fmt.Errorf("%w: %s: upstream's narinfo: %w", ErrReferenceMissing, ref, err)
	}
	return nil
}
