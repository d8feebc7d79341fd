package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// ErrNarMismatch is returned (wrapped) when the NAR dumped from a store path
// does not have the NarHash or NarSize the store database records for it.
// Such a path is never published: Nix would refuse to substitute it. Repair
// the store (nix-store --verify --check-contents --repair) and push again.
var ErrNarMismatch = errors.New("cache: NAR does not match the store database")

// ErrReferenceMissing is returned (wrapped) when a path's narinfo cannot be
// published because one of its references is neither in the cache nor
// uploaded by this push. Nix requires every reference of a valid path to be
// valid in the same cache.
var ErrReferenceMissing = errors.New("cache: reference not in the cache")

// PathInfo is what a store knows about one valid path and a narinfo
// publishes: the fields of Nix's ValidPathInfo that go into a binary cache.
type PathInfo struct {
	// Path is the absolute store path.
	Path storepath.Path
	// NarHash is the hash of the path's NAR serialisation (`nix-store
	// --dump`), sha256 in practice. Push refuses a path whose dump does
	// not hash to it.
	NarHash nixhash.Hash
	// NarSize is the size in bytes of the NAR serialisation; never 0 for a
	// valid path.
	NarSize uint64
	// References are the absolute store paths this path refers to,
	// including the path itself when it refers to itself. Nix requires each
	// to be valid in the cache before the path is.
	References []storepath.Path
	// Deriver is the .drv that produced the path, or "" when unknown.
	Deriver storepath.Path
	// Sigs are the signatures the store holds for the path; Push keeps
	// them in the narinfo next to its own.
	Sigs []signature.Signature
	// CA is the content-address assertion, e.g. "text:sha256:<nix32>" for a
	// .drv or "fixed:r:sha256:<nix32>" for a fixed-output path; "" for
	// input-addressed paths. Never invent one: Nix aborts on a false CA.
	CA string
}

// Source is where Push reads store paths from; *localstore.Store implements
// it.
type Source interface {
	// QueryPathInfo returns what the store knows about a valid path (Nix's
	// Store::queryPathInfo).
	QueryPathInfo(ctx context.Context, p storepath.Path) (*PathInfo, error)
	// Closure returns the paths and everything they reference, references
	// before referrers.
	Closure(ctx context.Context, paths []storepath.Path) ([]storepath.Path, error)
}

// BatchSource is a Source that also answers for many paths in one call
// (*localstore.Store: one database query, or one nix path-info process).
// Push reads the infos of the paths it uploads this way (with
// PushOptions.SkipSignedBy, of the whole closure), BatchSize paths per
// call, instead of one call per path.
type BatchSource interface {
	Source
	// QueryPathInfos returns the infos of paths in the same order; it may
	// fail as a whole when one path is not valid.
	QueryPathInfos(ctx context.Context, paths []storepath.Path) ([]*PathInfo, error)
}

// BatchSize is how many paths Push asks a BatchSource about at once.
const BatchSize = 500

// prefetch fills in the path infos of items from a BatchSource. A batch
// that fails is left to the per-path queries, which name the bad path.
func prefetch(ctx context.Context, src Source, items []*pushItem) {
	bs, ok := src.(BatchSource)
	if !ok {
		return
	}
	for start := 0; start < len(items); start += BatchSize {
		chunk := items[start:min(start+BatchSize, len(items))]
		paths := make([]storepath.Path, len(chunk))
		for i, it := range chunk {
			paths[i] = it.path
		}
		infos, err := bs.QueryPathInfos(ctx, paths)
		if err != nil || len(infos) != len(chunk) {
			continue
		}
		for i, it := range chunk {
			if infos[i] != nil && infos[i].Path == it.path {
				it.info = infos[i]
			}
		}
	}
}

// PushOptions tunes one Push.
type PushOptions struct {
	// Jobs is how many paths are dumped, compressed and uploaded at once
	// (default 4). Compression itself also uses every core.
	Jobs int
	// CheckJobs is how many "<hash>.narinfo exists?" checks run at once
	// (default 16).
	CheckJobs int
	// TempDir holds compressed NARs between compression and upload
	// (default os.TempDir()) on backends that cannot stage an object
	// (S3); NARs up to 1 MiB are kept in memory instead. Each file is
	// unlinked as soon as it is created and lives only as an open
	// descriptor, so nothing is left behind even if the process is killed.
	// Uncompressed NARs stream straight into the upload, and a Stager
	// backend (file://) takes the compressor's output directly.
	TempDir string
	// Progress, if set, receives events from several goroutines.
	Progress func(Event)
	// NoClosure pushes only the given paths, not what they reference. Their
	// references must already be in the cache, be among the paths, or be
	// served upstream (see SkipSignedBy).
	NoClosure bool
	// SkipSignedBy are the keys of an upstream cache (e.g.
	// cache.nixos.org-1): a path whose signatures in the store database
	// include a valid signature by one of them (checked against the path's
	// fingerprint, not just the key name) is not uploaded; Nix substitutes
	// it from upstream. The store database holds such a signature for
	// every path substituted from that cache. Such paths count as present
	// for the rule that a narinfo is published only after its references':
	// our narinfos may refer to them, so users must list both caches in
	// substituters (`nix copy --from` our cache alone lacks them,
	// NixOS/nix#4016).
	SkipSignedBy []signature.PublicKey
	// Upstream, if set, is also asked about each path the two rules above
	// leave to upload: a path whose narinfo Upstream serves with a valid
	// signature by one of SkipSignedBy (which must then be set) and the
	// NarHash and NarSize of the store database is not uploaded either.
	// The lookups run CheckJobs at once, like the presence checks, and
	// only for paths missing from the cache. A lookup that fails (other
	// than "not there") uploads the path and is logged.
	Upstream *Cache
	// Logs also uploads the build log of each requested path's deriver
	// (of the paths given to Push, not of their closure) to
	// "log/<drv base name>" when Source implements LogSource; see PushLog.
	Logs bool

	// replace (set by Repair) are paths uploaded even though their narinfo
	// exists or upstream serves them, and whose NAR object, when one of the right size exists, is
	// read back and rewritten unless it hashes to FileHash.
	replace map[storepath.Path]bool
	// Pin, when set, names a garbage-collector root: before publishing
	// anything, Push stores "gcroots/<Pin>" listing the whole closure
	// (see Cache.Pin and Collect).
	Pin string
	// caseHack is the Source's use-case-hack (see CaseHackSource).
	caseHack bool
}

func (o *PushOptions) jobs() int {
	if o.Jobs > 0 {
		return o.Jobs
	}
	return 4
}

func (o *PushOptions) checkJobs() int {
	if o.CheckJobs > 0 {
		return o.CheckJobs
	}
	return 16
}

// PathError is one store path's failure in a Push or Verify.
type PathError struct {
	// Path is the store path, or "" when Verify could not learn it.
	Path storepath.Path
	Err  error
}

// Error names the store path and the cause; the cause alone when the path
// is unknown ("": a narinfo Verify could not read names its key itself).
func (e *PathError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s: %v", e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *PathError) Unwrap() error { return e.Err }

// Summary is what a Push did.
type Summary struct {
	// Closure is the number of paths considered (the closure of the request).
	Closure int
	// Uploaded paths now have their narinfo in the cache thanks to this push.
	Uploaded int
	// Skipped paths already had a narinfo.
	Skipped int
	// SkippedUpstream paths were not uploaded because upstream serves them
	// (PushOptions.SkipSignedBy, PushOptions.Upstream).
	SkippedUpstream int
	// Failed paths were not published; see the error Push returned.
	Failed int
	// NarBytes is the uncompressed NAR size of the uploaded paths.
	NarBytes uint64
	// FileBytes is the compressed size of the uploaded paths' NAR files.
	FileBytes uint64
	// Duration is the wall-clock time of the Push.
	Duration time.Duration
	// Logs is the number of build logs uploaded (PushOptions.Logs).
	Logs int
	// Realisations is the number of realisations of content-addressed
	// derivations published.
	Realisations int
	// Presence counts the requests made to find which paths of the
	// closure are already in the cache (see Cache.Present).
	Presence PresenceStats
	// CollectorWaits counts the times the push waited ReuseSettle before
	// relying on objects already in the cache, because a garbage
	// collector held a live lease on the cache (see GCLeasePrefix).
	CollectorWaits int
}

// String is a one-line summary, as the push command prints it.
func (s *Summary) String() string {
	return fmt.Sprintf("uploaded %d, skipped %d, upstream %d, failed %d of %d paths; NAR %s, compressed %s; %s; %d requests to check presence (%s)",
		s.Uploaded, s.Skipped, s.SkippedUpstream, s.Failed, s.Closure, humanBytes(s.NarBytes), humanBytes(s.FileBytes),
		s.Duration.Round(time.Millisecond), s.Presence.Requests(), s.Presence.Strategy)
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pushItem is one path of a push and its publication state.
type pushItem struct {
	path    storepath.Path
	info    *PathInfo
	present bool
	// upstream: not uploaded because upstream serves the path.
	upstream bool
	// refreshed: present, and touched because a new path refers to it.
	refreshed bool
	done      chan struct{} // closed when the narinfo is stored (or on failure)
	err       error         // set before done is closed
}

// Push uploads the closure of paths from src to the cache, following Nix's
// binary cache rules:
//
//   - paths whose "<hashpart>.narinfo" exists are skipped, and so are
//     paths an upstream cache serves (PushOptions.SkipSignedBy, Upstream);
//   - each missing path is dumped as a NAR in one streaming pass, hashed
//     (NarHash/NarSize), compressed and hashed again (FileHash/FileSize),
//     never held in memory whole: with compression=none straight into the
//     upload of "nar/<NarHash nix32>.nar" (FileHash is NarHash, known from
//     the store database), on file:// straight into the file that becomes
//     the NAR, otherwise (S3, compressed) into a temporary file first
//     (NARs up to 1 MiB into memory);
//   - a NAR whose hash or size differs from the store database is refused,
//     and its upload fails before its last byte, so no NAR file of it is
//     stored either;
//   - the NAR goes to "nar/<FileHash nix32>.nar<ext>" (skipped when an
//     object of that size is there), then the optional "<hashpart>.ls";
//   - the narinfo, signed with every secret key and keeping the store's own
//     signatures, is stored last, and only after the narinfos of all its
//     references are in the cache. A narinfo is the commit point: an
//     interrupted push never leaves a narinfo without its NAR or references;
//   - then, for paths in the cache, the realisations of content-addressed
//     derivations Source records (see RealisationSource) and, with
//     PushOptions.Logs, the build logs of the requested paths' derivers.
//
// Push writes "nix-cache-info" if it is absent. It returns a Summary and, if
// any path failed, an error joining one *PathError per failed path.
func (c *Cache) Push(ctx context.Context, src Source, paths []storepath.Path, opts PushOptions) (*Summary, error) {
	start := time.Now()
	sum := &Summary{}
	opts.caseHack = sourceCaseHack(src)
	if len(paths) == 0 {
		return sum, nil
	}
	if err := c.opts.Compression.Validate(); err != nil {
		return sum, err
	}
	closure := paths
	if !opts.NoClosure {
		var err error
		closure, err = src.Closure(ctx, paths)
		if err != nil {
			return sum, fmt.Errorf("cache: closure of %v: %w", paths, err)
		}
	}
	sum.Closure = len(closure)
	skip, err := newSkipper(c, src, opts)
	if err != nil {
		return sum, err
	}
	// nix-cache-info is written (and made durable) while the presence
	// checks run; it is there before anything else is stored.
	cacheInfo := make(chan error, 1)
	go func() { cacheInfo <- c.EnsureCacheInfo(ctx, closure[0].Dir()) }()
	waited := false
	waitCacheInfo := func() error {
		if waited {
			return nil
		}
		waited = true
		return <-cacheInfo
	}
	defer waitCacheInfo()
	reused := newReuse(c)
	defer func() { sum.CollectorWaits = int(reused.waits.Load()) }()
	if opts.Pin != "" {
		if err := waitCacheInfo(); err != nil {
			return sum, err
		}
		// A collector that listed the cache before the pin sees it within
		// ReuseSettle (at once when none runs); only then is "present" a
		// promise (see Collect).
		if err := c.Pin(ctx, opts.Pin, closure); err != nil {
			return sum, err
		}
		if err := reused.settled(ctx, time.Now()); err != nil {
			return sum, err
		}
	}
	emit := func(e Event) {
		if opts.Progress != nil {
			opts.Progress(e)
		}
	}

	items := make(map[storepath.Path]*pushItem, len(closure))
	list := make([]*pushItem, 0, len(closure))
	for _, p := range closure {
		if _, dup := items[p]; dup {
			continue
		}
		it := &pushItem{path: p, done: make(chan struct{})}
		items[p] = it
		list = append(list, it)
	}

	// Phase 1: which paths are already in the cache or served upstream
	// (bounded, concurrent), and store info for the missing ones. A path
	// signed by an upstream key in the store database costs no request.
	if skip != nil {
		prefetch(ctx, src, list)
		if err := forEach(ctx, list, opts.checkJobs(), func(it *pushItem) error {
			if opts.replace[it.path] {
				return nil
			}
			ok, err := skip.local(ctx, it)
			it.upstream = ok
			return err
		}); err != nil {
			return sum, err
		}
	}
	if err := c.markPresent(ctx, list, opts, sum); err != nil {
		return sum, err
	}
	// The infos of the paths to upload, in one batch (one query of the
	// store database instead of one per path; what the batch misses is
	// asked for below, path by path).
	var need []*pushItem
	for _, it := range list {
		if !it.present && !it.upstream && it.info == nil {
			need = append(need, it)
		}
	}
	prefetch(ctx, src, need)
	if err := forEach(ctx, list, opts.checkJobs(), func(it *pushItem) error {
		if it.present || it.upstream {
			return nil
		}
		if it.info == nil {
			info, err := src.QueryPathInfo(ctx, it.path)
			if err != nil {
				return &PathError{it.path, fmt.Errorf("store path info: %w", err)}
			}
			it.info = info
		}
		var err error
		if skip != nil && !opts.replace[it.path] {
			it.upstream, err = skip.remote(ctx, it.info)
		}
		return err
	}); err != nil {
		return sum, err
	}
	if skip != nil {
		skip.report()
	}
	var missing []*pushItem
	for _, it := range list {
		if it.present || it.upstream {
			close(it.done)
			if it.upstream {
				sum.SkippedUpstream++
				emit(Event{Kind: EventSkippedUpstream, Path: it.path, NarSize: it.info.NarSize})
				continue
			}
			sum.Skipped++
			emit(Event{Kind: EventSkipped, Path: it.path})
		} else {
			missing = append(missing, it)
			emit(Event{Kind: EventQueued, Path: it.path, NarSize: it.info.NarSize})
		}
	}
	// Refresh the narinfos of present paths that new ones refer to, so
	// that a concurrent collector keeps them (see reuse).
	var refreshed []storepath.Path
	for _, it := range missing {
		for _, ref := range it.info.References {
			if dep, ok := items[ref]; ok && dep.present && !dep.refreshed {
				dep.refreshed = true
				refreshed = append(refreshed, ref)
			}
		}
	}
	if err := waitCacheInfo(); err != nil {
		return sum, err
	}
	if err := reused.touchNarInfos(ctx, refreshed, opts.checkJobs()); err != nil {
		return sum, err
	}
	if skip != nil && opts.NoClosure {
		if err := skip.references(ctx, missing, items, opts.checkJobs()); err != nil {
			return sum, err
		}
	}
	// Longest chains of work first: large NARs, and the paths whose
	// narinfos the most levels of others wait for.
	criticalFirst(missing)

	// Phase 2: NARs on Jobs workers; each narinfo is published by its own
	// goroutine once its NAR and its references' narinfos are stored.
	var (
		mu      sync.Mutex
		errs    []error
		publish sync.WaitGroup
		workers sync.WaitGroup
	)
	fail := func(it *pushItem, err error) {
		pe := &PathError{it.path, err}
		it.err = pe
		close(it.done)
		mu.Lock()
		errs = append(errs, pe)
		sum.Failed++
		mu.Unlock()
		emit(Event{Kind: EventFailed, Path: it.path, NarSize: it.info.NarSize, Err: err})
	}
	metaSem := make(chan struct{}, opts.checkJobs())
	queue := make(chan *pushItem, len(missing))
	for range min(opts.jobs(), max(len(missing), 1)) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for it := range queue {
				emit(Event{Kind: EventStarted, Path: it.path, NarSize: it.info.NarSize})
				up, err := c.uploadNAR(ctx, it, opts, emit, reused)
				if err != nil {
					fail(it, err)
					continue
				}
				publish.Add(1)
				go func() {
					defer publish.Done()
					if err := c.publishNarInfo(ctx, it, up, items, metaSem, reused); err != nil {
						fail(it, err)
						return
					}
					close(it.done)
					mu.Lock()
					sum.Uploaded++
					sum.NarBytes += up.narSize
					sum.FileBytes += up.fileSize
					mu.Unlock()
					emit(Event{Kind: EventUploaded, Path: it.path, NarSize: it.info.NarSize, Bytes: up.narSize, FileSize: up.fileSize})
				}()
			}
		}()
	}
	for _, it := range missing {
		queue <- it
	}
	close(queue)
	workers.Wait()
	publish.Wait()
	if f, ok := c.Backend.(Flusher); ok {
		if err := f.Flush(ctx); err != nil {
			errs = append(errs, err)
			sum.Failed += sum.Uploaded
			sum.Uploaded = 0
		}
	}
	if err := c.pushExtras(ctx, src, paths, list, opts, sum); err != nil {
		errs = append(errs, err)
	}
	sum.Duration = time.Since(start)
	return sum, errors.Join(errs...)
}

// forEach runs fn on every item with at most n at once and returns the
// first error (after all started calls finished).
func forEach[T any](ctx context.Context, items []T, n int, fn func(T) error) error {
	sem := make(chan struct{}, n)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			once.Do(func() { first = err })
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(it); err != nil {
				once.Do(func() { first = err })
			}
		}()
	}
	wg.Wait()
	return first
}

// hasNarInfo reports whether "<hashpart>.narinfo" exists in the cache.
func (c *Cache) hasNarInfo(ctx context.Context, p storepath.Path) (bool, error) {
	_, err := c.Backend.Stat(ctx, NarInfoKey(p))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("cache: stat %s: %w", NarInfoKey(p), err)
	}
}

// NarInfoKey is the cache key of a path's narinfo: "<hashpart>.narinfo".
func NarInfoKey(p storepath.Path) string { return p.HashPart() + ".narinfo" }

// ListingKey is the cache key of a path's NAR listing: "<hashpart>.ls".
func ListingKey(p storepath.Path) string { return p.HashPart() + ".ls" }

// publishNarInfo waits for the narinfos of it's references, then signs and
// stores it's narinfo.
func (c *Cache) publishNarInfo(ctx context.Context, it *pushItem, up *uploaded, items map[storepath.Path]*pushItem, sem chan struct{}, reused *reuse) error {
	text, err := c.narInfoText(it, up)
	// On a Stager (cache/file) the narinfo is written and synced while its
	// staged NAR file is committed and its references are still being
	// published, leaving only its rename and a (shared) directory fsync for
	// after them.
	committed := make(chan error, 1)
	if up.commit != nil {
		go func() { committed <- commitStaged(ctx, up.commit, sem) }()
	} else {
		committed <- nil
	}
	var staged Staged
	if st, ok := c.Backend.(Stager); ok && err == nil {
		staged, err = stageNarInfo(ctx, st, text, sem)
	}
	if cerr := <-committed; cerr != nil {
		if staged != nil {
			staged.Abort()
		}
		return cerr
	}
	if err != nil {
		return err
	}
	if staged != nil {
		defer staged.Abort()
	}
	if err := reused.freshNAR(ctx, up); err != nil {
		return err
	}
	for _, ref := range it.info.References {
		if ref == it.path {
			continue
		}
		if dep, ok := items[ref]; ok {
			if dep.refreshed {
				if err := reused.confirm(ctx); err != nil {
					return err
				}
				continue
			}
			select {
			case <-dep.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if dep.err != nil {
				return fmt.Errorf("%w: %s was not uploaded", ErrReferenceMissing, ref)
			}
			continue
		}
		ok, err := c.hasNarInfo(ctx, ref)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %s", ErrReferenceMissing, ref)
		}
		at, err := reused.touch(ctx, NarInfoKey(ref))
		if err == nil {
			err = reused.settle(ctx, at, NarInfoKey(ref), -1)
		}
		if err != nil {
			return err
		}
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-sem }()
	if err := ctx.Err(); err != nil {
		return err
	}
	key := NarInfoKey(it.path)
	if staged != nil {
		if err := staged.Commit(ctx, key); err != nil {
			return fmt.Errorf("upload %s: %w", key, err)
		}
		return nil
	}
	if err := c.Backend.Put(ctx, key, bytes.NewReader(text), int64(len(text)), narinfo.MIMEType); err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	return nil
}

// commitStaged runs the commit of a staged NAR file, at most cap(sem) at
// once (when ctx is done, at once: it then fails and removes the file).
func commitStaged(ctx context.Context, commit func(context.Context) error, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return commit(ctx)
	}
	defer func() { <-sem }()
	return commit(ctx)
}

// narInfoText is the signed narinfo of an uploaded path.
func (c *Cache) narInfoText(it *pushItem, up *uploaded) ([]byte, error) {
	ni := &narinfo.NarInfo{
		StorePath:   it.path,
		URL:         up.url,
		Compression: up.compression,
		FileHash:    up.fileHash,
		FileSize:    up.fileSize,
		NarHash:     up.narHash,
		NarSize:     up.narSize,
		References:  append([]storepath.Path(nil), it.info.References...),
		Deriver:     it.info.Deriver,
		Sigs:        append([]signature.Signature(nil), it.info.Sigs...),
		CA:          it.info.CA,
	}
	for _, k := range c.opts.SecretKeys {
		if err := ni.Sign(k); err != nil {
			return nil, fmt.Errorf("sign with %s: %w", k.Name(), err)
		}
	}
	text, err := ni.MarshalText()
	if err != nil {
		return nil, fmt.Errorf("narinfo: %w", err)
	}
	return text, nil
}

// stageNarInfo writes and syncs a narinfo's text as a staged object in the
// cache's root, at most cap(sem) at once.
func stageNarInfo(ctx context.Context, st Stager, text []byte, sem chan struct{}) (Staged, error) {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-sem }()
	s, err := st.Stage(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("stage narinfo: %w", err)
	}
	if _, err := s.Write(text); err != nil {
		s.Abort()
		return nil, fmt.Errorf("stage narinfo: %w", err)
	}
	if err := s.Sync(); err != nil {
		s.Abort()
		return nil, fmt.Errorf("stage narinfo: %w", err)
	}
	return s, nil
}
