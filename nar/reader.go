package nar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

const readBufSize = 64 << 10

// rdir is an open directory. Its path is not kept: it is r.path[:plen],
// so memory grows with depth by one entry name per level, not one path.
type rdir struct {
	plen    int    // length of the directory's path in r.path
	last    string // the last entry name read in it
	hasLast bool
}

// Reader reads a NAR. Next advances to the next object and returns its
// Header; Read reads a regular file's contents. The Reader is as strict as
// Nix and stricter where Nix's parser is lenient but Nix never writes such
// an archive: only the canonical token order is accepted (so whatever it
// accepts, a Writer re-encodes byte for byte), padding must be zero, names
// must be valid (ValidateName), unique and sorted byte-wise, symlink targets
// non-empty, NUL-free and at most MaxTargetLen bytes, paths at most
// MaxPathLen bytes (ErrPathTooLong), and nothing may follow the archive
// (ErrTrailingData). Memory stays proportional to the depth of the current
// object, and each header costs time proportional to its path. The Reader buffers its input internally;
// wrapping r in a bufio.Reader gains nothing. It starts no goroutines.
type Reader struct {
	r        io.Reader
	buf      []byte
	pos, end int
	off      int64 // NAR offset of buf[pos]
	rerr     error // error from r, after buf is drained
	err      error // sticky
	started  bool
	stack    []rdir
	path     []byte // path of the innermost open directory

	inFile    bool
	remaining int64
	fileSize  int64

	curDepth int
	curName  string
}

// NewReader returns a Reader reading a NAR from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, buf: make([]byte, readBufSize)}
}

func (r *Reader) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return r.err
}

func (r *Reader) formatErr(format string, args ...any) error {
	return r.fail(fmt.Errorf("%w: at offset %d: %s", ErrFormat, r.off, fmt.Sprintf(format, args...)))
}

// fill makes at least n (<= len(r.buf)) bytes available in buf[pos:end].
func (r *Reader) fill(n int) error {
	if r.end-r.pos >= n {
		return nil
	}
	if r.pos > 0 {
		copy(r.buf, r.buf[r.pos:r.end])
		r.end -= r.pos
		r.pos = 0
	}
	for r.end < n {
		if r.rerr != nil {
			if r.rerr == io.EOF {
				return r.fail(fmt.Errorf("%w: at offset %d: truncated archive: %w", ErrFormat, r.off+int64(r.end), io.ErrUnexpectedEOF))
			}
			return r.fail(fmt.Errorf("nar: read: %w", r.rerr))
		}
		m, err := r.r.Read(r.buf[r.end:])
		r.end += m
		if err != nil {
			r.rerr = err
		}
	}
	return nil
}

func (r *Reader) advance(n int) {
	r.pos += n
	r.off += int64(n)
}

// readLen reads a string's length prefix.
func (r *Reader) readLen() (uint64, error) {
	if err := r.fill(8); err != nil {
		return 0, err
	}
	n := binary.LittleEndian.Uint64(r.buf[r.pos:])
	r.advance(8)
	return n, nil
}

// readPadded reads n string bytes plus padding and returns them (valid until
// the next read). n must be small enough to fit the buffer.
func (r *Reader) readPadded(n int) ([]byte, error) {
	p := padLen(uint64(n))
	if err := r.fill(n + p); err != nil {
		return nil, err
	}
	s := r.buf[r.pos : r.pos+n]
	for _, c := range r.buf[r.pos+n : r.pos+n+p] {
		if c != 0 {
			return nil, r.formatErr("non-zero padding")
		}
	}
	r.advance(n + p)
	return s, nil
}

// readString reads a string of at most max bytes; what names it in errors.
func (r *Reader) readString(max int, what string, sentinel error) (string, error) {
	start := r.off
	n, err := r.readLen()
	if err != nil {
		return "", err
	}
	if n > uint64(max) {
		return "", r.fail(fmt.Errorf("%w: at offset %d: %s of %d bytes exceeds %d", sentinel, start, what, n, max))
	}
	b, err := r.readPadded(int(n))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// token reads a short token (at most 16 bytes), returned as a view of the
// buffer.
func (r *Reader) token() ([]byte, error) {
	start := r.off
	n, err := r.readLen()
	if err != nil {
		return nil, err
	}
	if n > 16 {
		r.off = start
		return nil, r.formatErr("token of length %d", n)
	}
	return r.readPadded(int(n))
}

func (r *Reader) expect(tok string) error {
	start := r.off
	t, err := r.token()
	if err != nil {
		return err
	}
	if string(t) != tok {
		r.off = start
		return r.formatErr("expected %q, got %q", tok, t)
	}
	return nil
}

// Next advances to the next object in the archive, skipping any unread
// contents of the current file, and returns its header. At the end of a
// well-formed archive it returns io.EOF.
func (r *Reader) Next() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	if !r.started {
		r.started = true
		if err := r.expect("nix-archive-1"); err != nil {
			if errors.Is(err, ErrFormat) && !errors.Is(err, io.ErrUnexpectedEOF) {
				r.err = fmt.Errorf("%w: not a NAR (bad magic)", ErrFormat)
			}
			return nil, r.err
		}
		if err := r.expect("("); err != nil {
			return nil, err
		}
		return r.node("", "", 0)
	}
	if r.inFile {
		if err := r.skipContents(); err != nil {
			return nil, err
		}
	}
	for len(r.stack) > 0 {
		top := &r.stack[len(r.stack)-1]
		start := r.off
		t, err := r.token()
		if err != nil {
			return nil, err
		}
		if string(t) == ")" {
			r.stack = r.stack[:len(r.stack)-1]
			if len(r.stack) > 0 {
				r.path = r.path[:r.stack[len(r.stack)-1].plen]
				if err := r.expect(")"); err != nil {
					return nil, err
				}
			}
			continue
		}
		if string(t) != "entry" {
			r.off = start
			return nil, r.formatErr("expected \"entry\" or \")\", got %q", t)
		}
		if err := r.expect("("); err != nil {
			return nil, err
		}
		if err := r.expect("name"); err != nil {
			return nil, err
		}
		start = r.off
		name, err := r.readString(MaxNameLen, "entry name", ErrInvalidName)
		if err != nil {
			return nil, err
		}
		if err := ValidateName(name); err != nil {
			return nil, r.fail(fmt.Errorf("%w: at offset %d: directory %q: name %q", err, start, r.path, name))
		}
		if top.hasLast {
			if name == top.last {
				return nil, r.fail(fmt.Errorf("%w: at offset %d: directory %q: name %q", ErrDuplicate, start, r.path, name))
			}
			if name < top.last {
				return nil, r.fail(fmt.Errorf("%w: at offset %d: directory %q: name %q after %q", ErrUnsorted, start, r.path, name, top.last))
			}
		}
		plen := len(name)
		if len(r.path) > 0 {
			plen += len(r.path) + 1
		}
		if plen > MaxPathLen {
			return nil, r.fail(fmt.Errorf("%w: at offset %d: entry %q at depth %d: path of %d bytes exceeds %d", ErrPathTooLong, start, name, len(r.stack), plen, MaxPathLen))
		}
		top.last, top.hasLast = name, true
		if err := r.expect("node"); err != nil {
			return nil, err
		}
		if err := r.expect("("); err != nil {
			return nil, err
		}
		p := name
		if len(r.path) > 0 {
			p = string(r.path) + "/" + name
		}
		return r.node(p, name, len(r.stack))
	}
	// End of archive: nothing may follow.
	if r.end > r.pos {
		return nil, r.fail(fmt.Errorf("%w: at offset %d", ErrTrailingData, r.off))
	}
	for r.rerr == nil {
		m, err := r.r.Read(r.buf[:1])
		if m > 0 {
			return nil, r.fail(fmt.Errorf("%w: at offset %d", ErrTrailingData, r.off))
		}
		r.rerr = err
	}
	if r.rerr != io.EOF {
		return nil, r.fail(fmt.Errorf("nar: read: %w", r.rerr))
	}
	r.err = io.EOF
	return nil, io.EOF
}

// closeNode reads the ")" closing a node and, below the root, its entry.
func (r *Reader) closeNode(depth int) error {
	if err := r.expect(")"); err != nil {
		return err
	}
	if depth > 0 {
		return r.expect(")")
	}
	return nil
}

// node reads a node after its "(" and returns its header.
func (r *Reader) node(path, name string, depth int) (*Header, error) {
	r.curDepth, r.curName = depth, name
	if err := r.expect("type"); err != nil {
		return nil, err
	}
	start := r.off
	t, err := r.token()
	if err != nil {
		return nil, err
	}
	h := &Header{Path: path}
	switch string(t) {
	case "regular":
		h.Type = TypeRegular
		start := r.off
		t, err := r.token()
		if err != nil {
			return nil, err
		}
		if string(t) == "executable" {
			h.Executable = true
			start = r.off
			t, err = r.token()
			if err != nil {
				return nil, err
			}
			if len(t) != 0 {
				r.off = start
				return nil, r.formatErr("executable marker %q is not empty", t)
			}
			start = r.off
			if t, err = r.token(); err != nil {
				return nil, err
			}
		}
		if string(t) != "contents" {
			r.off = start
			return nil, r.formatErr("expected \"contents\", got %q", t)
		}
		size, err := r.readLen()
		if err != nil {
			return nil, err
		}
		if size > math.MaxInt64-8 {
			return nil, r.formatErr("file %q: size %d too large", path, size)
		}
		h.Size = int64(size)
		h.Offset = r.off
		r.inFile, r.remaining, r.fileSize = true, h.Size, h.Size
	case "symlink":
		h.Type = TypeSymlink
		if err := r.expect("target"); err != nil {
			return nil, err
		}
		start := r.off
		target, err := r.readString(MaxTargetLen, "symlink target", ErrInvalidTarget)
		if err != nil {
			return nil, err
		}
		if err := validateTarget(target); err != nil {
			return nil, r.fail(fmt.Errorf("%w: at offset %d: symlink %q", err, start, path))
		}
		h.LinkTarget = target
		if err := r.closeNode(depth); err != nil {
			return nil, err
		}
	case "directory":
		h.Type = TypeDirectory
		r.path = append(r.path[:0], path...)
		r.stack = append(r.stack, rdir{plen: len(path)})
	default:
		r.off = start
		return nil, r.formatErr("unknown node type %q", t)
	}
	return h, nil
}

// skipContents discards the rest of the current file and closes it.
func (r *Reader) skipContents() error {
	for r.remaining > 0 {
		if r.pos == r.end {
			if err := r.fill(1); err != nil {
				return err
			}
		}
		n := int(min(int64(r.end-r.pos), r.remaining))
		r.advance(n)
		r.remaining -= int64(n)
	}
	r.inFile = false
	p := padLen(uint64(r.fileSize))
	if err := r.fill(p); err != nil {
		return err
	}
	for _, c := range r.buf[r.pos : r.pos+p] {
		if c != 0 {
			return r.formatErr("non-zero padding after contents")
		}
	}
	r.advance(p)
	return r.closeNode(r.curDepth)
}

// Read reads the current regular file's contents. It returns io.EOF at the
// end of the file, and 0, io.EOF for objects that are not regular files.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil && !r.inFile {
		return 0, r.err
	}
	if !r.inFile || r.remaining == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	if r.pos == r.end {
		if len(p) >= len(r.buf) && r.rerr == nil {
			// Large read: bypass the buffer.
			m, err := r.r.Read(p)
			r.off += int64(m)
			r.remaining -= int64(m)
			if err != nil {
				r.rerr = err
			}
			if m > 0 {
				return m, nil
			}
		}
		if err := r.fill(1); err != nil {
			return 0, err
		}
	}
	m := copy(p, r.buf[r.pos:r.end])
	r.advance(m)
	r.remaining -= int64(m)
	return m, nil
}

// depth returns the depth of the current header (0 for the root).
func (r *Reader) depth() int { return r.curDepth }

// name returns the entry name of the current header ("" for the root).
func (r *Reader) name() string { return r.curName }
