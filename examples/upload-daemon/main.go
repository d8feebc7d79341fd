// Command upload-daemon drains the durable queue that post-build-hook fills
// in queue mode: it signs and uploads the closure of every queued store path
// to a binary cache and removes the entry only once the path's narinfo is
// stored, so a crash or SIGKILL loses nothing and a restart resumes.
//
//	upload-daemon [--queue DIR] [--to URL] [--secret-key FILE] [--jobs N]
//	              [--exit-when-empty] [--metrics-addr ADDR]
//	upload-daemon status [--queue DIR] [--json]
//	upload-daemon enqueue [--queue DIR] PATH...
//	upload-daemon push [--to URL] [--secret-key FILE] PATH...
//
// push uploads the closures of PATHs now, logging one line per path, and
// exits 1 if any failed; post-build-hook runs it in synchronous mode.
//
// Flags default to NIXCACHE_QUEUE, NIXCACHE_TO and NIXCACHE_SECRET_KEY_FILE
// from the environment or the config file (NIXCACHE_CONFIG, else
// /etc/nixcache/hook.conf), the same settings the hook reads. S3
// credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
//
// SIGTERM or SIGINT stops taking new work, lets in-flight uploads finish and
// exits 0; what is left stays queued. The daemon writes DIR/status.json
// every second (read it with `upload-daemon status`) and, with
// --metrics-addr, serves Prometheus metrics on /metrics.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/cache/localstore"
	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/cache/queue/cachepush"
	"github.com/nixcache/nixcache/cache/queue/queuedir"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/storepath"
)

func main() {
	cfg, err := queuedir.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upload-daemon:", err)
		os.Exit(2)
	}
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && (args[0] == "status" || args[0] == "enqueue" || args[0] == "push" || args[0] == "run") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "status":
		err = status(cfg, args)
	case "enqueue":
		err = enqueue(cfg, args)
	case "push":
		err = push(cfg, args)
	default:
		err = daemon(cfg, args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "upload-daemon:", err)
		os.Exit(1)
	}
}

func daemon(cfg queuedir.Config, args []string) error {
	fl := flag.NewFlagSet("upload-daemon", flag.ExitOnError)
	dir := fl.String("queue", cfg.Queue, "queue `DIR` (default $NIXCACHE_QUEUE)")
	to := fl.String("to", cfg.To, "binary cache store `URL` (default $NIXCACHE_TO)")
	key := fl.String("secret-key", cfg.SecretKeyFile, "secret key `FILE` to sign with (default $NIXCACHE_SECRET_KEY_FILE)")
	jobs := fl.Int("jobs", 2, "pushes in flight at once")
	pushJobs := fl.Int("push-jobs", 4, "paths compressed and uploaded at once within one push")
	batch := fl.Int("batch", 32, "most queued paths per push")
	exitEmpty := fl.Bool("exit-when-empty", false, "exit 0 once the queue is empty")
	metrics := fl.String("metrics-addr", "", "serve Prometheus metrics on `ADDR` (e.g. 127.0.0.1:9465) at /metrics")
	poll := fl.Duration("poll", 250*time.Millisecond, "how often to look for new entries")
	maxBackoff := fl.Duration("max-backoff", 5*time.Minute, "longest wait between retries of a failing path")
	debug := fl.Bool("debug", false, "log debug messages")
	_ = fl.Parse(args)
	if *dir == "" || *to == "" {
		return errors.New("--queue and --to are required (or NIXCACHE_QUEUE and NIXCACHE_TO)")
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	q, err := queue.Open(*dir)
	if err != nil {
		return err
	}
	// Bad URLs and key files fail now; an unreachable cache only delays
	// uploads (the backend is opened on first use and retried).
	u, err := cache.ParseURL(queuedir.Config{To: *to, SecretKeyFile: *key}.StoreURL())
	if err != nil {
		return err
	}
	copts, err := cache.OptionsFromURL(u, log)
	if err != nil {
		return err
	}
	if len(copts.SecretKeys) == 0 {
		log.Warn("no secret key: narinfos will be unsigned (use --secret-key)")
	}
	store, err := localstore.Open(ctx, localstore.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	d := queue.NewDrainer(q, cachepush.Lazy(func(ctx context.Context) (*cache.Cache, error) {
		b, err := cache.OpenBackend(ctx, u)
		if err != nil {
			return nil, err
		}
		return cache.New(b, copts), nil
	}, store, cache.PushOptions{Jobs: *pushJobs}), queue.DrainOptions{
		Jobs: *jobs, BatchSize: *batch, PollInterval: *poll, MaxBackoff: *maxBackoff,
		ExitWhenEmpty: *exitEmpty, Logger: log, Exists: cachepush.StoreExists(ctx, store),
	})
	if *metrics != "" {
		ln, err := net.Listen("tcp", *metrics)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", d.MetricsHandler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		log.Info("serving metrics", "addr", ln.Addr().String())
	}
	log.Info("upload daemon started", "queue", q.Dir(), "to", *to, "jobs", *jobs)
	if err := d.Run(ctx); err != nil {
		return err
	}
	st := d.Stats()
	log.Info("upload daemon stopped", "uploaded", st.Uploaded, "queued", st.Queued, "failures", st.Failures)
	return nil
}

func status(cfg queuedir.Config, args []string) error {
	fl := flag.NewFlagSet("upload-daemon status", flag.ExitOnError)
	dir := fl.String("queue", cfg.Queue, "queue `DIR` (default $NIXCACHE_QUEUE)")
	asJSON := fl.Bool("json", false, "print the status file as JSON")
	_ = fl.Parse(args)
	if *dir == "" {
		return errors.New("--queue is required (or NIXCACHE_QUEUE)")
	}
	if _, err := os.Stat(*dir); err != nil {
		return fmt.Errorf("queue %s: %w", *dir, err)
	}
	q, err := queue.Open(*dir)
	if err != nil {
		return err
	}
	pending, err := q.Pending()
	if err != nil {
		return err
	}
	st, err := q.ReadStatus()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	running := q.DaemonRunning()
	if *asJSON {
		out := struct {
			Queue   string        `json:"queue"`
			Running bool          `json:"daemon_running"`
			Pending []queue.Entry `json:"pending"`
			Status  *queue.Stats  `json:"status,omitempty"`
		}{q.Dir(), running, pending, st}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Printf("queue:    %s\n", q.Dir())
	if running {
		fmt.Printf("daemon:   running")
		if st != nil {
			fmt.Printf(" (pid %d, since %s)", st.PID, st.Started.Format(time.RFC3339))
		}
		fmt.Println()
	} else {
		fmt.Println("daemon:   not running")
	}
	fmt.Printf("queued:   %d paths\n", len(pending))
	if st != nil {
		fmt.Printf("last run: uploaded %d, in flight %d, failing %d, failures %d, dropped %d, %d NAR bytes (status of %s)\n",
			st.Uploaded, st.InFlight, st.Failing, st.Failures, st.Dropped, st.Bytes, st.Updated.Format(time.RFC3339))
		for _, f := range st.FailingPaths {
			fmt.Printf("failing:  %s (attempt %d, next try %s): %s\n", f.Path, f.Attempts, f.NextTry.Format(time.TimeOnly), f.LastError)
		}
	}
	for _, e := range pending {
		fmt.Printf("  %s  (queued %s)\n", e.Path, e.Queued.Format(time.RFC3339))
	}
	return nil
}

func enqueue(cfg queuedir.Config, args []string) error {
	fl := flag.NewFlagSet("upload-daemon enqueue", flag.ExitOnError)
	dir := fl.String("queue", cfg.Queue, "queue `DIR` (default $NIXCACHE_QUEUE)")
	_ = fl.Parse(args)
	if *dir == "" {
		return errors.New("--queue is required (or NIXCACHE_QUEUE)")
	}
	q, err := queue.Open(*dir)
	if err != nil {
		return err
	}
	var paths []storepath.Path
	for _, a := range fl.Args() {
		p, err := cache.ResolveStorePath(storepath.DirFromEnv(), a)
		if err != nil {
			return err
		}
		paths = append(paths, p)
	}
	return q.Enqueue(paths...)
}

// push uploads the closures of the given paths synchronously.
func push(cfg queuedir.Config, args []string) error {
	fl := flag.NewFlagSet("upload-daemon push", flag.ExitOnError)
	to := fl.String("to", cfg.To, "binary cache store `URL` (default $NIXCACHE_TO)")
	key := fl.String("secret-key", cfg.SecretKeyFile, "secret key `FILE` to sign with (default $NIXCACHE_SECRET_KEY_FILE)")
	jobs := fl.Int("jobs", 4, "paths compressed and uploaded at once")
	_ = fl.Parse(args)
	if *to == "" {
		return errors.New("--to is required (or NIXCACHE_TO)")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})).With("prog", "nixcache-push")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := cache.Open(ctx, queuedir.Config{To: *to, SecretKeyFile: *key}.StoreURL(), cache.WithLogger(log))
	if err != nil {
		return err
	}
	if len(c.Options().SecretKeys) == 0 {
		log.Warn("no secret key configured: narinfos are unsigned and Nix will not trust them (set " + queuedir.EnvSecretKeyFile + ")")
	}
	store, err := localstore.Open(ctx, localstore.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	var paths []storepath.Path
	for _, a := range fl.Args() {
		p, err := cache.ResolveStorePath(store.StoreDir(), a)
		if err != nil {
			return err
		}
		paths = append(paths, p)
	}
	sum, err := c.Push(ctx, store, paths, cache.PushOptions{Jobs: *jobs, Progress: func(e cache.Event) {
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
	if err != nil {
		return fmt.Errorf("upload to %s failed: %w", *to, err)
	}
	return nil
}
