// Command verify checks a Nix binary cache the way a substituting Nix would:
// signatures by a trusted key, NAR present, FileHash/FileSize, NarHash/NarSize.
//
//	verify --from URL --trusted-key KEY... [--jobs N] [PATH...]
//	verify ... [--repair --secret-key FILE...] [--sign-with FILE...] [PATH...]
//	verify ... [--upstream URL --upstream-key KEY...] [PATH...]
//
// KEY is a public key (name:base64) or a file holding one. Without PATH
// every narinfo in the cache is checked; an http:// or https:// cache
// cannot be listed, so PATH is required there. A path's references must have
// their narinfos in the cache too or, with --upstream, be served there
// signed by an --upstream-key (a cache pushed with --skip-signed-by). Without PATH,
// realisations (signed by a trusted key, outputs present) and build logs
// (named after a .drv) are checked too. Each bad path is printed on stdout
// ("PATH: what is wrong"); a summary goes to stderr.
//
// --repair uploads each bad path again from the local Nix store (when the
// store has it and its contents match the store database) and publishes a
// fresh narinfo signed with --secret-key, printing "PATH: repaired" or
// "PATH: not repaired: why". --sign-with adds a signature by that key to
// every narinfo (and, without PATH, every realisation) that verifies with
// the trusted keys (key rotation), keeping the others. Both are idempotent
// and never delete anything. Exit status:
//
//	0  every path checked is good (after repair)
//	1  bad paths found (and not repaired)
//	2  usage: a bad flag, store URL, trusted or secret key, or PATH, or no
//	   PATH for a cache that cannot be listed (http://, https://)
//	3  the cache (or, for --repair, the local store) could not be read: it
//	   cannot be opened, has no nix-cache-info, cannot be listed, or the
//	   check was interrupted
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	_ "github.com/nixcache/nixcache/cache/http"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/internal/cli/upload"
	"github.com/nixcache/nixcache/storepath"
)

func main() { cli.Main("verify", run) }

func run(ctx context.Context, args []string) error {
	fl := cli.NewFlagSet("verify", "verify --from URL --trusted-key KEY... [--jobs N] [--repair --secret-key FILE...] [--sign-with FILE...] [PATH...]")
	from, keys := fl.Source()
	jobs, upstream := fl.Jobs(4), upload.VerifyUpstreamFlags(fl)
	mend := upload.Mend{Out: os.Stdout, Log: cli.NewLogger(os.Stderr, "", false)}
	mend.Flags(fl)
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *from == "" || len(*keys) == 0 {
		return cli.Usagef("--from and at least one --trusted-key are required")
	}
	trusted, err := upload.LoadPublicKeys(*keys)
	if err != nil {
		return fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	var paths []storepath.Path
	for _, a := range fl.Args() {
		p, err := storepath.Parse(a)
		if err != nil {
			return fmt.Errorf("%w: %w", cli.ErrUsage, err)
		}
		paths = append(paths, p)
	}
	c, err := cache.Open(ctx, *from)
	if errors.Is(err, cache.ErrBadURL) {
		return fmt.Errorf("%w: --from: %w", cli.ErrUsage, err)
	} else if err != nil {
		return cli.WithCode(cli.ExitCache, err)
	}
	up, upKeys, err := upstream(ctx)
	if errors.Is(err, cli.ErrUsage) {
		return err
	} else if err != nil {
		return cli.WithCode(cli.ExitCache, err)
	}
	if mend.Active() {
		mend.Verify = cache.VerifyOptions{TrustedKeys: trusted, Upstream: up, UpstreamKeys: upKeys, Jobs: *jobs}
		sum, err := mend.Run(ctx, c, paths)
		if errors.Is(err, cli.ErrUsage) {
			return err
		} else if sum == nil { // the local store could not be opened
			return cli.WithCode(cli.ExitCache, err)
		}
		return verdict(ctx, err, sum.String(), fmt.Sprintf("%d of %d paths still bad, %d not signed", sum.Bad-sum.Repaired, sum.Checked, sum.NotSigned))
	}
	var bad atomic.Int64
	n, err := c.Verify(ctx, paths, cache.VerifyOptions{
		TrustedKeys: trusted, Upstream: up, UpstreamKeys: upKeys,
		Jobs: *jobs,
		Result: func(p storepath.Path, err error) {
			if err != nil {
				bad.Add(1)
				fmt.Println((&cache.PathError{Path: p, Err: err}).Error())
			}
		},
	})
	return verdict(ctx, err, fmt.Sprintf("checked %d paths, %d bad", n, bad.Load()), fmt.Sprintf("%d of %d paths bad", bad.Load(), n))
}

// verdict prints the summary and sorts err: the cache could not be read
// (exit 3, no summary) or bad paths were found (exit 1, with badMsg).
func verdict(ctx context.Context, err error, summary, badMsg string) error {
	var pe *cache.PathError
	if errors.Is(err, cache.ErrNotSupported) { // no PATH, and the cache cannot list (HTTP)
		return fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	if err != nil && (ctx.Err() != nil || !errors.As(err, &pe)) {
		return cli.WithCode(cli.ExitCache, err)
	}
	fmt.Fprintln(os.Stderr, summary)
	if err != nil {
		return cli.WithCode(cli.ExitBad, errors.New(badMsg))
	}
	return nil
}
