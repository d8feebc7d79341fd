package queuedir_test

import (
	"fmt"
	"log"
	"os"

	"github.com/nixcache/nixcache/cache/queue/queuedir"
	"github.com/nixcache/nixcache/storepath"
)

// A post-build hook enqueues the outputs Nix just built: one symlink per
// path, renamed into place, and one fsync per directory.
func Example() {
	dir, err := os.MkdirTemp("", "queuedir-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// GCRootsDir "-": the example paths are not in the store.
	q, err := queuedir.OpenOptions(dir, queuedir.Options{GCRootsDir: "-"})
	if err != nil {
		log.Fatal(err)
	}
	p := storepath.Path("/nix/store/0hhb51h788j6gmjd8j9c6jrk34fji2cq-y")
	if err := q.Enqueue(p, p); err != nil { // duplicates merge
		log.Fatal(err)
	}
	pending, err := q.Pending()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(pending), pending[0].Path, q.DaemonRunning())
	// Output:
	// 1 /nix/store/0hhb51h788j6gmjd8j9c6jrk34fji2cq-y false
}
