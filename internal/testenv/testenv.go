// Package testenv is the project's one test rig: it gives tests the real
// tools they are judged against and one skip policy for all of them.
//
// Skip policy: a test that needs a tool calls a Require function
// (RequireNix, RequireTool, RequireRoot, StartS3, StartMinIOCluster): when the tool is missing
// the test skips, except under CI=true, where it fails, because CI must
// never pass by skipping. A test that only cross-checks with an optional
// tool asks HaveNix or HaveTool, which follow the same rule. Slow tests call
// SkipIfShort, which never skips under CI=true. Tests do not call
// exec.LookPath or read CI themselves.
//
// What the rig offers:
//   - Nix: Nix and NixCmd run Nix's commands; BuildClosure builds a fresh
//     closure with real references (WriteClosureExpr writes the same
//     derivations for a test that runs nix-build itself, with a hook);
//     NixKeyPair makes a key pair; NixStoreVerify is Nix's judgement of a
//     cache.
//   - S3: StartS3 runs versitygw on loopback for one test; StartMinIO a
//     single-node MinIO (the second judge); StartMinIOCluster a distributed
//     MinIO (4 processes x 2 drives, each in a network namespace of the
//     test's own) whose nodes a test can SIGKILL and restart.
//   - Go: GoBuild builds the commands once per test binary run; GoListDeps
//     gives a package's import graph; GOROOT locates a large real tree.
//   - Processes: StartSelf and Announce run this test binary as a helper
//     child; Environ is the environment for children; Buffer collects
//     their output.
//
// Every helper takes a TB, a small interface that *testing.T and *testing.B
// satisfy, so test-only harnesses such as internal/faults can use the rig
// without embedding a testing.TB.
package testenv

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TB is the part of testing.TB the rig uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

var _ TB = testing.TB(nil)

// inCI reports whether the tests run in CI (CI=true), where missing tools are fatal.
func inCI() bool { return os.Getenv("CI") == "true" }

// missing skips the test, or fails it under CI=true, because what is not
// available.
func missing(t TB, what string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s is required when CI=true (run .ci/run to install it)", what)
	}
	t.Skipf("%s not available; skipping (CI=true makes this fatal)", what)
}

// Short reports whether slow checks may be left out: -short was given and
// CI is not set (CI=true runs everything).
func Short() bool { return testing.Short() && !inCI() }

// SkipIfShort skips a slow test under -short, never under CI=true.
func SkipIfShort(t TB) {
	t.Helper()
	if Short() {
		t.Skipf("slow test; skipped with -short")
	}
}

var lookPath sync.Map // tool name -> error from exec.LookPath

func lookTool(name string) error {
	if v, ok := lookPath.Load(name); ok {
		err, _ := v.(error)
		return err
	}
	_, err := exec.LookPath(name)
	lookPath.Store(name, err)
	return err
}

// RequireTool skips the test (fails it under CI=true) unless the program
// name, such as xz, zstd or bzip2, is on PATH.
func RequireTool(t TB, name string) {
	t.Helper()
	if lookTool(name) != nil {
		missing(t, "the "+name+" program")
	}
}

// HaveTool reports whether the program name is on PATH, for a test that
// cross-checks with it when it can. A missing tool is logged, and fails the
// test under CI=true.
func HaveTool(t TB, name string) bool {
	t.Helper()
	if lookTool(name) == nil {
		return true
	}
	if inCI() {
		t.Fatalf("the %s program is required when CI=true (run .ci/run to install it)", name)
	}
	t.Logf("the %s program is not available; its cross-check is left out (CI=true makes this fatal)", name)
	return false
}

// Environ returns this process's environment without the variables whose
// names start with one of prefixes (such as "NIXCACHE_"), for a child that
// must see only the settings the test gives it.
func Environ(prefixes ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(e, p) }) {
			env = append(env, e)
		}
	}
	return env
}
