// Command fetch restores a store path from a Nix binary cache without Nix,
// after checking it the way a substituting Nix does: the narinfo signed by
// a trusted key, the NAR's FileHash/FileSize, NarSize and NarHash.
//
//	fetch --from URL --trusted-key KEY... [--closure] [--jobs N] PATH DIR
//
// URL is any store URL nixcache reads: file:///dir, s3://bucket?...,
// http(s)://host/path. KEY is a public key (name:base64) or a file holding
// one. DIR must not exist: it becomes the store path's tree (as
// nix-store --restore makes it) or, with --closure, a directory holding each
// path of PATH's closure at DIR/<base name>. Everything is restored beside
// DIR and renamed into place only once verified: on any mismatch nothing
// is left behind. Exit status:
//
//	0  restored
//	1  the path (or one of its closure) is missing, unsigned or damaged in
//	   the cache: nothing restored
//	2  usage: a bad flag, store URL, trusted key or PATH, or DIR exists
//	3  the cache could not be read: it cannot be opened, has no
//	   nix-cache-info or another store directory, or the fetch was
//	   interrupted
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	_ "github.com/nixcache/nixcache/cache/http"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/internal/cli/upload"
	"github.com/nixcache/nixcache/storepath"
)

func main() { cli.Main("fetch", run) }

func run(ctx context.Context, args []string) error {
	fl := cli.NewFlagSet("fetch", "fetch --from URL --trusted-key KEY... [--closure] [--jobs N] PATH DIR")
	from, keys := fl.Source()
	closure := fl.Bool("closure", false, "restore every path of PATH's closure, each at DIR/<base name>")
	jobs := fl.Int("jobs", 4, "paths fetched at once with --closure")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *from == "" || len(*keys) == 0 || fl.NArg() != 2 {
		return cli.Usagef("want --from URL, at least one --trusted-key, PATH and DIR")
	}
	trusted, err := upload.LoadPublicKeys(*keys)
	if err != nil {
		return fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	p, err := storepath.Parse(fl.Arg(0))
	if err != nil {
		return fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	dir := fl.Arg(1)
	if _, err := os.Lstat(dir); err == nil {
		return cli.Usagef("%s already exists", dir)
	}
	c, err := cache.Open(ctx, *from)
	if errors.Is(err, cache.ErrBadURL) {
		return fmt.Errorf("%w: --from: %w", cli.ErrUsage, err)
	} else if err != nil {
		return cli.WithCode(cli.ExitCache, err)
	}
	// Like Nix, refuse a location that is no binary cache, or one for
	// another store directory.
	info, err := c.CacheInfo(ctx)
	if errors.Is(err, cache.ErrNotFound) {
		return cli.WithCode(cli.ExitCache, fmt.Errorf("%w: %w", cache.ErrNotACache, err))
	} else if err != nil {
		return cli.WithCode(cli.ExitCache, err)
	}
	if info.StoreDir != p.Dir() {
		return cli.WithCode(cli.ExitCache, fmt.Errorf("%w: the cache is for %s, not %s", cache.ErrStoreDirMismatch, info.StoreDir, p.Dir()))
	}
	opts := cache.FetchOptions{TrustedKeys: trusted, Jobs: *jobs}
	if *closure {
		infos, err := c.FetchClosure(ctx, p, dir, opts)
		if err != nil {
			return exitFor(ctx, err)
		}
		fmt.Fprintf(os.Stderr, "restored %d paths of the closure of %s under %s\n", len(infos), p, dir)
		return nil
	}
	ni, err := c.Fetch(ctx, p, dir, opts)
	if err != nil {
		return exitFor(ctx, err)
	}
	fmt.Fprintf(os.Stderr, "restored %s at %s (NAR %d bytes, %s)\n", p, dir, ni.NarSize, ni.NarHash)
	return nil
}

// exitFor gives a fetch error its exit status: a bad path (a *PathError)
// exits 1, an interruption or anything else 3.
func exitFor(ctx context.Context, err error) error {
	var pe *cache.PathError
	if ctx.Err() == nil && errors.As(err, &pe) {
		return cli.WithCode(cli.ExitBad, err)
	}
	return cli.WithCode(cli.ExitCache, err)
}
