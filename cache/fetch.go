package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nixcache/nixcache/cache/compress"
	"github.com/nixcache/nixcache/nar"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// ErrNoTrustedKeys is returned by the Fetch calls when no trusted key is
// given: like Nix with require-sigs (its default), nothing unsigned is
// substituted.
var ErrNoTrustedKeys = errors.New("cache: no trusted public keys: refusing to fetch unsigned paths")

// ErrIncomplete is returned by Close of a FetchNAR stream closed before its
// end: what was read was never verified.
var ErrIncomplete = errors.New("cache: NAR stream closed before its end, not verified")

// FetchOptions tune the Fetch calls.
type FetchOptions struct {
	// TrustedKeys: the narinfo must carry a valid signature by one of them
	// (Nix's trusted-public-keys). At least one is required.
	TrustedKeys []signature.PublicKey
	// MaxMemory bounds the NAR decompressor's memory (see
	// compress.NewReaderLimit); 0 means compress.DefaultMaxMemory.
	MaxMemory int64
	// Jobs is how many paths FetchClosure fetches at once (default 4).
	Jobs int
}

// verifiedNarInfo reads the narinfo at key and checks it as a
// substituting Nix does: it parses, names the store path its key belongs
// to, and (with trusted keys) carries a valid signature by one of them.
func (c *Cache) verifiedNarInfo(ctx context.Context, key string, trusted []signature.PublicKey) (*narinfo.NarInfo, error) {
	ni, err := c.readNarInfoKey(ctx, key)
	if err != nil {
		return nil, err
	}
	if NarInfoKey(ni.StorePath) != key {
		return ni, fmt.Errorf("%w: %s holds StorePath %s", ErrBadNarInfo, key, ni.StorePath)
	}
	if len(trusted) > 0 {
		if err := ni.Verify(trusted); err != nil {
			// Wraps signature.ErrUntrusted when no trusted key signed it.
			return ni, err
		}
	}
	return ni, nil
}

// openNAR opens the NAR file ni names and returns the decompressed NAR as
// a stream verified against ni (see narStream).
func (c *Cache) openNAR(ctx context.Context, ni *narinfo.NarInfo, maxMemory int64) (io.ReadCloser, error) {
	url, _, _ := strings.Cut(ni.URL, "?")
	if strings.Contains(url, "://") {
		return nil, fmt.Errorf("%w: absolute NAR URL %q not supported", ErrBadNarInfo, ni.URL)
	}
	if !ni.NarHash.Algorithm().IsValid() {
		return nil, fmt.Errorf("%w: %s has no NarHash", ErrBadNarInfo, NarInfoKey(ni.StorePath))
	}
	body, err := c.Backend.Get(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("read NAR %s: %w", url, err)
	}
	s := &narStream{ctx: ctx, ni: ni, url: url, body: body, in: body, nar: nixhash.NewHasher(ni.NarHash.Algorithm())}
	if ni.FileSize != 0 {
		// One byte more than FileSize shows a file too long, and no more
		// is read.
		s.in = io.LimitReader(s.in, int64(min(ni.FileSize, 1<<62))+1)
	}
	switch {
	case ni.FileHash.IsZero():
	case ni.Compression == compress.None && ni.FileHash.Algorithm() == ni.NarHash.Algorithm():
		// The file is the NAR: its hash is the NAR's, computed once.
		s.file = s.nar
	default:
		s.file = nixhash.NewHasher(ni.FileHash.Algorithm())
		s.in = io.TeeReader(s.in, s.file)
	}
	if maxMemory <= 0 {
		maxMemory = compress.DefaultMaxMemory
	}
	s.dec, err = compress.NewReaderLimit(s.in, ni.Compression, maxMemory)
	if err != nil {
		body.Close()
		return nil, err
	}
	return s, nil
}

// narStream is a decompressed NAR checked while it streams: it fails as
// soon as it exceeds NarSize, and at its end (instead of io.EOF) when its
// size or NarHash, or the file's FileHash or FileSize, differ from the
// narinfo's.
type narStream struct {
	ctx       context.Context
	ni        *narinfo.NarInfo
	url       string
	body      io.ReadCloser
	in        io.Reader // body, limited and hashed
	dec       io.ReadCloser
	nar, file *nixhash.Hasher // file is nar when the file is the NAR (compression none)
	err       error           // sticky: io.EOF once verified
}

func (s *narStream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 0, err
	}
	n, err := s.dec.Read(p)
	s.nar.Write(p[:n])
	switch {
	case uint64(s.nar.Len()) > s.ni.NarSize:
		s.err = fmt.Errorf("%w: NarSize %d, NAR has more bytes", ErrNarSizeMismatch, s.ni.NarSize)
	case err == io.EOF:
		s.err = s.finish()
	case err != nil:
		s.err = fmt.Errorf("decompress NAR %s (%s): %w", s.url, s.ni.Compression, err)
		if ferr := s.checkFile(); ferr != nil {
			// A damaged file is the cause; say so first.
			s.err = fmt.Errorf("%w (%w)", ferr, s.err)
		}
	}
	return n, s.err
}

// checkFile reads the rest of the NAR file (see drain) and compares its
// hash and size with FileHash and FileSize, when the narinfo has a
// FileHash.
func (s *narStream) checkFile() error {
	if err := s.drain(); err != nil {
		return err
	}
	return s.fileMismatch()
}

// drain reads any trailing bytes of the file the decompressor did not
// need (no more than FileSize+1 in all), when the file is hashed.
func (s *narStream) drain() error {
	if s.file == nil {
		return nil
	}
	rest := io.Discard
	if s.file == s.nar {
		rest = s.nar // not teed: hash what the NAR reader left
	}
	if _, err := io.Copy(rest, s.in); err != nil {
		return fmt.Errorf("read NAR %s: %w", s.url, err)
	}
	return nil
}

// fileMismatch compares the file read so far with FileHash and FileSize.
func (s *narStream) fileMismatch() error {
	ni := s.ni
	if s.file == nil {
		return nil
	}
	if h := s.file.SumHash(); h != ni.FileHash {
		return fmt.Errorf("%w: FileHash %s, %s hashes to %s", ErrFileHashMismatch, ni.FileHash, s.url, h)
	}
	if ni.FileSize != 0 && uint64(s.file.Len()) != ni.FileSize {
		return fmt.Errorf("%w: FileSize %d, %s has %d bytes", ErrFileHashMismatch, ni.FileSize, s.url, s.file.Len())
	}
	return nil
}

// finish checks the whole NAR and file against the narinfo, NAR first (as
// Nix reports a modified path); it returns io.EOF when they match. A NAR
// that differs from a file that differs too is reported as the damaged
// file first (a zstd frame as Nix writes it carries no checksum of its
// own, so a damaged file often still decompresses).
func (s *narStream) finish() error {
	ni := s.ni
	if err := s.drain(); err != nil {
		return err
	}
	var narErr error
	if n := uint64(s.nar.Len()); n != ni.NarSize {
		narErr = fmt.Errorf("%w: NarSize %d, NAR has %d bytes", ErrNarSizeMismatch, ni.NarSize, n)
	} else if h := s.nar.SumHash(); h != ni.NarHash {
		narErr = fmt.Errorf("%w: NarHash %s, NAR hashes to %s", ErrNarHashMismatch, ni.NarHash, h)
	}
	if err := s.fileMismatch(); err != nil {
		if narErr != nil {
			return fmt.Errorf("%w (%w)", err, narErr)
		}
		return err
	}
	if narErr != nil {
		return narErr
	}
	return io.EOF
}

// Close releases the stream. It returns the verification error if the
// stream failed, and ErrIncomplete if it was not read to its end.
func (s *narStream) Close() error {
	s.dec.Close()
	s.body.Close()
	switch s.err {
	case io.EOF:
		return nil
	case nil:
		s.err = ErrIncomplete
	}
	return s.err
}

// FetchNAR reads the narinfo of p, checks its signature against
// opts.TrustedKeys, and returns it with p's NAR, decompressed, as a stream
// verified while it is read: NarSize is enforced as it goes, and the Read
// that reaches the end returns an error instead of io.EOF when NarSize,
// NarHash, FileHash or FileSize differ from the narinfo (the errors wrap
// ErrNarSizeMismatch, ErrNarHashMismatch or ErrFileHashMismatch). Data read
// before that is not trusted until then. Close returns the same error, or
// ErrIncomplete when the stream was not read to its end. Errors are
// *PathError naming p.
func (c *Cache) FetchNAR(ctx context.Context, p storepath.Path, opts FetchOptions) (*narinfo.NarInfo, io.ReadCloser, error) {
	if len(opts.TrustedKeys) == 0 {
		return nil, nil, ErrNoTrustedKeys
	}
	ni, err := c.verifiedNarInfo(ctx, NarInfoKey(p), opts.TrustedKeys)
	if err == nil && ni.StorePath != p {
		err = fmt.Errorf("%w: %s holds StorePath %s", ErrBadNarInfo, NarInfoKey(p), ni.StorePath)
	}
	if err != nil {
		return nil, nil, &PathError{Path: p, Err: err}
	}
	rc, err := c.openNAR(ctx, ni, opts.MaxMemory)
	if err != nil {
		return nil, nil, &PathError{Path: p, Err: err}
	}
	return ni, &pathStream{rc, p}, nil
}

// pathStream names the store path in the errors of a FetchNAR stream.
type pathStream struct {
	io.ReadCloser
	p storepath.Path
}

func (s *pathStream) Read(b []byte) (int, error) {
	n, err := s.ReadCloser.Read(b)
	if err != nil && err != io.EOF {
		err = &PathError{Path: s.p, Err: err}
	}
	return n, err
}

func (s *pathStream) Close() error {
	if err := s.ReadCloser.Close(); err != nil {
		return &PathError{Path: s.p, Err: err}
	}
	return nil
}

// Fetch restores store path p from the cache at dir, without Nix: the
// narinfo's signature is checked against opts.TrustedKeys and the NAR
// against the narinfo (see FetchNAR) before anything appears at dir. The
// tree is restored as nix-store --restore does (nar.Restore) into a
// temporary directory beside dir, and renamed to dir only once the whole
// NAR verified; on any error nothing is left behind. dir must not exist.
func (c *Cache) Fetch(ctx context.Context, p storepath.Path, dir string, opts FetchOptions) (*narinfo.NarInfo, error) {
	var ni *narinfo.NarInfo
	err := publishDir(dir, func(tmp string) error {
		var err error
		ni, err = c.restore(ctx, p, tmp, opts)
		return err
	})
	return ni, err
}

// restore fetches p and restores it at target, which must not exist.
func (c *Cache) restore(ctx context.Context, p storepath.Path, target string, opts FetchOptions) (*narinfo.NarInfo, error) {
	ni, rc, err := c.FetchNAR(ctx, p, opts)
	if err != nil {
		return nil, err
	}
	err = nar.Restore(rc, target)
	// Restore stops at the archive's end, or at an error: read on to the
	// stream's end (at most NarSize bytes), where it is verified. A stream
	// that fails verification explains a failed restore better than the
	// restore's own error does (the NAR is not the one signed).
	_, verr := io.Copy(io.Discard, rc)
	if cerr := rc.Close(); verr == nil {
		verr = cerr
	}
	if verr != nil {
		err = verr
	}
	var pe *PathError
	if err != nil && !errors.As(err, &pe) {
		err = &PathError{Path: p, Err: fmt.Errorf("restore: %w", err)}
	}
	return ni, err
}

// FetchClosure restores p and every store path it refers to, directly or
// not, each at dir/<base name> (as in the store directory), like Fetch:
// every narinfo's signature is checked and every NAR verified, into a
// temporary directory beside dir that is renamed to dir only when all
// paths verified; on any error nothing is left behind. dir must not
// exist. It returns the narinfos, p's first.
func (c *Cache) FetchClosure(ctx context.Context, p storepath.Path, dir string, opts FetchOptions) ([]*narinfo.NarInfo, error) {
	if len(opts.TrustedKeys) == 0 {
		return nil, ErrNoTrustedKeys
	}
	// The closure, from the signed narinfos' References.
	var infos []*narinfo.NarInfo
	seen := map[storepath.Path]bool{p: true}
	for queue := []storepath.Path{p}; len(queue) > 0; queue = queue[1:] {
		q := queue[0]
		ni, err := c.verifiedNarInfo(ctx, NarInfoKey(q), opts.TrustedKeys)
		if err == nil && ni.StorePath != q {
			err = fmt.Errorf("%w: %s holds StorePath %s", ErrBadNarInfo, NarInfoKey(q), ni.StorePath)
		}
		if err != nil {
			return nil, &PathError{Path: q, Err: err}
		}
		infos = append(infos, ni)
		for _, r := range ni.References {
			if !seen[r] {
				seen[r] = true
				queue = append(queue, r)
			}
		}
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	err := publishDir(dir, func(tmp string) error {
		if err := os.Mkdir(tmp, 0o755); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		var (
			mu   sync.Mutex
			errs []error
		)
		parent := ctx
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		err := forEach(ctx, infos, jobs, func(ni *narinfo.NarInfo) error {
			got, err := c.restore(ctx, ni.StorePath, filepath.Join(tmp, ni.StorePath.Base()), opts)
			if err != nil && ctx.Err() != nil && parent.Err() == nil {
				return nil // stopped because another path failed: not news
			}
			if err == nil && (got.NarHash != ni.NarHash || got.NarSize != ni.NarSize) {
				err = &PathError{Path: ni.StorePath, Err: fmt.Errorf("%w: narinfo changed while fetching", ErrBadNarInfo)}
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel() // one bad path fails the whole fetch
			}
			return nil
		})
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return infos, nil
}

// publishDir runs fill on a fresh temporary path beside dir (which fill
// creates) and renames it to dir when fill succeeds; otherwise, or if dir
// exists, it removes everything fill made.
func publishDir(dir string, fill func(tmp string) error) error {
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("cache: %s already exists", dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cache: %w", err)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	holder, err := os.MkdirTemp(parent, ".nixcache-fetch-")
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer os.RemoveAll(holder)
	tmp := filepath.Join(holder, "t")
	if err := fill(tmp); err != nil {
		return err
	}
	// Fail, rather than replace or nest, if dir appeared meanwhile: a
	// directory is renamed over only an empty one, so check again.
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("cache: %s already exists", dir)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}
