package nar

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// appendStr appends s as a NAR string: u64le length, bytes, zero padding.
func appendStr(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	b = append(b, s...)
	var zero [8]byte
	return append(b, zero[:padLen(uint64(len(s)))]...)
}

func tokens(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = appendStr(b, s)
	}
	return b
}

// Pre-encoded token sequences.
var (
	tokMagic       = tokens("nix-archive-1")
	tokRegular     = tokens("(", "type", "regular")
	tokExecutable  = tokens("executable", "")
	tokContents    = tokens("contents")
	tokSymlink     = tokens("(", "type", "symlink", "target")
	tokDirectory   = tokens("(", "type", "directory")
	tokEntryName   = tokens("entry", "(", "name")
	tokNode        = tokens("node")
	tokClose       = tokens(")")
	tokCloseClose  = tokens(")", ")")
	zeroPad        [8]byte
	writeBufSize   = 64 << 10
	directWriteMin = 32 << 10
)

type wdir struct {
	name    string // entry name; "" for the root
	last    string // name of the last entry written in this directory
	hasLast bool
	node    *Node // listing node, when listing is enabled
}

// Writer writes a NAR to an underlying io.Writer. Call WriteHeader for each
// object in NAR order (directory entries sorted byte-wise by name, a
// directory before its entries), Write for a regular file's contents, then
// Close. Output is buffered: token bytes and small files accumulate in one
// internal buffer that reaches the underlying writer in large writes, while
// large Writes go straight through. The first error is sticky: every later
// call returns it.
//
// Missing parent directories are created implicitly: a first header with
// Path "a/b" makes the root and "a" directories, as if their headers had
// been written. Writing a directory's header explicitly after one of its
// entries is then an ErrDuplicate. A Header with Path "" describes the root,
// and must come first if written.
type Writer struct {
	w       io.Writer
	buf     []byte
	off     int64 // bytes handed to w
	err     error
	started bool
	stack   []wdir // open directories; stack[0] is the root
	comps   []string

	inFile    bool
	remaining int64
	fileSize  int64

	listing *Listing

	// portableDump makes AddTree use the portable walker even where a
	// faster one exists; tests set it to check both against Nix.
	portableDump bool
	// caseHack makes AddTree apply Nix's case hack (SetCaseHack).
	caseHack bool
}

// NewWriter returns a Writer that writes a NAR to w. Nothing is written
// until the first WriteHeader. Its AddTree applies Nix's case hack where
// Nix does by default (DefaultCaseHack; see SetCaseHack). Close does not close w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: (*writeBufs.Get().(*[]byte))[:0], caseHack: DefaultCaseHack}
}

// writeBufs recycles Writers' buffers: a Close that succeeded hands its
// buffer back, so that dumping many small store paths in a row (a closure)
// allocates and clears one buffer, not one per path.
var writeBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, writeBufSize)
	return &b
}}

// EnableListing makes the Writer record a .ls listing of what it writes,
// with the narOffset of each regular file, available from Listing after
// Close. Call it before the first WriteHeader.
func (w *Writer) EnableListing() {
	if !w.started {
		w.listing = &Listing{}
	}
}

// Listing returns the listing recorded since EnableListing, or nil when
// listing was not enabled. It is complete once Close has returned nil.
func (w *Writer) Listing() *Listing { return w.listing }

// Offset returns the number of bytes of NAR written so far, buffered or not.
// Right after WriteHeader of a regular file it is the offset of the file's
// first content byte, the narOffset of .ls listings.
func (w *Writer) Offset() int64 { return w.off + int64(len(w.buf)) }

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	n, err := w.w.Write(w.buf)
	w.off += int64(n)
	if err == nil && n < len(w.buf) {
		err = io.ErrShortWrite
	}
	w.buf = w.buf[:0]
	if err != nil {
		return w.fail(fmt.Errorf("nar: write: %w", err))
	}
	return nil
}

func (w *Writer) put(b []byte) {
	w.buf = append(w.buf, b...)
}

func (w *Writer) putStr(s string) {
	w.buf = appendStr(w.buf, s)
}

// finishFile closes a regular file whose contents are complete.
func (w *Writer) finishFile() error {
	if !w.inFile {
		return nil
	}
	if w.remaining > 0 {
		return w.fail(fmt.Errorf("%w: %d of %d content bytes missing", ErrWriteTooShort, w.remaining, w.fileSize))
	}
	w.inFile = false
	w.put(zeroPad[:padLen(uint64(w.fileSize))])
	if len(w.stack) > 0 {
		w.put(tokCloseClose)
	} else {
		w.put(tokClose)
	}
	return nil
}

// splitPath splits p into w.comps without allocating new strings.
func (w *Writer) splitPath(p string) error {
	w.comps = w.comps[:0]
	if p == "" {
		return nil
	}
	for {
		i := 0
		for i < len(p) && p[i] != '/' {
			i++
		}
		name := p[:i]
		if err := ValidateName(name); err != nil {
			return fmt.Errorf("%w: header path %q: name %q", err, p, name)
		}
		w.comps = append(w.comps, name)
		if i == len(p) {
			return nil
		}
		p = p[i+1:]
	}
}

// WriteHeader starts the object described by h, finishing the previous one.
// Only h.Path, h.Type, h.Executable, h.Size and h.LinkTarget are used.
func (w *Writer) WriteHeader(h *Header) error {
	if w.err != nil {
		return w.err
	}
	if err := w.finishFile(); err != nil {
		return err
	}
	switch h.Type {
	case TypeRegular:
		if h.Size < 0 {
			return w.fail(fmt.Errorf("%w: header %q: negative size %d", ErrInvalidHeader, h.Path, h.Size))
		}
	case TypeSymlink:
		if err := validateTarget(h.LinkTarget); err != nil {
			return w.fail(fmt.Errorf("%w: header %q: target of length %d", err, h.Path, len(h.LinkTarget)))
		}
	case TypeDirectory:
	default:
		return w.fail(fmt.Errorf("%w: header %q: type %d", ErrInvalidHeader, h.Path, h.Type))
	}
	if len(h.Path) > MaxPathLen {
		return w.fail(fmt.Errorf("%w: header path of %d bytes exceeds %d", ErrPathTooLong, len(h.Path), MaxPathLen))
	}
	if err := w.splitPath(h.Path); err != nil {
		return w.fail(err)
	}
	comps := w.comps
	if !w.started {
		w.started = true
		w.put(tokMagic)
		if len(comps) == 0 {
			w.node(h, nil)
			return w.maybeFlush()
		}
		var n *Node
		if w.listing != nil {
			n = &Node{Type: TypeDirectory, Entries: map[string]*Node{}}
			w.listing.Root = n
		}
		w.put(tokDirectory)
		w.stack = append(w.stack, wdir{node: n})
	} else if len(w.stack) == 0 {
		return w.fail(fmt.Errorf("%w: header %q after a non-directory root", ErrInvalidHeader, h.Path))
	} else if len(comps) == 0 {
		return w.fail(fmt.Errorf("%w: second root header", ErrDuplicate))
	}
	// Find how many leading components name open directories.
	k := 0
	for k < len(w.stack)-1 && k < len(comps) && w.stack[k+1].name == comps[k] {
		k++
	}
	if k == len(comps) {
		return w.fail(fmt.Errorf("%w: header %q", ErrDuplicate, h.Path))
	}
	if p := &w.stack[k]; p.hasLast {
		switch name := comps[k]; {
		case name == p.last && k < len(comps)-1:
			return w.fail(fmt.Errorf("%w: header %q: %q is not a directory", ErrInvalidHeader, h.Path, name))
		case name == p.last:
			return w.fail(fmt.Errorf("%w: header %q", ErrDuplicate, h.Path))
		case name < p.last:
			return w.fail(fmt.Errorf("%w: header %q: name %q after %q", ErrUnsorted, h.Path, name, p.last))
		}
	}
	for len(w.stack) > k+1 {
		w.stack = w.stack[:len(w.stack)-1]
		w.put(tokCloseClose)
	}
	for _, name := range comps[k : len(comps)-1] {
		p := &w.stack[len(w.stack)-1]
		p.last, p.hasLast = name, true
		w.put(tokEntryName)
		w.putStr(name)
		w.put(tokNode)
		w.put(tokDirectory)
		var n *Node
		if p.node != nil {
			n = &Node{Type: TypeDirectory, Entries: map[string]*Node{}}
			p.node.Entries[name] = n
		}
		w.stack = append(w.stack, wdir{name: name, node: n})
	}
	name := comps[len(comps)-1]
	p := &w.stack[len(w.stack)-1]
	p.last, p.hasLast = name, true
	w.put(tokEntryName)
	w.putStr(name)
	w.put(tokNode)
	w.node(h, p)
	return w.maybeFlush()
}

// node writes the object h; parent is nil for the root.
func (w *Writer) node(h *Header, parent *wdir) {
	var n *Node
	if w.listing != nil {
		n = &Node{Type: h.Type}
		if parent == nil {
			w.listing.Root = n
		} else {
			parent.node.Entries[parent.last] = n
		}
	}
	switch h.Type {
	case TypeRegular:
		w.put(tokRegular)
		if h.Executable {
			w.put(tokExecutable)
		}
		w.put(tokContents)
		w.buf = binary.LittleEndian.AppendUint64(w.buf, uint64(h.Size))
		w.inFile, w.remaining, w.fileSize = true, h.Size, h.Size
		if n != nil {
			n.Size, n.Executable, n.NarOffset = h.Size, h.Executable, w.Offset()
		}
	case TypeSymlink:
		w.put(tokSymlink)
		w.putStr(h.LinkTarget)
		if parent != nil {
			w.put(tokCloseClose)
		} else {
			w.put(tokClose)
		}
		if n != nil {
			n.Target = h.LinkTarget
		}
	case TypeDirectory:
		w.put(tokDirectory)
		if n != nil {
			n.Entries = map[string]*Node{}
		}
		name := ""
		if parent != nil {
			name = parent.last
		}
		w.stack = append(w.stack, wdir{name: name, node: n})
	}
}

func (w *Writer) maybeFlush() error {
	if len(w.buf) >= writeBufSize {
		return w.flush()
	}
	return nil
}

// Write writes contents of the current regular file. Writing more than the
// header's Size bytes, or writing after a non-regular header, returns
// ErrWriteTooLong.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if !w.inFile {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, w.fail(fmt.Errorf("%w: write of %d bytes outside a regular file", ErrWriteTooLong, len(p)))
	}
	var tooLong bool
	if int64(len(p)) > w.remaining {
		p, tooLong = p[:w.remaining], true
	}
	n := len(p)
	if n >= directWriteMin {
		if err := w.flush(); err != nil {
			return 0, err
		}
		m, err := w.w.Write(p)
		w.off += int64(m)
		w.remaining -= int64(m)
		if err == nil && m < n {
			err = io.ErrShortWrite
		}
		if err != nil {
			return m, w.fail(fmt.Errorf("nar: write: %w", err))
		}
	} else {
		for len(p) > 0 {
			c := min(len(p), writeBufSize-len(w.buf))
			w.buf = append(w.buf, p[:c]...)
			p = p[c:]
			if len(w.buf) >= writeBufSize {
				if err := w.flush(); err != nil {
					return n - len(p), err
				}
			}
		}
		w.remaining -= int64(n)
	}
	if tooLong {
		return n, w.fail(fmt.Errorf("%w: file of size %d", ErrWriteTooLong, w.fileSize))
	}
	return n, nil
}

// ReadFrom copies r to the current regular file until r reports io.EOF,
// reading straight into the internal buffer. Like Write, it fails with
// ErrWriteTooLong if r holds more than the remaining Size bytes (or any
// bytes outside a regular file); a short r leaves the file incomplete, which
// the next WriteHeader or Close reports as ErrWriteTooShort.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	var total int64
	if w.inFile {
		n, err := w.readContents(r)
		total = n
		if err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	var probe [1]byte
	for {
		n, err := r.Read(probe[:])
		if n > 0 {
			return total, w.fail(fmt.Errorf("%w: copy past the file's size %d", ErrWriteTooLong, w.fileSize))
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// readContents reads exactly the remaining contents of the current file
// from r, straight into the internal buffer. It returns
// io.ErrUnexpectedEOF if r ends early.
func (w *Writer) readContents(r io.Reader) (int64, error) {
	var total int64
	if w.remaining <= int64(cap(w.buf)) && w.remaining > int64(cap(w.buf)-len(w.buf)) {
		// Read the whole file in one call rather than split across a flush.
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	for w.remaining > 0 {
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return total, err
			}
		}
		c := int(min(int64(cap(w.buf)-len(w.buf)), w.remaining))
		m, err := io.ReadFull(r, w.buf[len(w.buf):len(w.buf)+c])
		w.buf = w.buf[:len(w.buf)+m]
		total += int64(m)
		w.remaining -= int64(m)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
	}
	return total, w.maybeFlush()
}

// Close finishes the archive, closing every open directory, and flushes
// the buffer. It does not close the underlying writer. An archive needs a
// root: Close before any WriteHeader returns ErrInvalidHeader.
func (w *Writer) Close() error {
	if w.err == ErrClosed {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	if err := w.finishFile(); err != nil {
		return err
	}
	if !w.started {
		return w.fail(fmt.Errorf("%w: close of an empty archive", ErrInvalidHeader))
	}
	for len(w.stack) > 1 {
		w.stack = w.stack[:len(w.stack)-1]
		w.put(tokCloseClose)
	}
	if len(w.stack) == 1 {
		w.stack = w.stack[:0]
		w.put(tokClose)
	}
	if err := w.flush(); err != nil {
		return err
	}
	w.err = ErrClosed
	// Every method returns ErrClosed from now on: the buffer is free.
	if cap(w.buf) == writeBufSize {
		b := w.buf[:0]
		writeBufs.Put(&b)
	}
	w.buf = nil
	return nil
}
