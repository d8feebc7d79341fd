// Command faultinject runs the fault-injection harness (internal/faults):
// real uploads through the library and the real post-build-hook and
// upload-daemon binaries against a real S3 server (versitygw) that is
// restarted, slowed, answers 503 SlowDown and 429, while the daemon is
// SIGKILLed, the queue's disk is full and hooks run concurrently. After each
// trial real Nix verifies every path. It prints a table of counts and exits 1
// if any path was lost, the cache invariant broke, or an object was uploaded
// again without need.
//
//	faultinject [-trials N] [-scenario all|s3-restart|slow|slowdown|kill|diskfull|concurrent]
//
// Run it as root from inside the module (it builds the hook and the daemon
// with the go command), on a machine with Nix and versitygw.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/nixcache/nixcache/internal/faults"
	"github.com/nixcache/nixcache/internal/testenv"
)

func main() {
	trials := flag.Int("trials", 10, "trials per scenario")
	scenario := flag.String("scenario", "all", "scenario to run: all, or one of s3-restart, slow, slowdown, kill, diskfull, concurrent")
	bigMiB := flag.Int64("big-mib", 40, "size in MiB of the random-data path uploaded in every trial")
	chain := flag.Int("chain", 6, "derivations per build")
	verbose := flag.Bool("v", false, "print one line per trial")
	flag.Parse()

	scenarios := faults.All
	if *scenario != "all" {
		sc, err := faults.ParseScenario(*scenario)
		if err != nil {
			fmt.Fprintln(os.Stderr, "faultinject:", err)
			os.Exit(2)
		}
		scenarios = []faults.Scenario{sc}
	}
	os.Exit(run(scenarios, *trials, *bigMiB<<20, *chain, *verbose))
}

func run(scenarios []faults.Scenario, trials int, big int64, chain int, verbose bool) int {
	tb := faults.NewTB("faultinject")
	defer tb.Close()
	testenv.RequireNix(tb)
	s3 := testenv.StartS3(tb)
	s3.SetEnv(tb)
	ctx := context.Background()
	hook, daemon, err := faults.BuildBinaries(ctx, tb.TempDir())
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultinject:", err)
		return 1
	}
	cfg := faults.Config{S3: s3, TB: tb, Hook: hook, Daemon: daemon, WorkDir: tb.TempDir(), Chain: chain, BigSize: big}
	if verbose {
		cfg.Logf = tb.Logf
	}
	h, err := faults.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultinject:", err)
		return 1
	}
	defer h.Close()
	var counts []faults.Counts
	code := 0
	for _, sc := range scenarios {
		c, err := h.Run(ctx, sc, trials)
		counts = append(counts, c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "faultinject:", err)
			code = 1
			break
		}
		if c.PathsLost+c.Broken+c.Needless > 0 {
			code = 1
		}
	}
	if err := faults.WriteTable(os.Stdout, counts); err != nil {
		return 1
	}
	return code
}
