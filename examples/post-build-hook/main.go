//go:debug updatemaxprocs=0
//go:debug decoratemappings=0

// Command post-build-hook is a Nix post-build hook that uploads what Nix just
// built to a binary cache, either through a durable queue drained by
// upload-daemon (queue mode) or synchronously.
//
// Nix runs it with no arguments after every derivation it builds, with
// DRV_PATH and OUT_PATHS in the environment plus Nix's own environment (the
// nix-daemon's when a daemon runs). Install it with a nix.conf line:
//
//	post-build-hook = /usr/local/bin/nixcache-post-build-hook
//
// Configuration: NIXCACHE_QUEUE, NIXCACHE_TO, NIXCACHE_SECRET_KEY_FILE,
// from the environment or from the config file ($NIXCACHE_CONFIG, else
// /etc/nixcache/hook.conf; see package internal/config). OUT_PATHS is empty
// in Nix 2.8 (NixOS/nix#6446); the outputs are then read from the .drv.
//
// Queue mode (a queue named by any source): the outputs are written to the
// queue (GC-rooted; fsync'ed unless the queue's daemon keeps a recovery
// checkpoint, see queue.EnqueueBuilt) and the hook exits 0 within
// milliseconds, whatever else is wrong (bad config lines, daemon down, disk
// full): it logs why to stderr, which Nix shows in the build log. A
// watchdog started before anything that can block (the config file, the
// .drv, the queue's file system) makes it give up after 5 s, exiting 0.
//
// Sync mode (no queue): the hook execs `upload-daemon push` (found as
// $NIXCACHE_UPLOADER, else next to the hook, else on PATH), which uploads
// the closure and exits 1 on failure, making Nix stop further builds (Nix's
// rule for failing hooks). So the hook links no cache, network or crypto
// code, only packages queue, config, cli and the .drv parser, and queue
// mode costs a few milliseconds (TestImportGraphIsSmall keeps it so). The
// //go:debug lines switch off runtime work a process this short never
// needs: the periodic GOMAXPROCS update, and naming each memory mapping
// (one prctl(2) per mapping on kernels with named anonymous mappings).
// What a call costs beyond a Go process that only writes and fsyncs an
// entry is measured by examples/bench/hooktrace ("floor").
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/internal/config"
)

// EnvUploader names the upload-daemon binary sync mode execs.
const EnvUploader = "NIXCACHE_UPLOADER"

// timeout bounds queue mode: past it the hook gives up and exits 0.
const timeout = 5 * time.Second

// Nix sends the hook no signals worth handling: no cli.Main.
func main() {
	mark("main")
	err := run(context.Background(), os.Args[1:])
	logs.flush()
	flushMarks()
	cli.Exit("post-build-hook", err)
}

// run arms the watchdog, then runs the hook on this goroutine; in sync mode
// the watchdog stops once the mode is known (the upload may take its
// time). Outside sync mode nothing fails the build: not a panic, not a
// closed build log.
//
// The watchdog is a runtime timer, not a goroutine: nothing runs for it
// unless it fires, and it fires even while this goroutine is blocked in a
// system call (a hung file system, a FIFO), because the runtime hands the
// processor to another thread then.
func run(ctx context.Context, _ []string) (err error) {
	start := time.Now()
	signal.Ignore(syscall.SIGPIPE) // a closed build log must not kill the hook
	log := hookLog{&logs}
	watchdog := time.AfterFunc(timeout, func() {
		log.Error("nothing queued: gave up so the build can go on (configuration or queue unresponsive)", "after", timeout)
		logs.flush()
		os.Exit(0)
	})
	syncMode := false
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("internal error: %v", v)
			if !syncMode {
				log.Error("nothing queued", "err", err)
				err = nil
			}
		}
	}()
	return hook(ctx, log, start, func() {
		syncMode = true
		watchdog.Stop()
	})
}

func hook(ctx context.Context, log hookLog, start time.Time, syncMode func()) error {
	cfg, cfgErr := config.Load(os.Getenv)
	mark("config")
	if cfg.Queue != "" {
		if cfgErr != nil {
			log.Error("configuration problem; still queueing", "err", cfgErr)
		}
		enqueue(ctx, log, cfg.Queue, start)
		return nil
	}
	syncMode()
	if cfgErr != nil {
		return fmt.Errorf("cannot upload: %w", cfgErr)
	}
	if cfg.To == "" {
		return errors.New("cannot upload: neither " + config.EnvQueue + " nor " + config.EnvTo + " is set (environment or " + config.DefaultFile + ")")
	}
	paths, err := cli.HookOutputs(ctx, os.Getenv)
	if err != nil {
		return fmt.Errorf("cannot upload: %w", err)
	}
	uploader, err := cli.FindCommand(EnvUploader, "upload-daemon", "nixcache-upload-daemon")
	if err != nil {
		return fmt.Errorf("cannot upload: %w", err)
	}
	// `upload-daemon push` reads the same configuration, logs each path and exits 1 on failure.
	argv := []string{uploader, "push", "--"}
	for _, p := range paths {
		argv = append(argv, string(p))
	}
	logs.flush()
	err = syscall.Exec(uploader, argv, os.Environ())
	return fmt.Errorf("cannot upload: exec failed: %s: %w", uploader, err)
}
