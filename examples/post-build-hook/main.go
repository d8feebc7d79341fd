// Command post-build-hook is a Nix post-build hook that uploads what Nix just
// built to a binary cache, either synchronously or through a durable queue
// drained by upload-daemon.
//
// Nix runs it with no arguments after every derivation it builds (never for
// substituted paths), with DRV_PATH and OUT_PATHS in the environment, plus
// Nix's own environment (the nix-daemon's when a daemon runs). Install it
// with a nix.conf line:
//
//	post-build-hook = /usr/local/bin/nixcache-post-build-hook
//
// Configuration, from the environment or from a config file of KEY=VALUE
// lines (systemd EnvironmentFile= format; $NIXCACHE_CONFIG, else
// /etc/nixcache/hook.conf when it exists; the environment wins):
//
//	NIXCACHE_QUEUE=/var/lib/nixcache/queue      queue mode (recommended)
//	NIXCACHE_TO=s3://bucket?endpoint=...        store URL (sync mode; the daemon's target)
//	NIXCACHE_SECRET_KEY_FILE=/etc/nix/key.sec   signing key (sync mode)
//	AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...  exported if not set
//
// Output paths: OUT_PATHS (space-separated). Nix 2.8 passes it empty
// (NixOS/nix#6446), so when it is empty the outputs are read from the
// derivation DRV_PATH.
//
// Queue mode (NIXCACHE_QUEUE set): the outputs are written durably to the
// queue (fsync'ed, GC-rooted) and the hook exits 0 within milliseconds, also
// when the daemon is down, the disk is full or the configuration is odd: it
// logs why to stderr (Nix shows it in the build log) but never fails or
// stalls the build. upload-daemon uploads the closures later.
//
// Sync mode (no NIXCACHE_QUEUE): the closure of the outputs is signed and
// uploaded before the hook returns, one log line per path; on failure the
// hook exits 1 with the reason, which makes Nix stop further builds (Nix's
// rule for failing hooks).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/cache/localstore"
	"github.com/nixcache/nixcache/cache/queue"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/storepath"
)

// enqueueTimeout bounds queue mode: past it the hook gives up and exits 0.
const enqueueTimeout = 5 * time.Second

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})).With("prog", "nixcache-hook")
	os.Exit(run(log))
}

func run(log *slog.Logger) int {
	start := time.Now()
	cfg, cfgErr := queue.LoadConfig(os.Getenv)
	if cfg.Queue != "" {
		if cfgErr != nil {
			log.Error("configuration problem; still queueing", "err", cfgErr)
		}
		return runQueue(log, cfg, start)
	}
	if cfgErr != nil {
		log.Error("cannot upload: bad configuration", "err", cfgErr)
		return 1
	}
	if cfg.To == "" {
		log.Error("cannot upload: neither " + queue.EnvQueue + " nor " + queue.EnvTo + " is set (environment or " + queue.DefaultConfigFile + ")")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	paths, err := hookPaths(ctx)
	if err != nil {
		log.Error("cannot upload", "err", err)
		return 1
	}
	if err := runSync(ctx, log, cfg, paths); err != nil {
		log.Error("upload failed", "to", cfg.To, "err", err)
		return 1
	}
	return 0
}

// runQueue enqueues the outputs and always returns 0.
func runQueue(log *slog.Logger, cfg queue.Config, start time.Time) int {
	done := make(chan struct{})
	go func() {
		defer close(done)
		paths, err := hookPaths(context.Background())
		if err != nil {
			log.Error("nothing queued", "err", err)
			return
		}
		q, err := queue.Open(cfg.Queue)
		if err != nil {
			log.Error("nothing queued: cannot open queue", "queue", cfg.Queue, "err", err)
			return
		}
		err = q.Enqueue(paths...)
		if err != nil && !errors.Is(err, queue.ErrGCRoot) {
			log.Error("nothing queued", "queue", cfg.Queue, "paths", len(paths), "err", err)
			return
		}
		if err != nil {
			log.Warn("queued, but without GC roots", "err", err)
		}
		log.Info("queued for upload", "paths", len(paths), "took", time.Since(start).Round(10*time.Microsecond))
		if !q.DaemonRunning() {
			log.Warn("no upload-daemon is running on the queue; paths wait until it starts", "queue", q.Dir())
		}
	}()
	select {
	case <-done:
	case <-time.After(enqueueTimeout):
		log.Error("queueing took too long; giving up so the build can go on", "queue", cfg.Queue, "after", enqueueTimeout)
	}
	return 0
}

// hookPaths returns the built outputs: OUT_PATHS, or when it is empty (Nix
// 2.8) the outputs of the derivation DRV_PATH.
func hookPaths(ctx context.Context) ([]storepath.Path, error) {
	var out []storepath.Path
	for _, f := range strings.Fields(os.Getenv("OUT_PATHS")) {
		p, err := storepath.Parse(f)
		if err != nil {
			return nil, fmt.Errorf("OUT_PATHS: %w", err)
		}
		out = append(out, p)
	}
	if len(out) > 0 {
		return out, nil
	}
	drv := os.Getenv("DRV_PATH")
	if drv == "" {
		return nil, errors.New("OUT_PATHS and DRV_PATH are both empty (run me as Nix's post-build-hook)")
	}
	if _, err := storepath.Parse(drv); err != nil {
		return nil, fmt.Errorf("DRV_PATH: %w", err)
	}
	m, err := localstore.ReadDerivationOutputs(drv)
	if err != nil {
		return nil, fmt.Errorf("DRV_PATH %s: %w", drv, err)
	}
	for _, p := range m {
		out = append(out, p)
	}
	if len(out) == 0 {
		// Floating content-addressed outputs are not in the .drv: ask Nix.
		b, err := exec.CommandContext(ctx, "nix-store", "--query", "--outputs", drv).Output()
		if err != nil {
			return nil, fmt.Errorf("nix-store --query --outputs %s: %w", drv, err)
		}
		for _, f := range strings.Fields(string(b)) {
			p, err := storepath.Parse(f)
			if err != nil {
				return nil, fmt.Errorf("nix-store --query --outputs %s: %w", drv, err)
			}
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// runSync uploads the closure of paths and logs one line per path.
func runSync(ctx context.Context, log *slog.Logger, cfg queue.Config, paths []storepath.Path) error {
	c, err := cache.Open(ctx, cfg.StoreURL(), cache.WithLogger(log))
	if err != nil {
		return err
	}
	if len(c.Options().SecretKeys) == 0 {
		log.Warn("no secret key configured: narinfos are unsigned and Nix will not trust them (set " + queue.EnvSecretKeyFile + ")")
	}
	store, err := localstore.Open(ctx, localstore.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	sum, err := c.Push(ctx, store, paths, cache.PushOptions{Progress: func(e cache.Event) {
		switch e.Kind {
		case cache.EventUploaded:
			log.Info("uploaded", "path", string(e.Path), "nar_bytes", e.Bytes, "file_bytes", e.FileSize)
		case cache.EventSkipped:
			log.Info("already in cache", "path", string(e.Path))
		case cache.EventFailed:
			log.Error("failed", "path", string(e.Path), "err", e.Err)
		}
	}})
	if sum != nil {
		log.Info("done", "summary", sum.String())
	}
	return err
}
