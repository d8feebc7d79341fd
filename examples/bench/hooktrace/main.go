// Command hooktrace shows where a queue-mode post-build hook's time goes.
// It runs each given hook binary as Nix 2.8 does (DRV_PATH set, OUT_PATHS
// empty, NIXCACHE_QUEUE set), on a fresh derivation every call so that each
// call really creates an entry and a GC root and fsyncs them, alternating
// the binaries call by call, and prints per-phase medians in microseconds
// (and the total's 10th and 25th percentiles, steadier than the median on
// a busy machine).
//
//	hooktrace [-n 200] [-queue DIR] BINARY...
//	hooktrace -nixlog FILE
//
// A hook built with `go build -tags hooktrace` writes a wall-clock mark
// per phase to stderr; hooktrace adds the moment before fork ("spawn" is
// fork, exec, Go runtime start and package initialisers, up to main) and
// the moment wait(2) returns ("exit"). Other binaries (such as /bin/true,
// the cost of any process) show only their total. The .drv files are
// written to a directory named like a store (DIR/store/<hash>-<name>.drv);
// their outputs need not exist for an enqueue. All binaries share one queue
// directory, so that each creates its entries in the same place. GC roots go to Nix's
// gcroots/auto as in production (run as root), and hooktrace removes the
// roots it caused at the end.
//
// The binary name "floor" stands for the least a durable queue-mode hook
// must do, in a Go process (hooktrace itself, see floor.go): read the .drv,
// symlink one entry, fsync the entries directory. The hook's time above
// the floor is what its own code costs; the floor above /bin/true is the
// Go runtime's start and exit plus one directory fsync.
//
// With -nixlog, hooktrace instead summarises the marks a hook built with
// -tags hooktrace wrote into a Nix build log (nix-build's stderr, Nix
// prefixes them with "post-build-hook: "): per-phase medians of the calls
// Nix made, from main to the last mark (Nix's fork and wait are not seen).
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	if os.Getenv(emptyEnv) != "" {
		return
	}
	if os.Getenv(floorEnv) != "" {
		os.Exit(floor())
	}
	n := flag.Int("n", 200, "calls per binary")
	dir := flag.String("queue", "", "work directory (default: a new one under /tmp, removed afterwards)")
	nixLog := flag.String("nixlog", "", "summarise the hooktrace marks of a Nix build log instead")
	flag.Parse()
	var err error
	switch {
	case *nixLog != "":
		err = summariseLog(*nixLog)
	case flag.NArg() == 0:
		fmt.Fprintln(os.Stderr, "usage: hooktrace [-n CALLS] [-queue DIR] BINARY... | hooktrace -nixlog FILE")
		os.Exit(2)
	default:
		err = run(*n, *dir, flag.Args())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hooktrace:", err)
		os.Exit(1)
	}
}

const alphabet = "0123456789abcdfghijklmnpqrsvwxyz" // Nix's base-32 digits

func fakeHash(r *rand.Rand) string {
	b := make([]byte, 32)
	for i := range b {
		b[i] = alphabet[r.IntN(32)]
	}
	return string(b)
}

func run(n int, work string, bins []string) error {
	if work == "" {
		d, err := os.MkdirTemp("", "hooktrace.")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	}
	store := filepath.Join(work, "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	all := make([]stats, len(bins))
	for i := 0; i < n; i++ {
		for j, bin := range bins {
			name := fmt.Sprintf("hooktrace-%d-%d", j, i)
			out := filepath.Join(store, fakeHash(r)+"-"+name)
			drv := filepath.Join(store, fakeHash(r)+"-"+name+".drv")
			text := `Derive([("out","` + out + `","","")],[],[],"x86_64-linux","/bin/sh",["-c","echo > $out"],[("builder","/bin/sh"),("name","` + name + `"),("out","` + out + `"),("system","x86_64-linux")])`
			if err := os.WriteFile(drv, []byte(text), 0o444); err != nil {
				return err
			}
			if err := call(&all[j], bin, drv, filepath.Join(work, "q")); err != nil {
				return err
			}
		}
	}
	for j, bin := range bins {
		s := &all[j]
		var parts []string
		for _, ph := range s.order {
			if ph != "total" {
				parts = append(parts, fmt.Sprintf("%s %.0f", ph, median(s.us[ph])))
			}
		}
		fmt.Printf("%s: total %.0f us per call (median of %d; p10 %.0f, p25 %.0f)", bin, median(s.us["total"]), n,
			percentile(s.us["total"], 10), percentile(s.us["total"], 25))
		if len(parts) > 0 {
			fmt.Printf("; phases (median us): %s", strings.Join(parts, ", "))
		}
		fmt.Println()
	}
	removeRoots(work)
	return nil
}
