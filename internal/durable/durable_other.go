//go:build !linux

package durable

import "errors"

// KeepsRenameOrder: not known here; callers make each step durable on its
// own.
func KeepsRenameOrder(string) bool { return false }

// Unjournaled: not known here (false: a directory fsync is taken to write
// what was created in it).
func Unjournaled(string) bool { return false }

// Syncfs is not available here.
func Syncfs(int) error { return errors.ErrUnsupported }
