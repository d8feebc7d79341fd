package testenv_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// goList runs go list with a template over the module's packages and
// returns one line per package.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// No shipped command links the testing package (its flags, its runtime
// hooks): test-only code lives in _test.go files and in the packages below.
func TestCommandsDoNotLinkTesting(t *testing.T) {
	t.Parallel()
	lines := goList(t, "-f", `{{if eq .Name "main"}}{{.ImportPath}} {{join .Deps " "}}{{end}}`, "github.com/nixcache/nixcache/examples/...")
	n := 0
	for _, l := range lines {
		if l == "" {
			continue
		}
		n++
		f := strings.Fields(l)
		if slices.Contains(f[1:], "testing") {
			t.Errorf("%s links the testing package", f[0])
		}
	}
	if n == 0 {
		t.Fatal("go list found no commands under examples/")
	}
}

// Only test kits import the testing package outside _test.go files.
func TestOnlyTestKitsImportTesting(t *testing.T) {
	t.Parallel()
	allowed := []string{
		"github.com/nixcache/nixcache/internal/testenv", // this rig
		"github.com/nixcache/nixcache/cache/cachetest",  // the Backend conformance suite, run by backends' tests
	}
	lines := goList(t, "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/nixcache/nixcache/...")
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && slices.Contains(f[1:], "testing") && !slices.Contains(allowed, f[0]) {
			t.Errorf("%s imports testing outside its _test.go files", f[0])
		}
	}
}
