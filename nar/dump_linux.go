package nar

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"syscall"
	"unsafe"
)

const (
	atFDCWD     = -0x64 // AT_FDCWD
	bigCopySize = 256 << 10
	direntSize  = 32 << 10
)

type dirEntry struct {
	name string
	typ  uint8
}

type dumper struct {
	w      *Writer
	root   string // file system path of the dumped object
	hdr    Header
	big    []byte
	dirent []byte
	ents   []dirEntry
	link   []byte
}

func (d *dumper) dumpRoot(narPath string) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(d.root, &st); err != nil {
		return dumpErr(d.root, "", "lstat", err)
	}
	return d.entry(atFDCWD, d.root, narPath, "", st.Mode&syscall.S_IFMT)
}

func openDir(dirfd int, name string) (int, error) {
	for {
		fd, err := syscall.Openat(dirfd, name, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// entry dumps the object named name in dirfd (a directory by recursion);
// narPath is its NAR path, rel its path below d.root.
func (d *dumper) entry(dirfd int, name, narPath, rel string, ifmt uint32) error {
	switch ifmt {
	case syscall.S_IFREG:
		return d.file(dirfd, name, narPath, rel)
	case syscall.S_IFLNK:
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
	case syscall.S_IFDIR:
		fd, err := openDir(dirfd, name)
		if err != nil {
			return dumpErr(d.root, rel, "open", err)
		}
		defer syscall.Close(fd)
		d.hdr = Header{Path: narPath, Type: TypeDirectory}
		if err := d.w.WriteHeader(&d.hdr); err != nil {
			return err
		}
		return d.dir(fd, narPath, rel)
	}
	return dumpErr(d.root, rel, "file type", ErrUnsupported)
}

func (d *dumper) file(dirfd int, name, narPath, rel string) error {
	var fd int
	var err error
	for {
		fd, err = syscall.Openat(dirfd, name, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return dumpErr(d.root, rel, "open", err)
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return dumpErr(d.root, rel, "fstat", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return dumpErr(d.root, rel, "file changed type", ErrUnsupported)
	}
	d.hdr = Header{Path: narPath, Type: TypeRegular, Executable: st.Mode&syscall.S_IXUSR != 0, Size: st.Size}
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
		n, err := syscall.Read(int(*f), p)
		if err == syscall.EINTR {
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
func (d *dumper) dir(fd int, narPath, rel string) error {
	if d.dirent == nil {
		d.dirent = make([]byte, direntSize)
	}
	start := len(d.ents)
	for {
		n, err := syscall.ReadDirent(fd, d.dirent)
		if err == syscall.EINTR {
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
	slices.SortFunc(ents, func(a, b dirEntry) int { return strings.Compare(a.name, b.name) })
	defer func() { d.ents = d.ents[:start] }()
	for _, e := range ents {
		childNar := e.name
		if narPath != "" {
			childNar = narPath + "/" + e.name
		}
		childRel := e.name
		if rel != "" {
			childRel = rel + "/" + e.name
		}
		var ifmt uint32
		switch e.typ {
		case syscall.DT_REG:
			ifmt = syscall.S_IFREG
		case syscall.DT_DIR:
			ifmt = syscall.S_IFDIR
		case syscall.DT_LNK:
			ifmt = syscall.S_IFLNK
		case syscall.DT_UNKNOWN:
			var st syscall.Stat_t
			if err := syscall.Lstat(d.root+"/"+childRel, &st); err != nil {
				return dumpErr(d.root, childRel, "lstat", err)
			}
			ifmt = st.Mode & syscall.S_IFMT
		}
		if err := d.entry(fd, e.name, childNar, childRel, ifmt); err != nil {
			return err
		}
	}
	return nil
}

// parseDirents appends the entries of a linux_dirent64 buffer, without "."
// and "..".
func parseDirents(b []byte, ents []dirEntry) []dirEntry {
	for len(b) >= 19 {
		reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
		if reclen < 19 || reclen > len(b) {
			break
		}
		typ := b[18]
		name := b[19:reclen]
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

func readlinkat(dirfd int, name string, buf []byte) (int, error) {
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	for {
		n, _, e := syscall.Syscall6(syscall.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
			uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}
