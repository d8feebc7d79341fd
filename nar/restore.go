package nar

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Restore unpacks the NAR read from r at dir, as `nix-store --restore dir`
// does. When the root is a directory, dir must not exist or be an empty
// directory; when it is a file or symlink, dir must not exist
// (ErrNotEmpty otherwise). Like Nix, files are created writable with mode
// 0666 and directories with 0777 (both less the umask), and executable
// files get the three execute bits added to that; the store makes paths
// read-only later, Restore does not. Names are validated by the Reader (no
// "", ".", "..", '/' or NUL), every object is created exclusively, and all
// creation goes through an os.Root opened on dir, so a restore never
// follows a symlink it has created, or any other, out of dir. Symlink
// targets are data and are written verbatim, wherever they point. The
// archive must be complete and well formed; on error, what was restored so
// far is left in place.
func Restore(r io.Reader, dir string) error {
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
		defer root.Close()
		for {
			h, err := nr.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			switch h.Type {
			case TypeDirectory:
				err = root.Mkdir(h.Path, 0o777)
			case TypeSymlink:
				err = root.Symlink(h.LinkTarget, h.Path)
			case TypeRegular:
				var f *os.File
				if f, err = root.OpenFile(h.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666); err == nil {
					err = restoreFile(f, nr, h, buf)
				}
			}
			if err != nil {
				return restoreErr(dir, h.Path, err)
			}
		}
	}
	_, err = nr.Next()
	if err == io.EOF {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("nar: restore %s: entry after a non-directory root: %w", dir, ErrFormat)
	}
	return err
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
		return fmt.Errorf("nar: restore %s: not a directory: %w", dir, ErrNotEmpty)
	}
	f, err := os.Open(dir)
	if err != nil {
		return restoreErr(dir, "", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return fmt.Errorf("nar: restore %s: directory not empty: %w", dir, ErrNotEmpty)
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
