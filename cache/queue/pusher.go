package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/localstore"
	"github.com/nixcache/nixcache/storepath"
)

// CachePusher returns a Pusher that uploads the closures of the queued paths
// from src (usually a *localstore.Store) to c with cache.Cache.Push, which
// publishes a narinfo only after its NAR and its references' narinfos: a
// Push that returns nil has put every queued path, and its closure, in the
// cache. Errors that name no path (no *cache.PathError inside) are marked
// ErrWholeBatch.
func CachePusher(c *cache.Cache, src cache.Source, opts cache.PushOptions) Pusher {
	return PushFunc(func(ctx context.Context, paths []storepath.Path) (PushResult, error) {
		sum, err := c.Push(ctx, src, paths, opts)
		var r PushResult
		if sum != nil {
			r = PushResult{Uploaded: sum.Uploaded, Bytes: int64(sum.NarBytes)}
		}
		var pe *cache.PathError
		if err != nil && !errors.As(err, &pe) {
			// Not about particular paths (closure query, cache-wide failure).
			err = fmt.Errorf("%w: %w", ErrWholeBatch, err)
		}
		return r, err
	})
}

// LazyCachePusher is CachePusher for a cache opened on first use by open,
// for example a closure around cache.OpenBackend: a daemon can then start,
// and keep its queue, while the cache is unreachable. A failed open fails
// that Push (the paths back off and retry) and is tried again next time.
func LazyCachePusher(open func(ctx context.Context) (*cache.Cache, error), src cache.Source, opts cache.PushOptions) Pusher {
	var (
		mu sync.Mutex
		p  Pusher
	)
	return PushFunc(func(ctx context.Context, paths []storepath.Path) (PushResult, error) {
		mu.Lock()
		if p == nil {
			c, err := open(ctx)
			if err != nil {
				mu.Unlock()
				return PushResult{}, fmt.Errorf("%w: %w", ErrWholeBatch, err)
			}
			p = CachePusher(c, src, opts)
		}
		mu.Unlock()
		return p.Push(ctx, paths)
	})
}

// StoreExists returns a DrainOptions.Exists function asking the store
// database whether a path is still valid (not garbage-collected). When the
// store cannot answer it says the path exists, so the path is retried
// rather than dropped.
func StoreExists(ctx context.Context, s *localstore.Store) func(storepath.Path) bool {
	return func(p storepath.Path) bool {
		ok, err := s.IsValid(ctx, p)
		if err != nil {
			return !errors.Is(err, localstore.ErrNotValid)
		}
		return ok
	}
}
