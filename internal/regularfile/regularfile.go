// Package regularfile reads small files that must be regular files: config
// and key files, which a careless or hostile setup may point at a FIFO (a
// reader blocks forever), a device such as /dev/zero (it never ends) or a
// huge file. It opens without blocking, checks with fstat, and reads at most
// a given number of bytes. Its errors never contain the path, which may be a
// secret pasted where a file name belongs: callers name the setting.
package regularfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular is wrapped by Read's error for a FIFO, device, socket or
// directory: such a "file" could block a reader forever or never end.
//
// Like ErrTooLarge, its text has no package prefix: Read's callers
// say which file (or setting) it was about.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by Read's error for a file over its limit.
var ErrTooLarge = errors.New("file too large")

// Read reads a regular file of at most limit bytes. It opens without
// blocking (O_NONBLOCK, so a FIFO with no writer does not hang it), checks
// with fstat that the file is regular and small enough, and reads at most
// limit bytes even if the file grows. Its errors never contain path (which
// may be a secret pasted where a file name belongs): callers name the
// setting instead. They wrap fs.ErrNotExist, fs.ErrPermission,
// ErrNotRegular or ErrTooLarge as the case is.
func Read(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, stripPath(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, stripPath(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w (%s)", ErrNotRegular, fileType(fi.Mode()))
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, fi.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, stripPath(err)
	}
	if int64(len(b)) > limit {
		clear(b)
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

// stripPath removes the file name from a *fs.PathError, keeping the
// operation and the cause (which errors.Is still sees). It uses no fmt: a
// missing optional file (the hook's config file) is the common case.
func stripPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &opError{op: pe.Op, err: pe.Err}
	}
	return err
}

// opError is an *fs.PathError without the path: "op: cause".
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "mode " + m.String()
}
