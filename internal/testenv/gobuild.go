package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var goroot = sync.OnceValues(func() (string, error) {
	out, err := exec.Command(goTool(), "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOROOT: %w", err)
	}
	return string(bytes.TrimSpace(out)), nil
})

// goTool is the go command: the one of the toolchain that runs the tests
// when go test sets $GOROOT's bin first on PATH, as it does.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// GOROOT returns the root of the Go installation (`go env GOROOT`), whose
// src directory is a large real tree for NAR tests. It fails the test if
// the go command does not answer.
func GOROOT(t TB) string {
	t.Helper()
	dir, err := goroot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dir
}

type build struct {
	once sync.Once
	dir  string
	err  error
}

var builds sync.Map // package list -> *build

// GoBuild builds the commands with the given import paths and returns the
// directory that holds them; each binary is named after its package's last
// path element. Under go test, a given list of packages is built once per
// test binary run, into go test's own work directory, which go test removes
// afterwards; a test binary run by hand builds into the test's TempDir.
func GoBuild(t TB, pkgs ...string) string {
	t.Helper()
	parent := buildParent()
	if parent == "" {
		dir := t.TempDir()
		if err := goBuild(dir, pkgs); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		return dir
	}
	v, _ := builds.LoadOrStore(strings.Join(pkgs, " "), &build{})
	b := v.(*build)
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp(parent, "testenv-bin-")
		if b.err == nil {
			b.err = goBuild(b.dir, pkgs)
		}
	})
	if b.err != nil {
		t.Fatalf("testenv: %v", b.err)
	}
	return b.dir
}

func goBuild(dir string, pkgs []string) error {
	out, err := exec.Command(goTool(), append([]string{"build", "-o", dir + "/"}, pkgs...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	return nil
}

// buildParent returns the directory of the test binary when go test built it
// into its work directory ($WORK/bNNN/, removed when go test ends), else "".
func buildParent() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	dir := filepath.Dir(exe)
	if !strings.HasPrefix(filepath.Base(filepath.Dir(dir)), "go-build") {
		return ""
	}
	return dir
}

// GoListDeps returns the packages pkg links, itself included (`go list
// -deps`), for tests that pin a package's import graph.
func GoListDeps(t TB, pkg string) map[string]bool {
	t.Helper()
	out, err := exec.Command(goTool(), "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	deps := map[string]bool{}
	for _, d := range strings.Fields(string(out)) {
		deps[d] = true
	}
	if !deps[pkg] {
		t.Fatalf("go list -deps %s does not list the package itself", pkg)
	}
	return deps
}
