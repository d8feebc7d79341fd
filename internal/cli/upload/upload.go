// Package upload holds the command steps that upload to a cache, shared by
// `push`, `upload-daemon` and `upload-daemon push`: load the secret keys a
// flag or variable names, open the cache, resolve PATH arguments to store
// paths, push, and report progress.
//
// Errors about a setting name the setting (--secret-key,
// NIXCACHE_SECRET_KEY_FILE), never its value: key material pasted where a
// file name belongs must not be echoed.
package upload

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/localstore"
	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/internal/config"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// LoadSecretKeys reads the secret key files; an error names the setting
// that gave the file, not the file name (which may be the key itself). A
// key file that group or others can read is a warning on log.
func LoadSecretKeys(files []cli.Setting, log *slog.Logger) ([]signature.SecretKey, error) {
	var keys []signature.SecretKey
	for _, f := range files {
		k, err := signature.LoadSecretKeyFile(f.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		if err := signature.CheckKeyFileMode(f.Value); err != nil {
			log.Warn("secret key file is readable by group or others", "setting", f.Name, "err", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Target is where a command uploads: the store URL and the secret key files.
type Target struct {
	To   cli.Setting
	Keys []cli.Setting
}

// Prepare parses the store URL and loads the keys, without contacting the
// cache: a daemon checks its settings at start and opens the backend on
// first use (see Open).
func Prepare(t Target, log *slog.Logger) (*cache.URL, cache.Options, error) {
	to, err := t.To.Get()
	if err != nil {
		return nil, cache.Options{}, err
	}
	u, err := cache.ParseURL(to)
	if err != nil {
		return nil, cache.Options{}, fmt.Errorf("%s: %w", t.To.Name, err)
	}
	opts, err := cache.OptionsFromURL(u, log)
	if err != nil {
		return nil, cache.Options{}, fmt.Errorf("%s: %w", t.To.Name, err)
	}
	keys, err := LoadSecretKeys(t.Keys, log)
	if err != nil {
		return nil, cache.Options{}, err
	}
	opts.SecretKeys = append(opts.SecretKeys, keys...)
	if len(opts.SecretKeys) == 0 {
		log.Warn("no secret key: narinfos carry only the store's own signatures, and Nix will not trust them (set --secret-key or " + config.EnvSecretKeyFile + ")")
	}
	return u, opts, nil
}

// Open opens the cache that Prepare described.
func Open(ctx context.Context, u *cache.URL, opts cache.Options) (*cache.Cache, error) {
	b, err := u.Location.Open(ctx)
	if err != nil {
		return nil, err
	}
	return cache.New(b, opts), nil
}

// Push uploads the closures of the paths named by args (store paths, or
// symlinks to them such as ./result) from the local store to t, with
// jobs paths at once, reporting progress to progress (may be nil).
func Push(ctx context.Context, t Target, args []string, jobs int, log *slog.Logger, progress func(cache.Event)) (*cache.Summary, error) {
	u, opts, err := Prepare(t, log)
	if err != nil {
		return nil, err
	}
	store, err := localstore.Open(ctx, localstore.Options{})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	paths, err := StorePaths(store.StoreDir(), args)
	if err != nil {
		return nil, err
	}
	c, err := Open(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	return c.Push(ctx, store, paths, cache.PushOptions{Jobs: jobs, Progress: progress})
}

// StorePaths resolves command-line arguments to store paths of dir.
func StorePaths(dir storepath.Dir, args []string) ([]storepath.Path, error) {
	if len(args) == 0 {
		return nil, cli.Usagef("no store paths given")
	}
	paths := make([]storepath.Path, 0, len(args))
	for _, a := range args {
		p, err := localstore.ResolveStorePath(dir, a)
		if err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// PushCommand is the whole `push` command, also run as `upload-daemon push`
// (which the post-build hook execs in synchronous mode): name is the
// command line's name, args its arguments. --to and --secret-key default to
// the configuration cfg.
func PushCommand(ctx context.Context, name string, args []string, cfg config.Config) error {
	fl := cli.NewFlagSet(name, name+" [--to URL] [--secret-key FILE]... [--jobs N] [-q] PATH...")
	to, keys, jobs := fl.To(cfg), fl.SecretKeys(cfg), fl.Jobs(4)
	quiet := fl.Bool("q", false, "print only the summary and errors")
	if err := fl.Parse(args); err != nil {
		return err
	}
	log := cli.NewLogger(os.Stderr, "", false)
	fi, err := os.Stderr.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	event, finish := Reporter(os.Stderr, tty, *quiet, log)
	sum, err := Push(ctx, Target{To: to(), Keys: keys()}, fl.Args(), *jobs, log, event)
	finish()
	if sum != nil {
		log.Info("done", "summary", sum.String())
	}
	if err != nil {
		return fmt.Errorf("upload failed: %w", err)
	}
	return nil
}

// LogEvents returns a progress function that logs one line per path
// uploaded, already present or failed.
func LogEvents(log *slog.Logger) func(cache.Event) {
	return func(e cache.Event) {
		switch e.Kind {
		case cache.EventUploaded:
			log.Info("uploaded", "path", string(e.Path), "nar_bytes", e.Bytes, "file_bytes", e.FileSize)
		case cache.EventSkipped:
			log.Info("already in cache", "path", string(e.Path))
		case cache.EventFailed:
			log.Error("failed", "path", string(e.Path), "err", e.Err)
		}
	}
}
