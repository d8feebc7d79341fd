//go:build !unix

package file

import "os"

// lockTemp does nothing where there is no flock (Windows): there the file
// system itself refuses to remove a file another process holds open, which
// protects a live Put's temporary file the same way.
func lockTemp(*os.File) {}

// lockedByOther reports false: the age of the file alone decides, and the
// removal fails harmlessly while a writer still has it open.
func lockedByOther(*os.File) bool { return false }
