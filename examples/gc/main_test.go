package main_test

// End-to-end proof of the gc command, judged by real Nix: two generations
// pushed with the push command, the second pinned (push --pin); a dry run
// changes nothing; gc --keep-days 0 --grace 0 --delete --trash keeps the
// second generation's whole closure (nix store verify against the cache,
// and Nix substitutes it back into a cleaned store with --max-jobs 0),
// removes what only the first used and leaves the cache consistent;
// gc --restore brings the first back (Nix verifies it again); a plain
// --delete then removes it for good. On file:// and on the S3 server.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

type target struct {
	url, nixURL string // our store URL; what Nix reads
	env         []string
}

func TestGCGenerations(t *testing.T) {
	testenv.RequireNix(t)
	bin := testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/push", "github.com/nixcache/nixcache/examples/gc")
	t.Run("file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "cache")
		testGenerations(t, bin, target{url: "file://" + dir, nixURL: "file://" + dir})
	})
	t.Run("s3", func(t *testing.T) {
		s := testenv.StartS3(t)
		s.MakeBucket(t, "gcgen", true)
		s.SetEnv(t)
		testGenerations(t, bin, target{url: s.URL("gcgen"), nixURL: s.Endpoint + "/gcgen", env: s.Env()})
	})
}

func testGenerations(t *testing.T, bin string, tg target) {
	ctx := context.Background()
	key := testenv.NixKeyPair(t, "gc-test-1")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Env = append(os.Environ(), tg.env...)
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("%s %v: %v\n%s%s", name, args, err, out, stderr)
		}
		return string(out)
	}
	gen1 := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "gc-gen1", N: 3})
	gen2 := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "gc-gen2", N: 3})
	shared := gen2.Paths[0] // the leaf of generation 2 was already in generation 1
	run("push", "-q", "--to", tg.url, "--secret-key", key.SecretFile, gen1.Top, shared)
	run("push", "-q", "--to", tg.url, "--secret-key", key.SecretFile, "--pin", "gen2", gen2.Top)
	c, err := cache.Open(ctx, tg.url)
	if err != nil {
		t.Fatal(err)
	}
	// --grace 0 still spares objects modified in the last 6 s (the clock
	// margin); wait for the generations to be older than that.
	time.Sleep(6100 * time.Millisecond)

	gc := []string{"--cache", tg.url, "--keep-days", "0", "--grace", "0", "--json"}
	before := listing(t, c)
	var plan cache.GCReport
	if err := json.Unmarshal([]byte(run("gc", gc...)), &plan); err != nil {
		t.Fatal(err)
	}
	if after := listing(t, c); !slices.Equal(before, after) {
		t.Fatalf("dry run changed the cache:\nbefore %v\nafter  %v", before, after)
	}
	if !plan.DryRun || plan.Removed.Count != 3 || plan.KeptPinned.Count != 3 || plan.NARs.Count != 3 {
		t.Fatalf("plan: %+v", plan)
	}

	var rep cache.GCReport
	if err := json.Unmarshal([]byte(run("gc", append(gc, "--delete", "--trash", "trash/1/")...)), &rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("collected: %+v", rep)
	if rep.DryRun || rep.Removed.Count != 3 || rep.Kept.Count != 3 || rep.NARs.Count != 3 {
		t.Fatalf("report: %+v", rep)
	}
	checkGen2(t, c, tg, key.Public, gen1, gen2)

	// Undo: the first generation is back and Nix accepts it again.
	run("gc", "--cache", tg.url, "--restore", "trash/1/")
	if code := testenv.NixStoreVerify(t, tg.nixURL, key.Public, gen1.Paths...); code != 0 {
		t.Fatalf("nix store verify of the restored generation: exit code %d", code)
	}
	if err := c.CheckConsistency(ctx); err != nil {
		t.Fatal(err)
	}
	// For good this time (on S3, moved objects are new copies: let them
	// age past the margin too).
	time.Sleep(6100 * time.Millisecond)
	if err := json.Unmarshal([]byte(run("gc", append(gc, "--delete")...)), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Removed.Count != 3 {
		t.Fatalf("report: %+v", rep)
	}
	checkGen2(t, c, tg, key.Public, gen1, gen2)
	substitute(t, tg.nixURL, key.Public, gen2)
}

// checkGen2: generation 2 verifies with Nix, generation 1's own paths are
// gone, and no narinfo lacks its NAR or a reference.
func checkGen2(t *testing.T, c *cache.Cache, tg target, pub string, gen1, gen2 testenv.Closure) {
	t.Helper()
	if code := testenv.NixStoreVerify(t, tg.nixURL, pub, gen2.Paths...); code != 0 {
		t.Fatalf("nix store verify of the pinned generation: exit code %d", code)
	}
	for _, p := range gen1.Paths {
		sp, err := storepath.Parse(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Backend.Stat(context.Background(), cache.NarInfoKey(sp)); err == nil {
			t.Errorf("%s (first generation only) is still in the cache", p)
		}
	}
	if err := c.CheckConsistency(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// substitute deletes the closure from the store (referrers first) and has
// Nix substitute it from the cache, never building (--max-jobs 0).
func substitute(t *testing.T, nixURL, pub string, cl testenv.Closure) {
	t.Helper()
	for i := len(cl.Paths) - 1; i >= 0; i-- {
		testenv.Nix(t, "nix-store", "--delete", cl.Paths[i])
	}
	testenv.Nix(t, "nix-store", "--realise", cl.Top, "--option", "substituters", nixURL,
		"--option", "trusted-public-keys", pub, "--option", "narinfo-cache-negative-ttl", "0", "--max-jobs", "0")
	for _, p := range cl.Paths {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s not substituted back: %v", p, err)
		}
	}
}

func listing(t *testing.T, c *cache.Cache) []string {
	t.Helper()
	var keys []string
	err := c.Backend.List(context.Background(), "", func(oi cache.ObjectInfo) error {
		keys = append(keys, oi.Key+" "+oi.ModTime.String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	if len(keys) == 0 || !strings.Contains(strings.Join(keys, "\n"), "gcroots/gen2") {
		t.Fatalf("listing without the pin: %v", keys)
	}
	return keys
}
