package cache_test

import (
	"context"
	"fmt"
	"log"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file" // registers file://
	"github.com/nixcache/nixcache/cache/localstore"
	_ "github.com/nixcache/nixcache/cache/localstore/sqlite"
	"github.com/nixcache/nixcache/storepath"
)

// Push the closure of a store path to a local binary cache, signed, then
// check it as a substituting Nix would.
func Example() {
	ctx := context.Background()
	c, err := cache.Open(ctx, "file:///tmp/nixcache-demo?compression=zstd&secret-key=/etc/nix/cache.sec")
	if err != nil {
		log.Fatal(err)
	}
	store, err := localstore.Open(ctx, localstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	p, err := localstore.ResolveStorePath(store.StoreDir(), "./result")
	if err != nil {
		log.Fatal(err)
	}
	sum, err := c.Push(ctx, store, []storepath.Path{p}, cache.PushOptions{Jobs: 4})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sum)
	if _, err := c.Verify(ctx, []storepath.Path{p}, cache.VerifyOptions{}); err != nil {
		log.Fatal(err)
	}
}
