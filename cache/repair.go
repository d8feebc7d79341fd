package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// ErrNotRepairable is wrapped by the reason Repair gives for a bad path it
// could not make good.
var ErrNotRepairable = errors.New("cache: not repairable")

// ErrNotSigned is wrapped by the reason Repair gives for a narinfo it did
// not add a SignWith signature to.
var ErrNotSigned = errors.New("cache: not signed")

// HashPartSource is a Source that also finds a valid path from its hash
// part, as Nix's queryPathFromHashPart (*localstore.Store implements it).
// Repair needs it for a narinfo it cannot read: the cache key
// "<hash part>.narinfo" is then all it knows of the path.
type HashPartSource interface {
	Source
	PathFromHashPart(ctx context.Context, hashPart string) (storepath.Path, error)
}

// RepairOptions tunes Repair.
type RepairOptions struct {
	// Verify is how paths are checked first (TrustedKeys, Jobs); its Result
	// is called for every path checked, before any repair.
	Verify VerifyOptions
	// Source, if set, is where bad paths are uploaded again from (the local
	// store). Without it nothing is repaired.
	Source Source
	// Push tunes the uploads (Jobs, TempDir, Progress, ...). The bad paths
	// are uploaded with their closure, so that a reference the cache lacks
	// goes up too (NoClosure is ignored); references Verify.Upstream serves
	// are not uploaded.
	Push PushOptions
	// SignWith are keys whose signature Repair adds to every narinfo that
	// verifies with Verify.TrustedKeys (key rotation), keeping the other
	// signatures. A narinfo that does not verify is not signed (so with no
	// TrustedKeys nothing is). Repaired narinfos are signed with them too.
	// A Repair of the whole cache (no paths) signs its realisations the
	// same way, so that Nix trusting only the new keys still substitutes
	// content-addressed derivations.
	SignWith []signature.SecretKey
	// Repaired, if set, is called once for every bad path after Repair
	// tried to fix it (only when Source is set).
	Repaired func(RepairResult)
	// Signed, if set, is called (from several goroutines) for every narinfo
	// and realisation checked when SignWith is set: err nil and changed
	// false when every signature was there already, err wrapping
	// ErrNotSigned when the object was left as it was. For a realisation, p
	// is its output path ("" when it did not parse) and key its
	// "realisations/<id>.doi".
	Signed func(p storepath.Path, key string, changed bool, err error)
}

// RepairResult is what Repair did about one bad path.
type RepairResult struct {
	// Path is the store path, "" when neither the narinfo nor the Source
	// could tell it.
	Path storepath.Path
	// Key is the narinfo's key, "<hash part>.narinfo".
	Key string
	// Problem is what verification found wrong.
	Problem error
	// Err is nil when the path verifies now; otherwise why it does not
	// (wrapping ErrNotRepairable when Repair could not upload it again).
	Err error
}

// String reports the outcome on one line: "PATH: repaired (was: ...)" or
// "PATH: not repaired: ... (was: ...)"; the narinfo key stands for an
// unknown path.
func (r RepairResult) String() string {
	name := string(r.Path)
	if name == "" {
		name = r.Key
	}
	if r.Err == nil {
		return fmt.Sprintf("%s: repaired (was: %v)", name, r.Problem)
	}
	return fmt.Sprintf("%s: not repaired: %v (was: %v)", name, r.Err, r.Problem)
}

// RepairSummary counts what Repair did.
type RepairSummary struct {
	// Checked narinfos; Bad of them failed verification, Repaired of those
	// verify now.
	Checked, Bad, Repaired int
	// Signed narinfos and realisations got a SignWith signature; NotSigned
	// were left as they were because they do not verify with the trusted
	// keys or could not be rewritten.
	Signed, NotSigned int
}

// String is the one-line summary the verify command prints.
func (s *RepairSummary) String() string {
	return fmt.Sprintf("checked %d paths, %d bad, %d repaired, %d signed, %d not signed",
		s.Checked, s.Bad, s.Repaired, s.Signed, s.NotSigned)
}

// badPath is a narinfo verification rejected.
type badPath struct {
	key     string
	path    storepath.Path
	problem error
	ni      *narinfo.NarInfo // the narinfo as parsed, or nil
}

// Repair verifies the given paths (or every narinfo listed), as Verify
// does, then mends the cache:
//
//   - with SignWith, every narinfo whose signatures verify with the trusted
//     keys gets a signature by each SignWith key, the others kept; the
//     narinfo is replaced by one Put (atomic on every backend) and only if
//     it is still the one that was verified, so running it again changes
//     nothing;
//   - with a Source, each bad path (narinfo unreadable or missing, NAR
//     missing, truncated or not matching FileHash/FileSize/NarHash/NarSize,
//     a reference missing) that is valid in the Source is uploaded again,
//     with what the cache lacks of its closure, through the Push
//     pipeline (the NAR dumped from the store must match the store's
//     NarHash), and a fresh narinfo is published last: it carries the
//     store's signatures, those of the bad narinfo when they sign the same
//     fingerprint, and new ones by the cache's secret keys and SignWith
//     (Nix keeps signatures as a set). A path is not repaired (ErrNotRepairable)
//     when the Source does not have it, or when the fresh narinfo would not
//     verify with the trusted keys.
//
// Repair never deletes anything: a NAR object is named by its FileHash, so
// the one it writes is the only content its key may hold (one of that name
// and size that hashes right is kept), and an object another narinfo uses
// stays. A concurrent pusher of the same path writes the same kind of
// correct narinfo; whichever lands last wins, and both are good.
//
// Without paths, realisations and build logs are checked as by Verify and
// reported (counted in Bad), not mended; with SignWith, the realisations
// are signed as the narinfos are.
//
// It returns the counts and an error joining one *PathError per path still
// bad (or a narinfo SignWith could not be added to although it verifies);
// a failure to read the cache itself is returned alone, as by Verify.
func (c *Cache) Repair(ctx context.Context, paths []storepath.Path, opts RepairOptions) (*RepairSummary, error) {
	sum := &RepairSummary{}
	if opts.Verify.Upstream != nil && len(opts.Verify.UpstreamKeys) == 0 {
		return sum, ErrNoUpstreamKey
	}
	var (
		mu   sync.Mutex
		bad  []badPath
		errs []error
		refs refChecker
		dir  storepath.Dir
	)
	n, err := c.verifyEach(ctx, paths, opts.Verify, func(key string, p storepath.Path, ni *narinfo.NarInfo, verr error) {
		if verr == nil && ni != nil {
			verr = refs.check(ctx, c, ni, opts.Verify)
			mu.Lock()
			dir = ni.StorePath.Dir()
			mu.Unlock()
		}
		if opts.Verify.Result != nil {
			opts.Verify.Result(p, verr)
		}
		if len(opts.SignWith) > 0 {
			var changed bool
			serr := fmt.Errorf("%w: %w", ErrNotSigned, verr)
			if ni != nil && NarInfoKey(ni.StorePath) == key {
				changed, serr = c.addSignatures(ctx, key, ni, opts.Verify.TrustedKeys, opts.SignWith)
			}
			if opts.Signed != nil {
				opts.Signed(p, key, changed, serr)
			}
			mu.Lock()
			switch {
			case serr != nil:
				sum.NotSigned++
				if verr == nil {
					errs = append(errs, &PathError{Path: p, Err: serr})
				}
			case changed:
				sum.Signed++
			}
			mu.Unlock()
		}
		if verr != nil {
			mu.Lock()
			bad = append(bad, badPath{key, p, verr, ni})
			mu.Unlock()
		}
	})
	sum.Checked, sum.Bad = n, len(bad)
	if err != nil {
		return sum, err
	}
	if len(paths) == 0 {
		// Realisations and build logs, checked as Verify does; Repair
		// reports them but does not mend them.
		if dir == "" {
			dir = storepath.DefaultDir
		}
		docs, err := c.verifyExtras(ctx, dir, opts.Verify, func(p storepath.Path, err error) {
			if opts.Verify.Result != nil {
				opts.Verify.Result(p, err)
			}
			if err != nil {
				mu.Lock()
				sum.Bad++
				errs = append(errs, &PathError{Path: p, Err: err})
				mu.Unlock()
			}
		})
		if err != nil {
			return sum, err
		}
		// Key rotation covers realisations too: Nix (nix copy --from)
		// registers one only with a valid signature by a key it trusts.
		if len(opts.SignWith) > 0 {
			jobs := opts.Verify.Jobs
			if jobs <= 0 {
				jobs = 4
			}
			err := forEach(ctx, docs, jobs, func(d listedRealisation) error {
				p, changed, serr := c.addRealisationSignatures(ctx, d.key, dir, opts.Verify.TrustedKeys, opts.SignWith)
				if opts.Signed != nil {
					opts.Signed(p, d.key, changed, serr)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case serr != nil:
					sum.NotSigned++
					if !d.reported {
						errs = append(errs, &PathError{Path: p, Err: serr})
					}
				case changed:
					sum.Signed++
				}
				return nil
			})
			if err == nil {
				err = ctx.Err()
			}
			if err != nil {
				return sum, err
			}
		}
	}
	results := make([]RepairResult, len(bad))
	olds := make([]*narinfo.NarInfo, len(bad))
	for i, b := range bad {
		results[i] = RepairResult{Path: b.path, Key: b.key, Problem: b.problem, Err: b.problem}
		olds[i] = b.ni
	}
	if opts.Source != nil && len(bad) > 0 {
		if err := c.repair(ctx, results, olds, opts); err != nil {
			return sum, err
		}
	}
	for _, r := range results {
		if opts.Source != nil && opts.Repaired != nil {
			opts.Repaired(r)
		}
		if r.Err == nil {
			sum.Repaired++
		} else {
			errs = append(errs, &PathError{Path: r.Path, Err: r.Err})
		}
	}
	return sum, errors.Join(errs...)
}

// repair uploads the bad paths again and sets each result's Err to nil
// when its path verifies afterwards, or to why not. olds are the bad
// narinfos as parsed (nil when they did not parse): their signatures go
// into the fresh narinfo when they sign the same fingerprint. It returns an
// error only when ctx ends.
func (c *Cache) repair(ctx context.Context, results []RepairResult, olds []*narinfo.NarInfo, opts RepairOptions) error {
	rc := *c
	rc.opts.SecretKeys = append(slices.Clip(c.opts.SecretKeys), opts.SignWith...)
	trusted := opts.Verify.TrustedKeys
	jobs := opts.Verify.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	var (
		mu      sync.Mutex
		upload  []storepath.Path
		replace = map[storepath.Path]bool{}
		src     = keepSigs{opts.Source, map[storepath.Path][]signature.Signature{}}
	)
	idx := make([]int, len(results))
	for i := range idx {
		idx[i] = i
	}
	// Which bad paths can be uploaded again.
	err := forEach(ctx, idx, jobs, func(i int) error {
		r := &results[i]
		p, sigs, err := rc.repairable(ctx, r, olds[i], opts.Source, trusted)
		r.Path = p
		if err != nil {
			r.Err = err
			return nil
		}
		// Another writer may have mended it since it was checked.
		if c.checkPath(ctx, r.Key, opts.Verify) == nil {
			r.Err = nil
			return nil
		}
		mu.Lock()
		upload = append(upload, p)
		replace[p] = true
		src.sigs[p] = sigs
		mu.Unlock()
		return nil
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil || len(upload) == 0 {
		return err
	}
	popts := opts.Push
	popts.NoClosure, popts.replace = false, replace
	if opts.Verify.Upstream != nil {
		// References upstream serves count as present, as for Verify.
		popts.Upstream, popts.SkipSignedBy = opts.Verify.Upstream, opts.Verify.UpstreamKeys
	}
	_, perr := rc.Push(ctx, src, upload, popts)
	failed := map[storepath.Path]error{}
	var pe *PathError
	for _, e := range unjoin(perr) {
		if errors.As(e, &pe) {
			failed[pe.Path] = pe.Err
		} else if e != nil {
			for _, p := range upload {
				failed[p] = e
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The fresh narinfo must now verify as any other.
	return forEach(ctx, idx, jobs, func(i int) error {
		r := &results[i]
		if !replace[r.Path] {
			return nil
		}
		if e, ok := failed[r.Path]; ok {
			r.Err = fmt.Errorf("%w: upload: %w", ErrNotRepairable, e)
			return nil
		}
		if err := c.checkPath(ctx, r.Key, opts.Verify); err != nil {
			r.Err = fmt.Errorf("still bad after upload: %w", err)
			return nil
		}
		r.Err = nil
		return nil
	})
}

// checkPath checks the narinfo under key as Verify does (VerifyNarInfo and
// its references), afresh.
func (c *Cache) checkPath(ctx context.Context, key string, opts VerifyOptions) error {
	ni, err := c.VerifyNarInfo(ctx, key, opts.TrustedKeys)
	if err != nil {
		return err
	}
	var refs refChecker
	return refs.check(ctx, c, ni, opts)
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// repairable finds the store path of a bad narinfo and checks that src has
// it and that a fresh narinfo would verify with trusted; the error wraps
// ErrNotRepairable. It also returns the signatures of old (the bad narinfo,
// if it parsed) that sign the fresh narinfo's fingerprint, for it to keep.
func (c *Cache) repairable(ctx context.Context, r *RepairResult, old *narinfo.NarInfo, src Source, trusted []signature.PublicKey) (storepath.Path, []signature.Signature, error) {
	p := r.Path
	if p == "" || NarInfoKey(p) != r.Key {
		hs, ok := src.(HashPartSource)
		if !ok {
			return p, nil, fmt.Errorf("%w: store path unknown (narinfo unreadable)", ErrNotRepairable)
		}
		var err error
		if p, err = hs.PathFromHashPart(ctx, strings.TrimSuffix(r.Key, ".narinfo")); err != nil {
			return r.Path, nil, fmt.Errorf("%w: not in the local store: %w", ErrNotRepairable, err)
		}
	}
	info, err := src.QueryPathInfo(ctx, p)
	if err != nil {
		return p, nil, fmt.Errorf("%w: not in the local store: %w", ErrNotRepairable, err)
	}
	ni := &narinfo.NarInfo{StorePath: p, NarHash: info.NarHash, NarSize: info.NarSize,
		References: info.References, Sigs: slices.Clone(info.Sigs)}
	var kept []signature.Signature
	if old != nil && old.StorePath == p {
		fp, err1 := ni.Fingerprint()
		oldFP, err2 := old.Fingerprint()
		if err1 == nil && err2 == nil && fp == oldFP {
			kept = old.Sigs
			ni.Sigs = append(ni.Sigs, kept...)
		}
	}
	for _, k := range c.opts.SecretKeys {
		if err := ni.Sign(k); err != nil {
			return p, nil, fmt.Errorf("%w: %w", ErrNotRepairable, err)
		}
	}
	if len(trusted) > 0 {
		if err := ni.Verify(trusted); err != nil {
			return p, nil, fmt.Errorf("%w: a fresh narinfo would carry no trusted signature (sign with a trusted secret key): %w", ErrNotRepairable, err)
		}
	}
	return p, kept, nil
}

// keepSigs is a Source whose path infos carry, besides the store's own
// signatures, those a repaired narinfo keeps from the bad one.
type keepSigs struct {
	Source
	sigs map[storepath.Path][]signature.Signature
}

func (s keepSigs) QueryPathInfo(ctx context.Context, p storepath.Path) (*PathInfo, error) {
	info, err := s.Source.QueryPathInfo(ctx, p)
	if err != nil || len(s.sigs[p]) == 0 {
		return info, err
	}
	cp := *info
	cp.Sigs = append(slices.Clip(info.Sigs), s.sigs[p]...)
	return &cp, nil
}

// addSignatures adds a signature by each of keys to the narinfo under key
// if its signatures verify with trusted, and stores it again only if that
// changed it and it is still the narinfo that was read (else it starts
// over, a few times). It reports whether the narinfo was rewritten.
//
// read is the narinfo as Verify has just read it from key. Written out
// again, a narinfo Nix or this package wrote is the same text byte for
// byte, so rewrite starts from that instead of reading the narinfo once
// more: signing reads each narinfo twice, not three times (Verify's read,
// and rewrite's read right before its write, which must find this very
// text). A narinfo written otherwise (fields in another order, say) fails
// that comparison, and rewrite starts over from the text it re-read: three
// reads, as before.
func (c *Cache) addSignatures(ctx context.Context, key string, read *narinfo.NarInfo, trusted []signature.PublicKey, keys []signature.SecretKey) (bool, error) {
	var first []byte
	if read != nil {
		first, _ = read.MarshalText() // nil on an error: rewrite reads
	}
	return c.rewrite(ctx, key, first, narinfo.MaxSize, ErrBadNarInfo, narinfo.MIMEType, func(data []byte) ([]byte, error) {
		ni, err := narinfo.Unmarshal(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadNarInfo, key, err)
		}
		if err := ni.Verify(trusted); err != nil {
			return nil, err
		}
		fp, err := ni.Fingerprint()
		if err != nil {
			return nil, err
		}
		changed := false
		for _, k := range keys {
			if !slices.Contains(ni.Sigs, k.Sign(fp)) {
				if err := ni.Sign(k); err != nil {
					return nil, err
				}
				changed = true
			}
		}
		if !changed {
			return nil, nil
		}
		return ni.MarshalText()
	})
}

// addRealisationSignatures is addSignatures for the realisation at key. It
// returns the realisation's output path when it parsed.
func (c *Cache) addRealisationSignatures(ctx context.Context, key string, dir storepath.Dir, trusted []signature.PublicKey, keys []signature.SecretKey) (storepath.Path, bool, error) {
	var out storepath.Path
	changed, err := c.rewrite(ctx, key, nil, maxRealisationSize, ErrBadRealisation, realisationMIMEType, func(data []byte) ([]byte, error) {
		r, err := ParseRealisation(data, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		out = r.OutPath
		if RealisationKey(r.ID) != key {
			return nil, fmt.Errorf("%w: %s holds id %s", ErrBadRealisation, key, r.ID)
		}
		if err := r.Verify(trusted); err != nil {
			return nil, err
		}
		fp := r.Fingerprint()
		changed := false
		for _, k := range keys {
			if !slices.Contains(r.Signatures, k.Sign(fp)) {
				r.Sign(k)
				changed = true
			}
		}
		if !changed {
			return nil, nil
		}
		return r.MarshalJSON()
	})
	return out, changed, err
}

// rewrite reads the object under key (at most limit bytes, else an error
// wrapping tooLarge), lets edit make its new text (nil: nothing to change),
// and stores that only if the object is still the one read, re-reading it
// right before the write (the Backend has no conditional Put: this narrows
// the window in which a concurrent writer's fresh object would be replaced
// by an older one); else it starts over from what it re-read, a few times.
// first, when not nil, is the object as the caller has just read it, which
// the first round edits instead of reading it again. It reports whether it
// rewrote the object; its errors wrap ErrNotSigned.
func (c *Cache) rewrite(ctx context.Context, key string, first []byte, limit int, tooLarge error, mime string, edit func(data []byte) ([]byte, error)) (bool, error) {
	data := first
	for range 3 {
		if data == nil {
			var err error
			if data, err = c.readLimited(ctx, key, limit, tooLarge); err != nil {
				return false, fmt.Errorf("%w: %w", ErrNotSigned, err)
			}
		}
		text, err := edit(data)
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrNotSigned, err)
		}
		if text == nil {
			return false, nil
		}
		again, err := c.readLimited(ctx, key, limit, tooLarge)
		if err != nil {
			data = nil
			continue
		}
		if !bytes.Equal(again, data) {
			data = again
			continue
		}
		if err := c.Backend.Put(ctx, key, bytes.NewReader(text), int64(len(text)), mime); err != nil {
			return false, fmt.Errorf("%w: write %s: %w", ErrNotSigned, key, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("%w: %s kept changing while being signed", ErrNotSigned, key)
}

// readLimited reads an object of at most limit bytes; a larger one is an
// error wrapping tooLarge.
func (c *Cache) readLimited(ctx context.Context, key string, limit int, tooLarge error) ([]byte, error) {
	rc, err := c.Backend.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", tooLarge, key, limit)
	}
	return data, nil
}

// hashesTo reports whether the object under key has the given sha256:
// false when it is missing or differs, an error when it could not be read
// (a transient failure must not pass for wrong contents, which would upload
// the object again).
func (c *Cache) hashesTo(ctx context.Context, key string, want nixhash.Hash) (bool, error) {
	rc, err := c.Backend.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	h := nixhash.NewHasher(want.Algorithm())
	if _, err := io.Copy(ctxWriter{ctx, h}, rc); err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	return h.SumHash() == want, nil
}
