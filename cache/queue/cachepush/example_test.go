package cachepush_test

import (
	"context"
	"log"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/cache/localstore"
	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/cache/queue/cachepush"
)

// The upload daemon in a few lines: drain a queue into a cache until the
// queue is empty.
func Example() {
	ctx := context.Background()
	q, err := queue.Open("/var/lib/nixcache/queue")
	if err != nil {
		log.Fatal(err)
	}
	c, err := cache.Open(ctx, "file:///srv/cache?compression=zstd&secret-key=/etc/nix/cache.sec")
	if err != nil {
		log.Fatal(err)
	}
	store, err := localstore.Open(ctx, localstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	err = queue.Run(ctx, q, cachepush.New(c, store, cache.PushOptions{}), queue.DrainOptions{
		ExitWhenEmpty: true,
		Exists:        cachepush.StoreExists(ctx, store),
	})
	if err != nil {
		log.Fatal(err)
	}
}
