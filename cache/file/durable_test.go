package file

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/nar"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixbase32"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// chainSource is a cache.Source of store paths made in a temporary store
// directory; Push is given them all (NoClosure), references first.
type chainSource struct {
	dir   storepath.Dir
	infos map[storepath.Path]*cache.PathInfo
	order []storepath.Path
}

func (s *chainSource) add(t *testing.T, name string, refs ...storepath.Path) storepath.Path {
	t.Helper()
	d := sha256.Sum256([]byte(string(s.dir) + name))
	p, err := s.dir.FromBase(nixbase32.EncodeToString(d[:20]) + "-" + name)
	if err != nil {
		t.Fatal(err)
	}
	body := "contents of " + name + "\n"
	for _, r := range refs {
		body += string(r) + "\n"
	}
	if err := os.WriteFile(string(p), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	h := nixhash.NewHasher(nixhash.SHA256)
	if err := nar.DumpPath(h, string(p)); err != nil {
		t.Fatal(err)
	}
	s.infos[p] = &cache.PathInfo{Path: p, NarHash: h.SumHash(), NarSize: uint64(h.Len()), References: refs}
	s.order = append(s.order, p)
	return p
}

func (s *chainSource) QueryPathInfo(_ context.Context, p storepath.Path) (*cache.PathInfo, error) {
	info, ok := s.infos[p]
	if !ok {
		return nil, fmt.Errorf("%s: not a valid path", p)
	}
	cp := *info
	return &cp, nil
}

func (s *chainSource) Closure(_ context.Context, paths []storepath.Path) ([]storepath.Path, error) {
	return paths, nil
}

// tracedPush pushes paths (references first) to a fresh Backend on dir and
// returns the durability steps it took, in order.
func tracedPush(t *testing.T, dir string, ordered bool, params string, src *chainSource, paths []storepath.Path) []durabilityStep {
	t.Helper()
	b, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	b.ordered = ordered
	var (
		mu    sync.Mutex
		steps []durabilityStep
	)
	b.syncs.trace = func(s durabilityStep) {
		mu.Lock()
		steps = append(steps, s)
		mu.Unlock()
	}
	c, err := cache.Open(context.Background(), "file://"+dir+"?"+params)
	if err != nil {
		t.Fatal(err)
	}
	c = cache.New(b, c.Options())
	if _, err := c.Push(context.Background(), src, paths, cache.PushOptions{NoClosure: true}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return steps
}

// powerCutViolations checks a push's durability steps against a model of
// a power cut on a file system that keeps no order among metadata changes
// (ext4 without a journal): at any instant the disk may hold any subset of
// the renames not yet covered by a directory fsync, and file data only
// once fsynced. A rename is durable once an fsync of its directory that
// began after the rename has ended; data once its fsync has ended. It
// returns, for each narinfo rename that could reach the disk while
// something it needs could not, why: its own data, its NAR file (data
// and rename), its references' narinfos, nix-cache-info. Objects the trace
// never renames were in the cache before the push (durable then). With
// ordered, the model is instead a file system that keeps the order of
// renames (whatever survives is a prefix of them): what a narinfo needs
// must then only be renamed before it, and everything be fsynced by the end.
func powerCutViolations(t *testing.T, root string, steps []durabilityStep, ordered bool) []string {
	t.Helper()
	synced := map[string]int{}               // temporary file -> index of its fsync's end
	renamed := map[string]int{}              // final path -> index of its (last) rename
	from := map[string]string{}              // final path -> temporary file renamed
	begun := map[string][]int{}              // dir -> index of each fsync begun (by number-1)
	ended := map[string][]int{}              // dir -> index of each fsync ended (by number-1)
	durable := func(p string, at int) bool { // p's rename durable at index at
		r, ok := renamed[p]
		if !ok {
			return true // there before the push
		}
		if ordered {
			return r < at
		}
		dir := filepath.Dir(p)
		for n, b := range begun[dir] {
			if b > r && n < len(ended[dir]) && ended[dir][n] < at {
				return true
			}
		}
		return false
	}
	dataSynced := func(p string) bool {
		r, ok := renamed[p]
		if !ok {
			return true
		}
		s, ok := synced[from[p]]
		return ok && s < r
	}
	var bad []string
	check := func(i int, p string) {
		rel, _ := filepath.Rel(root, p)
		need := func(q, what string) {
			if !durable(q, i) || !dataSynced(q) {
				bad = append(bad, fmt.Sprintf("%s renamed (step %d) while %s (%s) could still be lost", rel, i, what, q))
			}
		}
		if !dataSynced(p) {
			bad = append(bad, fmt.Sprintf("%s renamed (step %d) before its data was synced", rel, i))
		}
		need(filepath.Join(root, narinfo.CacheInfoFile), "nix-cache-info")
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		ni, err := narinfo.Unmarshal(data)
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		need(filepath.Join(root, filepath.FromSlash(ni.URL)), "its NAR file")
		for _, ref := range ni.References {
			if ref != ni.StorePath {
				need(filepath.Join(root, cache.NarInfoKey(ref)), "the narinfo of its reference "+ref.Name())
			}
		}
	}
	for i, s := range steps {
		switch s.op {
		case "sync":
			synced[s.path] = i
		case "rename":
			renamed[s.to], from[s.to] = i, s.path
			if strings.HasSuffix(s.to, ".narinfo") {
				check(i, s.to)
			}
		case "dirsync-begin":
			if uint64(len(begun[s.path])) != s.n-1 {
				t.Fatalf("step %d: fsync %d of %s begins after %d", i, s.n, s.path, len(begun[s.path]))
			}
			begun[s.path] = append(begun[s.path], i)
		case "dirsync-end":
			ended[s.path] = append(ended[s.path], i)
		}
	}
	// When Push returns, everything it stored is durable.
	ordered = false
	for p := range renamed {
		if !durable(p, len(steps)) {
			bad = append(bad, fmt.Sprintf("%s not durable when Push returned", p))
		}
	}
	return bad
}

// TestPowerCutKeepsPublishedComplete: at every instant of a push, a power
// cut leaves only narinfos whose data, NAR file, references' narinfos and
// nix-cache-info are durable, on a file system that keeps no order among
// renames (this machine's journal-less ext4): the order of Push's fsyncs
// and renames, recorded as they happen, checked against that model. The
// push is a chain of 12 paths, a diamond and a path already in the cache,
// zstd and none. The unordered Commit's fast path (no directory fsync per
// Commit, one Flush at the end) must fail the same check: it is correct
// only where renames keep their order, which the second model accepts.
func TestPowerCutKeepsPublishedComplete(t *testing.T) {
	src := &chainSource{dir: storepath.Dir(t.TempDir()), infos: map[storepath.Path]*cache.PathInfo{}}
	old := src.add(t, "old")
	var paths []storepath.Path
	prev := old
	for i := range 12 {
		prev = src.add(t, fmt.Sprintf("chain%d", i), prev)
		paths = append(paths, prev)
	}
	left := src.add(t, "left", prev)
	right := src.add(t, "right", prev, old)
	top := src.add(t, "top", left, right)
	paths = append(paths, left, right, top)
	for _, params := range []string{"compression=zstd", "compression=none"} {
		for _, ordered := range []bool{false, true} {
			name := fmt.Sprintf("%s/ordered=%v", params, ordered)
			dir := t.TempDir()
			first := tracedPush(t, dir, ordered, params, src, []storepath.Path{old})
			steps := tracedPush(t, dir, ordered, params, src, paths)
			if bad := powerCutViolations(t, dir, first, ordered); len(bad) > 0 {
				t.Errorf("%s: first push: a power cut could break the cache:\n%s", name, strings.Join(bad, "\n"))
			}
			renames := 0
			for _, s := range steps {
				if s.op == "rename" && strings.HasSuffix(s.to, ".narinfo") {
					renames++
				}
			}
			if renames != len(paths) {
				t.Fatalf("%s: %d narinfos renamed, want %d", name, renames, len(paths))
			}
			bad := powerCutViolations(t, dir, steps, false)
			if !ordered && len(bad) > 0 {
				t.Errorf("%s: a power cut could break the cache:\n%s", name, strings.Join(bad, "\n"))
			}
			if ordered && len(bad) == 0 {
				t.Errorf("%s: the model of a file system without rename order accepts the ordered fast path", name)
			}
			if ordered {
				if bad := powerCutViolations(t, dir, steps, true); len(bad) > 0 {
					t.Errorf("%s: a power cut on a file system that keeps rename order could break the cache:\n%s", name, strings.Join(bad, "\n"))
				}
			}
		}
	}
}
