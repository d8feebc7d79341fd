//go:build !unix

package drv

import (
	"io"
	"os"
)

// openDrv opens path for reading.
func openDrv(path string) (io.ReadCloser, error) { return os.Open(path) }
