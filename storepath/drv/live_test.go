package drv

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// TestReadOutputsLive instantiates derivations with real Nix (no build) and
// compares ReadOutputs with `nix-store --query --outputs` for each: several
// outputs, a fixed-output derivation, and strings that need ATerm escapes.
func TestReadOutputsLive(t *testing.T) {
	testenv.RequireNix(t)
	seed := fmt.Sprintf("drv-live-%d", rand.Uint64())
	expr := `let mk = a: derivation ({ system = builtins.currentSystem; builder = "/bin/sh"; } // a); in {
  multi = mk { name = "drv-multi"; outputs = [ "out" "dev" "lib" ]; args = [ "-c" "exit 1" ]; seed = "` + seed + `"; };
  fixed = mk { name = "drv-fixed"; outputHashMode = "flat"; outputHashAlgo = "sha256";
    outputHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; args = [ "-c" "touch $out" ]; };
  escapes = mk { name = "drv-escapes"; args = [ "-c" "echo \"q\" \\\\ \n\t\r" ]; seed = "` + seed + `"; };
}`
	file := filepath.Join(t.TempDir(), "drvs.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, attr := range []string{"multi", "fixed", "escapes"} {
		t.Run(attr, func(t *testing.T) {
			drvPath := strings.TrimSpace(string(testenv.Nix(t, "nix-instantiate", file, "-A", attr)))
			want := strings.Fields(string(testenv.Nix(t, "nix-store", "--query", "--outputs", drvPath)))
			slices.Sort(want)
			outs, err := ReadOutputs(drvPath)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range slices.Sorted(maps.Values(outs)) {
				got = append(got, string(p))
			}
			if !slices.Equal(got, want) {
				t.Errorf("ReadOutputs(%s) = %v, nix-store --query --outputs = %v", drvPath, got, want)
			}
		})
	}
}
