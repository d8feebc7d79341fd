package file_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file" // registers file://
)

func Example() {
	dir, err := os.MkdirTemp("", "cache")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	u, err := cache.ParseURL("file://" + dir + "?compression=zstd")
	if err != nil {
		log.Fatal(err)
	}
	b, err := u.Location.Open(ctx)
	if err != nil {
		log.Fatal(err)
	}
	info := "StoreDir: /nix/store\n"
	if err := b.Put(ctx, "nix-cache-info", strings.NewReader(info), int64(len(info)), "text/x-nix-cache-info"); err != nil {
		log.Fatal(err)
	}
	rc, err := b.Get(ctx, "nix-cache-info")
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	data, _ := io.ReadAll(rc)
	fmt.Print(string(data))
	// Output: StoreDir: /nix/store
}
