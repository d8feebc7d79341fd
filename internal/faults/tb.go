package faults

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// TB adapts the few testing.TB methods internal/testenv uses (Helper,
// Fatal[f], Skip[f], Log[f], TempDir, Cleanup, Setenv, Name) for a program
// that is not a test, such as examples/faultinject, so that it can start
// the same S3 server the tests use. Fatal and Skip print the message, run
// the cleanups and exit the process with status 1. Other testing.TB methods
// are not implemented and panic.
type TB struct {
	testing.TB // nil: only the methods below may be called

	name     string
	mu       sync.Mutex
	cleanups []func()
}

// NewTB returns a TB named name. Call Close when done.
func NewTB(name string) *TB { return &TB{name: name} }

// Name returns the name given to NewTB.
func (t *TB) Name() string { return t.name }

// Helper does nothing.
func (t *TB) Helper() {}

// Log prints its arguments to stderr.
func (t *TB) Log(args ...any) { fmt.Fprintln(os.Stderr, args...) }

// Logf prints a formatted line to stderr.
func (t *TB) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// Fatal prints, cleans up and exits with status 1.
func (t *TB) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{t.name + ": fatal:"}, args...)...)
	t.Close()
	os.Exit(1)
}

// Fatalf prints, cleans up and exits with status 1.
func (t *TB) Fatalf(format string, args ...any) { t.Fatal(fmt.Sprintf(format, args...)) }

// Skip is Fatal: a program cannot skip.
func (t *TB) Skip(args ...any) { t.Fatal(args...) }

// Skipf is Fatalf: a program cannot skip.
func (t *TB) Skipf(format string, args ...any) { t.Fatalf(format, args...) }

// Cleanup registers f to run at Close, last registered first.
func (t *TB) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

// TempDir makes a directory removed at Close.
func (t *TB) TempDir() string {
	dir, err := os.MkdirTemp("", "faultinject-")
	if err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// Setenv sets an environment variable for the rest of the program.
func (t *TB) Setenv(key, value string) {
	if err := os.Setenv(key, value); err != nil {
		t.Fatalf("Setenv %s: %v", key, err)
	}
}

// Close runs the cleanups, last registered first.
func (t *TB) Close() {
	t.mu.Lock()
	cs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}
