package compress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// xzLimit sits between an .xz file and the xz decoder and follows the xz
// container format (streams, block headers, LZMA2 chunk headers, indexes,
// footers, padding) as the bytes pass, without decompressing. A block
// header reaches the decoder only once its LZMA2 dictionary is known to be
// within the limit: ulikunitz/xz allocates whatever dictionary a header asks
// for (up to 4 GiB), so a 247 KB file could make it take gigabytes. This is
// what `xz --memlimit` does; liblzma's decoder needs about the dictionary
// size. Every LZMA2 chunk header states its packed size, so following the
// format costs a few bytes of state and linear time.
type xzLimit struct {
	r     io.Reader
	limit int64
	err   error

	st      xzState
	want    int    // bytes to collect into hdr in the collect states
	hdr     []byte // collected header bytes
	skip    int64  // bytes to pass through unexamined
	check   int    // size of each block's check field (stream flags)
	packed  int64  // LZMA2 bytes of the current block so far
	records uint64 // index records left
	vlis    int    // VLIs left in the current index record set
	index   int64  // index bytes so far (for its padding)
	pad     int    // stream padding bytes seen
}

type xzState uint8

const (
	xzStreamHeader  xzState = iota // collecting the 12-byte stream header
	xzBlockStart                   // a block header's size byte, or 0 for the index
	xzBlockHeader                  // collecting the rest of a block header
	xzChunk                        // an LZMA2 control byte
	xzChunkHeader                  // collecting the rest of an LZMA2 chunk header
	xzIndexCount                   // the index's record count (VLI)
	xzIndexRecords                 // the records' VLIs
	xzStreamPadding                // zero bytes, or the next stream's header
)

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}

// ErrMemoryLimit is returned (wrapped) when a compressed file asks for more
// decoder memory than the limit allows: an xz dictionary or a zstd window
// larger than it.
var ErrMemoryLimit = errors.New("compress: decoder memory limit exceeded")

func (g *xzLimit) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if ferr := g.feed(p[:n]); ferr != nil {
		g.err = ferr
		return 0, ferr
	}
	return n, err
}

// errXZMalformed is wrapped by the errors of an xz file that breaks the
// container format.
var errXZMalformed = errors.New("compress: xz: malformed")

func (g *xzLimit) malformed(what string) error {
	return fmt.Errorf("%w %s", errXZMalformed, what)
}

// feed advances the state machine over b.
func (g *xzLimit) feed(b []byte) error {
	for len(b) > 0 {
		if g.skip > 0 {
			k := int(min(g.skip, int64(len(b))))
			g.skip -= int64(k)
			b = b[k:]
			continue
		}
		c := b[0]
		b = b[1:]
		switch g.st {
		case xzStreamHeader, xzBlockHeader, xzChunkHeader:
			g.hdr = append(g.hdr, c)
			if len(g.hdr) < g.want {
				continue
			}
			if err := g.header(); err != nil {
				return err
			}
		case xzBlockStart:
			if c == 0 { // index indicator
				g.st, g.index, g.records = xzIndexCount, 1, 0
				g.hdr = g.hdr[:0]
				continue
			}
			g.st, g.want, g.hdr = xzBlockHeader, (int(c)+1)*4, append(g.hdr[:0], c)
		case xzChunk:
			g.packed++
			switch {
			case c == 0: // end of the LZMA2 data: padding and check
				g.skip = (4-g.packed%4)%4 + int64(g.check)
				g.st = xzBlockStart
			case c == 1 || c == 2: // uncompressed chunk: 2-byte size
				g.st, g.want, g.hdr = xzChunkHeader, 3, append(g.hdr[:0], c)
			case c >= 0x80: // LZMA chunk: sizes, and properties on a reset
				g.want = 5
				if c >= 0xc0 {
					g.want = 6
				}
				g.st, g.hdr = xzChunkHeader, append(g.hdr[:0], c)
			default:
				return g.malformed("LZMA2 chunk")
			}
		case xzIndexCount, xzIndexRecords:
			g.index++
			g.hdr = append(g.hdr, c)
			if c&0x80 != 0 {
				if len(g.hdr) == 9 {
					return g.malformed("index")
				}
				continue
			}
			if g.st == xzIndexCount {
				v, _ := binary.Uvarint(g.hdr)
				g.st, g.records, g.vlis = xzIndexRecords, v, 0
			} else {
				g.vlis++
				if g.vlis == 2 {
					g.records--
					g.vlis = 0
				}
			}
			g.hdr = g.hdr[:0]
			if g.st == xzIndexRecords && g.records == 0 && g.vlis == 0 {
				// Index padding and CRC32, then the stream footer.
				g.skip = (4-g.index%4)%4 + 4 + 12
				g.st, g.pad = xzStreamPadding, 0
			}
		case xzStreamPadding:
			if c == 0 {
				g.pad++
				continue
			}
			if g.pad%4 != 0 {
				return g.malformed("stream padding")
			}
			g.st, g.want, g.hdr = xzStreamHeader, 12, append(g.hdr[:0], c)
		}
	}
	return nil
}

// header handles a complete stream, block or chunk header in g.hdr.
func (g *xzLimit) header() error {
	h := g.hdr
	switch g.st {
	case xzStreamHeader:
		if string(h[:6]) != string(xzMagic) {
			return g.malformed("stream header")
		}
		switch t := h[7] & 0x0f; {
		case t == 0:
			g.check = 0
		default:
			g.check = 4 << ((t - 1) / 3)
		}
		g.st = xzBlockStart
	case xzBlockHeader:
		if crc32.ChecksumIEEE(h[:len(h)-4]) != binary.LittleEndian.Uint32(h[len(h)-4:]) {
			return g.malformed("block header")
		}
		if err := g.blockFilters(h[1 : len(h)-4]); err != nil {
			return err
		}
		g.st, g.packed = xzChunk, 0
	case xzChunkHeader:
		if h[0] < 0x80 {
			g.skip = int64(binary.BigEndian.Uint16(h[1:3])) + 1
		} else {
			g.skip = int64(binary.BigEndian.Uint16(h[3:5])) + 1
		}
		g.packed += int64(len(h)-1) + g.skip
		g.st = xzChunk
	}
	g.hdr = g.hdr[:0]
	return nil
}

// blockFilters reads a block header's flags, optional sizes and filter
// flags, and refuses an LZMA2 dictionary over the limit.
func (g *xzLimit) blockFilters(h []byte) error {
	if len(h) == 0 {
		return g.malformed("block header")
	}
	flags := h[0]
	h = h[1:]
	vli := func() (uint64, bool) {
		v, n := binary.Uvarint(h)
		if n <= 0 {
			return 0, false
		}
		h = h[n:]
		return v, true
	}
	for _, bit := range []byte{0x40, 0x80} { // compressed, uncompressed size
		if flags&bit != 0 {
			if _, ok := vli(); !ok {
				return g.malformed("block header")
			}
		}
	}
	for range int(flags&3) + 1 {
		id, ok := vli()
		if !ok {
			return g.malformed("block header")
		}
		size, ok := vli()
		if !ok || size > uint64(len(h)) {
			return g.malformed("block header")
		}
		props := h[:size]
		h = h[size:]
		if id != 0x21 { // not LZMA2 (a BCJ or delta filter before it)
			continue
		}
		if len(props) != 1 || props[0] > 40 {
			return g.malformed("LZMA2 properties")
		}
		if dict := xzDictSize(props[0]); dict > g.limit {
			return fmt.Errorf("%w: xz dictionary of %s, limit %s (xz --memlimit; Nix's own reader stops at 1 GiB)", ErrMemoryLimit, sizeString(dict), sizeString(g.limit))
		}
	}
	return nil
}

// xzDictSize decodes an LZMA2 dictionary size byte (0..40).
func xzDictSize(c byte) int64 {
	if c == 40 {
		return 1<<32 - 1
	}
	return int64(2|c&1) << (c/2 + 11)
}

// sizeString prints a byte count in binary units, e.g. "3 GiB".
func sizeString(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
