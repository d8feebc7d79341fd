//go:build linux

package cache_test

import (
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// TestCollectRaceCluster is TestCollectRace on a distributed MinIO (4
// nodes, one erasure set), the pushers going through node 1 and the
// collector through node 3: a collector's lease stored through one node
// must be listed through another before a push skips its wait.
func TestCollectRaceCluster(t *testing.T) {
	testenv.RequireNix(t)
	pool := buildPool(t, 40)
	key := testenv.NixKeyPair(t, "gc-race-1")
	d := raceDuration(t)
	cl := testenv.StartMinIOCluster(t)
	push, gc := cl.S3(t, 1), cl.S3(t, 3)
	push.MakeBucket(t, "gcrace", true)
	push.SetEnv(t)
	raceOn(t, push.URL("gcrace", "compression=none"), gc.URL("gcrace", "compression=none"), push.Endpoint+"/gcrace", key, pool, d)
}
