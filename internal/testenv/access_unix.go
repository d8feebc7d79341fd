//go:build unix

package testenv

import "syscall"

// access is access(2): whether this process may use path as mode says.
func access(path string, mode uint32) error { return syscall.Access(path, mode) }
