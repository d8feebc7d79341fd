//go:build unix

package file

import (
	"errors"
	"os"
	"syscall"
)

// lockTemp takes an exclusive flock on a temporary file being written, so
// that no sweep removes it; best effort (some file systems have none).
func lockTemp(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) }

// lockedByOther reports whether another open file description holds a lock
// on f: a live Put is writing it.
func lockedByOther(f *os.File) bool {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	return errors.Is(err, syscall.EWOULDBLOCK)
}
