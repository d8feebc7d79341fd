package nar

import (
	"bytes"
	"encoding/binary"
	"io"
	"sync"

	"golang.org/x/sys/unix"
)

const (
	bigCopySize = 256 << 10
	direntSize  = 32 << 10
)

// newFastDumper returns the Linux walker: it opens every object relative to
// its directory (openat), reads directories with getdents and takes each
// entry's type from d_type, so that the only stat is the fstat of each
// regular file (about 1.7 times the speed of the portable walker).
func newFastDumper(w *Writer, root string) treeDumper { return &linuxDumper{w: w, root: root} }

// direntBufs recycles the getdents buffers of dumps (one per AddTree), so
// that dumping many small store paths in a row allocates few.
var direntBufs = sync.Pool{New: func() any {
	b := make([]byte, direntSize)
	return &b
}}

// release hands the dumper's getdents buffer back once the dump is over
// (the entries parsed from it are copies).
func (d *linuxDumper) release() {
	if d.dirent != nil {
		b := d.dirent
		d.dirent = nil
		direntBufs.Put(&b)
	}
}

type linuxDumper struct {
	w      *Writer
	root   string // file system path of the dumped object
	hdr    Header
	big    []byte
	dirent []byte
	ents   []dirEntry
	link   []byte
}

func (d *linuxDumper) dumpRoot(narPath string) error {
	var st unix.Stat_t
	if err := unix.Lstat(d.root, &st); err != nil {
		return dumpErr(d.root, "", "lstat", err)
	}
	return d.entry(unix.AT_FDCWD, d.root, narPath, "", st.Mode&unix.S_IFMT)
}

// openat retries unix.Openat on EINTR.
func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// entry dumps the object named name in dirfd (a directory by recursion);
// narPath is its NAR path, rel its path below d.root.
func (d *linuxDumper) entry(dirfd int, name, narPath, rel string, ifmt uint32) error {
	switch ifmt {
	case unix.S_IFREG:
		return d.file(dirfd, name, narPath, rel)
	case unix.S_IFLNK:
		if d.link == nil {
			d.link = make([]byte, MaxTargetLen+1)
		}
		n, err := readlinkat(dirfd, name, d.link)
		if err != nil {
			return dumpErr(d.root, rel, "readlink", err)
		}
		if n >= len(d.link) {
			return dumpErr(d.root, rel, "readlink", ErrInvalidTarget)
		}
		d.hdr = Header{Path: narPath, Type: TypeSymlink, LinkTarget: string(d.link[:n])}
		return d.w.WriteHeader(&d.hdr)
	case unix.S_IFDIR:
		fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return dumpErr(d.root, rel, "open", err)
		}
		defer unix.Close(fd)
		d.hdr = Header{Path: narPath, Type: TypeDirectory}
		if err := d.w.WriteHeader(&d.hdr); err != nil {
			return err
		}
		return d.dir(fd, narPath, rel)
	}
	return dumpErr(d.root, rel, "file type", ErrUnsupported)
}

func (d *linuxDumper) file(dirfd int, name, narPath, rel string) error {
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return dumpErr(d.root, rel, "open", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return dumpErr(d.root, rel, "fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return dumpErr(d.root, rel, "file changed type", ErrUnsupported)
	}
	d.hdr = Header{Path: narPath, Type: TypeRegular, Executable: st.Mode&unix.S_IXUSR != 0, Size: st.Size}
	if err := d.w.WriteHeader(&d.hdr); err != nil {
		return err
	}
	fr := fdReader(fd)
	if st.Size <= int64(writeBufSize) {
		if _, err := d.w.readContents(&fr); err != nil {
			if d.w.err != nil {
				return d.w.err
			}
			return dumpErr(d.root, rel, "read", err)
		}
		return nil
	}
	if d.big == nil {
		d.big = make([]byte, bigCopySize)
	}
	for left := st.Size; left > 0; {
		b := d.big[:min(int64(len(d.big)), left)]
		n, err := io.ReadFull(&fr, b)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return dumpErr(d.root, rel, "read", err)
		}
		if _, err := d.w.Write(b[:n]); err != nil {
			return err
		}
		left -= int64(n)
	}
	return nil
}

type fdReader int

func (f *fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(*f), p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// dir dumps the entries of the open directory fd.
func (d *linuxDumper) dir(fd int, narPath, rel string) error {
	if d.dirent == nil {
		d.dirent = *direntBufs.Get().(*[]byte)
	}
	start := len(d.ents)
	for {
		n, err := unix.ReadDirent(fd, d.dirent)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return dumpErr(d.root, rel, "getdents", err)
		}
		if n <= 0 {
			break
		}
		d.ents = parseDirents(d.dirent[:n], d.ents)
	}
	ents := d.ents[start:]
	defer func() { d.ents = d.ents[:start] }()
	if err := d.w.sortEntries(ents, d.root, rel); err != nil {
		return err
	}
	for _, e := range ents {
		childNar := e.narName
		if narPath != "" {
			childNar = narPath + "/" + e.narName
		}
		childRel := e.name
		if rel != "" {
			childRel = rel + "/" + e.name
		}
		var ifmt uint32
		switch e.typ {
		case unix.DT_REG:
			ifmt = unix.S_IFREG
		case unix.DT_DIR:
			ifmt = unix.S_IFDIR
		case unix.DT_LNK:
			ifmt = unix.S_IFLNK
		case unix.DT_UNKNOWN:
			// Some file systems leave d_type unset: ask, relative to fd.
			var st unix.Stat_t
			if err := unix.Fstatat(fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return dumpErr(d.root, childRel, "lstat", err)
			}
			ifmt = st.Mode & unix.S_IFMT
		}
		if err := d.entry(fd, e.name, childNar, childRel, ifmt); err != nil {
			return err
		}
	}
	return nil
}

// Field offsets in struct linux_dirent64, the same on every Linux
// architecture: d_ino (8 bytes), d_off (8), d_reclen (2), d_type (1),
// d_name (NUL-terminated). TestDirentLayout checks them against unix.Dirent.
const (
	direntReclen = 16
	direntType   = 18
	direntName   = 19
)

// parseDirents appends the entries of a getdents64 buffer, without "." and
// "..".
func parseDirents(b []byte, ents []dirEntry) []dirEntry {
	for len(b) >= direntName {
		reclen := int(binary.NativeEndian.Uint16(b[direntReclen:]))
		if reclen < direntName || reclen > len(b) {
			break
		}
		typ := b[direntType]
		name := b[direntName:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		b = b[reclen:]
		if len(name) == 1 && name[0] == '.' || len(name) == 2 && name[0] == '.' && name[1] == '.' {
			continue
		}
		ents = append(ents, dirEntry{name: string(name), typ: typ})
	}
	return ents
}

// readlinkat reads the target of the symlink name in dirfd into buf.
func readlinkat(dirfd int, name string, buf []byte) (int, error) {
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != unix.EINTR {
			return n, err
		}
	}
}
