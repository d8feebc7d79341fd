package cache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixbase32"
)

// PresenceStrategy is how Present finds which narinfos a cache holds.
type PresenceStrategy uint8

const (
	// PresenceAuto picks by size: HEADs for fewer than PresenceListMin
	// paths, and on a local filesystem (file://, where a Stat is a
	// system call); otherwise it lists one small key range first (a
	// probe) to estimate how many objects the cache holds, and lists when
	// the estimated listing costs fewer requests than the HEADs would.
	PresenceAuto PresenceStrategy = iota
	// PresenceHead makes one Stat (a HEAD on S3) per path, Jobs at once.
	PresenceHead
	// PresenceList lists "<hash>.narinfo" keys by hash prefix (the 32
	// first characters of Nix's base-32 alphabet, Jobs prefixes at once),
	// each prefix only until every wanted path under it is found, and
	// makes HEADs only where the backend cannot list.
	PresenceList
)

// String returns "auto", "head" or "list".
func (s PresenceStrategy) String() string {
	switch s {
	case PresenceAuto:
		return "auto"
	case PresenceHead:
		return "head"
	case PresenceList:
		return "list"
	}
	return "unknown"
}

// PresenceListMin is the smallest number of paths for which PresenceAuto
// considers listing: below it, HEADs cost fewer requests than the 32
// listings of the first-character prefixes.
const PresenceListMin = 256

// ListPageSize is the number of keys one listing request returns, as S3's
// ListObjectsV2 does by default; Present counts listing requests by it.
const ListPageSize = 1000

// listPageCost is what one listing request costs in HEADs when
// PresenceAuto compares the two: a page of 1,000 keys takes the server
// longer than a HEAD (and costs as much as 12.5 GETs on AWS).
const listPageCost = 8

// splitUnit is how many keys outside the hash namespace count as one
// listing request when list decides whether to split a prefix
// (ListPageSize; tests lower it).
var splitUnit = ListPageSize

// PresenceOptions tune Present.
type PresenceOptions struct {
	// Jobs is how many requests run at once (default 16).
	Jobs int
	// Strategy forces a strategy (default PresenceAuto).
	Strategy PresenceStrategy
}

// PresenceStats count what Present did.
type PresenceStats struct {
	// Strategy is the strategy used: PresenceHead or PresenceList (also
	// when some prefixes fell back to HEADs); PresenceAuto when there was
	// nothing to check.
	Strategy PresenceStrategy `json:"strategy"`
	// Heads is the number of Stat calls (HEAD requests on S3).
	Heads int `json:"heads"`
	// Lists is the number of List calls (one per prefix listed, and the
	// probe of PresenceAuto).
	Lists int `json:"lists"`
	// Pages is the number of listing requests, counted as ListPageSize keys
	// a request (at least one a List call).
	Pages int `json:"pages"`
	// Keys is the number of keys listed.
	Keys int `json:"keys"`
}

// Requests is the number of requests made: HEADs plus listing pages.
func (s PresenceStats) Requests() int { return s.Heads + s.Pages }

// String is e.g. "list: 57 requests (0 HEADs, 57 listing pages of 41
// listings, 10433 keys)".
func (s PresenceStats) String() string {
	return fmt.Sprintf("%s: %d requests (%d HEADs, %d listing pages of %d listings, %d keys)",
		s.Strategy, s.Requests(), s.Heads, s.Pages, s.Lists, s.Keys)
}

// Present reports, for each path, whether its narinfo ("<hashpart>.narinfo")
// is in the cache, as Nix's binary cache store decides a path is valid
// there (BinaryCacheStore::isValidPathUncached checks that the narinfo
// exists). A narinfo seen in a listing is present exactly as one found by a
// Stat: the object existed when the server answered. Paths sharing a hash
// part share the answer.
//
// Small sets (fewer than PresenceListMin), and caches on a local
// filesystem, are checked with one Stat each (a HEAD on S3), Jobs at once.
// For a larger set, PresenceAuto first lists the two-character prefix of
// the hash part that holds most wanted paths (a 1/1024 sample of the
// cache, which also settles those paths), and lists the keys under each
// first character of the hash part when that costs fewer requests than
// the HEADs would: a 10,000-path closure in a cache of 10,000 paths takes
// 33 requests instead of 10,000. A listing stops as soon as every wanted
// path under its prefix is found. On a ShallowLister (cache/s3) the
// listings leave out nar/, log/ and other folders; otherwise a prefix
// where such objects outweigh what narrower prefixes would cost is split
// into narrower prefixes that leave them out. A backend that cannot list
// (cache/http: ErrNotSupported), or whose listing fails (a key without
// s3:ListBucket), is asked with Stat calls instead, for the paths the
// listing did not settle. An error other than ErrNotFound from a Stat is
// returned as a *PathError naming the path.
func (c *Cache) Present(ctx context.Context, paths []storepath.Path, opts PresenceOptions) ([]bool, PresenceStats, error) {
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 16
	}
	ps := &presence{c: c, jobs: jobs, byHash: map[string][]int{}}
	for i, p := range paths {
		h := p.HashPart()
		if _, ok := ps.byHash[h]; !ok {
			ps.hashes = append(ps.hashes, h)
			ps.paths = append(ps.paths, p)
		}
		ps.byHash[h] = append(ps.byHash[h], i)
	}
	sort.Sort(ps)
	ps.state = make([]uint8, len(ps.hashes))
	if len(ps.hashes) > 0 {
		if err := ps.run(ctx, opts.Strategy); err != nil {
			return nil, ps.stats(), err
		}
	}
	out := make([]bool, len(paths))
	for j, h := range ps.hashes {
		for _, i := range ps.byHash[h] {
			out[i] = ps.state[j] == statePresent
		}
	}
	return out, ps.stats(), nil
}

// Per-hash state in presence.state.
const (
	stateUnknown uint8 = iota
	statePresent
	stateMissing
)

// presence is one Present call: the wanted hash parts, sorted, so that the
// hashes under a prefix are a contiguous range.
type presence struct {
	c      *Cache
	jobs   int
	hashes []string // sorted, unique
	paths  []storepath.Path
	byHash map[string][]int // hash -> indexes into Present's paths
	// state[i] is written only by the one task whose range holds i (top
	// prefixes are disjoint, and a split's tasks start after it ended).
	state    []uint8
	strategy PresenceStrategy

	heads, lists, pages, keys atomic.Int64
}

func (ps *presence) Len() int           { return len(ps.hashes) }
func (ps *presence) Less(i, j int) bool { return ps.hashes[i] < ps.hashes[j] }
func (ps *presence) Swap(i, j int) {
	ps.hashes[i], ps.hashes[j] = ps.hashes[j], ps.hashes[i]
	ps.paths[i], ps.paths[j] = ps.paths[j], ps.paths[i]
}

func (ps *presence) stats() PresenceStats {
	return PresenceStats{Strategy: ps.strategy, Heads: int(ps.heads.Load()), Lists: int(ps.lists.Load()),
		Pages: int(ps.pages.Load()), Keys: int(ps.keys.Load())}
}

// span returns the range of hashes starting with prefix.
func (ps *presence) span(prefix string) (lo, hi int) {
	lo = sort.SearchStrings(ps.hashes, prefix)
	hi = lo + sort.Search(len(ps.hashes)-lo, func(k int) bool { return !strings.HasPrefix(ps.hashes[lo+k], prefix) })
	return lo, hi
}

// unknownIn counts the hashes starting with prefix not settled yet.
func (ps *presence) unknownIn(prefix string) int {
	lo, hi := ps.span(prefix)
	n := 0
	for _, s := range ps.state[lo:hi] {
		if s == stateUnknown {
			n++
		}
	}
	return n
}

// ShallowLister is implemented by backends that can list the keys under a
// prefix that have no "/" after it, without reading what lies below (S3's
// delimiter listing; cache/s3 does). Present lists narinfos this way,
// leaving out nar/, log/, realisations/ and the like; with List alone it
// splits prefixes around them when they are many.
type ShallowLister interface {
	ListShallow(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}

// localBackend is implemented by backends on a local filesystem
// (cache/file): there a Stat is one system call, cheaper than any listing,
// which reads whole directories.
type localBackend interface{ Root() string }

func (ps *presence) run(ctx context.Context, strategy PresenceStrategy) error {
	if _, local := ps.c.Backend.(localBackend); strategy == PresenceAuto && (local || len(ps.hashes) < PresenceListMin) {
		strategy = PresenceHead
	}
	if strategy != PresenceHead {
		list, err := ps.listing(ctx, strategy == PresenceAuto)
		if err != nil {
			return err
		}
		if list {
			strategy = PresenceList
		} else {
			strategy = PresenceHead
		}
	}
	ps.strategy = strategy
	return ps.headUnknown(ctx)
}

// listing lists prefixes (after a probe, when probe is set, that may
// decide against it: then it returns false). Hashes it could not settle
// stay unknown, for headUnknown.
func (ps *presence) listing(ctx context.Context, probe bool) (bool, error) {
	var top []string
	for i := range nixbase32.Alphabet {
		top = append(top, nixbase32.Alphabet[i:i+1])
	}
	if probe {
		// The two-character prefix holding most wanted hashes: a 1/1024
		// sample of the cache's narinfos, that settles some wanted hashes
		// too. Its other keys estimate the whole cache's.
		best, bestN := "", 0
		for i := 0; i < len(ps.hashes); {
			p := ps.hashes[i][:2]
			_, hi := ps.span(p)
			if hi-i > bestN {
				best, bestN = p, hi-i
			}
			i = hi
		}
		res := ps.list(ctx, best, ListPageSize)
		if res.err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, nil // cannot list: HEADs
		}
		others := res.hashKeys - res.found
		estKeys := others*1024 + len(ps.hashes)
		if res.truncated {
			estKeys = ListPageSize * 1024
		}
		listCost := (len(top) + estKeys/ListPageSize) * listPageCost
		if listCost >= ps.unknownIn("") {
			return false, nil
		}
	}
	var (
		mu       sync.Mutex
		pending  sync.WaitGroup
		queue    = make(chan string, 1024)
		firstErr error
	)
	push := func(prefix string) {
		if ps.unknownIn(prefix) == 0 {
			return
		}
		pending.Add(1)
		go func() { queue <- prefix }()
	}
	for _, p := range top {
		push(p)
	}
	var workers sync.WaitGroup
	for range ps.jobs {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for prefix := range queue {
				res := ps.list(ctx, prefix, -1)
				if res.err == nil && res.split != nil {
					for _, p := range res.split {
						push(p)
					}
				} else if res.err != nil && !errors.Is(res.err, ErrNotSupported) {
					mu.Lock()
					firstErr = cmp.Or(firstErr, res.err)
					mu.Unlock()
				}
				pending.Done()
			}
		}()
	}
	pending.Wait()
	close(queue)
	workers.Wait()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if firstErr != nil {
		// Prefixes whose listing failed stay unknown: headUnknown asks.
		ps.c.opts.Logger.Warn("listing narinfos failed; checking those paths one by one", "err", firstErr)
	}
	return true, nil
}

// listResult is what one List of a prefix found.
type listResult struct {
	err       error    // the List failed (the prefix's hashes stay unknown)
	split     []string // narrower prefixes to list instead (the listing stopped)
	hashKeys  int      // keys in the hash namespace (narinfos, .ls)
	found     int      // wanted narinfos found
	truncated bool     // stopped at limit keys
}

var (
	errListDone  = errors.New("all found")
	errListSplit = errors.New("split")
	errListLimit = errors.New("limit")
)

// list lists the keys under prefix, marking wanted narinfos present, until
// all wanted under it are found (or limit keys were seen, when limit >= 0).
// When it completes, the wanted hashes not seen are missing. When keys
// outside the hash namespace cost more pages than narrower prefixes
// leaving them out would take in requests, it stops and returns those.
func (ps *presence) list(ctx context.Context, prefix string, limit int) listResult {
	lo, hi := ps.span(prefix)
	want := 0
	for _, s := range ps.state[lo:hi] {
		if s == stateUnknown {
			want++
		}
	}
	var (
		res     listResult
		seen    int
		foreign int
		stems   = map[string]int{}
	)
	ps.lists.Add(1)
	list := ps.c.Backend.List
	if sl, ok := ps.c.Backend.(ShallowLister); ok {
		list = sl.ListShallow
	}
	err := list(ctx, prefix, func(oi ObjectInfo) error {
		seen++
		key := oi.Key
		if stem := foreignStem(key, len(prefix)); stem != "" {
			stems[stem]++
			foreign++
			if foreign%splitUnit == 0 {
				if split := ps.splitFor(prefix, stems); split != nil && foreign/splitUnit >= len(split) {
					res.split = split
					return errListSplit
				}
			}
		} else {
			res.hashKeys++
			h := key[:storepath.HashPartLen]
			if key[storepath.HashPartLen:] == ".narinfo" {
				if j := sort.SearchStrings(ps.hashes[lo:hi], h) + lo; j < hi && ps.hashes[j] == h && ps.state[j] == stateUnknown {
					ps.state[j] = statePresent
					res.found++
					if want--; want == 0 && limit < 0 {
						return errListDone
					}
				}
			}
		}
		if limit >= 0 && seen >= limit {
			res.truncated = true
			return errListLimit
		}
		return nil
	})
	ps.keys.Add(int64(seen))
	ps.pages.Add(int64(max(1, (seen+ListPageSize-1)/ListPageSize)))
	switch {
	case errors.Is(err, errListDone), errors.Is(err, errListSplit), errors.Is(err, errListLimit):
	case err != nil:
		res.err = err
		return res
	default:
		// The listing completed: what it did not show is missing.
		for j := lo; j < hi; j++ {
			if ps.state[j] == stateUnknown {
				ps.state[j] = stateMissing
			}
		}
	}
	return res
}

// foreignStem returns "" for a key in the hash namespace (its first
// HashPartLen characters are in Nix's base-32 alphabet: a narinfo, a .ls),
// or else the shortest prefix of key that no such key has (e.g. "nar/" for
// a NAR file, "log/" for a build log): listing narrower prefixes that are
// not prefixes of the stem leaves it out. from is where to start looking
// (the listed prefix's length).
func foreignStem(key string, from int) string {
	for i := from; i < storepath.HashPartLen; i++ {
		if i >= len(key) {
			return key
		}
		if strings.IndexByte(nixbase32.Alphabet, key[i]) < 0 {
			return key[:i+1]
		}
	}
	if len(key) == storepath.HashPartLen {
		return key
	}
	return ""
}

// splitFor returns the narrower prefixes that cover prefix but leave out
// the stems seen at least splitUnit/16 times, keeping only those with
// wanted hashes not settled yet; nil when no stem is that common.
func (ps *presence) splitFor(prefix string, stems map[string]int) []string {
	var big []string
	for s, n := range stems {
		if n >= max(1, splitUnit/16) && len(s) > len(prefix) {
			big = append(big, s)
		}
	}
	if len(big) == 0 {
		return nil
	}
	var out []string
	var cover func(p string)
	cover = func(p string) {
		if ps.unknownIn(p) == 0 {
			return
		}
		split := false
		for _, s := range big {
			if len(s) > len(p) && strings.HasPrefix(s, p) {
				split = true
				break
			}
		}
		if !split {
			out = append(out, p)
			return
		}
		for i := range nixbase32.Alphabet {
			cover(p + nixbase32.Alphabet[i:i+1])
		}
	}
	cover(prefix)
	return out
}

// headUnknown settles the hashes still unknown with one Stat each.
func (ps *presence) headUnknown(ctx context.Context) error {
	var idx []int
	for j, s := range ps.state {
		if s == stateUnknown {
			idx = append(idx, j)
		}
	}
	return forEach(ctx, idx, ps.jobs, func(j int) error {
		ps.heads.Add(1)
		ok, err := ps.c.hasNarInfo(ctx, ps.paths[j])
		if err != nil {
			return &PathError{ps.paths[j], err}
		}
		if ok {
			ps.state[j] = statePresent
		} else {
			ps.state[j] = stateMissing
		}
		return nil
	})
}

// markPresent sets present on the items of a push whose narinfo is in the
// cache, checked all at once (see Present), and counts the requests in
// sum. Items served upstream and those Repair replaces are not asked about.
func (c *Cache) markPresent(ctx context.Context, list []*pushItem, opts PushOptions, sum *Summary) error {
	var (
		ask   []*pushItem
		paths []storepath.Path
	)
	for _, it := range list {
		if !it.upstream && !opts.replace[it.path] {
			ask = append(ask, it)
			paths = append(paths, it.path)
		}
	}
	present, stats, err := c.Present(ctx, paths, PresenceOptions{Jobs: opts.checkJobs()})
	sum.Presence = stats
	if err != nil {
		return err
	}
	for i, it := range ask {
		it.present = present[i]
	}
	return nil
}
