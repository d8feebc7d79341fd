package cache_test

import (
	"context"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/internal/testenv"
)

// BenchmarkPresent10k measures the presence check of a 10,000-path closure
// that is all present, against versitygw on loopback, and the HTTP
// requests it makes (requests/op). The bucket holds 10,000 narinfos, a NAR
// file for each and a .ls for one in 20, as a cache does after pushes.
//
//   - auto: Cache.Present as Push calls it (it lists);
//   - push: a whole Push of the closure (nothing to upload);
//   - head: one HEAD per path, 16 at once (what Push did before).
func BenchmarkPresent10k(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	srv := testenv.StartS3(b)
	srv.SetEnv(b)
	srv.MakeBucket(b, "presence", false)
	be, ct := s3Backend(b, srv, "presence")
	pc := fillPresence(b, be, n, 0, n)
	paths := pc.src.order
	run := func(name string, fn func() (*cache.PresenceStats, error)) {
		b.Run(name, func(b *testing.B) {
			start := ct.n.Load()
			var last *cache.PresenceStats
			for range b.N {
				st, err := fn()
				if err != nil {
					b.Fatal(err)
				}
				last = st
			}
			b.ReportMetric(float64(ct.n.Load()-start)/float64(b.N), "requests/op")
			b.Logf("%s", last)
		})
	}
	present := func(s cache.PresenceStrategy) func() (*cache.PresenceStats, error) {
		return func() (*cache.PresenceStats, error) {
			got, st, err := pc.c.Present(ctx, paths, cache.PresenceOptions{Strategy: s})
			for i, ok := range got {
				if !ok {
					b.Fatalf("%s: not found", paths[i])
				}
			}
			return &st, err
		}
	}
	run("auto", present(cache.PresenceAuto))
	run("push", func() (*cache.PresenceStats, error) {
		sum, err := pc.c.Push(ctx, pc.src, paths[n-1:], cache.PushOptions{})
		if err == nil && sum.Skipped != n {
			b.Fatalf("push: %s", sum)
		}
		return &sum.Presence, err
	})
	run("head", present(cache.PresenceHead))
}
