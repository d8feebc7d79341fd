// Command push uploads the closures of store paths to a Nix binary cache.
//
//	push --to URL [--secret-key FILE]... [-j N] PATH...
//
// URL is a Nix store URL (file:///dir or s3://bucket?endpoint=...); S3
// credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. PATH may
// be a store path or a symlink to one, such as ./result.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/cache/localstore"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/storepath"
)

func main() {
	var keys []string
	to := flag.String("to", "", "binary cache store URL (file:///dir, s3://bucket?...)")
	flag.Func("secret-key", "secret key `FILE` to sign with (repeatable; adds to the URL's secret-key)", func(s string) error { keys = append(keys, s); return nil })
	jobs := flag.Int("j", 4, "paths compressed and uploaded at once")
	quiet := flag.Bool("q", false, "print only the summary and errors")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: push --to URL [--secret-key FILE]... [-j N] PATH...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *to == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *to, keys, *jobs, *quiet, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "push:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, to string, keys []string, jobs int, quiet bool, args []string) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := cache.Open(ctx, to, cache.WithLogger(logger), cache.WithSecretKeyFiles(keys...))
	if err != nil {
		return err
	}
	store, err := localstore.Open(ctx, localstore.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	var paths []storepath.Path
	for _, a := range args {
		p, err := cache.ResolveStorePath(store.StoreDir(), a)
		if err != nil {
			return err
		}
		paths = append(paths, p)
	}
	if len(c.Options().SecretKeys) == 0 {
		logger.Warn("no secret key given: narinfos carry only the store's own signatures")
	}
	p := newProgress(isTerminal(os.Stderr), quiet)
	sum, err := c.Push(ctx, store, paths, cache.PushOptions{Jobs: jobs, Progress: p.event})
	p.finish()
	fmt.Fprintln(os.Stderr, sum)
	return err
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress prints events: a redrawn status line on a terminal, plain lines otherwise.
type progress struct {
	tty, quiet bool
	mu         sync.Mutex
	total      int
	done       int
	bytes      map[storepath.Path]uint64
	narTotal   uint64
	last       time.Time
}

func newProgress(tty, quiet bool) *progress {
	return &progress{tty: tty, quiet: quiet, bytes: map[storepath.Path]uint64{}}
}

func (p *progress) event(e cache.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.Kind {
	case cache.EventQueued:
		p.total++
		p.narTotal += e.NarSize
	case cache.EventBytes:
		p.bytes[e.Path] = e.Bytes
	case cache.EventUploaded, cache.EventFailed:
		p.done++
		p.bytes[e.Path] = e.NarSize
	}
	if p.tty {
		if e.Kind == cache.EventFailed {
			fmt.Fprintf(os.Stderr, "\r\033[Kfailed %s: %v\n", e.Path, e.Err)
		}
		if !p.quiet && (time.Since(p.last) > 100*time.Millisecond || e.Kind == cache.EventUploaded) {
			p.last = time.Now()
			var n uint64
			for _, b := range p.bytes {
				n += b
			}
			pct := 100.0
			if p.narTotal > 0 {
				pct = 100 * float64(n) / float64(p.narTotal)
			}
			fmt.Fprintf(os.Stderr, "\r\033[K[%d/%d paths] %.1f/%.1f MiB (%.0f%%)", p.done, p.total,
				float64(n)/(1<<20), float64(p.narTotal)/(1<<20), pct)
		}
		return
	}
	switch e.Kind {
	case cache.EventFailed:
		fmt.Fprintf(os.Stderr, "failed %s: %v\n", e.Path, e.Err)
	case cache.EventUploaded:
		if !p.quiet {
			fmt.Fprintf(os.Stderr, "uploaded %s (%d bytes NAR, %d compressed)\n", e.Path, e.Bytes, e.FileSize)
		}
	case cache.EventStarted:
		if !p.quiet {
			fmt.Fprintf(os.Stderr, "pushing %s\n", e.Path)
		}
	}
}

func (p *progress) finish() {
	if p.tty && !p.quiet {
		fmt.Fprintln(os.Stderr)
	}
}
