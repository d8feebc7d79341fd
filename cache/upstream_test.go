package cache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// upstreamKeys returns the upstream cache's key pair and a forger's key
// that carries the same name with other bytes.
func upstreamKeys(t testing.TB) (sk signature.SecretKey, pk signature.PublicKey, forger signature.SecretKey) {
	t.Helper()
	sk, pk, err := signature.GenerateKey("upstream.example.org-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	forger, _, err = signature.GenerateKey("upstream.example.org-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	return sk, pk, forger
}

// signInfo adds to the fake store database a signature of p by k, as a
// substitution from k's cache records it.
func signInfo(t testing.TB, f *fakeSource, p storepath.Path, k signature.SecretKey) {
	t.Helper()
	info := f.Infos[p]
	fp, err := narinfo.Fingerprint(info.Path, info.NarHash, info.NarSize, info.References)
	if err != nil {
		t.Fatal(err)
	}
	info.Sigs = append(info.Sigs, k.Sign(fp))
}

// chain adds base <- mid <- top to src (top refers to mid, mid to base).
func chain(t testing.TB, src *fakeSource) (base, mid, top storepath.Path) {
	base = src.MustAdd(t, "base", nil, nil)
	mid = src.MustAdd(t, "mid", []storepath.Path{base}, nil)
	top = src.MustAdd(t, "top", []storepath.Path{mid}, nil)
	return
}

// narinfoKeys lists the narinfo keys in a file:// cache directory.
func narinfoKeys(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	sort.Strings(m)
	return m
}

func pushEvents(opts *cache.PushOptions) map[cache.EventKind]int {
	var mu sync.Mutex
	ev := map[cache.EventKind]int{}
	opts.Progress = func(e cache.Event) { mu.Lock(); ev[e.Kind]++; mu.Unlock() }
	return ev
}

// TestPushSkipSignedBy: paths whose store signatures include a valid one by
// an upstream key are not uploaded; our narinfo still refers to them. A
// signature under the right name with the wrong bytes (a forgery, or a
// re-keyed cache) does not count.
func TestPushSkipSignedBy(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource(t)
	base, mid, top := chain(t, src)
	upSK, upPK, forger := upstreamKeys(t)
	signInfo(t, src, base, upSK)
	signInfo(t, src, mid, forger) // right name, wrong bytes
	c, _, dir := ourCache(t)
	opts := cache.PushOptions{SkipSignedBy: []signature.PublicKey{upPK}}
	ev := pushEvents(&opts)
	sum, err := c.Push(ctx, src, []storepath.Path{top}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Uploaded != 2 || sum.SkippedUpstream != 1 || sum.Skipped != 0 || sum.Closure != 3 {
		t.Fatalf("summary %+v, want 2 uploaded (mid: forged signature, top), 1 skipped upstream (base)", sum)
	}
	if ev[cache.EventSkippedUpstream] != 1 || ev[cache.EventSkipped] != 0 {
		t.Fatalf("events %v, want one %v", ev, cache.EventSkippedUpstream)
	}
	want := []string{cache.NarInfoKey(mid), cache.NarInfoKey(top)}
	sort.Strings(want)
	if got := narinfoKeys(t, dir); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("cache holds %v, want %v", got, want)
	}
	// mid's narinfo refers to base, which only upstream serves.
	data, err := os.ReadFile(filepath.Join(dir, cache.NarInfoKey(mid)))
	if err != nil {
		t.Fatal(err)
	}
	ni, err := narinfo.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(ni.References) != 1 || ni.References[0] != base {
		t.Fatalf("mid's References %v, want [%s]", ni.References, base)
	}
	if s := sum.String(); !strings.Contains(s, "upstream 1") {
		t.Fatalf("summary line %q does not count the upstream path", s)
	}
}

// upstreamCache pushes paths to a new file:// cache signed by sk and returns it.
func upstreamCache(t testing.TB, src cache.Source, sk signature.SecretKey, paths ...storepath.Path) (*cache.Cache, string) {
	t.Helper()
	dir := t.TempDir()
	c, err := cache.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	c = cache.New(c.Backend, cache.Options{SecretKeys: []signature.SecretKey{sk}})
	if _, err := c.Push(context.Background(), src, paths, cache.PushOptions{NoClosure: true}); err != nil {
		t.Fatal(err)
	}
	return c, dir
}

// TestPushUpstreamCache: a path whose narinfo the upstream cache serves,
// signed by a trusted key and with the store's NarHash, is not uploaded;
// one signed by a forger under the trusted name, or with another NarHash,
// is.
func TestPushUpstreamCache(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource(t)
	base, mid, top := chain(t, src)
	upSK, upPK, forger := upstreamKeys(t)
	up, _ := upstreamCache(t, src, upSK, base)
	// mid is upstream too, but signed by the forger.
	forged, _ := upstreamCache(t, src, forger, base, mid)
	copyFile(t, forged, up, cache.NarInfoKey(mid))

	dir := t.TempDir()
	c, err := cache.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := cache.PushOptions{SkipSignedBy: []signature.PublicKey{upPK}, Upstream: up}
	sum, err := c.Push(ctx, src, []storepath.Path{top}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Uploaded != 2 || sum.SkippedUpstream != 1 {
		t.Fatalf("summary %+v, want 2 uploaded (mid: forged upstream narinfo, top), 1 skipped upstream", sum)
	}
	if got := narinfoKeys(t, dir); len(got) != 2 {
		t.Fatalf("cache holds %v, want mid and top", got)
	}

	// The store records another NarHash for base than upstream serves: upload.
	src2 := newFakeSource(t)
	b2 := src2.MustAdd(t, "base", nil, map[string][]byte{"file": []byte("local build differs\n")})
	up2, _ := upstreamCache(t, src, upSK, base) // upstream's base has src's contents
	info, _ := src2.QueryPathInfo(ctx, b2)
	info.Path = base
	if ok, err := up2.ServesPath(ctx, info, []signature.PublicKey{upPK}); err != nil || ok {
		t.Fatalf("ServesPath with another NarHash = %v, %v; want false", ok, err)
	}
	info, _ = src.QueryPathInfo(ctx, base)
	if ok, err := up2.ServesPath(ctx, info, []signature.PublicKey{upPK}); err != nil || !ok {
		t.Fatalf("ServesPath = %v, %v; want true", ok, err)
	}
	if ok, err := up2.ServesPath(ctx, info, []signature.PublicKey{forger.PublicKey()}); err != nil || ok {
		t.Fatalf("ServesPath trusting only the forger's key = %v, %v; want false", ok, err)
	}
}

func copyFile(t testing.TB, from, to *cache.Cache, key string) {
	t.Helper()
	rc, err := from.Backend.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	st, err := from.Backend.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := to.Backend.Put(context.Background(), key, rc, st.Size, narinfo.MIMEType); err != nil {
		t.Fatal(err)
	}
}

// TestPushNoClosureUpstreamReference: with NoClosure, a reference that
// is not in our cache but is served upstream lets the referrer publish.
func TestPushNoClosureUpstreamReference(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource(t)
	base, mid, _ := chain(t, src)
	upSK, upPK, _ := upstreamKeys(t)
	up, _ := upstreamCache(t, src, upSK, base)
	c, err := cache.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, src, []storepath.Path{mid}, cache.PushOptions{NoClosure: true}); !errors.Is(err, cache.ErrReferenceMissing) {
		t.Fatalf("without upstream: %v, want ErrReferenceMissing", err)
	}
	sum, err := c.Push(ctx, src, []storepath.Path{mid}, cache.PushOptions{NoClosure: true, Upstream: up, SkipSignedBy: []signature.PublicKey{upPK}})
	if err != nil || sum.Uploaded != 1 {
		t.Fatalf("with upstream: %+v, %v; want mid uploaded", sum, err)
	}
}

// TestPushUpstreamNeedsKeys: an upstream cache without keys to trust it
// is refused before anything is written.
func TestPushUpstreamNeedsKeys(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource(t)
	_, _, top := chain(t, src)
	upSK, _, _ := upstreamKeys(t)
	up, _ := upstreamCache(t, src, upSK)
	dir := t.TempDir()
	c, err := cache.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, src, []storepath.Path{top}, cache.PushOptions{Upstream: up}); !errors.Is(err, cache.ErrNoUpstreamKey) {
		t.Fatalf("err %v, want ErrNoUpstreamKey", err)
	}
	if got := narinfoKeys(t, dir); len(got) != 0 {
		t.Fatalf("cache holds %v after a refused push", got)
	}
}

// TestVerifyUpstreamReferences: a cache whose narinfos refer to paths that
// only upstream serves verifies clean with the upstream and its key, and
// reports the reference missing without them, or when the upstream's
// narinfo is signed by a forger under the trusted name.
func TestVerifyUpstreamReferences(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource(t)
	base, mid, top := chain(t, src)
	upSK, upPK, forger := upstreamKeys(t)
	up, _ := upstreamCache(t, src, upSK, base)
	c, err := cache.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.Push(ctx, src, []storepath.Path{top}, cache.PushOptions{SkipSignedBy: []signature.PublicKey{upPK}, Upstream: up})
	if err != nil || sum.Uploaded != 2 {
		t.Fatalf("push: %+v, %v", sum, err)
	}
	if _, err := c.Verify(ctx, nil, cache.VerifyOptions{}); !errors.Is(err, cache.ErrReferenceMissing) || !strings.Contains(err.Error(), string(mid)+": ") {
		t.Fatalf("verify without upstream: %v, want mid's reference missing", err)
	}
	if n, err := c.Verify(ctx, nil, cache.VerifyOptions{Upstream: up, UpstreamKeys: []signature.PublicKey{upPK}}); err != nil || n != 2 {
		t.Fatalf("verify with upstream: %d, %v; want 2 good", n, err)
	}
	if _, err := c.Verify(ctx, nil, cache.VerifyOptions{Upstream: up, UpstreamKeys: []signature.PublicKey{forger.PublicKey()}}); !errors.Is(err, cache.ErrReferenceMissing) {
		t.Fatalf("verify trusting another key of the same name: %v, want ErrReferenceMissing", err)
	}
	if _, err := c.Verify(ctx, nil, cache.VerifyOptions{Upstream: up}); !errors.Is(err, cache.ErrNoUpstreamKey) {
		t.Fatalf("upstream without keys: %v", err)
	}
}

// batchFake is a fakeSource that answers in batches and counts the calls.
type batchFake struct {
	*fakeSource
	single, batch atomic.Int32
	asked         atomic.Int32 // paths asked about in batches
}

func (b *batchFake) QueryPathInfo(ctx context.Context, p storepath.Path) (*cache.PathInfo, error) {
	b.single.Add(1)
	return b.fakeSource.QueryPathInfo(ctx, p)
}

func (b *batchFake) QueryPathInfos(ctx context.Context, paths []storepath.Path) ([]*cache.PathInfo, error) {
	b.batch.Add(1)
	b.asked.Add(int32(len(paths)))
	out := make([]*cache.PathInfo, len(paths))
	for i, p := range paths {
		info, err := b.fakeSource.QueryPathInfo(ctx, p)
		if err != nil {
			return nil, err
		}
		out[i] = info
	}
	return out, nil
}

// TestPushSkipBatchesStoreQueries: with SkipSignedBy, a BatchSource is
// asked about the closure in batches, not once per path.
func TestPushSkipBatchesStoreQueries(t *testing.T) {
	ctx := context.Background()
	src := &batchFake{fakeSource: newFakeSource(t)}
	base, _, top := chain(t, src.fakeSource)
	upSK, upPK, _ := upstreamKeys(t)
	signInfo(t, src.fakeSource, base, upSK)
	c, err := cache.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.Push(ctx, src, []storepath.Path{top}, cache.PushOptions{SkipSignedBy: []signature.PublicKey{upPK}})
	if err != nil || sum.Uploaded != 2 || sum.SkippedUpstream != 1 {
		t.Fatalf("push: %+v, %v", sum, err)
	}
	if s, b := src.single.Load(), src.batch.Load(); s != 0 || b != 1 {
		t.Fatalf("%d single and %d batch queries, want 0 and 1", s, b)
	}
}

// TestPushBatchesStoreQueries: without any skip option too, a BatchSource
// is asked about the paths to upload in one batch, and only about those
// (not the ones already in the cache), never once per path.
func TestPushBatchesStoreQueries(t *testing.T) {
	ctx := context.Background()
	src := &batchFake{fakeSource: newFakeSource(t)}
	base, _, top := chain(t, src.fakeSource)
	c, err := cache.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := c.Push(ctx, src, []storepath.Path{base}, cache.PushOptions{}); err != nil || sum.Uploaded != 1 {
		t.Fatalf("push base: %+v, %v", sum, err)
	}
	if s, b, a := src.single.Load(), src.batch.Load(), src.asked.Load(); s != 0 || b != 1 || a != 1 {
		t.Fatalf("push base: %d single and %d batch queries for %d paths, want 0, 1 and 1", s, b, a)
	}
	if sum, err := c.Push(ctx, src, []storepath.Path{top}, cache.PushOptions{}); err != nil || sum.Uploaded != 2 || sum.Skipped != 1 {
		t.Fatalf("push top: %+v, %v", sum, err)
	}
	if s, b, a := src.single.Load(), src.batch.Load(), src.asked.Load(); s != 0 || b != 2 || a != 3 {
		t.Fatalf("push top: %d single and %d batch queries for %d paths in all, want 0, 2 and 3 (base is in the cache)", s, b, a)
	}
}

// ourCache is a fresh file:// cache that signs with a new key "ours-1";
// it returns the cache, the key's public half and the cache directory.
func ourCache(t *testing.T) (*cache.Cache, signature.PublicKey, string) {
	t.Helper()
	sk, pk, err := signature.GenerateKey("ours-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, err := cache.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	return cache.New(c.Backend, cache.Options{SecretKeys: []signature.SecretKey{sk}}), pk, dir
}
