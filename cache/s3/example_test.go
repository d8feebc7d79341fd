package s3_test

import (
	"context"
	"log"
	"os"
	"strings"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/s3" // registers s3://
)

// Open a bucket on an S3-compatible server with credentials from the
// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or
// ~/.aws/credentials, and upload nix-cache-info.
func Example() {
	ctx := context.Background()
	u, err := cache.ParseURL("s3://nix-cache/team?endpoint=http://127.0.0.1:9000&region=us-east-1")
	if err != nil {
		log.Fatal(err)
	}
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		return // not configured; nothing to show
	}
	b, err := u.Location.Open(ctx)
	if err != nil {
		log.Fatal(err)
	}
	info := "StoreDir: /nix/store\n"
	if err := b.Put(ctx, "nix-cache-info", strings.NewReader(info), int64(len(info)), "text/x-nix-cache-info"); err != nil {
		log.Fatal(err)
	}
}
