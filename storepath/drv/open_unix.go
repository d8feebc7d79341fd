//go:build unix

package drv

import (
	"io"
	"os"
	"syscall"
)

// openDrv opens path for reading with raw system calls rather than
// os.Open: no poller registration, no finalizer; a post-build hook reads
// one .drv per build.
func openDrv(path string) (io.ReadCloser, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fdReader(fd), nil
	}
}

// fdReader reads a file descriptor with read(2), retrying on EINTR.
type fdReader int

func (r fdReader) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(r), p)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (r fdReader) Close() error { return syscall.Close(int(r)) }
