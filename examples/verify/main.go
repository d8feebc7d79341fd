// Command verify checks a Nix binary cache the way a substituting Nix would:
// signatures by a trusted key, NAR present, FileHash/FileSize, NarHash/NarSize.
//
//	verify --from URL --trusted-key KEY... [PATH...]
//
// Without PATH every narinfo in the cache is checked. It prints one line per
// bad path and exits 1 if there is any.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

func main() {
	var keys []string
	from := flag.String("from", "", "binary cache store URL (file:///dir, s3://bucket?...)")
	flag.Func("trusted-key", "trusted public `KEY` (name:base64, or a file holding one; repeatable)", func(s string) error { keys = append(keys, s); return nil })
	jobs := flag.Int("j", 4, "paths checked at once")
	flag.Parse()
	if *from == "" || len(keys) == 0 {
		fmt.Fprintln(os.Stderr, "usage: verify --from URL --trusted-key KEY... [PATH...]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, *from, keys, *jobs, flag.Args()))
}

func run(ctx context.Context, from string, keys []string, jobs int, args []string) int {
	var trusted []signature.PublicKey
	for _, k := range keys {
		pk, err := signature.ParsePublicKey(k)
		if err != nil {
			var ferr error
			if pk, ferr = signature.LoadPublicKeyFile(k); ferr != nil {
				fmt.Fprintf(os.Stderr, "verify: trusted key %q: %v\n", k, err)
				return 2
			}
		}
		trusted = append(trusted, pk)
	}
	c, err := cache.Open(ctx, from)
	if err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		return 2
	}
	var paths []storepath.Path
	for _, a := range args {
		p, err := storepath.Parse(a)
		if err != nil {
			fmt.Fprintf(os.Stderr, "verify: %s: %v\n", a, err)
			return 2
		}
		paths = append(paths, p)
	}
	bad := 0
	n, err := c.Verify(ctx, paths, cache.VerifyOptions{
		TrustedKeys: trusted,
		Jobs:        jobs,
		Result: func(p storepath.Path, err error) {
			if err != nil {
				fmt.Printf("%s: %v\n", p, err)
			}
		},
	})
	if err != nil {
		bad = 1
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "verify:", err)
		}
	}
	fmt.Fprintf(os.Stderr, "checked %d paths\n", n)
	return bad
}
