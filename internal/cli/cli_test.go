package cli_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/internal/config"
	"github.com/nixcache/nixcache/storepath"
)

func TestExitCode(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{cli.Usagef("no paths"), 2},
		{errors.New("upload failed"), 1},
		{cli.WithCode(3, errors.New("cannot list the cache")), 3},
		{fmt.Errorf("verify: %w", cli.WithCode(3, cli.Usagef("x"))), 3},
	} {
		if got := cli.ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// The same flag means the same thing everywhere: --jobs and -j set one
// value; a setting says whether it came from the command line or the
// configuration, and names both when it is missing.
func TestFlags(t *testing.T) {
	cfg := config.Config{To: "file:///from-config", SecretKeyFile: "/k"}
	for _, args := range [][]string{{"-j", "7"}, {"--jobs", "7"}, {"-jobs=7"}} {
		fl := cli.NewFlagSet("x", "x")
		jobs := fl.Jobs(4)
		if err := fl.Parse(args); err != nil || *jobs != 7 {
			t.Errorf("%v: jobs = %d, %v", args, *jobs, err)
		}
	}
	fl := cli.NewFlagSet("x", "x")
	fl.SetOutput(io.Discard)
	to, keys, queue := fl.To(cfg), fl.SecretKeys(cfg), fl.Queue(cfg)
	if err := fl.Parse([]string{"--bogus"}); !errors.Is(err, cli.ErrUsage) {
		t.Fatalf("unknown flag: %v", err)
	}
	if err := fl.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if s := to(); s.Value != cfg.To || s.Name != config.EnvTo {
		t.Errorf("to = %+v", s)
	}
	if k := keys(); len(k) != 1 || k[0].Name != config.EnvSecretKeyFile || k[0].Value != "/k" {
		t.Errorf("keys = %+v", k)
	}
	if _, err := queue().Get(); !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), "--queue is required (or set NIXCACHE_QUEUE)") {
		t.Errorf("missing queue: %v", err)
	}
	fl = cli.NewFlagSet("x", "x")
	to, keys = fl.To(cfg), fl.SecretKeys(cfg)
	if err := fl.Parse([]string{"--to", "file:///flag", "--secret-key", "/a", "--secret-key", "/b"}); err != nil {
		t.Fatal(err)
	}
	if s := to(); s.Value != "file:///flag" || s.Name != "--to" {
		t.Errorf("to = %+v", s)
	}
	var got []string
	for _, k := range keys() {
		got = append(got, k.Name+"="+k.Value)
	}
	if !slices.Equal(got, []string{"--secret-key=/a", "--secret-key=/b"}) {
		t.Errorf("keys = %v (the flag replaces the configuration's key)", got)
	}
}

func TestSubcommand(t *testing.T) {
	if cmd, rest := cli.Subcommand([]string{"status", "--json"}, "run", "run", "status"); cmd != "status" || !slices.Equal(rest, []string{"--json"}) {
		t.Errorf("got %s %v", cmd, rest)
	}
	if cmd, rest := cli.Subcommand([]string{"--queue", "q"}, "run", "run", "status"); cmd != "run" || len(rest) != 2 {
		t.Errorf("got %s %v", cmd, rest)
	}
}

func TestHookOutputs(t *testing.T) {
	a := "/nix/store/0hhb51h788j6gmjd8j9c6jrk34fji2cq-y"
	b := "/nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywab-lsx-multi"
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	got, err := cli.HookOutputs(context.Background(), env(map[string]string{"OUT_PATHS": b + " " + a + " " + b}))
	if err != nil || !slices.Equal(got, []storepath.Path{storepath.Path(a), storepath.Path(b)}) {
		t.Errorf("OUT_PATHS: %v, %v", got, err)
	}
	for _, m := range []map[string]string{
		{},
		{"OUT_PATHS": "/tmp/x"},
		{"DRV_PATH": "/tmp/x.drv"},
		{"DRV_PATH": "/nix/store/00000000000000000000000000000000-gone.drv"},
	} {
		if _, err := cli.HookOutputs(context.Background(), env(m)); err == nil {
			t.Errorf("%v: no error", m)
		}
	}
}

func TestFindCommand(t *testing.T) {
	t.Setenv("NIXCACHE_TEST_UPLOADER", "/opt/up")
	if p, err := cli.FindCommand("NIXCACHE_TEST_UPLOADER", "nope"); err != nil || p != "/opt/up" {
		t.Errorf("from env: %s, %v", p, err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nixcache-test-cmd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	if p, err := cli.FindCommand("NIXCACHE_TEST_UNSET", "nixcache-no-such", "nixcache-test-cmd"); err != nil || p != filepath.Join(dir, "nixcache-test-cmd") {
		t.Errorf("from PATH: %s, %v", p, err)
	}
	if _, err := cli.FindCommand("NIXCACHE_TEST_UNSET", "nixcache-no-such"); err == nil || !strings.Contains(err.Error(), "NIXCACHE_TEST_UNSET") {
		t.Errorf("missing: %v", err)
	}
}
