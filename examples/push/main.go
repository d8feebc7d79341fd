// Command push uploads the closures of store paths to a Nix binary cache.
//
//	push [--to URL] [--secret-key FILE]... [--skip-signed-by KEY]... [--upstream URL] [--jobs N] [--pin NAME] [-q] PATH...
//
// URL is a Nix store URL (file:///dir or s3://bucket?endpoint=...); S3
// credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. PATH may
// be a store path or a symlink to one, such as ./result. A path whose store
// signatures include a valid one by a --skip-signed-by KEY (name:base64 or
// a file), or that the --upstream cache serves signed by such a key, is
// not uploaded. --pin NAME stores the closure as the garbage-collector
// root gcroots/NAME in the cache (see gc), replacing any of that name,
// before publishing anything. Flags default to NIXCACHE_TO, NIXCACHE_SECRET_KEY_FILE,
// NIXCACHE_SKIP_SIGNED_BY (space-separated) and NIXCACHE_UPSTREAM, from
// the environment or the config file, as for upload-daemon; -j is short for
// --jobs. On a terminal, progress is one redrawn line; otherwise one log
// line per path. The summary ends the output; the exit status is 1 if any
// path failed, 2 for a usage error. `upload-daemon push` is the same
// command.
package main

import (
	"context"

	_ "github.com/nixcache/nixcache/cache/file"
	_ "github.com/nixcache/nixcache/cache/localstore/sqlite" // read db.sqlite directly
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/internal/cli/upload"
)

func main() {
	cli.Main("push", func(ctx context.Context, args []string) error {
		cfg, err := cli.LoadConfig()
		if err != nil {
			return err
		}
		return upload.PushCommand(ctx, "push", args, cfg)
	})
}
