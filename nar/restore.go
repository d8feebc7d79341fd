package nar

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Restore unpacks the NAR read from r at dir, as `nix-store --restore dir`
// does. When the root is a directory, dir must not exist or be an empty
// directory; when it is a file or symlink, dir must not exist
// (ErrNotEmpty otherwise). Like Nix, files are created writable with mode
// 0666 and directories with 0777 (both less the umask), and executable
// files get the three execute bits added to that; the store makes paths
// read-only later, Restore does not. Names are validated by the Reader (no
// "", ".", "..", '/' or NUL), every object is created exclusively, and all
// creation goes through an os.Root per directory level, opened on dir and
// on each directory Restore creates, with single-component names, so a
// restore never follows a symlink it has created, or any other, out of dir,
// and each object costs a constant number of system calls whatever its
// depth. Symlink targets are data and are written verbatim, wherever they
// point.
//
// Like nix-store --restore, which creates every object through the path
// dir + "/" + its path in the archive (dir as given, relative or not),
// Restore refuses an object whose such path would be longer than MaxPathLen
// bytes, where Nix gets "File name too long" from the kernel: the error
// wraps ErrPathTooLong and syscall.ENAMETOOLONG. The archive must be complete and well formed; on error, what was
// restored so far is left in place.
//
// Names are restored as Nix's use-case-hack setting has them by default on
// this platform (DefaultCaseHack: on darwin only); RestoreOptions.Restore
// chooses.
func Restore(r io.Reader, dir string) error { return restore(r, dir, DefaultRestoreOptions()) }

func restore(r io.Reader, dir string, o RestoreOptions) error {
	nr := NewReader(r)
	h, err := nr.Next()
	if err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	switch h.Type {
	case TypeRegular:
		f, err := os.OpenFile(dir, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if err != nil {
			return restoreErr(dir, "", err)
		}
		if err := restoreFile(f, nr, h, buf); err != nil {
			return restoreErr(dir, "", err)
		}
	case TypeSymlink:
		if err := os.Symlink(h.LinkTarget, dir); err != nil {
			return restoreErr(dir, "", err)
		}
	case TypeDirectory:
		return restoreDir(nr, dir, buf, o.CaseHack)
	}
	_, err = nr.Next()
	if err == io.EOF {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("%w: restore %s: entry after a non-directory root", ErrFormat, dir)
	}
	return err
}

// level is a directory being restored: the os.Root open on it, and with the
// case hack, its entries so far and the bytes the hack added to its path.
type level struct {
	root  *os.Root
	names caseHacker
	extra int
}

// restoreDir restores the entries of a directory root into dir, holding one
// open os.Root per directory level of the current entry.
func restoreDir(nr *Reader, dir string, buf []byte, caseHack bool) error {
	if err := os.Mkdir(dir, 0o777); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return restoreErr(dir, "", err)
		}
		if err := checkEmptyDir(dir); err != nil {
			return err
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return restoreErr(dir, "", err)
	}
	levels := []level{{root: root}} // levels[d-1] is the directory of an entry at depth d
	defer func() {
		for _, l := range levels {
			l.root.Close()
		}
	}()
	for {
		h, err := nr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		d, name := nr.depth(), nr.name()
		for len(levels) > d {
			levels[len(levels)-1].root.Close()
			levels = levels[:len(levels)-1]
		}
		extra := levels[d-1].extra
		if caseHack {
			if levels[d-1].names == nil {
				levels[d-1].names = caseHacker{}
			}
			disk, collision := levels[d-1].names.diskName(name)
			if collision != "" {
				return fmt.Errorf("%w: restore %s: %s", ErrCaseCollision, dir+"/"+h.Path, collision)
			}
			extra += len(disk) - len(name)
			name = disk
		}
		if n := len(dir) + 1 + len(h.Path) + extra; n > MaxPathLen {
			return fmt.Errorf("%w: restore %s: entry at depth %d: path of %d bytes exceeds %d: %w", ErrPathTooLong, dir, nr.depth(), n, MaxPathLen, syscall.ENAMETOOLONG)
		}
		parent := levels[d-1].root
		switch h.Type {
		case TypeDirectory:
			if err = parent.Mkdir(name, 0o777); err == nil {
				var sub *os.Root
				if sub, err = parent.OpenRoot(name); err == nil {
					levels = append(levels, level{root: sub, extra: extra})
				}
			}
		case TypeSymlink:
			err = parent.Symlink(h.LinkTarget, name)
		case TypeRegular:
			var f *os.File
			if f, err = parent.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666); err == nil {
				err = restoreFile(f, nr, h, buf)
			}
		}
		if err != nil {
			return restoreErr(dir, h.Path, err)
		}
	}
}

func restoreErr(dir, rel string, err error) error {
	if rel != "" {
		dir += "/" + rel
	}
	return fmt.Errorf("nar: restore %s: %w", dir, err)
}

func checkEmptyDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return restoreErr(dir, "", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: restore %s: not a directory", ErrNotEmpty, dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return restoreErr(dir, "", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return fmt.Errorf("%w: restore %s: directory not empty", ErrNotEmpty, dir)
	}
	if err != nil && err != io.EOF {
		return restoreErr(dir, "", err)
	}
	return nil
}

// restoreFile copies the current file's contents to f, sets the execute
// bits like Nix (st_mode | 0111) when needed, and closes f.
func restoreFile(f *os.File, nr *Reader, h *Header, buf []byte) error {
	_, err := io.CopyBuffer(struct{ io.Writer }{f}, nr, buf)
	if err == nil && h.Executable {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil {
			err = f.Chmod(fi.Mode().Perm() | 0o111)
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
