//go:build !unix

package file_test

// syscallUmask does nothing where there is no umask (Windows).
func syscallUmask(int) int { return 0 }
