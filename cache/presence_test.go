package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixbase32"
)

// presenceCache is a cache filled for presence checks: a narinfo for each
// present path (its NAR file is a small stand-in object), and what else a
// cache holds (nar/, .ls, log/, realisations/, nix-cache-info).
type presenceCache struct {
	c       *cache.Cache
	src     *memSource       // the present paths, as a closure
	wanted  []storepath.Path // present and missing paths, shuffled
	present map[storepath.Path]bool
}

// putAll stores objects (key -> contents) 16 at once. On file:// it
// writes the files directly (the backend syncs each one: slow, and not
// what is tested here).
func putAll(t testing.TB, be cache.Backend, objects map[string][]byte) {
	t.Helper()
	if fb, ok := be.(*file.Backend); ok {
		for k, v := range objects {
			name := filepath.Join(fb.Root(), filepath.FromSlash(k))
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, v, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	ctx := context.Background()
	sem := make(chan struct{}, 16)
	errs := make(chan error, len(objects))
	for k, v := range objects {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- be.Put(ctx, k, bytes.NewReader(v), int64(len(v)), "application/octet-stream")
		}()
	}
	for range objects {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func randomNix32(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return nixbase32.EncodeToString(b)
}

// fillPresence puts nPresent narinfos and nars NAR-named objects into be,
// and returns them with nMissing more paths that have no narinfo: some
// have a .ls, one shares nothing, and the last one shares the hash part of
// a present path under another name (present, as for Nix).
func fillPresence(t testing.TB, be cache.Backend, nPresent, nMissing, nars int) *presenceCache {
	t.Helper()
	ctx := context.Background()
	all := syntheticClosure(t, nPresent+nMissing)
	pc := &presenceCache{c: cache.New(be, cache.Options{}), src: &memSource{infos: all.infos}, present: map[storepath.Path]bool{}}
	if err := pc.c.EnsureCacheInfo(ctx, storepath.DefaultDir); err != nil {
		t.Fatal(err)
	}
	objects := map[string][]byte{}
	for i, p := range all.order {
		info := all.infos[p]
		if i < nPresent {
			ni := &narinfo.NarInfo{StorePath: p, URL: "nar/" + randomNix32(32) + ".nar.zst", Compression: "zstd",
				NarHash: info.NarHash, NarSize: info.NarSize, References: info.References}
			text, err := ni.MarshalText()
			if err != nil {
				t.Fatal(err)
			}
			objects[cache.NarInfoKey(p)] = text
			pc.present[p] = true
			pc.src.order = append(pc.src.order, p)
		}
		if i%20 == 0 {
			objects[cache.ListingKey(p)] = []byte(`{"version":1,"root":{"type":"regular"}}`)
		}
		if i%500 == 0 {
			objects["log/"+randomNix32(20)+"-x.drv"] = []byte("log")
			objects["realisations/sha256:"+randomNix32(32)+"!out.doi"] = []byte("{}")
		}
		pc.wanted = append(pc.wanted, p)
	}
	for range nars {
		objects["nar/"+randomNix32(32)+".nar.zst"] = []byte("nar")
	}
	putAll(t, be, objects)
	twin, err := storepath.DefaultDir.FromBase(pc.wanted[0].HashPart() + "-other-name")
	if err != nil {
		t.Fatal(err)
	}
	pc.wanted = append(pc.wanted, twin)
	pc.present[twin] = pc.present[pc.wanted[0]]
	for i := len(pc.wanted) - 1; i > 0; i-- {
		j, _ := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		pc.wanted[i], pc.wanted[j.Int64()] = pc.wanted[j.Int64()], pc.wanted[i]
	}
	return pc
}

// check runs Present on paths and compares with what the cache holds.
func (pc *presenceCache) check(t *testing.T, paths []storepath.Path, s cache.PresenceStrategy) ([]bool, cache.PresenceStats) {
	t.Helper()
	got, stats, err := pc.c.Present(context.Background(), paths, cache.PresenceOptions{Strategy: s})
	if err != nil {
		t.Fatalf("Present (%s): %v", s, err)
	}
	bad := 0
	for i, p := range paths {
		if got[i] != pc.present[p] {
			if bad++; bad <= 5 {
				t.Errorf("Present (%s): %s: got %v, want %v", s, p, got[i], pc.present[p])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("Present (%s): %d of %d answers wrong; %s", s, bad, len(paths), stats)
	}
	return got, stats
}

// testPresence checks Present on a cache of 10,000 narinfos and 2,000 NAR
// files: listing for the whole set (fewer than 500 requests, counted by
// requests when not nil), the same answers as a HEAD per path on a sample,
// HEADs for a small set, and listing forced on a small set.
// With outside, a narinfo of a missing path is stored there (outside the
// key prefix of be): it must not count.
func testPresence(t *testing.T, be cache.Backend, requests func() int64, outside cache.Backend) {
	const nPresent, nMissing = 10000, 500
	pc := fillPresence(t, be, nPresent, nMissing, 2000)
	if outside != nil {
		for _, p := range pc.wanted {
			if !pc.present[p] {
				putAll(t, outside, map[string][]byte{cache.NarInfoKey(p): []byte("outside the prefix")})
				break
			}
		}
	}
	before := int64(0)
	if requests != nil {
		before = requests()
	}
	auto := cache.PresenceAuto
	if _, local := be.(*file.Backend); local {
		auto = cache.PresenceList // Auto makes a Stat per path there
	}
	listed, stats := pc.check(t, pc.wanted, auto)
	t.Logf("%d paths: %s", len(pc.wanted), stats)
	if stats.Strategy != cache.PresenceList || stats.Heads != 0 {
		t.Errorf("%d paths: %s, want listing and no HEAD", len(pc.wanted), stats)
	}
	if stats.Requests() >= 500 {
		t.Errorf("%d paths: %d requests, want < 500", len(pc.wanted), stats.Requests())
	}
	if _, shallow := be.(cache.ShallowLister); shallow && stats.Keys >= nPresent+1000 {
		t.Errorf("%s: the listings showed NAR files (%d narinfos, %d .ls)", stats, nPresent, (nPresent+nMissing)/20)
	}
	if requests != nil {
		n := requests() - before
		t.Logf("HTTP requests: %d", n)
		// A listing cancelled when all is found may have asked for one
		// more page already.
		if n >= 500 || n < int64(stats.Requests()) || n > int64(stats.Requests()+stats.Lists) {
			t.Errorf("%d HTTP requests made, want < 500 and within [%d, %d]", n, stats.Requests(), stats.Requests()+stats.Lists)
		}
	}

	sample := pc.wanted[:300]
	heads, hstats := pc.check(t, sample, cache.PresenceHead)
	for i := range sample {
		if heads[i] != listed[i] {
			t.Errorf("%s: HEAD says %v, listing %v", sample[i], heads[i], listed[i])
		}
	}
	if hstats.Heads != len(sample) || hstats.Pages != 0 {
		t.Errorf("HEAD strategy: %s, want %d HEADs", hstats, len(sample))
	}

	small := pc.wanted[:40]
	if _, s := pc.check(t, small, cache.PresenceAuto); s.Strategy != cache.PresenceHead || s.Heads != len(small) {
		t.Errorf("%d paths: %s, want %d HEADs", len(small), s, len(small))
	}
	if _, s := pc.check(t, small, cache.PresenceList); s.Strategy != cache.PresenceList || s.Heads != 0 {
		t.Errorf("%d paths, listing forced: %s, want no HEAD", len(small), s)
	}

	// Push of the present closure: nothing to upload, and the summary
	// counts the requests of the check.
	sum, err := pc.c.Push(context.Background(), pc.src, pc.src.order[len(pc.src.order)-1:], cache.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("push: %s; check %s", sum, sum.Presence)
	want := cache.PresenceStats{Strategy: cache.PresenceList, Lists: sum.Presence.Lists, Pages: sum.Presence.Pages, Keys: sum.Presence.Keys}
	if _, local := be.(*file.Backend); local {
		want = cache.PresenceStats{Strategy: cache.PresenceHead, Heads: nPresent}
	} else if sum.Presence.Requests() >= 500 {
		t.Errorf("push of %d present paths: %s, want < 500 requests", nPresent, sum.Presence)
	}
	if sum.Skipped != nPresent || sum.Uploaded != 0 || sum.Presence != want {
		t.Errorf("push of %d present paths: %+v, want check %s", nPresent, sum, want)
	}
}

// TestPresentFile: Present on file:// answers as a Stat per path would,
// with few listings for a large set.
func TestPresentFile(t *testing.T) {
	be, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testPresence(t, be, nil, nil)
}

// TestPresentS3: Present on S3 (versitygw) under a key prefix answers as a
// HEAD per path would, and 10,500 paths take fewer than 500 HTTP requests.
// A narinfo of a wanted path stored outside the prefix does not count.
func TestPresentS3(t *testing.T) {
	srv := testenv.StartS3(t)
	srv.SetEnv(t)
	srv.MakeBucket(t, "presence", false)
	be, ct := s3Backend(t, srv, "presence/some/prefix")
	root, _ := s3Backend(t, srv, "presence")
	testPresence(t, be, ct.n.Load, root)
}

// TestPresentSplit: a prefix where other objects (here NAR files) are many
// is split into narrower prefixes that leave them out, with the same
// answers. The split unit is lowered so that a few thousand NAR files
// count as many pages.
func TestPresentSplit(t *testing.T) {
	cache.SetListSplitUnit(t, 10)
	be, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const nPresent, nars = 1000, 3000
	pc := fillPresence(t, be, nPresent, 200, nars)
	_, stats := pc.check(t, pc.wanted, cache.PresenceList)
	t.Logf("%s", stats)
	// Without the split the "n" listing alone shows every NAR file.
	if stats.Keys >= nars || stats.Lists <= 32 {
		t.Errorf("%s: want more than 32 listings and fewer than %d keys (the NAR files)", stats, nars)
	}
}

// TestPresentHTTP: an http:// cache cannot be listed; Present asks a HEAD
// per path there, with the same answers.
func TestPresentHTTP(t *testing.T) {
	dir := t.TempDir()
	be, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	pc := fillPresence(t, be, 300, 100, 10)
	c, err := cache.Open(context.Background(), testenv.ServeDir(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	pc.c = c
	for _, s := range []cache.PresenceStrategy{cache.PresenceAuto, cache.PresenceList} {
		_, stats := pc.check(t, pc.wanted, s)
		if stats.Heads != len(pc.wanted)-1 { // two paths share a hash part
			t.Errorf("%s: %s, want %d HEADs", s, stats, len(pc.wanted)-1)
		}
	}
}

// failingLister fails the listings of the prefixes starting with one of
// fail, after showing their first keys.
type failingLister struct {
	cache.Backend
	fail string
}

func (f failingLister) List(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	n := 0
	err := f.Backend.List(ctx, prefix, func(oi cache.ObjectInfo) error {
		if n++; prefix != "" && strings.ContainsRune(f.fail, rune(prefix[0])) && n > 5 {
			return errors.New("injected listing failure")
		}
		return fn(oi)
	})
	return err
}

// TestPresentListFails: prefixes whose listing fails midway are settled
// by HEADs, the others by their listing, with the same answers.
func TestPresentListFails(t *testing.T) {
	be, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pc := fillPresence(t, be, 1000, 200, 10)
	pc.c = cache.New(failingLister{be, "0123"}, cache.Options{})
	_, stats := pc.check(t, pc.wanted, cache.PresenceList)
	t.Logf("%s", stats)
	// About 4/32 of the 1,200 paths, less those the first 5 keys settled.
	if stats.Heads < 50 || stats.Heads > 300 {
		t.Errorf("%s: want HEADs for the paths of the 4 failed prefixes only", stats)
	}
}
