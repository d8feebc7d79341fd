package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/nixcache/nixcache/cache"
	cs3 "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixbase32"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// countingTransport counts the HTTP requests a backend makes, and delays
// each by rtt (loopback has none; a real network has some).
type countingTransport struct {
	n    atomic.Int64
	rtt  atomic.Int64 // time.Duration
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	if d := time.Duration(c.rtt.Load()); d > 0 {
		time.Sleep(d)
	}
	return c.next.RoundTrip(r)
}

// memSource is a Source of synthetic path infos (nothing on disk): enough
// for the checks, which never dump a NAR.
type memSource struct {
	infos map[storepath.Path]*cache.PathInfo
	order []storepath.Path
}

func (m *memSource) QueryPathInfo(_ context.Context, p storepath.Path) (*cache.PathInfo, error) {
	info := *m.infos[p]
	return &info, nil
}

func (m *memSource) Closure(context.Context, []storepath.Path) ([]storepath.Path, error) {
	return m.order, nil
}

// syntheticClosure makes n path infos, each referring to up to 3 earlier
// ones.
func syntheticClosure(b testing.TB, n int) *memSource {
	m := &memSource{infos: map[storepath.Path]*cache.PathInfo{}}
	for i := range n {
		var h [20]byte
		rand.Read(h[:])
		p, err := storepath.DefaultDir.FromBase(nixbase32.EncodeToString(h[:]) + fmt.Sprintf("-bench-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		var d [32]byte
		rand.Read(d[:])
		nh, err := nixhash.New(nixhash.SHA256, d[:])
		if err != nil {
			b.Fatal(err)
		}
		info := &cache.PathInfo{Path: p, NarHash: nh, NarSize: uint64(1000 + i)}
		for _, j := range []int{i - 1, i - 10, i - 100} {
			if j >= 0 {
				info.References = append(info.References, m.order[j])
			}
		}
		m.infos[p] = info
		m.order = append(m.order, p)
	}
	return m
}

// s3Backend opens a bucket of the server with a request counter.
func s3Backend(b testing.TB, srv *testenv.S3, bucket string) (cache.Backend, *countingTransport) {
	u, err := cache.ParseURL(srv.URL(bucket))
	if err != nil {
		b.Fatal(err)
	}
	o := u.Location.(cs3.Options)
	// The transport the backend uses by default (http.DefaultTransport
	// keeps 2 idle connections per host: 16 checks at once would open new
	// ones all the time).
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		b.Fatal(err)
	}
	ct := &countingTransport{next: tr}
	o.Transport = ct
	be, err := o.Open(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return be, ct
}

// BenchmarkPushChecks10k measures the checks of a push of a 10,000-path
// closure that needs no upload, against versitygw on loopback, and the
// HTTP requests they make (requests/op):
//
//   - present: every narinfo is in our cache (one HEAD per path, CheckJobs
//     at once; present-seq is the same one at a time; the rtt5ms variants
//     add 5 ms to each request, as a network would);
//   - signed: the store database holds a valid upstream signature for
//     every path (SkipSignedBy): no request per path;
//   - upstream: our cache is empty, the upstream cache (another bucket)
//     serves every path (Upstream): a HEAD on ours and a GET upstream per
//     path.
func BenchmarkPushChecks10k(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	srv := testenv.StartS3(b)
	srv.SetEnv(b)
	srv.MakeBucket(b, "upstream", false)
	srv.MakeBucket(b, "ours", false)
	src := syntheticClosure(b, n)
	upSK, upPK, err := signature.GenerateKey("upstream-bench-1", nil)
	if err != nil {
		b.Fatal(err)
	}
	upBackend, upCount := s3Backend(b, srv, "upstream")
	up := cache.New(upBackend, cache.Options{})
	if err := up.EnsureCacheInfo(ctx, storepath.DefaultDir); err != nil {
		b.Fatal(err)
	}
	// The upstream bucket: a signed narinfo per path (NARs are not read).
	keys := src.order
	signed := &memSource{infos: map[storepath.Path]*cache.PathInfo{}, order: src.order}
	put := func(p storepath.Path) error {
		info := src.infos[p]
		ni := &narinfo.NarInfo{StorePath: p, URL: "nar/x.nar", Compression: "none", NarHash: info.NarHash, NarSize: info.NarSize, References: info.References}
		if err := ni.Sign(upSK); err != nil {
			return err
		}
		text, err := ni.MarshalText()
		if err != nil {
			return err
		}
		return upBackend.Put(ctx, cache.NarInfoKey(p), bytes.NewReader(text), int64(len(text)), narinfo.MIMEType)
	}
	sem := make(chan struct{}, 32)
	errs := make(chan error, len(keys))
	for _, p := range keys {
		sem <- struct{}{}
		go func() { errs <- put(p); <-sem }()
		cp := *src.infos[p]
		fp, err := narinfo.Fingerprint(cp.Path, cp.NarHash, cp.NarSize, cp.References)
		if err != nil {
			b.Fatal(err)
		}
		cp.Sigs = []signature.Signature{upSK.Sign(fp)}
		signed.infos[p] = &cp
	}
	for range keys {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	oursBackend, oursCount := s3Backend(b, srv, "ours")
	ours := cache.New(oursBackend, cache.Options{})
	if err := ours.EnsureCacheInfo(ctx, storepath.DefaultDir); err != nil {
		b.Fatal(err)
	}

	run := func(name string, c *cache.Cache, src cache.Source, opts cache.PushOptions, counters []*countingTransport, wantSkipped, wantUpstream int) {
		b.Run(name, func(b *testing.B) {
			var start int64
			for _, ct := range counters {
				start += ct.n.Load()
			}
			for range b.N {
				sum, err := c.Push(ctx, src, src.(*memSource).order[n-1:], opts)
				if err != nil {
					b.Fatal(err)
				}
				if sum.Skipped != wantSkipped || sum.SkippedUpstream != wantUpstream || sum.Uploaded != 0 {
					b.Fatalf("summary %+v", sum)
				}
			}
			var end int64
			for _, ct := range counters {
				end += ct.n.Load()
			}
			b.ReportMetric(float64(end-start)/float64(b.N), "requests/op")
		})
	}
	both := []*countingTransport{upCount, oursCount}
	run("present", up, src, cache.PushOptions{}, both, n, 0)
	run("present-seq", up, src, cache.PushOptions{CheckJobs: 1}, both, n, 0)
	upCount.rtt.Store(int64(5 * time.Millisecond))
	run("present-rtt5ms", up, src, cache.PushOptions{}, both, n, 0)
	run("present-rtt5ms-seq", up, src, cache.PushOptions{CheckJobs: 1}, both, n, 0)
	upCount.rtt.Store(0)
	run("signed", ours, signed, cache.PushOptions{SkipSignedBy: []signature.PublicKey{upPK}}, both, 0, n)
	run("upstream", ours, src, cache.PushOptions{SkipSignedBy: []signature.PublicKey{upPK}, Upstream: up}, both, 0, n)
}
