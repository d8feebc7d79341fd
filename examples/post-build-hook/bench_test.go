package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// BenchmarkHookQueueMode measures the hook's main path as a process, run
// as Nix 2.8 runs it: DRV_PATH names a new derivation each call and
// OUT_PATHS is empty, so each call parses a .drv, creates an entry and a GC
// root and fsyncs both directories. NIX_STATE_DIR points the GC roots into
// the benchmark's directory (no Nix needed). "true" is the cost of any
// process started the same way (/bin/true).
func BenchmarkHookQueueMode(b *testing.B) {
	hook := filepath.Join(testenv.GoBuild(b, "github.com/nixcache/nixcache/examples/post-build-hook"), "post-build-hook")
	for _, bin := range []string{"/bin/true", hook} {
		b.Run(filepath.Base(bin), func(b *testing.B) {
			dir := b.TempDir()
			store := filepath.Join(dir, "store")
			if err := os.Mkdir(store, 0o755); err != nil {
				b.Fatal(err)
			}
			env := append(os.Environ(), "OUT_PATHS=", "NIX_STATE_DIR="+filepath.Join(dir, "state"), "NIXCACHE_QUEUE="+filepath.Join(dir, "q"))
			var last string
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				name := fmt.Sprintf("%032d-bench-%d", i, i)
				out := filepath.Join(store, name)
				drv := out + ".drv"
				text := `Derive([("out","` + out + `","","")],[],[],"x86_64-linux","/bin/sh",[],[("out","` + out + `")])`
				if err := os.WriteFile(drv, []byte(text), 0o444); err != nil {
					b.Fatal(err)
				}
				cmd := exec.Command(bin)
				cmd.Env = append(env, "DRV_PATH="+drv)
				b.StartTimer()
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%s: %v\n%s", bin, err, out)
				}
				last = name
			}
			if bin != hook {
				return
			}
			if target, err := os.Readlink(filepath.Join(dir, "q", "entries", last)); err != nil || target != filepath.Join(store, last) {
				b.Fatalf("entry of the last call: %q, %v", target, err)
			}
		})
	}
}
