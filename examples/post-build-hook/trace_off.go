//go:build !hooktrace

package main

// mark records a phase of the hook for examples/bench/hooktrace; it is
// empty (and inlined away) unless the hook is built with -tags hooktrace.
func mark(string) {}

// flushMarks writes the recorded phases; a no-op without -tags hooktrace.
func flushMarks() {}
