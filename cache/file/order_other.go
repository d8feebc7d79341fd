//go:build !linux

package file

// keepsRenameOrder: not known here; every Commit is durable on its own.
func keepsRenameOrder(string) bool { return false }
