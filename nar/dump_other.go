//go:build !linux

package nar

// newFastDumper returns the portable walker: there is no faster one here.
func newFastDumper(w *Writer, root string) treeDumper { return &portableDumper{w: w, root: root} }
