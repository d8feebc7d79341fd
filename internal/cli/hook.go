package cli

import (
	"context"
	"encoding/json"
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
// the outputs of the derivation DRV_PATH, read from the .drv file; for
// outputs the .drv does not name, `nix-store --query --outputs`, and when
// that fails, as it does for a floating content-addressed derivation
// ("Cannot use output path of floating content-addressed derivation"),
// the realisations the store records for the derivation's outputs, as
// Nix resolves them (`nix realisation info --json`). getenv is usually
// os.Getenv.
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
		if out, err = floatingOutputs(ctx, drvPath); err != nil {
			return nil, err
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

// floatingOutputs resolves the outputs of a derivation whose .drv names no
// output paths: `nix-store --query --outputs` (the DerivationOutputs
// table), else the realisations of its outputs (the Realisations table,
// keyed by the derivation's hash modulo: only Nix computes it), which
// `nix realisation info` reads without building (--max-jobs 0, no
// substituters).
func floatingOutputs(ctx context.Context, drvPath string) ([]storepath.Path, error) {
	b, qerr := exec.CommandContext(ctx, "nix-store", "--query", "--outputs", drvPath).Output()
	if qerr == nil {
		return parseFields(b, "nix-store --query --outputs "+drvPath)
	}
	cmd := exec.CommandContext(ctx, "nix", "--extra-experimental-features", "nix-command ca-derivations",
		"realisation", "info", "--json", "--max-jobs", "0", "--option", "substituters", "", drvPath)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("outputs of %s: nix-store --query --outputs: %w; nix realisation info: %w: %s",
			drvPath, qerr, err, strings.TrimSpace(stderr.String()))
	}
	var rs []struct {
		OutPath string `json:"outPath"`
	}
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("nix realisation info %s: %w", drvPath, err)
	}
	var out []storepath.Path
	for _, r := range rs {
		// Nix 2.8 prints the base name; later versions the full path.
		full := r.OutPath
		if !strings.HasPrefix(full, "/") {
			full = filepath.Join(filepath.Dir(drvPath), full)
		}
		p, err := storepath.Parse(full)
		if err != nil {
			return nil, fmt.Errorf("nix realisation info %s: %w", drvPath, err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("nix realisation info %s: no realised outputs", drvPath)
	}
	return out, nil
}

func parseFields(b []byte, what string) ([]storepath.Path, error) {
	var out []storepath.Path
	for _, f := range strings.Fields(string(b)) {
		p, err := storepath.Parse(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, p)
	}
	return out, nil
}
