package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/cache/s3"
)

// serveMetrics serves d's metrics, and the S3 backend's request counters
// (requests, throttling answers, adaptive limit), on addr until ctx ends. Metrics are
// optional: a port already in use is logged, and the daemon goes on.
func serveMetrics(ctx context.Context, addr string, d *queue.Drainer, log *slog.Logger) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("cannot serve metrics", "addr", addr, "err", err)
		return
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if d.WriteMetrics(w) == nil {
			_ = s3.WriteMetrics(w) // request counters, throttling, adaptive limit
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() { srv.Close() })
}
