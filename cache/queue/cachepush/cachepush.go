// Package cachepush connects the durable queue (package queue) to the upload
// pipeline (package cache): it adapts cache.Cache.Push to queue.Pusher.
//
// It is a separate package so that the post-build hook, which only
// enqueues, does not link the cache backends (S3 client, compressors) and
// starts in a few milliseconds.
package cachepush

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/localstore"
	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/storepath"
)

// New returns a queue.Pusher that uploads the closures of the queued paths
// from src (usually a *localstore.Store) to c with cache.Cache.Push, which
// publishes a narinfo only after its NAR and its references' narinfos, as
// Nix requires: a Push that returns nil has put every queued path, and its
// closure, in the cache. Errors that name no path (no *cache.PathError
// inside: the closure query or the whole cache failed) are marked
// queue.ErrWholeBatch so the batch backs off as one.
func New(c *cache.Cache, src cache.Source, opts cache.PushOptions) queue.Pusher {
	return queue.PushFunc(func(ctx context.Context, paths []storepath.Path) (queue.PushResult, error) {
		sum, err := c.Push(ctx, src, paths, opts)
		var r queue.PushResult
		if sum != nil {
			r = queue.PushResult{Uploaded: sum.Uploaded, SkippedUpstream: sum.SkippedUpstream, Bytes: int64(sum.NarBytes),
				CheckRequests: sum.Presence.Requests()}
		}
		var pe *cache.PathError
		if err != nil && !errors.As(err, &pe) {
			err = fmt.Errorf("%w: %w", queue.ErrWholeBatch, err)
		}
		return r, err
	})
}

// Lazy is New for a cache opened on first use by open, for example a
// closure around u.Location.Open: a daemon can then start, and keep its
// queue, while the cache is unreachable. A failed open fails that Push with
// queue.ErrWholeBatch (the batch backs off) and is tried again next time.
func Lazy(open func(ctx context.Context) (*cache.Cache, error), src cache.Source, opts cache.PushOptions) queue.Pusher {
	var (
		mu sync.Mutex
		p  queue.Pusher
	)
	return queue.PushFunc(func(ctx context.Context, paths []storepath.Path) (queue.PushResult, error) {
		mu.Lock()
		if p == nil {
			c, err := open(ctx)
			if err != nil {
				mu.Unlock()
				return queue.PushResult{}, fmt.Errorf("%w: %w", queue.ErrWholeBatch, err)
			}
			p = New(c, src, opts)
		}
		mu.Unlock()
		return p.Push(ctx, paths)
	})
}

// StoreExists returns a queue.DrainOptions.Exists function that asks the
// store database whether a queued path is still valid (not garbage
// collected). When the store cannot answer it reports the path as present,
// so the path is retried rather than dropped.
func StoreExists(ctx context.Context, s *localstore.Store) func(storepath.Path) bool {
	return func(p storepath.Path) bool {
		ok, err := s.IsValid(ctx, p)
		if err != nil {
			return !errors.Is(err, localstore.ErrNotValid)
		}
		return ok
	}
}
