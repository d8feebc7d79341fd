package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixbase32"
)

// GCRootsPrefix is where a cache keeps its own garbage-collector roots:
// each object "gcroots/NAME" lists store paths, one absolute path a line
// ("#" starts a comment). Push writes one with PushOptions.Pin, naming the
// whole closure it pushes, before it publishes anything.
const GCRootsPrefix = "gcroots/"

// ReuseSettle is how long Push waits, after touching the objects it reuses
// (the narinfos of references already in the cache, a NAR file already
// there), before it checks that they are still there and publishes
// narinfos that rely on them; only while a collector holds a live lease
// (see GCLeasePrefix). It is twice gcDeleteWindow, the longest a
// collector takes from its last look at an object to the end of its
// removal; see the package documentation.
const ReuseSettle = 2 * gcDeleteWindow

// gcDeleteWindow bounds the time from a collector's last Stat of an object
// to the end of its removal: a removal that would end later is abandoned
// (the object is kept until the next collection).
const gcDeleteWindow = time.Second

// gcClockMargin is added to the grace period: an object modified less than
// this before the listing is young whatever the grace: a touch after the
// listing always changes the modification time the collector sees, even
// with one-second timestamps (S3's Last-Modified), and a NAR file a push
// wrote or touched is young until the push publishes its narinfo (within
// freshWindow + ReuseSettle, plus at most twice missingRechecks' pauses
// where a check met a passing 404).
const gcClockMargin = 6 * time.Second

// GCOptions tune Collect.
type GCOptions struct {
	// Keep are explicit roots (with their closures).
	Keep []storepath.Path
	// KeepRecent keeps every narinfo modified within this long before the
	// collection (uploaded, or reused by a push) and its closure; 0 keeps
	// none by age.
	KeepRecent time.Duration
	// MaxSize, when positive, also keeps the most recently modified paths
	// (newest first, with their closures) while the NAR files of everything
	// kept fit in MaxSize bytes; it stops at the first closure that does not
	// fit. Other roots are kept even beyond it.
	MaxSize int64
	// Grace: an object modified less than Grace ago is never removed, and a
	// narinfo that young is a root. The command's default is DefaultGrace.
	Grace time.Duration
	// Delete removes the garbage; without it Collect only plans (dry run)
	// and changes nothing.
	Delete bool
	// Trash, when set, moves each removed object to Trash+key instead of
	// deleting it (the backend must implement Mover); Restore undoes it.
	Trash string
	// Jobs is how many requests run at once (default 16).
	Jobs int
	// Progress, if set, is called from one goroutine at a time as phases
	// advance.
	Progress func(GCProgress)
	// Removed, if set, is called (from several goroutines) for every object
	// removed, or planned for removal in a dry run, with the reason.
	Removed func(key, reason string)
}

// DefaultGrace is the grace period of the gc command.
const DefaultGrace = time.Hour

// GCProgress is a progress report of Collect.
type GCProgress struct {
	Phase string // "list", "read", "narinfos", "nars", "listings"
	Done  int
	Total int // 0 when unknown (listing)
}

// GCCount is a number of objects (or store paths) and their bytes.
type GCCount struct {
	Count int   `json:"count"`
	Bytes int64 `json:"bytes"`
}

func (c *GCCount) add(n int64) { c.Count++; c.Bytes += n }

// GCReport is what Collect found and did. Bytes of store paths are their
// NAR files' sizes.
type GCReport struct {
	DryRun   bool `json:"dry_run"`
	Objects  int  `json:"objects_listed"`
	NarInfos int  `json:"narinfos"`
	// Kept store paths by the reason they were kept (a path reachable from
	// several roots counts under the first of explicit, pinned, young,
	// recent, size budget, refreshed), and their total.
	KeptExplicit  GCCount `json:"kept_explicit"`
	KeptPinned    GCCount `json:"kept_pinned"`
	KeptYoung     GCCount `json:"kept_young"`
	KeptRecent    GCCount `json:"kept_recent"`
	KeptBudget    GCCount `json:"kept_size_budget"`
	KeptRefreshed GCCount `json:"kept_refreshed"` // touched or published since the listing, or removal failed
	Kept          GCCount `json:"kept"`
	// Unreadable narinfos are kept; while there are any, no NAR file is
	// removed (the collector cannot tell which one they name).
	Unreadable int `json:"unreadable"`
	// Removed store paths (narinfos), unreferenced NAR files (StrayNARs:
	// those no narinfo at all named), .ls listings, build logs (of
	// derivations no kept narinfo names as Deriver), realisations (whose
	// output path is not kept) and temporary files.
	Removed      GCCount `json:"removed_paths"`
	NARs         GCCount `json:"removed_nars"`
	StrayNARs    GCCount `json:"stray_nars"`
	Listings     GCCount `json:"removed_listings"`
	Logs         GCCount `json:"removed_logs"`
	Realisations GCCount `json:"removed_realisations"`
	Temporaries  int     `json:"removed_temporaries"`
	// Requests made to the backend, by kind (List counts calls).
	Requests GCRequests    `json:"requests"`
	Duration time.Duration `json:"duration_ns"`
}

// GCRequests counts backend calls.
type GCRequests struct {
	List, Get, Stat, Delete, Move int64
}

func (r *GCReport) String() string {
	verb := "removed"
	if r.DryRun {
		verb = "would remove"
	}
	return fmt.Sprintf("%d narinfos: kept %d (%s; explicit %d, pinned %d, young %d, recent %d, budget %d, refreshed %d), %s %d (%s); "+
		"%s %d NAR files (%s, %d stray), %d listings, %d logs, %d realisations, %d temporaries; %d unreadable; %s",
		r.NarInfos, r.Kept.Count, humanBytes(uint64(r.Kept.Bytes)), r.KeptExplicit.Count, r.KeptPinned.Count, r.KeptYoung.Count,
		r.KeptRecent.Count, r.KeptBudget.Count, r.KeptRefreshed.Count, verb, r.Removed.Count, humanBytes(uint64(r.Removed.Bytes)),
		verb, r.NARs.Count, humanBytes(uint64(r.NARs.Bytes)), r.StrayNARs.Count, r.Listings.Count, r.Logs.Count, r.Realisations.Count, r.Temporaries, r.Unreadable,
		r.Duration.Round(time.Millisecond))
}

// Why a node is kept (0: garbage so far).
const (
	whyNone uint8 = iota
	whyExplicit
	whyPinned
	whyYoung
	whyRecent
	whyBudget
	whyRefreshed
	whyUnreadable
)

// Node states.
const (
	nodeUnlisted uint8 = iota // named (reference, root) but not in the listing
	nodeListed                // listed, not read yet
	nodeRead                  // read and parsed
	nodeGone                  // vanished (read or removal found it missing)
	nodeRemoved               // removed by this collection
)

// gcNode is one narinfo: about 70 bytes plus 4 per reference, and its
// entry in the digest index.
type gcNode struct {
	mtime  int64 // listed ModTime (Unix ns)
	size   int64 // NAR file size
	refs   []int32
	drv    [20]byte // digest of the Deriver, zero if none
	nar    int32    // index in gc.nars, -1 if unknown
	state  uint8
	reason uint8
	keySz  int32 // narinfo size
}

type gcNAR struct {
	mtime int64
	size  int64
	used  bool // named by a surviving narinfo
	named bool // named by any narinfo
}

type gcListing struct {
	key   string
	mtime int64
	size  int64
}

type collector struct {
	b      *countingBackend
	opts   GCOptions
	report GCReport
	start  time.Time
	cutoff int64 // listed objects modified at or after this are young

	mu       sync.Mutex
	ids      map[[20]byte]int32
	digests  [][20]byte
	nodes    []gcNode
	narIDs   map[string]int32
	narKeys  []string
	nars     []gcNAR
	listings []gcListing
	logs     []gcListing // log/<drv base name>
	reals    []gcListing // realisations/<id>.doi
	dir      storepath.Dir
	pins     []string
	lastProg time.Time

	pinMu   sync.Mutex
	pinAt   time.Time            // when the last look at the pins began
	pinSeen map[string]time.Time // pin key -> ModTime read

	lease *gcLease // nil in a dry run
	// lastEnd is the latest deadline (UnixNano) a removal was given.
	lastEnd atomic.Int64
}

// Collect removes from the cache what no root needs, safely beside pushes
// running at the same time (see the package documentation): it lists the
// cache once, reads every narinfo, keeps the roots (opts.Keep, the paths
// under GCRootsPrefix, narinfos younger than opts.Grace or opts.KeepRecent,
// the newest paths within opts.MaxSize) closed under References, and then
// removes, in this order, the other narinfos (referrers before their
// references), the NAR files no remaining narinfo names, the .ls listings
// of removed or absent paths, the build logs of derivations no remaining
// narinfo names as Deriver (nor is), the realisations whose output path
// has no remaining narinfo, and temporary files older than the grace
// period. Each object is looked at again (Stat) right before its removal
// and kept if it changed since the listing. Without opts.Delete nothing is
// changed and the report is the plan.
func (c *Cache) Collect(ctx context.Context, opts GCOptions) (*GCReport, error) {
	if opts.Jobs <= 0 {
		opts.Jobs = 16
	}
	if opts.Grace < 0 || opts.KeepRecent < 0 {
		return nil, errors.New("cache: gc: negative grace or keep period")
	}
	var mover Mover
	if opts.Trash != "" {
		if err := checkTrashPrefix(opts.Trash); err != nil {
			return nil, err
		}
		var ok bool
		if mover, ok = c.Backend.(Mover); !ok {
			return nil, errors.New("cache: gc: the backend cannot move objects: no trash")
		}
	}
	g := &collector{
		b:       &countingBackend{Backend: c.Backend, req: new(GCRequests)},
		opts:    opts,
		start:   time.Now(),
		ids:     map[[20]byte]int32{},
		narIDs:  map[string]int32{},
		pinSeen: map[string]time.Time{},
	}
	g.pinAt = g.start
	g.report.DryRun = !opts.Delete
	g.cutoff = g.start.Add(-opts.Grace - gcClockMargin).UnixNano()
	ci, err := c.CacheInfo(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("cache: gc: %w", ErrNotACache)
	} else if err != nil {
		return nil, fmt.Errorf("cache: gc: %w", err)
	}
	g.dir = ci.StoreDir
	if g.dir == "" {
		g.dir = storepath.DefaultDir
	}
	if opts.Delete {
		// Before the listing: a push that finds no live lease after its
		// touches knows this collection lists after them.
		if g.lease, err = takeLease(ctx, c.Backend); err != nil {
			return nil, fmt.Errorf("cache: gc: %w", err)
		}
	}
	err = g.run(ctx, mover)
	if g.lease != nil {
		// A removal ends by its deadline; give one more gcDeleteWindow for
		// a request the server carries out late, the margin ReuseSettle
		// (2 windows after a look) leaves too, before pushes stop waiting.
		time.Sleep(time.Until(time.Unix(0, g.lastEnd.Load()).Add(gcDeleteWindow)))
		g.lease.release(ctx)
	}
	g.report.Requests = *g.b.req
	g.report.Duration = time.Since(g.start)
	if err != nil {
		return &g.report, fmt.Errorf("cache: gc: %w", err)
	}
	return &g.report, nil
}

func checkTrashPrefix(p string) error {
	if !strings.HasSuffix(p, "/") || ValidateKey(strings.TrimSuffix(p, "/")) != nil {
		return fmt.Errorf("cache: gc: trash prefix %q must be a key ending in /", p)
	}
	for _, reserved := range []string{"nar/", GCRootsPrefix, GCLeasePrefix, "log/", "realisations/", "debuginfo/"} {
		if strings.HasPrefix(p, reserved) {
			return fmt.Errorf("cache: gc: trash prefix %q is inside %s, where the cache keeps its own objects", p, reserved)
		}
	}
	return nil
}

func (g *collector) progress(phase string, done, total int, force bool) {
	if g.opts.Progress == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := time.Now(); force || now.Sub(g.lastProg) >= 200*time.Millisecond {
		g.lastProg = now
		g.opts.Progress(GCProgress{Phase: phase, Done: done, Total: total})
	}
}

// node returns the index of the narinfo with this digest, adding it.
// Callers hold g.mu (or run alone).
func (g *collector) node(d [20]byte) int32 {
	if id, ok := g.ids[d]; ok {
		return id
	}
	id := int32(len(g.nodes))
	g.ids[d] = id
	g.digests = append(g.digests, d)
	g.nodes = append(g.nodes, gcNode{nar: -1})
	return id
}

// digestOf decodes a 32-character hash part.
func digestOf(hashPart string) ([20]byte, bool) {
	var d [20]byte
	if len(hashPart) != 32 {
		return d, false
	}
	n, err := nixbase32.Decode(d[:], []byte(hashPart))
	return d, err == nil && n == 20
}

func (g *collector) key(id int32) string {
	return nixbase32.EncodeToString(g.digests[id][:]) + ".narinfo"
}

func (g *collector) run(ctx context.Context, mover Mover) error {
	if err := g.list(ctx); err != nil {
		return err
	}
	if err := g.readPins(ctx); err != nil {
		return err
	}
	if err := g.readNarInfos(ctx); err != nil {
		return err
	}
	g.mark()
	if err := g.relist(ctx); err != nil {
		return err
	}
	remove := func(ctx context.Context, key string) error {
		if mover != nil {
			g.b.count(&g.b.req.Move)
			return mover.Move(ctx, key, g.opts.Trash+key)
		}
		return g.b.Delete(ctx, key)
	}
	if err := g.sweepNarInfos(ctx, remove); err != nil {
		return err
	}
	if err := g.sweepNARs(ctx, remove); err != nil {
		return err
	}
	if err := g.sweepListings(ctx, remove); err != nil {
		return err
	}
	if err := g.sweepLogs(ctx, remove); err != nil {
		return err
	}
	if err := g.sweepRealisations(ctx, remove); err != nil {
		return err
	}
	return g.sweepTemporaries(ctx)
}

// list reads the whole listing once, keeping only what later phases need.
func (g *collector) list(ctx context.Context) error {
	err := g.b.List(ctx, "", func(oi ObjectInfo) error {
		g.report.Objects++
		if g.report.Objects%4096 == 0 {
			g.progress("list", g.report.Objects, 0, false)
		}
		k := oi.Key
		switch {
		case strings.HasPrefix(k, GCRootsPrefix):
			g.pins = append(g.pins, k)
			g.pinSeen[k] = oi.ModTime
		case strings.HasPrefix(k, "log/"):
			if _, ok := logDigest(k); ok && oi.ModTime.UnixNano() < g.cutoff {
				g.logs = append(g.logs, gcListing{k, oi.ModTime.UnixNano(), oi.Size})
			}
		case strings.HasPrefix(k, "realisations/"):
			id, ok := strings.CutSuffix(strings.TrimPrefix(k, "realisations/"), ".doi")
			if ok && ValidateRealisationID(id) == nil && oi.ModTime.UnixNano() < g.cutoff {
				g.reals = append(g.reals, gcListing{k, oi.ModTime.UnixNano(), oi.Size})
			}
		case strings.HasPrefix(k, "nar/"):
			id, ok := g.narIDs[k]
			if !ok {
				id = int32(len(g.nars))
				g.narIDs[k] = id
				g.narKeys = append(g.narKeys, k)
				g.nars = append(g.nars, gcNAR{})
			}
			g.nars[id].mtime, g.nars[id].size = oi.ModTime.UnixNano(), oi.Size
		case strings.Contains(k, "/"):
		case strings.HasSuffix(k, ".narinfo"):
			if id, ok := g.narInfoNode(k); ok { // else not a narinfo Nix would look up: leave it
				g.noteListed(id, oi)
			}
		case strings.HasSuffix(k, ".ls"):
			if _, ok := digestOf(strings.TrimSuffix(k, ".ls")); ok {
				g.listings = append(g.listings, gcListing{k, oi.ModTime.UnixNano(), oi.Size})
			}
		}
		return nil
	})
	g.progress("list", g.report.Objects, g.report.Objects, true)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	return nil
}

// narInfoNode returns the node of key when it is a narinfo Nix would look
// up ("<hashpart>.narinfo" at the cache's root).
func (g *collector) narInfoNode(key string) (int32, bool) {
	k, ok := strings.CutSuffix(key, ".narinfo")
	if !ok || strings.Contains(k, "/") {
		return 0, false
	}
	d, ok := digestOf(k)
	if !ok {
		return 0, false
	}
	return g.node(d), true
}

// noteListed records the listing of narinfo node id.
func (g *collector) noteListed(id int32, oi ObjectInfo) {
	n := &g.nodes[id]
	n.state, n.mtime, n.keySz = nodeListed, oi.ModTime.UnixNano(), int32(min(oi.Size, 1<<30))
	g.report.NarInfos++
}

// relist lists the cache once more, before anything is removed, and keeps
// every narinfo that the first listing did not show, with its closure and
// its NAR file. A server may leave out of a listing an object that is being
// overwritten or touched at that moment: MinIO does, for a copy onto itself
// (what a push's touch of a reused narinfo is); while four narinfos were
// touched in a loop, 105 of 1768 looks at them in 442 listings missed one.
// A narinfo missing from the listing would have made its NAR file a stray
// and its references garbage, although it is there. A narinfo left out of
// both listings is still possible, but far rarer. Only a collection that
// removes pays for the second listing.
func (g *collector) relist(ctx context.Context) error {
	if !g.opts.Delete {
		return nil
	}
	var added []int32
	err := g.b.List(ctx, "", func(oi ObjectInfo) error {
		if id, ok := g.narInfoNode(oi.Key); ok && g.nodes[id].state == nodeUnlisted {
			g.noteListed(id, oi)
			added = append(added, id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list again: %w", err)
	}
	if len(added) == 0 {
		return nil
	}
	if err := g.readNarInfos(ctx); err != nil { // the nodes just listed
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range added {
		n := &g.nodes[id]
		switch {
		case n.state != nodeRead:
		case n.reason == whyNone:
			g.keepClosure(id)
		default:
			// Kept already (a kept narinfo refers to it), but its own
			// references were unknown when the closures were marked.
			for _, r := range n.refs {
				if g.nodes[r].reason == whyNone {
					g.keepClosure(r)
				}
			}
		}
	}
	return nil
}

// readPins reads every gcroots/ object; one that cannot be read or holds a
// line that is not a store path stops the collection, as the paths it was
// meant to protect are unknown.
func (g *collector) readPins(ctx context.Context) error {
	for _, key := range g.pins {
		if err := g.readPin(ctx, key, func(id int32) { g.nodes[id].reason = whyPinned }); err != nil {
			return err
		}
	}
	for _, p := range g.opts.Keep {
		d, ok := digestOf(p.HashPart())
		if !ok {
			return fmt.Errorf("keep %q: not a store path", p)
		}
		g.nodes[g.node(d)].reason = whyExplicit
	}
	return nil
}

// readNarInfos reads every listed narinfo, opts.Jobs at a time.
func (g *collector) readNarInfos(ctx context.Context) error {
	var todo []int32
	for id := range g.nodes {
		if g.nodes[id].state == nodeListed {
			todo = append(todo, int32(id))
		}
	}
	done := 0
	return forEach(ctx, todo, g.opts.Jobs, func(id int32) error {
		key := g.key(id)
		ni, err := g.readNarInfo(ctx, key)
		g.mu.Lock()
		n := &g.nodes[id]
		switch {
		case errors.Is(err, ErrNotFound):
			n.state = nodeGone
		case errors.Is(err, errUnreadable):
			n.state, n.reason = nodeRead, whyUnreadable
			g.report.Unreadable++
		case err != nil:
			g.mu.Unlock()
			return err
		default:
			n.state = nodeRead
			url, _, _ := strings.Cut(ni.URL, "?")
			nid, ok := g.narIDs[url]
			if !ok {
				nid = int32(len(g.nars))
				g.narIDs[url] = nid
				g.narKeys = append(g.narKeys, url)
				g.nars = append(g.nars, gcNAR{mtime: -1})
			}
			g.nars[nid].named = true
			if d, ok := digestOf(ni.Deriver.HashPart()); ok {
				n.drv = d
			}
			n.nar, n.size = nid, int64(ni.FileSize)
			if n.size == 0 {
				n.size = g.nars[nid].size
			}
			n.refs = make([]int32, 0, len(ni.References))
			for _, r := range ni.References {
				if d, ok := digestOf(r.HashPart()); ok {
					if rid := g.node(d); rid != id {
						n = &g.nodes[id] // g.node may grow g.nodes
						n.refs = append(n.refs, rid)
					}
				}
			}
		}
		done++
		d := done
		g.mu.Unlock()
		if d%1024 == 0 || d == len(todo) {
			g.progress("read", d, len(todo), d == len(todo))
		}
		return nil
	})
}

// Pin files written by [Cache.Pin] start with pinHeader and end with a
// line pinFooter+count. Some S3 servers (versitygw) let a GET that races a
// PUT replacing the object read a torn file: without the footer the
// collector could not tell a pin cut at a line break from a whole one, and
// would lose the tail's paths. A pin without the header (written by hand)
// is read as it is.
const (
	pinHeader = "# nixcache pin\n"
	pinFooter = "# end: "
)

// errTornPin reports a pin read while it was being replaced.
var errTornPin = errors.New("pin read while being replaced")

// readPin reads one gcroots/ object and calls keep with the node of each
// path it names (the caller holds g.mu or runs alone). A torn read (see
// pinHeader) is read again, a few times; so is an empty pin, which is what
// a read racing a replacement may see (write a comment line to pin nothing).
func (g *collector) readPin(ctx context.Context, key string, keep func(int32)) error {
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
			}
		}
		var data []byte
		data, err = g.read(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return nil // unpinned since the listing
		}
		if err != nil {
			return fmt.Errorf("read root %s: %w", key, err)
		}
		var ids []int32
		ids, err = g.parsePin(string(data))
		if err == nil {
			for _, id := range ids {
				keep(id)
			}
			return nil
		}
		if !errors.Is(err, errTornPin) {
			break
		}
	}
	if errors.Is(err, errTornPin) {
		return fmt.Errorf("root %s: %w", key, err)
	}
	return fmt.Errorf("root %s%w", key, err)
}

// parsePin returns the nodes of the paths a pin names.
func (g *collector) parsePin(data string) ([]int32, error) {
	if strings.HasPrefix(pinHeader, data) {
		return nil, errTornPin // empty, or cut inside the header
	}
	framed := strings.HasPrefix(data, pinHeader)
	var ids []int32
	line, end := 0, -1
	for l := range strings.Lines(data) {
		line++
		if end >= 0 {
			return nil, fmt.Errorf(" line %d: after the end line", line)
		}
		if framed && strings.HasPrefix(l, pinFooter) {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(l, pinFooter), " paths\n"))
			if err != nil || !strings.HasSuffix(l, "\n") || n != len(ids) {
				return nil, errTornPin
			}
			end = line
			continue
		}
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		p, err := storepath.Parse(l)
		if err != nil {
			if framed {
				return nil, errTornPin // cut inside a line
			}
			return nil, fmt.Errorf(" line %d: %w", line, err)
		}
		d, _ := digestOf(p.HashPart())
		ids = append(ids, g.node(d))
	}
	if framed && end < 0 {
		return nil, errTornPin
	}
	return ids, nil
}

// pinLookEvery is how often the narinfo sweep looks for pins written
// since the listing: a pin written at q protects its paths from every
// removal that starts after q + pinLookEvery + one look, so a pinned Push
// waits ReuseSettle after writing its pin before it looks at what the cache
// holds.
const pinLookEvery = 250 * time.Millisecond

// refreshPins keeps the paths of pins written or changed since the last
// look, with their closures, unless it looked less than pinLookEvery ago.
func (g *collector) refreshPins(ctx context.Context) error {
	g.pinMu.Lock()
	defer g.pinMu.Unlock()
	if time.Since(g.pinAt) < pinLookEvery {
		return nil
	}
	start := time.Now()
	var changed []string
	err := g.b.List(ctx, GCRootsPrefix, func(oi ObjectInfo) error {
		if t, ok := g.pinSeen[oi.Key]; !ok || !t.Equal(oi.ModTime) {
			g.pinSeen[oi.Key] = oi.ModTime
			changed = append(changed, oi.Key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list roots: %w", err)
	}
	for _, key := range changed {
		g.mu.Lock()
		err := g.readPin(ctx, key, func(id int32) {
			if g.nodes[id].reason == whyNone {
				g.keepClosure(id)
			}
		})
		g.mu.Unlock()
		if err != nil {
			return err
		}
	}
	g.pinAt = start
	return nil
}

var errUnreadable = errors.New("unreadable narinfo")

func (g *collector) readNarInfo(ctx context.Context, key string) (*narinfo.NarInfo, error) {
	data, err := g.read(ctx, key)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	ni, err := narinfo.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errUnreadable, key, err)
	}
	return ni, nil
}

// read reads a small object (up to 64 MiB), trying three times: a pusher
// may replace it (a pin) or touch it (a narinfo) while it is read, which
// S3 reports as a failed precondition.
func (g *collector) read(ctx context.Context, key string) ([]byte, error) {
	var err error
	for range 3 {
		var rc io.ReadCloser
		if rc, err = g.b.Get(ctx, key); err == nil {
			var data []byte
			data, err = io.ReadAll(io.LimitReader(rc, 64<<20))
			rc.Close()
			if err == nil {
				return data, nil
			}
		}
		if errors.Is(err, ErrNotFound) || ctx.Err() != nil {
			return nil, err
		}
	}
	return nil, err
}

// mark keeps the roots and their closures, reason by reason.
func (g *collector) mark() {
	var stack []int32
	closure := func(reason uint8) {
		stack = stack[:0]
		for id := range g.nodes {
			if g.nodes[id].reason == reason {
				stack = append(stack, int32(id))
			}
		}
		for len(stack) > 0 {
			id := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, r := range g.nodes[id].refs {
				if g.nodes[r].reason == whyNone {
					g.nodes[r].reason = reason
					stack = append(stack, r)
				}
			}
		}
	}
	closure(whyExplicit)
	closure(whyPinned)
	closure(whyUnreadable)
	for id := range g.nodes {
		if n := &g.nodes[id]; n.reason == whyNone && n.state == nodeRead && n.mtime >= g.cutoff {
			n.reason = whyYoung
		}
	}
	closure(whyYoung)
	if g.opts.KeepRecent > 0 {
		recent := g.start.Add(-g.opts.KeepRecent).UnixNano()
		for id := range g.nodes {
			if n := &g.nodes[id]; n.reason == whyNone && n.state == nodeRead && n.mtime >= recent {
				n.reason = whyRecent
			}
		}
		closure(whyRecent)
	}
	if g.opts.MaxSize > 0 {
		g.markBudget()
	}
}

// markBudget keeps the newest paths with their closures while the NAR
// files of everything kept fit in MaxSize.
func (g *collector) markBudget() {
	counted := make([]bool, len(g.nars))
	var used int64
	var order []int32
	for id := range g.nodes {
		n := &g.nodes[id]
		if n.state != nodeRead {
			continue
		}
		if n.reason != whyNone {
			if n.nar >= 0 && !counted[n.nar] {
				counted[n.nar] = true
				used += n.size
			}
		} else {
			order = append(order, int32(id))
		}
	}
	slices.SortStableFunc(order, func(a, b int32) int { return int(g.nodes[b].mtime>>20) - int(g.nodes[a].mtime>>20) })
	var stack, add []int32
	seen := map[int32]bool{}
	for _, root := range order {
		if g.nodes[root].reason != whyNone {
			continue
		}
		clear(seen)
		stack, add = append(stack[:0], root), add[:0]
		var extra int64
		newNARs := map[int32]bool{}
		for len(stack) > 0 {
			id := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[id] || g.nodes[id].reason != whyNone {
				continue
			}
			seen[id] = true
			add = append(add, id)
			n := &g.nodes[id]
			if n.nar >= 0 && !counted[n.nar] && !newNARs[n.nar] {
				newNARs[n.nar] = true
				extra += n.size
			}
			stack = append(stack, n.refs...)
		}
		if used+extra > g.opts.MaxSize {
			return
		}
		used += extra
		for nid := range newNARs {
			counted[nid] = true
		}
		for _, id := range add {
			g.nodes[id].reason = whyBudget
		}
	}
}

// keepClosure keeps id and everything it references that is still
// garbage, as refreshed. Callers hold g.mu.
func (g *collector) keepClosure(id int32) {
	g.nodes[id].reason = whyRefreshed
	stack := []int32{id}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, r := range g.nodes[id].refs {
			if n := &g.nodes[r]; n.reason == whyNone {
				n.reason = whyRefreshed
				stack = append(stack, r)
			}
		}
	}
}

type outcome uint8

const (
	outRemoved outcome = iota
	outGone            // already missing
	outKept            // changed since the listing, young, or removal failed
)

// checkAndRemove looks at key once more and removes it only if it is still
// the object the listing showed (same ModTime, to the second) and older
// than the grace period. The look and the removal both end within
// gcDeleteWindow of the look's start, or the removal is not attempted
// (ReuseSettle relies on that bound), and within the collector's lease:
// once it lapsed, the collection stops.
func (g *collector) checkAndRemove(ctx context.Context, key string, listed int64, remove func(context.Context, string) error) (outcome, error) {
	t0 := time.Now()
	if !g.lease.holds(t0.Add(gcDeleteWindow)) {
		return outKept, errLeaseLapsed
	}
	end := t0.Add(gcDeleteWindow)
	g.noteEnd(end)
	wctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	oi, err := g.b.Stat(wctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return outGone, nil
	case err != nil:
		if ctx.Err() != nil {
			return outKept, ctx.Err()
		}
		return outKept, nil // slow or failing: next time
	}
	if oi.ModTime.Unix() != time.Unix(0, listed).Unix() || !oi.ModTime.Before(t0.Add(-g.opts.Grace-gcClockMargin)) {
		return outKept, nil
	}
	err = remove(wctx, key)
	switch {
	case err == nil:
		return outRemoved, nil
	case errors.Is(err, ErrNotFound):
		return outGone, nil
	case ctx.Err() != nil:
		return outKept, ctx.Err()
	}
	return outKept, nil
}

// noteEnd raises lastEnd to end.
func (g *collector) noteEnd(end time.Time) {
	for {
		last := g.lastEnd.Load()
		if end.UnixNano() <= last || g.lastEnd.CompareAndSwap(last, end.UnixNano()) {
			return
		}
	}
}

// sweepNarInfos removes garbage narinfos, referrers before references: a
// narinfo is looked at only once every garbage narinfo referring to it was
// handled, in waves run opts.Jobs at a time. One that is kept after all
// (touched since the listing, or not removable) keeps its closure.
func (g *collector) sweepNarInfos(ctx context.Context, remove func(context.Context, string) error) error {
	pending := make([]int32, len(g.nodes))
	var wave []int32
	garbage := func(id int32) bool {
		n := &g.nodes[id]
		return n.reason == whyNone && n.state == nodeRead
	}
	total := 0
	for id := range g.nodes {
		if garbage(int32(id)) {
			total++
			for _, r := range g.nodes[id].refs {
				if garbage(r) {
					pending[r]++
				}
			}
		}
	}
	for id := range g.nodes {
		if garbage(int32(id)) && pending[id] == 0 {
			wave = append(wave, int32(id))
		}
	}
	done := 0
	for len(wave) > 0 {
		var next []int32
		err := forEach(ctx, wave, g.opts.Jobs, func(id int32) error {
			if g.opts.Delete {
				if err := g.refreshPins(ctx); err != nil {
					return err
				}
			}
			g.mu.Lock()
			still := garbage(id)
			listed := g.nodes[id].mtime
			g.mu.Unlock()
			out := outRemoved
			if still && g.opts.Delete {
				var err error
				out, err = g.checkAndRemove(ctx, g.key(id), listed, remove)
				if err != nil {
					return err
				}
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			if still {
				switch out {
				case outRemoved:
					g.nodes[id].state = nodeRemoved
					if g.opts.Removed != nil {
						g.opts.Removed(g.key(id), "unreachable")
					}
				case outGone:
					g.nodes[id].state = nodeGone
				case outKept:
					g.keepClosure(id)
				}
			}
			for _, r := range g.nodes[id].refs {
				if pending[r] > 0 {
					if pending[r]--; pending[r] == 0 && garbage(r) {
						next = append(next, r)
					}
				}
			}
			done++
			return nil
		})
		if err != nil {
			return err
		}
		g.progress("narinfos", done, total, false)
		wave = next
	}
	g.progress("narinfos", done, total, true)
	byReason := [...]*GCCount{whyExplicit: &g.report.KeptExplicit, whyPinned: &g.report.KeptPinned,
		whyYoung: &g.report.KeptYoung, whyRecent: &g.report.KeptRecent, whyBudget: &g.report.KeptBudget,
		whyRefreshed: &g.report.KeptRefreshed, whyUnreadable: {}}
	for id := range g.nodes {
		n := &g.nodes[id]
		var c *GCCount
		switch {
		case n.state == nodeRemoved:
			c = &g.report.Removed
		case n.state != nodeRead:
			continue
		default:
			if c = byReason[n.reason]; c == nil {
				continue // never reached (a canceled sweep)
			}
		}
		c.add(n.size)
		if n.state == nodeRead {
			g.report.Kept.add(n.size)
			if n.nar >= 0 {
				g.nars[n.nar].used = true
			}
		}
	}
	return nil
}

// sweepNARs removes the listed NAR files no surviving narinfo names.
func (g *collector) sweepNARs(ctx context.Context, remove func(context.Context, string) error) error {
	if g.report.Unreadable > 0 {
		return nil
	}
	var todo []int32
	for id, n := range g.nars {
		if !n.used && n.mtime > 0 && n.mtime < g.cutoff {
			todo = append(todo, int32(id))
		}
	}
	done := 0
	return forEach(ctx, todo, g.opts.Jobs, func(id int32) error {
		n := g.nars[id]
		out := outRemoved
		if g.opts.Delete {
			var err error
			if out, err = g.checkAndRemove(ctx, g.narKeys[id], n.mtime, remove); err != nil {
				return err
			}
		}
		g.mu.Lock()
		if out == outRemoved {
			g.report.NARs.add(n.size)
			reason := "unreferenced"
			if !n.named {
				g.report.StrayNARs.add(n.size)
				reason = "stray"
			}
			if g.opts.Removed != nil {
				g.opts.Removed(g.narKeys[id], reason)
			}
		}
		done++
		d := done
		g.mu.Unlock()
		g.progress("nars", d, len(todo), d == len(todo))
		return nil
	})
}

// sweepListings removes the .ls of paths whose narinfo is gone.
func (g *collector) sweepListings(ctx context.Context, remove func(context.Context, string) error) error {
	var todo []gcListing
	for _, l := range g.listings {
		d, _ := digestOf(strings.TrimSuffix(l.key, ".ls"))
		if id, ok := g.ids[d]; ok && g.nodes[id].state == nodeRead {
			continue
		}
		if l.mtime < g.cutoff {
			todo = append(todo, l)
		}
	}
	return g.sweepExtras(ctx, todo, "listing", &g.report.Listings, remove)
}

// logDigest is the digest of the derivation a "log/<drv base name>" key
// is the build log of.
func logDigest(key string) ([20]byte, bool) {
	base := strings.TrimPrefix(key, "log/")
	if len(base) < 34 || base[32] != '-' || strings.Contains(base, "/") {
		return [20]byte{}, false
	}
	return digestOf(base[:32])
}

// kept reports whether the narinfo with digest d survived the sweep.
func (g *collector) kept(d [20]byte) bool {
	id, ok := g.ids[d]
	return ok && g.nodes[id].state == nodeRead
}

// sweepLogs removes the build logs of derivations that no surviving
// narinfo names as Deriver and that are not themselves kept. While a
// narinfo is unreadable no log is removed (its Deriver is unknown).
func (g *collector) sweepLogs(ctx context.Context, remove func(context.Context, string) error) error {
	if g.report.Unreadable > 0 || len(g.logs) == 0 {
		return nil
	}
	derivers := map[[20]byte]struct{}{}
	var zero [20]byte
	for id := range g.nodes {
		if n := &g.nodes[id]; n.state == nodeRead && n.drv != zero {
			derivers[n.drv] = struct{}{}
		}
	}
	var todo []gcListing
	for _, l := range g.logs {
		d, _ := logDigest(l.key)
		if _, ok := derivers[d]; !ok && !g.kept(d) {
			todo = append(todo, l)
		}
	}
	return g.sweepExtras(ctx, todo, "log", &g.report.Logs, remove)
}

// sweepRealisations removes the realisations whose output path (or the
// output of a dependent realisation) has no surviving narinfo. Only those older than the grace period are read (to
// learn their output path), opts.Jobs at a time; one that cannot be parsed
// is left alone.
func (g *collector) sweepRealisations(ctx context.Context, remove func(context.Context, string) error) error {
	var (
		mu   sync.Mutex
		todo []gcListing
	)
	err := forEach(ctx, g.reals, g.opts.Jobs, func(l gcListing) error {
		data, err := g.read(ctx, l.key)
		if errors.Is(err, ErrNotFound) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read %s: %w", l.key, err)
		}
		r, err := ParseRealisation(data, g.dir)
		if err != nil {
			return nil
		}
		// Nix substitutes a realisation only with its dependent ones and
		// their outputs: one whose output or a dependent output is gone
		// goes too.
		garbage := false
		for _, p := range append([]storepath.Path{r.OutPath}, slices.Collect(maps.Values(r.DependentRealisations))...) {
			if d, ok := digestOf(p.HashPart()); ok && !g.kept(d) {
				garbage = true
			}
		}
		if !garbage {
			return nil
		}
		mu.Lock()
		todo = append(todo, l)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	return g.sweepExtras(ctx, todo, "realisation", &g.report.Realisations, remove)
}

// sweepExtras removes the objects of todo (listings, logs, realisations),
// each re-checked as checkAndRemove does, counting them in count and
// reporting them to Removed with reason.
func (g *collector) sweepExtras(ctx context.Context, todo []gcListing, reason string, count *GCCount, remove func(context.Context, string) error) error {
	return forEach(ctx, todo, g.opts.Jobs, func(l gcListing) error {
		out := outRemoved
		if g.opts.Delete {
			var err error
			if out, err = g.checkAndRemove(ctx, l.key, l.mtime, remove); err != nil {
				return err
			}
		}
		if out == outRemoved {
			g.mu.Lock()
			count.add(l.size)
			if g.opts.Removed != nil {
				g.opts.Removed(l.key, reason)
			}
			g.mu.Unlock()
		}
		return nil
	})
}

// sweepTemporaries removes what killed writers left: cache/file's
// temporary files (RemoveStaleTemps) and cache/s3's unfinished multipart
// uploads (AbortStale), older than the grace period and at least an hour: a
// live writer's file cannot always be told from a dead one's (cache/file's
// lock ends before the rename; a multipart upload has no owner).
func (g *collector) sweepTemporaries(ctx context.Context) error {
	if !g.opts.Delete {
		return nil
	}
	var (
		n   int
		err error
	)
	switch b := g.b.Backend.(type) {
	case interface {
		RemoveStaleTemps(context.Context, time.Duration) (int, error)
	}:
		n, err = b.RemoveStaleTemps(ctx, max(g.opts.Grace, time.Hour))
	case interface {
		AbortStale(context.Context, time.Duration) (int, error)
	}:
		n, err = b.AbortStale(ctx, max(g.opts.Grace, time.Hour))
	}
	g.report.Temporaries = n
	if err != nil {
		return fmt.Errorf("temporaries: %w", err)
	}
	return nil
}

// countingBackend counts the requests Collect makes.
type countingBackend struct {
	Backend
	mu  sync.Mutex
	req *GCRequests
}

func (c *countingBackend) count(n *int64) { c.mu.Lock(); *n++; c.mu.Unlock() }

func (c *countingBackend) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	c.count(&c.req.Stat)
	return c.Backend.Stat(ctx, key)
}

func (c *countingBackend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.count(&c.req.Get)
	return c.Backend.Get(ctx, key)
}

func (c *countingBackend) Delete(ctx context.Context, key string) error {
	c.count(&c.req.Delete)
	return c.Backend.Delete(ctx, key)
}

func (c *countingBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	c.count(&c.req.List)
	return c.Backend.List(ctx, prefix, fn)
}

// Pin stores the root "gcroots/NAME" naming paths (one a line), replacing
// any root of that name: the collector then keeps them and their closures.
// NAME is a key (slashes allowed), such as "release-1.2" or "ci/main".
func (c *Cache) Pin(ctx context.Context, name string, paths []storepath.Path) error {
	key := GCRootsPrefix + name
	if err := ValidateKey(key); err != nil || name == "" {
		return fmt.Errorf("cache: pin name %q: not a valid key", name)
	}
	var b strings.Builder
	b.WriteString(pinHeader)
	for _, p := range paths {
		b.WriteString(string(p))
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%s%d paths\n", pinFooter, len(paths))
	if err := c.Backend.Put(ctx, key, strings.NewReader(b.String()), int64(b.Len()), "text/plain"); err != nil {
		return fmt.Errorf("cache: pin %s: %w", name, err)
	}
	return nil
}

// Restore moves back everything Collect moved under the trash prefix:
// NAR files and listings first, then narinfos, references before their
// referrers, so that no narinfo is ever back before its NAR and
// references. It returns how many objects it moved.
func (c *Cache) Restore(ctx context.Context, trash string) (int, error) {
	if err := checkTrashPrefix(trash); err != nil {
		return 0, err
	}
	mover, ok := c.Backend.(Mover)
	if !ok {
		return 0, errors.New("cache: restore: the backend cannot move objects")
	}
	var keys []string
	if err := c.Backend.List(ctx, trash, func(oi ObjectInfo) error {
		keys = append(keys, strings.TrimPrefix(oi.Key, trash))
		return nil
	}); err != nil {
		return 0, fmt.Errorf("cache: restore: list %s: %w", trash, err)
	}
	isNarInfo := func(k string) bool { return strings.HasSuffix(k, ".narinfo") && !strings.Contains(k, "/") }
	moved := 0
	err := forEach(ctx, keys, 16, func(k string) error {
		if isNarInfo(k) {
			return nil
		}
		if err := mover.Move(ctx, trash+k, k); err != nil {
			return fmt.Errorf("cache: restore %s: %w", k, err)
		}
		return nil
	})
	if err != nil {
		return moved, err
	}
	for _, k := range keys {
		if !isNarInfo(k) {
			moved++
		}
	}
	// Narinfos: references first (depth-first, post-order).
	refs := map[string][]string{}
	for _, k := range keys {
		if !isNarInfo(k) {
			continue
		}
		rc, err := c.Backend.Get(ctx, trash+k)
		if err != nil {
			return moved, fmt.Errorf("cache: restore %s: %w", k, err)
		}
		ni, err := narinfo.Parse(io.LimitReader(rc, 16<<20))
		rc.Close()
		if err != nil {
			return moved, fmt.Errorf("cache: restore %s: %w", k, err)
		}
		refs[k] = []string{}
		for _, r := range ni.References {
			if rk := NarInfoKey(r); rk != k {
				refs[k] = append(refs[k], rk)
			}
		}
	}
	done := map[string]bool{}
	var visit func(k string) error
	visit = func(k string) error {
		if done[k] {
			return nil
		}
		done[k] = true
		for _, r := range refs[k] {
			if _, trashed := refs[r]; trashed {
				if err := visit(r); err != nil {
					return err
				}
			}
		}
		if err := mover.Move(ctx, trash+k, k); err != nil {
			return fmt.Errorf("cache: restore %s: %w", k, err)
		}
		moved++
		return nil
	}
	for _, k := range keys {
		if isNarInfo(k) {
			if err := visit(k); err != nil {
				return moved, err
			}
		}
	}
	return moved, nil
}
