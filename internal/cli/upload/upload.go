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
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/http" // an --upstream may be http(s)://
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

// Target is where a command uploads: the store URL and the secret key
// files, and what upstream serves (not uploaded).
type Target struct {
	To   cli.Setting
	Keys []cli.Setting
	// SkipSignedBy are upstream public keys (--skip-signed-by,
	// NIXCACHE_SKIP_SIGNED_BY) and Upstream an upstream cache URL
	// (--upstream, NIXCACHE_UPSTREAM); see cache.PushOptions.
	SkipSignedBy []cli.Setting
	Upstream     cli.Setting
	// Logs also uploads the build logs of the pushed paths' derivers
	// (--logs; see cache.PushOptions.Logs).
	Logs bool
}

// LoadPublicKeys reads public keys, each "name:base64" or a file holding
// one. Errors name the setting (and its position), never the value: it may
// be a secret key given by mistake.
func LoadPublicKeys(keys []cli.Setting) ([]signature.PublicKey, error) {
	var out []signature.PublicKey
	for i, k := range keys {
		label := fmt.Sprintf("%s (key %d of %d)", k.Name, i+1, len(keys))
		if pk, err := signature.ParsePublicKey(k.Value); err == nil {
			out = append(out, pk)
			continue
		}
		if _, err := signature.ParseSecretKey(k.Value); err == nil {
			return nil, fmt.Errorf("%s is a secret key: give its public key", label)
		}
		pk, err := signature.LoadPublicKeyFile(k.Value)
		if err != nil {
			return nil, fmt.Errorf("%s is neither a public key (name:base64) nor a readable key file: %w", label, err)
		}
		out = append(out, pk)
	}
	return out, nil
}

// UpstreamOptions loads t's upstream keys and opens its upstream cache (nil when
// --upstream is not set), for cache.PushOptions.SkipSignedBy and Upstream.
// An upstream URL without keys is a usage error: its narinfos are trusted
// only through them.
func (t Target) UpstreamOptions(ctx context.Context) ([]signature.PublicKey, *cache.Cache, error) {
	keys, err := LoadPublicKeys(t.SkipSignedBy)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	if t.Upstream.Value == "" {
		return keys, nil, nil
	}
	if len(keys) == 0 {
		return nil, nil, cli.Usagef("%s needs an upstream key (--skip-signed-by, %s; verify: --upstream-key): the upstream cache's narinfos are trusted only through its keys", t.Upstream.Name, config.EnvSkipSignedBy)
	}
	up, err := cache.Open(ctx, t.Upstream.Value)
	if errors.Is(err, cache.ErrBadURL) {
		return nil, nil, fmt.Errorf("%w: %s: %w", cli.ErrUsage, t.Upstream.Name, err)
	} else if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", t.Upstream.Name, err)
	}
	return keys, up, nil
}

// VerifyUpstreamFlags registers verify's --upstream URL and --upstream-key
// KEY (repeatable). After Parse, the returned function opens the upstream
// cache (nil without --upstream) and loads its keys, for
// cache.VerifyOptions.Upstream and UpstreamKeys; each flag needs the other.
func VerifyUpstreamFlags(fl *cli.FlagSet) func(ctx context.Context) (*cache.Cache, []signature.PublicKey, error) {
	url := fl.String("upstream", "", "upstream cache `URL`: a reference missing here is fine when it serves it, signed by an --upstream-key")
	var keys []cli.Setting
	fl.Func("upstream-key", "upstream public `KEY` (name:base64, or a file holding one; repeatable) for --upstream", func(s string) error {
		keys = append(keys, cli.Setting{Value: s, Name: "--upstream-key"})
		return nil
	})
	return func(ctx context.Context) (*cache.Cache, []signature.PublicKey, error) {
		if *url == "" && len(keys) > 0 {
			return nil, nil, cli.Usagef("--upstream-key needs --upstream")
		}
		pks, up, err := Target{SkipSignedBy: keys, Upstream: cli.Setting{Value: *url, Name: "--upstream"}}.UpstreamOptions(ctx)
		return up, pks, err
	}
}

// TargetFlags registers the flags of a Target: --to, --secret-key,
// --skip-signed-by, --upstream and --logs, with their defaults from cfg
// (--logs: NIXCACHE_UPLOAD_LOGS, on unless set to 0/false/no/off).
func TargetFlags(fl *cli.FlagSet, cfg config.Config) func() Target {
	to, keys, skip, upstream := fl.To(cfg), fl.SecretKeys(cfg), fl.SkipSignedBy(cfg), fl.Upstream(cfg)
	logs := fl.Bool("logs", cfg.LogsEnabled(), "also upload the build log of each given path's derivation to log/<drv> (default $"+config.EnvUploadLogs+")")
	return func() Target {
		return Target{To: to(), Keys: keys(), SkipSignedBy: skip(), Upstream: upstream(), Logs: *logs}
	}
}

// Prepared is a Target made ready to push: the parsed store URL, the
// cache's options with the keys loaded, and the push options that say
// what upstream serves.
type Prepared struct {
	URL     *cache.URL
	Options cache.Options
	Push    cache.PushOptions
}

// Prepare parses the store URL, loads the keys and opens the upstream
// cache's backend, without contacting our cache: a daemon checks its
// settings at start and opens the backend on first use (see Open).
func Prepare(ctx context.Context, t Target, log *slog.Logger) (*Prepared, error) {
	to, err := t.To.Get()
	if err != nil {
		return nil, err
	}
	u, err := cache.ParseURL(to)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.To.Name, err)
	}
	opts, err := cache.OptionsFromURL(u, log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.To.Name, err)
	}
	keys, err := LoadSecretKeys(t.Keys, log)
	if err != nil {
		return nil, err
	}
	opts.SecretKeys = append(opts.SecretKeys, keys...)
	if len(opts.SecretKeys) == 0 {
		log.Warn("no secret key: narinfos carry only the store's own signatures, and Nix will not trust them (set --secret-key or " + config.EnvSecretKeyFile + ")")
	}
	skipKeys, upstream, err := t.UpstreamOptions(ctx)
	if err != nil {
		return nil, err
	}
	return &Prepared{URL: u, Options: opts, Push: cache.PushOptions{SkipSignedBy: skipKeys, Upstream: upstream, Logs: t.Logs}}, nil
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
// jobs paths at once, reporting progress to progress (may be nil). Paths
// that t's upstream serves are not uploaded. A pin other than "" stores the
// closure as the garbage-collector root gcroots/<pin> (cache.PushOptions.Pin).
func Push(ctx context.Context, t Target, args []string, jobs int, pin string, log *slog.Logger, progress func(cache.Event)) (*cache.Summary, error) {
	// The store database opens while Prepare reads the keys (Go derives
	// the first ed25519 key only after building its base-point tables,
	// about 1.5 ms on one core): a small push is a few tens of ms in all.
	type opened struct {
		store *localstore.Store
		err   error
	}
	storeCh := make(chan opened, 1)
	go func() {
		s, err := localstore.Open(ctx, localstore.Options{})
		storeCh <- opened{s, err}
	}()
	p, err := Prepare(ctx, t, log)
	o := <-storeCh
	if o.err == nil {
		defer o.store.Close()
	}
	if err != nil {
		return nil, err
	}
	if o.err != nil {
		return nil, o.err
	}
	store := o.store
	paths, err := StorePaths(store.StoreDir(), args)
	if err != nil {
		return nil, err
	}
	c, err := Open(ctx, p.URL, p.Options)
	if err != nil {
		return nil, err
	}
	opts := p.PushOptions(jobs)
	opts.Progress, opts.Pin = progress, pin
	return c.Push(ctx, store, paths, opts)
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
	fl := cli.NewFlagSet(name, name+" [--to URL] [--secret-key FILE]... [--skip-signed-by KEY]... [--upstream URL] [--logs] [--jobs N] [--pin NAME] [-q] PATH...")
	if name == "push" {
		cfg.UploadLogs = "false" // push uploads logs with --logs; upload-daemon push (the sync-mode hook) as the daemon
	}
	target, jobs := TargetFlags(fl, cfg), fl.Jobs(4)
	quiet := fl.Bool("q", false, "print only the summary and errors")
	pin := fl.String("pin", "", "keep the closure from the garbage collector (gc) as the root gcroots/`NAME`, replacing any of that name")
	if err := fl.Parse(args); err != nil {
		return err
	}
	log := cli.NewLogger(os.Stderr, "", false)
	fi, err := os.Stderr.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	event, finish := Reporter(os.Stderr, tty, *quiet, log)
	sum, err := Push(ctx, target(), fl.Args(), *jobs, *pin, log, event)
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
		case cache.EventSkippedUpstream:
			log.Info("served upstream", "path", string(e.Path))
		case cache.EventFailed:
			log.Error("failed", "path", string(e.Path), "err", e.Err)
		}
	}
}

// PushOptions returns the push options with jobs paths at once.
func (p *Prepared) PushOptions(jobs int) cache.PushOptions {
	o := p.Push
	o.Jobs = jobs
	return o
}
