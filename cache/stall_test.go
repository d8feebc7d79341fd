package cache_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/faultproxy"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

// TestPushStalledPathDoesNotBlockOthers pushes a closure and an unrelated
// 4 MiB path through a proxy that stops reading every request body after
// 1 MiB, so only the big NAR stalls, on every attempt. The push must not
// hang: the closure is published (and verified by Nix) while the big path
// is still being retried, and the big path fails with ErrStalled after
// retry-attempts stall timeouts.
func TestPushStalledPathDoesNotBlockOthers(t *testing.T) {
	ctx := context.Background()
	top, closure := buildClosure(t)
	big := addBigPath(t, 4)
	t.Cleanup(func() { testenv.NixCmd("nix-store", "--delete", string(big)) })
	sec, pub := nixKey(t, "nixcache-stall-1")
	srv := testenv.StartS3(t)
	srv.SetEnv(t)
	srv.MakeBucket(t, "stall", true)
	p, err := faultproxy.Start(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Set(faultproxy.Faults{StallBodyAfter: 1 << 20})
	u := strings.Replace(srv.URL("stall", "secret-key="+sec, "stall-timeout=1s", "retry-attempts=3"), srv.Endpoint, p.URL, 1)
	c, err := cache.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		published = map[storepath.Path]time.Time{}
		failedAt  time.Time
	)
	start := time.Now()
	sum, err := c.Push(ctx, openStore(t), []storepath.Path{big, top}, cache.PushOptions{
		Progress: func(e cache.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch e.Kind {
			case cache.EventUploaded:
				published[e.Path] = time.Now()
			case cache.EventFailed:
				if e.Path == big {
					failedAt = time.Now()
				}
			}
		},
	})
	took := time.Since(start)
	t.Logf("push: %v in %v; %d requests stalled; error: %v", sum, took.Round(time.Millisecond), p.Stalled.Load(), err)
	var pe *cache.PathError
	if !errors.As(err, &pe) || pe.Path != big || !errors.Is(err, s3.ErrStalled) || sum.Failed != 1 {
		t.Fatalf("want one failure, of %s, wrapping ErrStalled; got %+v, %v", big, sum, err)
	}
	if p.Stalled.Load() != 3 {
		t.Errorf("%d requests stalled, want 3 (retry-attempts)", p.Stalled.Load())
	}
	if limit := 3*(time.Second+2*time.Second) + 10*time.Second; took > limit {
		t.Errorf("push took %v, want under %v", took, limit)
	}
	for _, q := range closure {
		if at, ok := published[q]; !ok || !at.Before(failedAt) {
			t.Errorf("%s: published %v (%v after start), want before the stalled path failed (%v)", q, ok, at.Sub(start), failedAt.Sub(start))
		}
	}
	nixVerify(t, srv.Endpoint+"/stall", pub, closure)
}
