// Command gc removes from a Nix binary cache what no root needs, safely
// beside pushes running at the same time (see package cache; with --delete
// it holds a lease, gcleases/ in the cache, until its last removal).
//
//	gc --cache URL [--keep PATH]... [--keep-file FILE]... [--keep-days N]
//	   [--max-size SIZE] [--grace DURATION] [--delete [--trash PREFIX]]
//	   [--jobs N] [--json] [-v]
//	gc --cache URL --restore PREFIX
//
// Roots: PATH (a store path, or a symlink to one such as ./result), the
// paths listed in FILE (one a line), the pins under gcroots/ in the cache
// (push --pin NAME), every path uploaded or reused in the last N days
// (default 30), and with --max-size the newest paths whose closures fit in
// SIZE (bytes, or with K, M, G or T: powers of 1024); all kept with their
// closures. Nothing younger than --grace (default 1h) is removed. Without
// --delete it only prints the plan; --trash PREFIX moves what it removes
// under PREFIX (ending in /), and --restore PREFIX moves it back. The
// summary (or with --json one JSON object) goes to stdout; -v prints each
// object removed. Exit status: 0 done, 1 failed, 2 usage.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/internal/regularfile"
	"github.com/nixcache/nixcache/storepath"
)

func main() { cli.Main("gc", run) }

func run(ctx context.Context, args []string) error {
	fl := cli.NewFlagSet("gc", "gc --cache URL [--keep PATH]... [--keep-file FILE]... [--keep-days N] [--max-size SIZE] [--grace D] [--delete [--trash PREFIX]] [--json] [-v]\n       gc --cache URL --restore PREFIX")
	url := fl.String("cache", "", "binary cache store `URL` (file:///dir, s3://bucket?...)")
	var keep []storepath.Path
	fl.Func("keep", "keep store `PATH` and its closure (repeatable)", func(s string) error { return addKeep(&keep, s) })
	fl.Func("keep-file", "keep the store paths listed in `FILE` (repeatable)", func(s string) error {
		b, err := regularfile.Read(s, 64<<20)
		if err != nil {
			return err
		}
		for l := range strings.Lines(string(b)) {
			if l = strings.TrimSpace(l); l != "" && l[0] != '#' {
				if err := addKeep(&keep, l); err != nil {
					return err
				}
			}
		}
		return nil
	})
	days := fl.Int("keep-days", 30, "keep what was uploaded or reused in the last `N` days")
	maxSize := fl.String("max-size", "", "also keep the newest paths while everything kept fits in `SIZE`")
	grace := fl.Duration("grace", cache.DefaultGrace, "never remove anything younger than this")
	del := fl.Bool("delete", false, "remove the garbage (default: only print the plan)")
	trash := fl.String("trash", "", "move removed objects under `PREFIX` instead of deleting them")
	restore := fl.String("restore", "", "move back what a --trash `PREFIX` holds")
	jobs := fl.Jobs(16)
	asJSON := fl.Bool("json", false, "print the report as JSON")
	verbose := fl.Bool("v", false, "print every object removed (or to remove)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	size, err := parseSize(*maxSize)
	switch {
	case err != nil:
		return cli.Usagef("--max-size: %v", err)
	case *url == "" || fl.NArg() > 0:
		return cli.Usagef("--cache URL is required, and no other arguments")
	case *days < 0:
		return cli.Usagef("--keep-days must not be negative")
	}
	c, err := cache.Open(ctx, *url)
	if err != nil {
		return err
	}
	if *restore != "" {
		n, err := c.Restore(ctx, *restore)
		fmt.Printf("restored %d objects from %s\n", n, *restore)
		return err
	}
	fi, _ := os.Stderr.Stat()
	tty := fi != nil && fi.Mode()&os.ModeCharDevice != 0
	opts := cache.GCOptions{
		Keep: keep, KeepRecent: time.Duration(*days) * 24 * time.Hour, MaxSize: size, Grace: *grace,
		Delete: *del, Trash: *trash, Jobs: *jobs,
	}
	if tty {
		opts.Progress = func(p cache.GCProgress) { fmt.Fprintf(os.Stderr, "\r\033[K%s %d/%d", p.Phase, p.Done, p.Total) }
	}
	if *verbose {
		opts.Removed = func(key, reason string) { fmt.Printf("%s\t%s\n", key, reason) } // one write a line
	}
	rep, err := c.Collect(ctx, opts)
	if tty {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
	if rep != nil {
		if *asJSON {
			b, _ := json.Marshal(rep)
			fmt.Println(string(b))
		} else {
			fmt.Println(rep.String())
		}
	}
	return err
}

// addKeep adds a store path, or the store path a symlink (./result) names.
func addKeep(keep *[]storepath.Path, s string) error {
	p, err := storepath.Parse(s)
	if err != nil {
		target, lerr := filepath.EvalSymlinks(s)
		if lerr != nil {
			return err
		}
		if p, err = storepath.Parse(target); err != nil {
			return err
		}
	}
	*keep = append(*keep, p)
	return nil
}

// parseSize reads "123", "10K", "1.5G" (powers of 1024); "" is 0 (no limit).
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := 1.0
	if i := strings.IndexAny(s, "KMGTkmgt"); i >= 0 && i == len(s)-1 {
		mult = float64(int64(1) << (10 * (1 + strings.IndexByte("KMGT", s[i]&^0x20))))
		s = s[:i]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || f*mult > 1<<62 {
		return 0, fmt.Errorf("%q is not a positive size (bytes, or a number with K, M, G or T)", s)
	}
	return int64(f * mult), nil
}
