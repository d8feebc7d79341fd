package cache

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

// ErrUnsupportedCompression is returned (wrapped) when a compression method
// named in a store URL or a narinfo's Compression field is not one this
// package can write (zstd, xz, none) or read (zstd, xz, bzip2, none).
var ErrUnsupportedCompression = errors.New("cache: unsupported compression")

// CompressionBzip2 is Nix's name for bzip2, which a narinfo without a
// Compression field implies. This package reads it but does not write it.
const CompressionBzip2 = "bzip2"

// xzBlockSize is the size of the NAR slices compressed as independent xz
// streams when parallel compression is on. Nix 2.8 reads concatenated xz
// streams as one NAR. The dictionary of each stream is capped at the block
// size (a larger one is useless), which bounds each encoder to ~25 MiB.
const xzBlockSize = 4 << 20

// zstdWindow bounds the zstd window (and so the encoder's memory) whatever
// the NAR size. Nix's decoder accepts windows up to 128 MiB by default.
const zstdWindow = 2 << 20

// CompressOptions selects how a NAR is compressed before upload.
type CompressOptions struct {
	// Method is the Nix compression name: "zstd", "xz" or "none"; empty
	// means DefaultCompression.
	Method string
	// Level is Nix's compression-level: -1 (or 0) means the default (zstd:
	// the fastest level, about libzstd's 1; xz: preset 6); for zstd 1..22
	// as in libzstd (mapped to klauspost's four levels), for xz 0..9.
	Level int
	// Parallel is Nix's parallel-compression setting. zstd always uses all
	// cores; for xz it compresses 4 MiB blocks as separate concatenated
	// streams on all cores.
	Parallel bool
	// BlockSize is the input size of each independent xz stream of parallel
	// xz (default 4 MiB). At most Concurrency+2 blocks are in memory.
	BlockSize int
	// Concurrency overrides the number of compressing goroutines
	// (default runtime.GOMAXPROCS(0)).
	Concurrency int
}

func (o CompressOptions) concurrency() int {
	if o.Concurrency > 0 {
		return o.Concurrency
	}
	return runtime.GOMAXPROCS(0)
}

// Validate reports whether the options name a method NewCompressor can
// write and a level it accepts, without starting an encoder.
func (o CompressOptions) Validate() error {
	switch o.Method {
	case "", CompressionZstd, CompressionNone:
		return nil
	case CompressionXZ:
		cfg := xz.WriterConfig{DictCap: xzDictCap(o.Level), CheckSum: xz.CRC64}
		if err := cfg.Verify(); err != nil {
			return fmt.Errorf("cache: xz level %d: %w", o.Level, err)
		}
		return nil
	}
	return fmt.Errorf("%w: %q (want zstd, xz or none)", ErrUnsupportedCompression, o.Method)
}

// NewCompressor returns a WriteCloser that compresses into w with the given
// method. Close flushes the compressed stream but does not close w.
func NewCompressor(w io.Writer, o CompressOptions) (io.WriteCloser, error) {
	if o.Method == "" {
		o.Method = DefaultCompression
	}
	switch o.Method {
	case CompressionNone:
		return nopWriteCloser{w}, nil
	case CompressionZstd:
		// Unset level: klauspost's fastest (about libzstd level 1): on the
		// Go tree it is ~1.8x faster than level 3 for ~7% more bytes, and
		// uploads are usually CPU-bound. compression-level=3 gives level 3.
		level := zstd.SpeedFastest
		if o.Level > 0 {
			level = zstd.EncoderLevelFromZstd(o.Level)
		}
		enc, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(level),
			zstd.WithEncoderConcurrency(o.concurrency()),
			zstd.WithConcurrentBlocks(o.concurrency() > 1),
			zstd.WithWindowSize(zstdWindow),
			zstd.WithEncoderCRC(true),
		)
		if err != nil {
			return nil, fmt.Errorf("cache: zstd encoder: %w", err)
		}
		return enc, nil
	case CompressionXZ:
		cfg := xz.WriterConfig{DictCap: xzDictCap(o.Level), CheckSum: xz.CRC64}
		if err := cfg.Verify(); err != nil {
			return nil, fmt.Errorf("cache: xz level %d: %w", o.Level, err)
		}
		if o.Parallel && o.concurrency() > 1 {
			bs := o.BlockSize
			if bs <= 0 {
				bs = xzBlockSize
			}
			if cfg.DictCap > bs {
				cfg.DictCap = max(bs, 4096)
			}
			return newParallelXZ(w, cfg, o.concurrency(), bs), nil
		}
		xw, err := cfg.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("cache: xz encoder: %w", err)
		}
		return xw, nil
	default:
		return nil, fmt.Errorf("%w: %q (want zstd, xz or none)", ErrUnsupportedCompression, o.Method)
	}
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

// NewDecompressor returns a reader of the NAR inside r, compressed with the
// narinfo Compression method c. An empty c means bzip2, as in Nix.
func NewDecompressor(r io.Reader, c string) (io.ReadCloser, error) {
	switch c {
	case CompressionNone:
		return io.NopCloser(r), nil
	case CompressionZstd:
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, fmt.Errorf("cache: zstd decoder: %w", err)
		}
		return d.IOReadCloser(), nil
	case CompressionXZ:
		xr, err := xz.NewReader(bufio.NewReaderSize(r, 64<<10))
		if err != nil {
			return nil, fmt.Errorf("cache: xz decoder: %w", err)
		}
		return io.NopCloser(xr), nil
	case CompressionBzip2, "":
		return io.NopCloser(bzip2.NewReader(bufio.NewReaderSize(r, 64<<10))), nil
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedCompression, c)
	}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// parallelXZ cuts its input into xzBlockSize blocks and compresses each as
// an independent xz stream on a bounded pool of goroutines, writing the
// streams to the underlying writer in input order. At most workers+2 blocks
// are in memory at once.
type parallelXZ struct {
	w    io.Writer
	cfg  xz.WriterConfig
	buf  []byte
	size int

	work    chan *xzBlock
	order   chan *xzBlock
	wg      sync.WaitGroup
	done    chan struct{}
	err     error // first write error, owned by the writer goroutine until done
	closed  bool
	blocks  int
	bufPool sync.Pool
}

type xzBlock struct {
	in  []byte
	out outBuf
	err error
	ok  chan struct{}
}

type outBuf struct{ b []byte }

func (o *outBuf) Write(p []byte) (int, error) { o.b = append(o.b, p...); return len(p), nil }

func newParallelXZ(w io.Writer, cfg xz.WriterConfig, workers, blockSize int) *parallelXZ {
	p := &parallelXZ{
		size:  blockSize,
		w:     w,
		cfg:   cfg,
		work:  make(chan *xzBlock),
		order: make(chan *xzBlock, workers),
		done:  make(chan struct{}),
	}
	p.wg.Add(workers)
	for range workers {
		go func() {
			defer p.wg.Done()
			for b := range p.work {
				xw, err := p.cfg.NewWriter(&b.out)
				if err == nil {
					_, err = xw.Write(b.in)
					if cerr := xw.Close(); err == nil {
						err = cerr
					}
				}
				b.err = err
				close(b.ok)
			}
		}()
	}
	go func() {
		defer close(p.done)
		for b := range p.order {
			<-b.ok
			if p.err == nil {
				if b.err != nil {
					p.err = fmt.Errorf("cache: xz block: %w", b.err)
				} else if _, err := p.w.Write(b.out.b); err != nil {
					p.err = err
				}
			}
			in := b.in[:0]
			p.bufPool.Put(&in)
		}
	}()
	return p
}

func (p *parallelXZ) newBuf() []byte {
	if b, ok := p.bufPool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 0, p.size)
}

func (p *parallelXZ) flushBlock() {
	b := &xzBlock{in: p.buf, ok: make(chan struct{})}
	p.buf = nil
	p.blocks++
	p.order <- b // bounds blocks in flight
	p.work <- b
}

func (p *parallelXZ) failed() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

func (p *parallelXZ) Write(b []byte) (int, error) {
	if p.closed {
		return 0, errors.New("cache: write to closed xz compressor")
	}
	if err := p.failed(); err != nil {
		return 0, err
	}
	n := 0
	for len(b) > 0 {
		if p.buf == nil {
			p.buf = p.newBuf()
		}
		k := min(len(b), p.size-len(p.buf))
		p.buf = append(p.buf, b[:k]...)
		b = b[k:]
		n += k
		if len(p.buf) == p.size {
			p.flushBlock()
		}
	}
	return n, nil
}

// Close compresses the last block, waits for all goroutines and returns the
// first error.
func (p *parallelXZ) Close() error {
	if p.closed {
		return p.err
	}
	p.closed = true
	if len(p.buf) > 0 || p.blocks == 0 {
		p.flushBlock() // an empty input still gets one (empty) xz stream
	}
	close(p.work)
	close(p.order)
	p.wg.Wait()
	<-p.done
	return p.err
}
