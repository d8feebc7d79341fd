package file

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// tracedPush pushes paths (references first) to a fresh Backend on dir and
// returns the durability steps it took, in order.
func tracedPush(t *testing.T, dir string, ordered bool, params string, src *cachetest.Source, paths []storepath.Path) []durabilityStep {
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
	src := cachetest.NewSource(t.TempDir())
	old := src.MustAdd(t, "old", nil, nil)
	var paths []storepath.Path
	prev := old
	for i := range 12 {
		prev = src.MustAdd(t, fmt.Sprintf("chain%d", i), []storepath.Path{prev}, nil)
		paths = append(paths, prev)
	}
	left := src.MustAdd(t, "left", []storepath.Path{prev}, nil)
	right := src.MustAdd(t, "right", []storepath.Path{prev, old}, nil)
	top := src.MustAdd(t, "top", []storepath.Path{left, right}, nil)
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

// Environment of a pusher child (see TestKilledPushLeavesCompleteCache):
// the cache directory and the store directory.
const (
	pusherCacheEnv = "NIXCACHE_FILE_TEST_PUSHER_CACHE"
	pusherStoreEnv = "NIXCACHE_FILE_TEST_PUSHER_STORE"
)

// killChainLen paths in a chain, of which the pusher child publishes the
// first stallAt and then stops, before the next one's NAR.
const killChainLen, stallAt = 40, 20

// killChain makes the chain of paths the pusher child pushes, bottom first.
func killChain(src *cachetest.Source) ([]storepath.Path, error) {
	var paths []storepath.Path
	var refs []storepath.Path
	for i := range killChainLen {
		p, err := src.Add(fmt.Sprintf("kill%d", i), refs, nil)
		if err != nil {
			return nil, err
		}
		paths, refs = append(paths, p), []storepath.Path{p}
	}
	return paths, nil
}

// runPusher is the pusher child: it pushes killChain (2 jobs) and, once
// the first stallAt paths are published, holds the job that starts the
// next one, prints "stalled" and waits to be killed, while the other job
// goes on with the paths above (their narinfos wait for the held one).
func runPusher() int {
	src := cachetest.NewSource(os.Getenv(pusherStoreEnv))
	paths, err := killChain(src)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, err := cache.Open(context.Background(), "file://"+os.Getenv(pusherCacheEnv)+"?compression=zstd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var uploaded atomic.Int32
	published := make(chan struct{})
	progress := func(e cache.Event) {
		switch {
		case e.Kind == cache.EventUploaded:
			if uploaded.Add(1) == stallAt {
				close(published)
			}
		case e.Kind == cache.EventStarted && e.Path == paths[stallAt]:
			<-published
			fmt.Println("stalled")
			_, _ = io.Copy(io.Discard, os.Stdin) // until killed
		}
	}
	_, err = c.Push(context.Background(), src, paths, cache.PushOptions{NoClosure: true, Jobs: 2, Progress: progress})
	fmt.Fprintln(os.Stderr, "push returned:", err)
	return 2
}

// completeNarInfos checks that every narinfo in the cache dir has its NAR
// file (FileSize bytes hashing to FileHash) and its references' narinfos,
// and returns how many there are.
func completeNarInfos(t *testing.T, dir string) int {
	t.Helper()
	infos, err := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range infos {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		ni, err := narinfo.Unmarshal(data)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(p), err)
		}
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(ni.URL)))
		if err != nil {
			t.Errorf("%s: NAR file: %v", filepath.Base(p), err)
			continue
		}
		h := nixhash.NewHasher(nixhash.SHA256)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil || uint64(h.Len()) != ni.FileSize || h.SumHash().String() != ni.FileHash.String() {
			t.Errorf("%s: NAR file of %d bytes hashing to %v (%v), want %d and %v", filepath.Base(p), h.Len(), h.SumHash(), err, ni.FileSize, ni.FileHash)
		}
		for _, ref := range ni.References {
			if _, err := os.Stat(filepath.Join(dir, cache.NarInfoKey(ref))); err != nil {
				t.Errorf("%s: reference %s: %v", filepath.Base(p), ref.Name(), err)
			}
		}
	}
	return len(infos)
}

// TestKilledPushLeavesCompleteCache: a pusher SIGKILLed in the middle of a
// 40-path chain, with 20 paths published and the NARs of others being
// compressed, staged or committed, leaves a cache where every narinfo has
// its complete NAR file and its references' narinfos (exactly the 20);
// the temporary files it left are never listed, and a second push
// completes the cache.
func TestKilledPushLeavesCompleteCache(t *testing.T) {
	store, dir := t.TempDir(), t.TempDir()
	src := cachetest.NewSource(store)
	paths, err := killChain(src)
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := testenv.StartSelf(t, "stalled", pusherCacheEnv+"="+dir, pusherStoreEnv+"="+store)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if n := completeNarInfos(t, dir); n != stallAt {
		t.Errorf("%d narinfos after the kill, want %d", n, stallAt)
	}
	b, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = b.List(context.Background(), "", func(o cache.ObjectInfo) error {
		if strings.Contains(o.Key, TempPrefix) {
			t.Errorf("listed %s", o.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(context.Background(), "file://"+dir+"?compression=zstd")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.Push(context.Background(), src, paths, cache.PushOptions{NoClosure: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Uploaded != killChainLen-stallAt || sum.Skipped != stallAt {
		t.Errorf("second push: %v", sum)
	}
	if n := completeNarInfos(t, dir); n != killChainLen {
		t.Errorf("%d narinfos after the second push, want %d", n, killChainLen)
	}
}
