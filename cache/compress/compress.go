// Package compress compresses and decompresses NARs with the methods Nix
// names in a store URL's compression= parameter and a narinfo's Compression
// field: it writes zstd, xz and none (zstd as concatenated frames and xz as
// concatenated streams on all cores, which Nix reads as one NAR), and reads
// those and bzip2, with bounded decoder memory.
package compress

import (
	"bufio"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ErrUnsupported is returned (wrapped) when a compression method named in a
// store URL or a narinfo's Compression field is not one this package can
// write (zstd, xz, none) or read (zstd, xz, bzip2, none).
var ErrUnsupported = errors.New("compress: unsupported method")

// Method names, as Nix spells them in the compression= store parameter and
// in a narinfo's Compression field.
const (
	Zstd = "zstd"
	XZ   = "xz"
	None = "none"
	// Bzip2 is what a narinfo without a Compression field means. This
	// package reads it but does not write it.
	Bzip2 = "bzip2"
)

// Default is the method nixcache writes when a store URL has no
// compression= parameter. Nix's own default is xz; zstd is far faster and
// every Nix since 2.3 reads it. (Not narinfo.ImpliedCompression, which is
// what a narinfo without a Compression line means.)
const Default = Zstd

// xzBlockSize is the size of the NAR slices compressed as independent xz
// streams when parallel compression is on. Nix 2.8 reads concatenated xz
// streams as one NAR. Each stream's dictionary is its block, so a larger
// block compresses better (liblzma preset 6, 8 MiB dictionary, on the Go
// toolchain's NAR: 2 MiB blocks cost 3% more bytes than one stream; our
// encoder writes 2.4% less with 4 MiB blocks than with 2) but holds more
// memory: Concurrency+2 blocks and their outputs. The match finder's tables
// do not grow with the block (about 2.5 MiB per goroutine by default).
const xzBlockSize = 4 << 20

// zstdWindow bounds the zstd window (and so the encoder's memory) whatever
// the NAR size. Nix's decoder accepts windows up to 128 MiB by default.
const zstdWindow = 4 << 20

// zstdBlockSize is the size of the NAR slices compressed as independent
// zstd frames, one per core, when more than one core is available. Nix 2.8
// (libzstd through libarchive) reads concatenated frames as one NAR
// (checked: a NAR split in two, each half compressed on its own, restores).
// Each frame's window is at most its content, so a frame never needs more
// memory than one block to decode. 1 MiB keeps a push within Nix's peak
// RSS (measured on a 1 GiB path, half random, 2 cores: 2 MiB blocks 38 MiB,
// 1 MiB 27 MiB, Nix 28.5 MiB) for 1% more bytes on the Go toolchain.
const zstdBlockSize = 1 << 20

// zstdChecksum is whether zstd frames end with a content checksum (the low
// 32 bits of XXH64). Nix's own have none (the frame header descriptor of a
// .nar.zst that nix copy 2.8 writes is 0x00: no checksum, no content size),
// and they need none: Nix checks the decompressed NAR against the
// narinfo's NarHash and the file against its FileHash. Without it the
// compressor does not hash every input byte once more: about 5% of its
// time at the default level.
const zstdChecksum = false

// Options select how a NAR is compressed.
type Options struct {
	// Method is the Nix compression name: "zstd", "xz" or "none"; empty
	// means Default.
	Method string
	// Level is Nix's compression-level: -1 (or 0) means the default (zstd:
	// the fastest level, about libzstd's 1; xz: preset 6); for zstd 1..22
	// as in libzstd (mapped to klauspost's four levels), for xz 0..9.
	Level int
	// Parallel is Nix's parallel-compression setting. zstd always uses all
	// cores (1 MiB blocks as concatenated frames); for xz it compresses
	// 4 MiB blocks as separate concatenated streams on all cores, with this
	// package's LZMA2 encoder (liblzma's parsers over hash rows).
	Parallel bool
	// BlockSize is the input size of each independent xz stream of parallel
	// xz (default 4 MiB). At most Concurrency+2 blocks and their outputs
	// are in memory, and each goroutine's match finder about 2.5 MiB (4.5 at
	// presets 1-3 and 7-9).
	BlockSize int
	// Concurrency overrides the number of compressing goroutines
	// (default runtime.GOMAXPROCS(0)).
	Concurrency int
}

func (o Options) concurrency() int {
	if o.Concurrency > 0 {
		return o.Concurrency
	}
	return runtime.GOMAXPROCS(0)
}

// Validate reports whether the options name a method NewWriter can
// write and a level it accepts, without starting an encoder.
func (o Options) Validate() error {
	switch o.Method {
	case "", Zstd, None:
		return nil
	case XZ:
		_, err := xzConfig(o.Level)
		return err
	}
	return fmt.Errorf("%w: %q (want zstd, xz or none)", ErrUnsupported, o.Method)
}

// NewWriter returns a WriteCloser that compresses into w with the given
// method. Close flushes the compressed stream but does not close w.
func NewWriter(w io.Writer, o Options) (io.WriteCloser, error) {
	if o.Method == "" {
		o.Method = Default
	}
	switch o.Method {
	case None:
		return nopWriteCloser{w}, nil
	case Zstd:
		// Unset level: klauspost's fastest (about libzstd level 1): on the
		// Go tree it is ~1.8x faster than level 3 for ~7% more bytes, and
		// uploads are usually CPU-bound. compression-level=3 gives level 3.
		level := zstd.SpeedFastest
		if o.Level > 0 {
			level = zstd.EncoderLevelFromZstd(o.Level)
		}
		if n := o.concurrency(); n > 1 {
			// One frame per block, compressed on n goroutines: the stream
			// encoder has at most one block in flight, so it uses one core
			// and a half; this uses all of them, with bounded memory.
			enc, err := sharedZstd(level, n)
			if err != nil {
				return nil, err
			}
			encode := func(dst, src []byte) ([]byte, error) { return enc.EncodeAll(src, dst), nil }
			pw := newParallelWriter(w, "zstd", encode, n, zstdBlockSize)
			// Room for an incompressible block: appending never reallocates
			// the output and leaves the smaller copy as garbage.
			pw.outCap = zstdBlockSize + zstdBlockSize/8 + 1024
			return pw, nil
		}
		enc, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(level),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstdWindow),
			zstd.WithEncoderCRC(zstdChecksum),
		)
		if err != nil {
			return nil, fmt.Errorf("compress: zstd encoder: %w", err)
		}
		return enc, nil
	case XZ:
		cfg, err := xzConfig(o.Level)
		if err != nil {
			return nil, err
		}
		if o.Parallel && o.concurrency() > 1 {
			bs := o.BlockSize
			if bs <= 0 {
				bs = xzBlockSize
			}
			// One match finder per goroutine, reused from block to block.
			free := make(chan *lzmaEncoder, o.concurrency()+1)
			encode := func(dst, src []byte) ([]byte, error) {
				var e *lzmaEncoder
				select {
				case e = <-free:
				default:
					e = newXZEncoder(o.Level)
				}
				dst = appendXZStream(dst, src, e)
				select {
				case free <- e:
				default:
				}
				return dst, nil
			}
			return newParallelWriter(w, "xz", encode, o.concurrency(), bs), nil
		}
		xw, err := cfg.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("compress: xz encoder: %w", err)
		}
		return xw, nil
	default:
		return nil, fmt.Errorf("%w: %q (want zstd, xz or none)", ErrUnsupported, o.Method)
	}
}

// xzConfig returns the xz writer configuration for a level, checked.
func xzConfig(level int) (xz.WriterConfig, error) {
	cfg := xz.WriterConfig{DictCap: xzDictCap(level), CheckSum: xz.CRC64}
	if err := cfg.Verify(); err != nil {
		return cfg, fmt.Errorf("compress: xz level %d: %w", level, err)
	}
	return cfg, nil
}

// xzDictCap maps an xz preset (as liblzma's) to a dictionary size, capped
// at 8 MiB (preset 6, Nix's default) to bound memory.
func xzDictCap(level int) int {
	switch {
	case level < 0 || level >= 6:
		return 8 << 20
	case level <= 1:
		return 1 << 20
	case level <= 3:
		return 4 << 20
	default:
		return 8 << 20
	}
}

type zstdKey struct {
	level zstd.EncoderLevel
	n     int
}

// zstdEncoders holds one *zstd.Encoder per level and concurrency, shared by
// all parallel zstd compressors: EncodeAll is safe for concurrent use and
// starts no goroutine, and pushing many small paths then allocates no
// encoder state per path.
var zstdEncoders sync.Map // zstdKey -> *zstd.Encoder

func sharedZstd(level zstd.EncoderLevel, n int) (*zstd.Encoder, error) {
	k := zstdKey{level, n}
	if e, ok := zstdEncoders.Load(k); ok {
		return e.(*zstd.Encoder), nil
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(n),
		zstd.WithWindowSize(min(zstdWindow, zstdBlockSize)),
		zstd.WithEncoderCRC(zstdChecksum),
		zstd.WithLowerEncoderMem(true),
	)
	if err != nil {
		return nil, fmt.Errorf("compress: zstd encoder: %w", err)
	}
	e, _ := zstdEncoders.LoadOrStore(k, enc)
	return e.(*zstd.Encoder), nil
}

// DefaultMaxMemory is the decoder memory NewReader allows: the largest xz
// dictionary or zstd window it accepts. 128 MiB is the largest zstd window
// Nix reads by default (libzstd's ZSTD_WINDOWLOG_LIMIT_DEFAULT) and twice
// the dictionary of xz -9; Nix's libarchive reader allows xz dictionaries up
// to 1 GiB, which only a hand-tuned xz writes.
const DefaultMaxMemory = 128 << 20

// NewReader returns a reader of the NAR inside r, compressed with the
// narinfo Compression method c (an empty c means bzip2, as in Nix), with
// decoder memory bounded by DefaultMaxMemory.
func NewReader(r io.Reader, c string) (io.ReadCloser, error) {
	return NewReaderLimit(r, c, DefaultMaxMemory)
}

// NewReaderLimit is NewReader with the decoder's memory bounded by
// maxMemory bytes, as xz --memlimit bounds it: an xz block whose dictionary
// or a zstd frame whose window is larger fails, before any of it is
// allocated, with an error wrapping ErrMemoryLimit. bzip2 needs at most
// about 4 MB whatever the input (its block size is at most 900 kB).
func NewReaderLimit(r io.Reader, c string, maxMemory int64) (io.ReadCloser, error) {
	switch c {
	case None:
		return io.NopCloser(r), nil
	case Zstd:
		window := uint64(max(maxMemory, zstd.MinWindowSize))
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(window), zstd.WithDecoderMaxMemory(window))
		if err != nil {
			return nil, fmt.Errorf("compress: zstd decoder: %w", err)
		}
		return zstdReader{d.IOReadCloser()}, nil
	case XZ:
		xr, err := xz.NewReader(bufio.NewReaderSize(&xzLimit{r: r, limit: maxMemory, want: 12}, 64<<10))
		if err != nil {
			if errors.Is(err, ErrMemoryLimit) || errors.Is(err, errXZMalformed) {
				return nil, err // already says "compress: xz"
			}
			return nil, fmt.Errorf("compress: xz decoder: %w", err)
		}
		return io.NopCloser(xr), nil
	case Bzip2, "":
		return io.NopCloser(bzip2.NewReader(bufio.NewReaderSize(r, 64<<10))), nil
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupported, c)
	}
}

// zstdReader reports a frame whose window is over the limit as
// ErrMemoryLimit.
type zstdReader struct{ io.ReadCloser }

func (z zstdReader) Read(p []byte) (int, error) {
	n, err := z.ReadCloser.Read(p)
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		err = fmt.Errorf("%w: zstd window: %w", ErrMemoryLimit, err)
	}
	return n, err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// parallelWriter cuts its input into blocks of a fixed size and compresses
// each as an independent stream (xz) or frame (zstd) on a bounded pool of
// goroutines, writing them to the underlying writer in input order from one
// more goroutine, so compression overlaps both the caller (dumping and
// hashing the NAR) and the output (hashing and storing the file). At most
// workers+2 input blocks and as many outputs are in memory; buffers are
// reused. The goroutines start with the second block: an input that fits in
// one block is compressed on the caller's goroutine at Close.
type parallelWriter struct {
	w      io.Writer
	name   string
	encode func(dst, src []byte) ([]byte, error)
	n      int
	buf    []byte
	size   int
	outCap int // capacity of new output buffers; 0: size/2

	started bool
	work    chan *parBlock
	order   chan *parBlock
	wg      sync.WaitGroup
	done    chan struct{}
	mu      sync.Mutex
	err     error // first error; set by the writer goroutine under mu
	closed  bool
	freeIn  chan []byte // reused input blocks (a sync.Pool is emptied by every GC)
	freeOut chan []byte // reused output buffers
}

type parBlock struct {
	in  []byte
	out []byte
	err error
	ok  chan struct{}
}

func newParallelWriter(w io.Writer, name string, encode func(dst, src []byte) ([]byte, error), workers, blockSize int) *parallelWriter {
	return &parallelWriter{w: w, name: name, encode: encode, n: workers, size: blockSize,
		freeIn: make(chan []byte, workers+2), freeOut: make(chan []byte, workers+2)}
}

func (p *parallelWriter) start() {
	p.started = true
	p.work = make(chan *parBlock)
	p.order = make(chan *parBlock, p.n)
	p.done = make(chan struct{})
	p.wg.Add(p.n)
	for range p.n {
		go func() {
			defer p.wg.Done()
			for b := range p.work {
				b.out, b.err = p.encode(p.getOut(), b.in)
				close(b.ok)
			}
		}()
	}
	go func() {
		defer close(p.done)
		for b := range p.order {
			<-b.ok
			if p.failed() == nil {
				err := b.err
				if err != nil {
					err = fmt.Errorf("compress: %s block: %w", p.name, err)
				} else {
					_, err = p.w.Write(b.out)
				}
				if err != nil {
					p.mu.Lock()
					p.err = err
					p.mu.Unlock()
				}
			}
			put(p.freeIn, b.in[:0])
			put(p.freeOut, b.out[:0])
		}
	}()
}

func put(free chan []byte, b []byte) {
	select {
	case free <- b:
	default:
	}
}

// getOut returns an output buffer: a reused one, or a new one of outCap
// bytes (half a block by default).
func (p *parallelWriter) getOut() []byte {
	select {
	case b := <-p.freeOut:
		return b
	default:
		if p.outCap > 0 {
			return make([]byte, 0, p.outCap)
		}
		return make([]byte, 0, p.size/2)
	}
}

// newBuf returns an input buffer for a block whose first write is n bytes:
// a reused one, a full-size one once the input has filled a block, or for
// the first block one of about n bytes that Write grows by appending, so
// that a small NAR (most store paths) costs no block-sized allocation and
// clearing.
func (p *parallelWriter) newBuf(n int) []byte {
	select {
	case b := <-p.freeIn:
		return b
	default:
		if p.started {
			return make([]byte, 0, p.size)
		}
		return make([]byte, 0, min(p.size, max(n, 4<<10)))
	}
}

// flushBlock hands the full block p.buf to the workers.
func (p *parallelWriter) flushBlock() {
	if !p.started {
		p.start()
	}
	b := &parBlock{in: p.buf, ok: make(chan struct{})}
	p.buf = nil
	p.order <- b // bounds blocks in flight
	p.work <- b
}

// failed returns the first error of the writer goroutine so far, so that
// Write stops early once the output has failed.
func (p *parallelWriter) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *parallelWriter) Write(b []byte) (int, error) {
	if p.closed {
		return 0, fmt.Errorf("compress: write to closed %s compressor", p.name)
	}
	if err := p.failed(); err != nil {
		return 0, err
	}
	n := 0
	for len(b) > 0 {
		if len(p.buf) == p.size {
			// A full block is handed over only when more input follows, so
			// an input of one block never starts the goroutines.
			p.flushBlock()
		}
		if p.buf == nil {
			p.buf = p.newBuf(len(b))
		}
		k := min(len(b), p.size-len(p.buf))
		p.buf = append(p.buf, b[:k]...)
		b = b[k:]
		n += k
	}
	return n, nil
}

// Close compresses the last block, waits for all goroutines and returns the
// first error.
func (p *parallelWriter) Close() error {
	if p.closed {
		return p.err
	}
	p.closed = true
	if !p.started {
		// Zero or one block: compress it here. An empty input still gets one
		// (empty) stream or frame.
		out, err := p.encode(nil, p.buf)
		if err != nil {
			p.err = fmt.Errorf("compress: %s block: %w", p.name, err)
			return p.err
		}
		if _, err := p.w.Write(out); err != nil {
			p.err = err
		}
		return p.err
	}
	if len(p.buf) > 0 {
		p.flushBlock()
	}
	close(p.work)
	close(p.order)
	p.wg.Wait()
	<-p.done
	return p.err
}
