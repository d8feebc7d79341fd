// Command upload-daemon drains the durable queue that post-build-hook fills
// in queue mode: it signs and uploads the closure of every queued store path
// and removes the entry only once the path's narinfo is in the cache, so a
// crash or SIGKILL loses nothing and a restart resumes.
//
//	upload-daemon [--queue DIR] [--to URL] [--secret-key FILE] [--skip-signed-by KEY]...
//	              [--upstream URL] [--jobs N] [--pushes N] [--exit-when-empty] [--metrics-addr ADDR]
//	upload-daemon status [--queue DIR] [--json]    is a daemon up (asks the lock)? what is queued?
//	upload-daemon enqueue [--queue DIR] PATH...    queue paths by hand
//	upload-daemon push [--to URL] ... PATH...      upload now: the push command (sync-mode hook)
//
// Flags default to the NIXCACHE_* settings of the environment or the config
// file (package internal/config), whose other settings (AWS_* credentials)
// are exported to the process unless set. --jobs (-j) counts paths uploaded
// at once, as for push. Paths an upstream cache serves (--skip-signed-by,
// --upstream) are not uploaded. SIGTERM lets in-flight uploads finish and
// exits 0; the rest stays queued. Exit status: 0, 1 on error, 2 on usage.
package main

import (
	"context"
	"os"
	"time"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/cache/localstore"
	_ "github.com/nixcache/nixcache/cache/localstore/sqlite" // read db.sqlite directly
	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/cache/queue/cachepush"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/internal/cli/upload"
	"github.com/nixcache/nixcache/internal/config"
	"github.com/nixcache/nixcache/storepath"
)

func main() { cli.Main("upload-daemon", run) }

func run(ctx context.Context, args []string) error {
	cfg, err := cli.LoadConfig()
	if err != nil {
		return err
	}
	switch cmd, args := cli.Subcommand(args, "run", "run", "status", "enqueue", "push"); cmd {
	case "status":
		return status(cfg, args)
	case "enqueue":
		return enqueue(cfg, args)
	case "push":
		return upload.PushCommand(ctx, "upload-daemon push", args, cfg)
	default:
		return daemon(ctx, cfg, args)
	}
}

func daemon(ctx context.Context, cfg config.Config, args []string) error {
	fl := cli.NewFlagSet("upload-daemon", "upload-daemon [--queue DIR] [--to URL] [--secret-key FILE] [--jobs N] [flags]")
	dir, target, jobs := fl.Queue(cfg), upload.TargetFlags(fl, cfg), fl.Jobs(4)
	pushes := fl.Int("pushes", 2, "pushes in flight at once: one batch of new paths, the rest retry failing paths alone")
	batch := fl.Int("batch", 32, "most queued paths per push")
	exitEmpty := fl.Bool("exit-when-empty", false, "exit 0 once the queue is empty")
	metrics := fl.String("metrics-addr", "", "serve Prometheus metrics on `ADDR` (e.g. 127.0.0.1:9465) at /metrics")
	poll := fl.Duration("poll", 250*time.Millisecond, "how often to look for new entries")
	maxBackoff := fl.Duration("max-backoff", 5*time.Minute, "longest wait between retries of a failing path")
	debug := fl.Debug()
	if err := fl.Parse(args); err != nil {
		return err
	}
	qdir, err := dir().Get()
	if err != nil {
		return err
	}
	log := cli.NewLogger(os.Stderr, "", *debug)
	q, err := queue.Open(qdir)
	if err != nil {
		return err
	}
	// Bad settings fail now; the backend is opened (and retried) on first use.
	p, err := upload.Prepare(ctx, target(), log)
	if err != nil {
		return err
	}
	store, err := localstore.Open(ctx, localstore.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	var d *queue.Drainer
	d = queue.NewDrainer(q, cachepush.Lazy(func(ctx context.Context) (*cache.Cache, error) {
		return upload.Open(ctx, p.URL, p.Options)
	}, store, p.PushOptions(*jobs)), queue.DrainOptions{
		Jobs: *pushes, BatchSize: *batch, PollInterval: *poll, MaxBackoff: *maxBackoff,
		ExitWhenEmpty: *exitEmpty, Logger: log, Exists: cachepush.StoreExists(ctx, store), Recover: store,
		OnStart: func() {
			log.Info("upload daemon started", "queue", q.Dir(), "jobs", *jobs, "pushes", *pushes)
			if *metrics != "" {
				serveMetrics(ctx, *metrics, d, log)
			}
		},
	})
	if err := d.Run(ctx); err != nil {
		return err
	}
	st := d.Stats()
	log.Info("upload daemon stopped", "uploaded", st.Uploaded, "upstream", st.Upstream, "queued", st.Queued, "failures", st.Failures)
	return nil
}

func enqueue(cfg config.Config, args []string) error {
	fl := cli.NewFlagSet("upload-daemon enqueue", "upload-daemon enqueue [--queue DIR] PATH...")
	dir := fl.Queue(cfg)
	if err := fl.Parse(args); err != nil {
		return err
	}
	qdir, err := dir().Get()
	if err != nil {
		return err
	}
	paths, err := upload.StorePaths(storepath.DirFromEnv(), fl.Args())
	if err != nil {
		return err
	}
	q, err := queue.Open(qdir)
	if err != nil {
		return err
	}
	return q.Enqueue(paths...)
}

func status(cfg config.Config, args []string) error {
	fl := cli.NewFlagSet("upload-daemon status", "upload-daemon status [--queue DIR] [--json]")
	dir := fl.Queue(cfg)
	asJSON := fl.Bool("json", false, "print the report as JSON")
	if err := fl.Parse(args); err != nil {
		return err
	}
	qdir, err := dir().Get()
	if err != nil {
		return err
	}
	r, err := queue.ReadReport(qdir)
	if err != nil {
		return err
	}
	if *asJSON {
		return r.WriteJSON(os.Stdout)
	}
	return r.WriteText(os.Stdout)
}
