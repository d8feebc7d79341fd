package cachetest_test

import (
	"context"
	"fmt"
	"os"

	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/cache/file"
)

// A backend's test runs the suite with a constructor for empty backends:
//
//	func TestConformance(t *testing.T) {
//		cachetest.TestBackend(t, func(t *testing.T) cache.Backend {
//			b, err := file.New(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return b
//		})
//	}
//
// Data and Plain make the deterministic objects and method-less readers the
// suite uses.
func Example() {
	dir, _ := os.MkdirTemp("", "cachetest")
	defer os.RemoveAll(dir)
	b, _ := file.New(dir)
	data := cachetest.Data(1, 1000)
	// Plain hides io.ReaderAt, so the backend takes its streaming path.
	if err := b.Put(context.Background(), "nar/x.nar", cachetest.Plain(data), int64(len(data)), "application/x-nix-nar"); err != nil {
		panic(err)
	}
	st, _ := b.Stat(context.Background(), "nar/x.nar")
	fmt.Println(st.Key, st.Size)
	// Output: nar/x.nar 1000
}
