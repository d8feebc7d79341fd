package cache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nixcache/nixcache/cache/compress"
	"github.com/nixcache/nixcache/nar"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// uploaded is the result of the NAR half of a path's upload.
type uploaded struct {
	url         string
	compression string
	fileHash    nixhash.Hash
	fileSize    uint64
	narHash     nixhash.Hash
	narSize     uint64
	narAt       time.Time // when the NAR file was last written (its Put began) or touched
	narTouched  bool      // narAt is a touch of a NAR file already there
	// commit, when set, stores the staged NAR file; the narinfo's
	// publisher calls it before anything else (see uploadStaged).
	commit func(context.Context) error
}

// smallNARSize is the largest NAR (by the store database's NarSize) that
// Push compresses into memory instead of a temporary file when the backend
// cannot stage objects (S3). With the default 4 jobs that is at most 4 MiB
// of buffers.
const smallNARSize = 1 << 20

// ctxWriter fails writes once ctx is done, so a long dump stops promptly.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// uploadNAR dumps, hashes, compresses and stores one path's NAR (and .ls),
// in one pass over the path whatever the backend:
//
//   - compression=none: the NAR file is the NAR, so its key
//     "nar/<NarHash>.nar" is known from the store database before the dump;
//     the dump streams straight into Backend.Put (or a staged object) and
//     is hashed on the way: written into the backend's own buffers when it
//     takes a Producer (cache/s3), else read through a pipe. The object is
//     made only once the dump has ended and matched the database's NarHash
//     and NarSize (a Produce that returned nil; a pipe whose last byte is
//     held back until then, see holdLast), so a mismatch fails the upload
//     before the object exists.
//   - other methods on a Stager backend (cache/file): compressed straight
//     into the staged object, committed under "nar/<FileHash>.nar<ext>"
//     once the hashes are known and checked.
//   - other methods on other backends (S3): the key is the hash of the
//     compressed bytes, known only at the end, so they are staged first
//     (in memory up to smallNARSize, else in an unlinked temporary file)
//     and then uploaded. A key derived from NarHash would let pushers with
//     different compression settings overwrite each other's NAR files
//     under one name while narinfos name the FileHash of their own bytes.
func (c *Cache) uploadNAR(ctx context.Context, it *pushItem, opts PushOptions, emit func(Event), reused *reuse) (*uploaded, error) {
	method := c.opts.Compression.Method
	if method == "" {
		method = compress.Default
	}
	copts := c.opts.Compression
	copts.Method = method
	up := &uploaded{compression: method}
	stager, _ := c.Backend.(Stager)
	var (
		nw  *nar.Writer
		err error
	)
	switch {
	case method == compress.None && it.info.NarHash.Algorithm() == nixhash.SHA256:
		nw, err = c.uploadPlain(ctx, it, opts, emit, reused, up, stager)
	case stager != nil:
		nw, err = c.uploadStaged(ctx, it, opts, emit, reused, up, copts, stager)
	default:
		nw, err = c.uploadSpooled(ctx, it, opts, emit, reused, up, copts)
	}
	if err != nil {
		return nil, err
	}
	if c.opts.WriteNARListing {
		// Not json.Marshal: it would escape <, > and & unlike Nix.
		lsJSON, err := nw.Listing().MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("NAR listing: %w", err)
		}
		if err := c.Backend.Put(ctx, ListingKey(it.path), bytes.NewReader(lsJSON), int64(len(lsJSON)), "application/json"); err != nil {
			return nil, fmt.Errorf("upload %s: %w", ListingKey(it.path), err)
		}
	}
	if c.opts.IndexDebugInfo {
		if err := c.putDebugInfo(ctx, nw.Listing(), up.url); err != nil {
			return nil, err
		}
	}
	return up, nil
}

// dumpNAR writes the NAR of it.path to w in one pass, hashing it, and
// checks NarHash and NarSize against the store database (ErrNarMismatch).
// It returns the NAR writer (for its listing) and a time before the last
// write to w.
func (c *Cache) dumpNAR(ctx context.Context, it *pushItem, opts PushOptions, emit func(Event), w io.Writer) (*nar.Writer, time.Time, error) {
	narHasher := nixhash.NewHasher(nixhash.SHA256)
	prog := &progressWriter{step: 4 << 20, report: func(n uint64) {
		emit(Event{Kind: EventBytes, Path: it.path, NarSize: it.info.NarSize, Bytes: n})
	}}
	// The .ls listing is built by the NAR writer from the same pass.
	nw := nar.NewWriter(ctxWriter{ctx, io.MultiWriter(narHasher, w, prog)})
	nw.SetCaseHack(opts.caseHack)
	if c.opts.WriteNARListing || c.opts.IndexDebugInfo {
		nw.EnableListing()
	}
	err := nw.AddTree("", string(it.path))
	last := time.Now()
	if err == nil {
		err = nw.Close() // writes the archive's last bytes
	}
	if err != nil {
		return nil, last, fmt.Errorf("dump NAR: %w", err)
	}
	if h, n := narHasher.SumHash(), uint64(narHasher.Len()); h != it.info.NarHash || n != it.info.NarSize {
		return nil, last, fmt.Errorf("%w: dumped NarHash %s NarSize %d, database NarHash %s NarSize %d",
			ErrNarMismatch, h, n, it.info.NarHash, it.info.NarSize)
	}
	return nw, last, nil
}

// fileBufs recycles compressNAR's output buffers across paths.
var fileBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// compressNAR dumps the NAR of it.path through the compressor into out and
// fills up's hashes and sizes (FileHash is NarHash without compression).
func (c *Cache) compressNAR(ctx context.Context, it *pushItem, opts PushOptions, emit func(Event), copts compress.Options, out io.Writer, up *uploaded) (*nar.Writer, time.Time, error) {
	var fileHasher *nixhash.Hasher
	if copts.Method != compress.None {
		fileHasher = nixhash.NewHasher(nixhash.SHA256)
		out = io.MultiWriter(out, fileHasher)
	}
	// The NAR writer and the parallel compressors write blocks of 64 KiB or
	// more, which go straight through; the buffer is for single-stream
	// compressors that write in small pieces.
	bw := fileBufs.Get().(*bufio.Writer)
	bw.Reset(out)
	defer func() {
		bw.Reset(nil)
		fileBufs.Put(bw)
	}()
	comp, err := compress.NewWriter(bw, copts)
	if err != nil {
		return nil, time.Time{}, err
	}
	nw, last, dumpErr := c.dumpNAR(ctx, it, opts, emit, comp)
	closeErr := comp.Close() // also when the dump failed: stops its goroutines
	if closeErr == nil {
		closeErr = bw.Flush()
	}
	if dumpErr != nil {
		return nil, last, dumpErr
	}
	if closeErr != nil {
		return nil, last, fmt.Errorf("compress NAR (%s): %w", copts.Method, closeErr)
	}
	up.narHash, up.narSize = it.info.NarHash, it.info.NarSize
	if fileHasher != nil {
		up.fileHash, up.fileSize = fileHasher.SumHash(), uint64(fileHasher.Len())
	} else {
		up.fileHash, up.fileSize = up.narHash, up.narSize
	}
	up.url = "nar/" + up.fileHash.RawBase32() + ".nar" + narinfo.CompressionExtension(copts.Method)
	return nw, last, nil
}

// narThere reports whether up.url already holds the NAR file (NAR files are
// named by their hash, so one of the right size is the same content; with
// PushOptions.replace it is read back and checked).
func (c *Cache) narThere(ctx context.Context, it *pushItem, opts PushOptions, up *uploaded) (bool, error) {
	oi, err := c.Backend.Stat(ctx, up.url)
	switch {
	case err == nil:
		if oi.Size != int64(up.fileSize) || !opts.replace[it.path] {
			return oi.Size == int64(up.fileSize), nil
		}
		return c.hashesTo(ctx, up.url, up.fileHash)
	case errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("stat %s: %w", up.url, err)
	}
}

// reuseNAR touches the NAR file already there, so that a concurrent
// collector keeps it.
func reuseNAR(ctx context.Context, reused *reuse, up *uploaded) error {
	at, err := reused.touchNAR(ctx, up.url, int64(up.fileSize))
	if err != nil {
		return err
	}
	up.narAt, up.narTouched = at, true
	return nil
}

// uploadPlain stores an uncompressed NAR, whose key is known up front,
// while dumping it.
func (c *Cache) uploadPlain(ctx context.Context, it *pushItem, opts PushOptions, emit func(Event), reused *reuse, up *uploaded, stager Stager) (*nar.Writer, error) {
	up.narHash, up.narSize = it.info.NarHash, it.info.NarSize
	up.fileHash, up.fileSize = up.narHash, up.narSize
	up.url = "nar/" + up.fileHash.RawBase32() + ".nar"
	there, err := c.narThere(ctx, it, opts, up)
	if err != nil {
		return nil, err
	}
	if there {
		// Still dumped: a path that does not match its database entry is
		// never published, and the listing comes from the dump.
		nw, _, err := c.dumpNAR(ctx, it, opts, emit, io.Discard)
		if err != nil {
			return nil, err
		}
		return nw, reuseNAR(ctx, reused, up)
	}
	if stager != nil {
		return c.uploadStaged(ctx, it, opts, emit, reused, up, compress.Options{Method: compress.None}, stager)
	}
	ns := &dumpStream{c: c, ctx: ctx, it: it, opts: opts, emit: emit, left: int64(up.narSize)}
	start := time.Now()
	putErr := c.Backend.Put(ctx, up.url, ns, int64(up.narSize), nar.MIMEType)
	nw, dumped, dumpErr := ns.finish()
	switch {
	case dumpErr != nil && !ns.ended(dumpErr):
		if putErr == nil {
			// Cannot happen with a backend that reads to the end, as Put
			// must; never leave a wrong NAR file behind all the same.
			_ = c.Backend.Delete(context.WithoutCancel(ctx), up.url)
		}
		return nil, dumpErr
	case putErr != nil:
		return nil, fmt.Errorf("upload %s: %w", up.url, putErr)
	case dumpErr != nil || !dumped:
		_ = c.Backend.Delete(context.WithoutCancel(ctx), up.url)
		return nil, fmt.Errorf("upload %s: the backend stored the NAR without reading all of it", up.url)
	}
	up.narAt = reused.written(ctx, up.url, start)
	return nw, nil
}

// dumpStream is the NAR of one path as Backend.Put takes it, dumped while
// it is uploaded: written straight into the backend's writer by Produce
// (cache/s3), or read through a pipe from a dump in another goroutine.
type dumpStream struct {
	c    *Cache
	ctx  context.Context
	it   *pushItem
	opts PushOptions
	emit func(Event)
	left int64 // bytes of NarSize not yet written (Produce)

	produced bool  // Produce was called
	wErr     error // an error of Produce's writer
	nw       *nar.Writer
	err      error // the dump's

	r    io.Reader // Read: holdLast on the pipe
	pr   *io.PipeReader
	done chan struct{} // closed when the piped dump ended
}

// Produce dumps the NAR into w (see Producer), refusing to write more than
// NarSize bytes.
func (s *dumpStream) Produce(w io.Writer) error {
	if s.produced || s.r != nil {
		return errors.New("cache: NAR stream consumed twice")
	}
	s.produced = true
	s.nw, _, s.err = s.c.dumpNAR(s.ctx, s.it, s.opts, s.emit, writerFunc(func(p []byte) (int, error) {
		if int64(len(p)) > s.left {
			return 0, fmt.Errorf("%w: NAR longer than NarSize", ErrNarMismatch)
		}
		n, err := w.Write(p)
		s.left -= int64(n)
		if err != nil {
			s.wErr = err
		}
		return n, err
	}))
	return s.err
}

// Read reads the NAR from a dump started on the first call, holding its
// last byte back until the dump matched the store database (holdLast).
func (s *dumpStream) Read(p []byte) (int, error) {
	if s.r == nil {
		if s.produced {
			return 0, errors.New("cache: NAR stream consumed twice")
		}
		pr, pw := io.Pipe()
		s.pr, s.done = pr, make(chan struct{})
		s.r = &holdLast{r: pr, left: s.left}
		go func() {
			defer close(s.done)
			// Hand the NAR over in large pieces: every write to the pipe
			// waits for the reading goroutine to be scheduled.
			bw := bufio.NewWriterSize(pw, pipeChunk)
			nw, _, err := s.c.dumpNAR(s.ctx, s.it, s.opts, s.emit, bw)
			if err == nil {
				err = bw.Flush()
			}
			// Only a dump that matched the database ends the stream
			// cleanly (io.EOF), which is what lets holdLast give out the
			// last byte.
			pw.CloseWithError(err)
			s.nw, s.err = nw, err
		}()
	}
	return s.r.Read(p)
}

// finish ends the stream once Put returned: it stops a piped dump that the
// upload stopped reading and waits for it. It returns the NAR writer,
// whether a dump ran, and the dump's error.
func (s *dumpStream) finish() (*nar.Writer, bool, error) {
	if s.pr != nil {
		s.pr.CloseWithError(errUploadEnded) // unblocks a dump the upload stopped reading
		<-s.done
	}
	return s.nw, s.produced || s.pr != nil, s.err
}

// ended reports whether the dump's error err came from the upload's side
// (the writer Produce was given failed, or the upload stopped reading the
// pipe) rather than from the dump itself.
func (s *dumpStream) ended(err error) bool {
	return errors.Is(err, errUploadEnded) || (s.wErr != nil && errors.Is(err, s.wErr))
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// pipeChunk is the size of the pieces a streamed NAR is handed to the
// upload in (measured: 64 KiB pieces, the NAR writer's, cost about 10% of
// the streamed push's speed, BenchmarkPush/none-streamed).
const pipeChunk = 1 << 20

// errUploadEnded stops a dump whose upload ended before reading it all.
var errUploadEnded = errors.New("cache: upload ended before the NAR did")

// holdLast yields the left bytes of a NAR being dumped into the pipe r, but
// holds back the last one until r has ended cleanly: the dump closes the
// pipe without error only after the NAR matched the store database. A
// mismatch (or an excess byte) is then an error before the last byte, so
// no backend ever completes the object, whatever its Put does with a
// short read: a single PUT is not sent, a multipart upload is not
// completed, a file is not renamed into place.
type holdLast struct {
	r    io.Reader
	left int64
	err  error
}

func (h *holdLast) Read(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if h.left > 1 {
		if int64(len(p)) > h.left-1 {
			p = p[:h.left-1]
		}
		n, err := h.r.Read(p)
		h.left -= int64(n)
		if err == io.EOF {
			err = fmt.Errorf("%w: NAR ended %d bytes short of NarSize", ErrNarMismatch, h.left)
		}
		if err != nil {
			h.err = err
		}
		return n, err
	}
	if h.left == 0 {
		h.err = io.EOF
		return 0, io.EOF
	}
	var last, probe [1]byte
	if _, err := io.ReadFull(h.r, last[:]); err != nil {
		if err == io.EOF {
			err = fmt.Errorf("%w: NAR ended 1 byte short of NarSize", ErrNarMismatch)
		}
		h.err = err
		return 0, err
	}
	for {
		n, err := h.r.Read(probe[:])
		if n > 0 {
			h.err = fmt.Errorf("%w: NAR longer than NarSize", ErrNarMismatch)
			return 0, h.err
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			h.err = err
			return 0, err
		}
	}
	p[0] = last[0]
	h.left = 0
	h.err = io.EOF
	return 1, nil
}

// uploadStaged compresses straight into a staged object and commits it
// under its hash, or drops it when that NAR file is already there.
func (c *Cache) uploadStaged(ctx context.Context, it *pushItem, opts PushOptions, emit func(Event), reused *reuse, up *uploaded, copts compress.Options, stager Stager) (*nar.Writer, error) {
	s, err := stager.Stage(ctx, "nar")
	if err != nil {
		return nil, fmt.Errorf("stage NAR: %w", err)
	}
	handed := false
	defer func() {
		if !handed {
			s.Abort() // nothing after Commit
		}
	}()
	_, flusher := stager.(Flusher)
	return c.compressAndStore(ctx, it, opts, emit, reused, up, copts, s, func(last time.Time) error {
		up.narAt = last
		commit := func(ctx context.Context) error {
			if err := s.Commit(ctx, up.url); err != nil {
				s.Abort()
				return fmt.Errorf("upload %s: %w", up.url, err)
			}
			return nil
		}
		if flusher && !c.opts.IndexDebugInfo {
			// Committed by the narinfo's publisher, first thing: the NAR
			// files' fsyncs then run side by side instead of one per job
			// at a time, and the job goes on to the next path.
			up.commit, handed = commit, true
			return nil
		}
		return commit(ctx)
	})
}

// compressAndStore compresses the NAR into out, then calls store unless
// that NAR file is already there (store gets a time before the last write
// to out).
func (c *Cache) compressAndStore(ctx context.Context, it *pushItem, opts PushOptions, emit func(Event), reused *reuse, up *uploaded, copts compress.Options, out io.Writer, store func(last time.Time) error) (*nar.Writer, error) {
	nw, last, err := c.compressNAR(ctx, it, opts, emit, copts, out, up)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	there, err := c.narThere(ctx, it, opts, up)
	if err != nil {
		return nil, err
	}
	if there {
		return nw, reuseNAR(ctx, reused, up)
	}
	return nw, store(last)
}

// uploadSpooled compresses into memory or an unlinked temporary file, then
// uploads.
func (c *Cache) uploadSpooled(ctx context.Context, it *pushItem, opts PushOptions, emit func(Event), reused *reuse, up *uploaded, copts compress.Options) (*nar.Writer, error) {
	// Small NARs (most store paths) are compressed into memory: a temporary
	// file costs more system calls than the NAR itself. Larger ones go to an
	// unlinked temporary file, so memory stays bounded whatever the size.
	var (
		out  io.Writer
		body func(size int64) io.Reader
	)
	if it.info.NarSize <= smallNARSize {
		buf := bytes.NewBuffer(make([]byte, 0, it.info.NarSize+512))
		out = buf
		body = func(int64) io.Reader { return bytes.NewReader(buf.Bytes()) }
	} else {
		tmp, done, err := anonymousTemp(opts.TempDir, "nixcache-*.nar"+narinfo.CompressionExtension(copts.Method))
		if err != nil {
			return nil, err
		}
		defer done()
		out = tmp
		body = func(size int64) io.Reader { return io.NewSectionReader(tmp, 0, size) }
	}
	return c.compressAndStore(ctx, it, opts, emit, reused, up, copts, out, func(time.Time) error {
		start := time.Now()
		if err := c.Backend.Put(ctx, up.url, body(int64(up.fileSize)), int64(up.fileSize), nar.MIMEType); err != nil {
			return fmt.Errorf("upload %s: %w", up.url, err)
		}
		up.narAt = reused.written(ctx, up.url, start)
		return nil
	})
}

// anonymousTemp creates a temporary file in dir (pattern as for
// os.CreateTemp) and unlinks it at once, as Nix does with its anonymous
// temporary files: the open descriptor keeps the data, and even a killed
// process leaves nothing behind. done closes it (and removes it where an
// open file could not be removed).
func anonymousTemp(dir, pattern string) (f *os.File, done func(), err error) {
	f, err = os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, nil, fmt.Errorf("temporary file: %w", err)
	}
	removed := os.Remove(f.Name()) == nil
	return f, func() {
		f.Close()
		if !removed {
			os.Remove(f.Name())
		}
	}, nil
}
