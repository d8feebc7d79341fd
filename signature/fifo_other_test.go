//go:build !unix

package signature

import "errors"

// mkfifo fails where there are no FIFOs (Windows): the test needing one
// does not run there; the package is only cross-built for it.
func mkfifo(string) error { return errors.New("no FIFOs on this platform") }
