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
// rule for failing hooks). The upload is done by `upload-daemon push`, which
// the hook execs: $NIXCACHE_UPLOADER, else upload-daemon (or
// nixcache-upload-daemon) in the hook's own directory, else on PATH. This
// keeps the hook binary free of the S3 client and compressors; it also
// links neither the store database (the .drv is read by package drv) nor
// network or crypto code (it uses package queuedir, not queue), so that
// queue mode costs a few milliseconds per build, most of it Go's process
// start and one fsync (TestImportGraphIsSmall keeps it so).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nixcache/nixcache/cache/queue/queuedir"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/drv"
)

// EnvUploader names the upload-daemon binary sync mode execs.
const EnvUploader = "NIXCACHE_UPLOADER"

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
	cfg, cfgErr := queuedir.LoadConfig(os.Getenv)
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
		log.Error("cannot upload: neither " + queuedir.EnvQueue + " nor " + queuedir.EnvTo + " is set (environment or " + queuedir.DefaultConfigFile + ")")
		return 1
	}
	paths, err := hookPaths(context.Background())
	if err != nil {
		log.Error("cannot upload", "err", err)
		return 1
	}
	uploader, err := findUploader()
	if err != nil {
		log.Error("cannot upload", "err", err)
		return 1
	}
	// Hand over to `upload-daemon push`; it logs each path and exits 1 on failure.
	argv := []string{uploader, "push", "--to", cfg.To}
	if cfg.SecretKeyFile != "" {
		argv = append(argv, "--secret-key", cfg.SecretKeyFile)
	}
	argv = append(argv, "--")
	for _, p := range paths {
		argv = append(argv, string(p))
	}
	err = syscall.Exec(uploader, argv, os.Environ())
	log.Error("cannot upload: exec failed", "uploader", uploader, "err", err)
	return 1
}

// findUploader locates upload-daemon: $NIXCACHE_UPLOADER, else next to this
// executable, else on PATH.
func findUploader() (string, error) {
	if u := os.Getenv(EnvUploader); u != "" {
		return u, nil
	}
	names := []string{"upload-daemon", "nixcache-upload-daemon"}
	if self, err := os.Executable(); err == nil {
		for _, n := range names {
			p := filepath.Join(filepath.Dir(self), n)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("sync mode needs upload-daemon: set %s, or install it next to the hook or on PATH", EnvUploader)
}

// runQueue enqueues the outputs and always returns 0. A watchdog timer
// bounds it: should the file system hang (a dead NFS server), the hook logs
// and exits 0 after enqueueTimeout so the build goes on.
func runQueue(log *slog.Logger, cfg queuedir.Config, start time.Time) int {
	watchdog := time.AfterFunc(enqueueTimeout, func() {
		log.Error("queueing took too long; giving up so the build can go on", "queue", cfg.Queue, "after", enqueueTimeout)
		os.Exit(0)
	})
	defer watchdog.Stop()
	paths, err := hookPaths(context.Background())
	if err != nil {
		log.Error("nothing queued", "err", err)
		return 0
	}
	q, err := queuedir.Open(cfg.Queue)
	if err != nil {
		log.Error("nothing queued: cannot open queue", "queue", cfg.Queue, "err", err)
		return 0
	}
	err = q.Enqueue(paths...)
	if err != nil && !errors.Is(err, queuedir.ErrGCRoot) {
		log.Error("nothing queued", "queue", cfg.Queue, "paths", len(paths), "err", err)
		return 0
	}
	if err != nil {
		log.Warn("queued, but without GC roots", "err", err)
	}
	log.Info("queued for upload", "paths", len(paths), "took", time.Since(start).Round(10*time.Microsecond))
	if !q.DaemonRunning() {
		log.Warn("no upload-daemon is running on the queue; paths wait until it starts", "queue", q.Dir())
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
	drvPath := os.Getenv("DRV_PATH")
	if drvPath == "" {
		return nil, errors.New("OUT_PATHS and DRV_PATH are both empty (run me as Nix's post-build-hook)")
	}
	if _, err := storepath.Parse(drvPath); err != nil {
		return nil, fmt.Errorf("DRV_PATH: %w", err)
	}
	m, err := drv.ReadOutputs(drvPath)
	if err != nil {
		return nil, fmt.Errorf("DRV_PATH %s: %w", drvPath, err)
	}
	for _, p := range m {
		out = append(out, p)
	}
	if len(out) == 0 {
		// Floating content-addressed outputs are not in the .drv: ask Nix.
		b, err := exec.CommandContext(ctx, "nix-store", "--query", "--outputs", drvPath).Output()
		if err != nil {
			return nil, fmt.Errorf("nix-store --query --outputs %s: %w", drvPath, err)
		}
		for _, f := range strings.Fields(string(b)) {
			p, err := storepath.Parse(f)
			if err != nil {
				return nil, fmt.Errorf("nix-store --query --outputs %s: %w", drvPath, err)
			}
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
