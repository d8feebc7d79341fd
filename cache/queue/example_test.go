package queue_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/storepath"
)

// A post-build hook enqueues; the daemon drains through a Pusher (in real
// use, an adapter around cache.Cache.Push).
func Example() {
	dir, _ := os.MkdirTemp("", "queue-example")
	defer os.RemoveAll(dir)
	// GCRootsDir "-": the example paths are not in the store.
	q, err := queue.OpenOptions(dir, queue.Options{GCRootsDir: "-"})
	if err != nil {
		log.Fatal(err)
	}
	p := storepath.Path("/nix/store/0hhb51h788j6gmjd8j9c6jrk34fji2cq-y")
	if err := q.Enqueue(p, p); err != nil { // duplicates merge
		log.Fatal(err)
	}
	pending, _ := q.Pending()
	fmt.Println("queued:", len(pending))

	push := queue.PushFunc(func(ctx context.Context, paths []storepath.Path) (queue.PushResult, error) {
		fmt.Println("push", paths)
		return queue.PushResult{Uploaded: len(paths)}, nil
	})
	err = queue.Run(context.Background(), q, push, queue.DrainOptions{ExitWhenEmpty: true})
	n, _ := q.Len()
	fmt.Println("left:", n, err)
	// Output:
	// queued: 1
	// push [/nix/store/0hhb51h788j6gmjd8j9c6jrk34fji2cq-y]
	// left: 0 <nil>
}
