package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/drv"
)

// HookOutputs returns the store paths a post-build hook runs for: OUT_PATHS
// (space-separated), or, when it is empty as in Nix 2.8 (NixOS/nix#6446),
// the outputs of the derivation DRV_PATH, read from the .drv file (or, for
// floating content-addressed outputs, which the .drv does not name, from
// `nix-store --query --outputs`). getenv is usually os.Getenv.
func HookOutputs(ctx context.Context, getenv func(string) string) ([]storepath.Path, error) {
	var out []storepath.Path
	for _, f := range strings.Fields(getenv("OUT_PATHS")) {
		p, err := storepath.Parse(f)
		if err != nil {
			return nil, fmt.Errorf("OUT_PATHS: %w", err)
		}
		out = append(out, p)
	}
	if len(out) > 0 {
		slices.Sort(out)
		return slices.Compact(out), nil
	}
	drvPath := getenv("DRV_PATH")
	if drvPath == "" {
		return nil, errors.New("OUT_PATHS and DRV_PATH are both empty (run me as Nix's post-build-hook)")
	}
	if _, err := storepath.Parse(drvPath); err != nil {
		return nil, fmt.Errorf("DRV_PATH: %w", err)
	}
	m, err := drv.ReadOutputs(drvPath)
	if err != nil {
		return nil, fmt.Errorf("DRV_PATH %s: %w", drvPath, err)
	}
	for _, p := range m {
		out = append(out, p)
	}
	if len(out) == 0 {
		// Floating content-addressed outputs are not in the .drv: ask Nix.
		b, err := exec.CommandContext(ctx, "nix-store", "--query", "--outputs", drvPath).Output()
		if err != nil {
			return nil, fmt.Errorf("nix-store --query --outputs %s: %w", drvPath, err)
		}
		for _, f := range strings.Fields(string(b)) {
			p, err := storepath.Parse(f)
			if err != nil {
				return nil, fmt.Errorf("nix-store --query --outputs %s: %w", drvPath, err)
			}
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// FindCommand locates a companion command: the file named by the
// environment variable env if set, else the first of names found next to
// this executable, else on PATH.
func FindCommand(env string, names ...string) (string, error) {
	if u := os.Getenv(env); u != "" {
		return u, nil
	}
	if self, err := os.Executable(); err == nil {
		for _, n := range names {
			p := filepath.Join(filepath.Dir(self), n)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: set %s, or install it next to %s or on PATH", names[0], env, filepath.Base(os.Args[0]))
}
