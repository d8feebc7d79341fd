package s3_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
)

// The resume tests upload 40 MiB in 5 MiB parts: 8 parts.
const (
	resumeSize = 40 << 20
	resumePart = s3.MinPartSize
	resumeSeed = 77
)

// resumerEnv, when set to "ENDPOINT BUCKET KEY MODE" in the environment of
// this test binary, makes it a resumer child: it Puts the 40 MiB of
// cachetest.Data(resumeSeed) in 5 MiB parts, 4 at a time, from a plain
// reader (MODE plain) or an io.ReaderAt (MODE readerat) that gives the first
// 22 MiB and then blocks, so that parts 1 to 4 are stored and no other; it
// prints "uploading" when it blocks and waits to be killed.
const resumerEnv = "NIXCACHE_S3_TEST_RESUMER"

// stuckAt is an io.ReaderAt over data that blocks every read reaching past
// at (but for the last byte), printing "uploading" the first time.
type stuckAt struct {
	data []byte
	at   int64
	once sync.Once
}

func (s *stuckAt) ReadAt(p []byte, off int64) (int, error) {
	// Put's size check reads the last byte and the one after it.
	if off+int64(len(p)) > s.at && off < int64(len(s.data))-1 {
		s.once.Do(func() { fmt.Println("uploading") })
		select {}
	}
	return bytes.NewReader(s.data).ReadAt(p, off)
}

func resumer(args []string) int {
	b, err := s3.New(context.Background(), s3.Options{
		Endpoint: args[0], Bucket: args[1], AddressingStyle: "path", PartSize: resumePart, Threads: 4,
		Creds:           credentials.NewStaticV4(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), ""),
		SkipBucketCheck: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	data := cachetest.Data(resumeSeed, resumeSize)
	var r io.Reader
	switch args[3] {
	case "plain":
		r = io.MultiReader(bytes.NewReader(data[:22<<20]), testenv.Announce("uploading"), os.Stdin)
	case "readerat":
		r = io.NewSectionReader(&stuckAt{data: data, at: 22 << 20}, 0, resumeSize)
	}
	err = b.Put(context.Background(), args[2], r, resumeSize, "application/x-nix-nar")
	fmt.Fprintln(os.Stderr, "put:", err)
	return 2
}

// partCounter counts the parts sent (PUTs with a partNumber) and their
// bytes; stored, when set, receives the number of each part stored.
type partCounter struct {
	next   http.RoundTripper // nil: http.DefaultTransport
	mu     sync.Mutex
	parts  []int
	bytes  int64
	stored chan int
}

func (c *partCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	part := 0
	if req.Method == http.MethodPut {
		if n := req.URL.Query().Get("partNumber"); n != "" {
			part, _ = strconv.Atoi(n)
			c.mu.Lock()
			c.parts = append(c.parts, part)
			c.bytes += req.ContentLength
			c.mu.Unlock()
		}
	}
	next := c.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusOK && part > 0 && c.stored != nil {
		c.stored <- part
	}
	return resp, err
}

// sent returns the distinct part numbers sent, sorted, and the bytes.
func (c *partCounter) sent() ([]int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := slices.Clone(c.parts)
	slices.Sort(p)
	return slices.Compact(p), c.bytes
}

// storedParts polls until the upload of key holds exactly the parts want,
// and returns the upload ID.
func storedParts(t *testing.T, c *minio.Client, bucket, key string, want []int) string {
	t.Helper()
	core := minio.Core{Client: c}
	var got []int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		u := incomplete(t, c, bucket, key)
		res, err := core.ListObjectParts(context.Background(), bucket, key, u.UploadID, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, p := range res.ObjectParts {
			if p.Size == resumePart {
				got = append(got, p.PartNumber)
			}
		}
		if slices.Equal(got, want) {
			return u.UploadID
		}
	}
	t.Fatalf("stored parts of %s: %v, want %v", key, got, want)
	return ""
}

// TestKilledPutResumes kills (SIGKILL) a process in the middle of a
// multipart upload, after it stored parts 1 to 4 of 8, and replaces part 2
// with other bytes of the same size. A Put of the same key and bytes, from a
// new process's point of view (a new backend), must find the upload, send
// only the missing parts 5 to 8 and the differing part 2, and complete it:
// the object is byte for byte the data, Nix-style content-named, and no
// unfinished upload is left. Before resume, all 8 parts were sent again.
// On versitygw the stored parts are compared by their ETags (MD5s), on
// MinIO, which lists the parts' CRC32C checksums, by those.
func TestKilledPutResumes(t *testing.T) {
	for _, server := range servers {
		t.Run(server.name, func(t *testing.T) { killedPutResumes(t, server.start(t)) })
	}
}

func killedPutResumes(t *testing.T, srv *testenv.S3) {
	c := srv.Client(t)
	core := minio.Core{Client: c}
	data := cachetest.Data(resumeSeed, resumeSize)
	for _, mode := range []string{"plain", "readerat"} {
		t.Run(mode, func(t *testing.T) {
			bucket := newBucket(t, srv, false)
			key := "nar/" + mode + ".nar"
			cmd, _ := testenv.StartSelf(t, "uploading", append(srv.Env(), resumerEnv+"="+srv.Endpoint+" "+bucket+" "+key+" "+mode)...)
			id := storedParts(t, c, bucket, key, []int{1, 2, 3, 4})
			cmd.Process.Kill()
			cmd.Wait()

			// A part stored with other bytes must be sent again.
			other := cachetest.Data(1, resumePart)
			if _, err := core.PutObjectPart(context.Background(), bucket, key, id, 2, bytes.NewReader(other), resumePart,
				minio.PutObjectPartOptions{DisableContentSha256: true}); err != nil {
				t.Fatal(err)
			}

			pc := &partCounter{}
			b := open(t, srv, bucket, func(o *s3.Options) { o.PartSize = resumePart; o.Transport = pc })
			var r io.Reader = bytes.NewReader(data)
			if mode == "plain" {
				r = cachetest.Plain(data)
			}
			if err := b.Put(context.Background(), key, r, resumeSize, "application/x-nix-nar"); err != nil {
				t.Fatalf("resumed Put: %v", err)
			}
			parts, n := pc.sent()
			t.Logf("resumed: sent parts %v, %d bytes of %d", parts, n, resumeSize)
			if want := []int{2, 5, 6, 7, 8}; !slices.Equal(parts, want) || n != int64(len(want))*resumePart {
				t.Errorf("resumed Put sent parts %v (%d bytes), want %v (%d bytes)", parts, n, want, len(want)*resumePart)
			}
			if got := cachetest.Read(t, b, key); !bytes.Equal(got, data) {
				t.Fatal("resumed object differs from the data")
			}
			if left := uploads(t, c, bucket); len(left) != 0 {
				t.Errorf("unfinished uploads left: %q", left)
			}
			// The object's ETag is the multipart ETag of the data's parts.
			oi, err := c.StatObject(context.Background(), bucket, key, minio.StatObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if want := multipartETag(data, resumePart); strings.Trim(oi.ETag, `"`) != want {
				t.Errorf("ETag %s, want %s", oi.ETag, want)
			}
		})
	}
}

// multipartETag is S3's ETag of an object uploaded in parts of partSize:
// MD5 of the parts' MD5s, a dash, the part count.
func multipartETag(data []byte, partSize int) string {
	h := md5.New()
	n := 0
	for off := 0; off < len(data); off += partSize {
		s := md5.Sum(data[off:min(off+partSize, len(data))])
		h.Write(s[:])
		n++
	}
	return hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(n)
}

// cancelAt cancels a context once its reader has given at bytes and the
// server stored parts 1 and 2 (so that no part is in flight).
type cancelAt struct {
	r      io.Reader
	n, at  int
	stored chan int
	cancel context.CancelFunc
}

func (c *cancelAt) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n += n; c.n >= c.at && c.stored != nil {
		for range 2 {
			select {
			case <-c.stored:
			case <-time.After(20 * time.Second):
			}
		}
		c.stored = nil
		c.cancel()
	}
	return n, err
}

// TestCancelledPutResumes cancels a Put of a plain reader mid-upload (a
// daemon shutting down): the upload stays, and the next Put of the key
// sends only the parts it lacks.
func TestCancelledPutResumes(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	c := srv.Client(t)
	data := cachetest.Data(resumeSeed+1, resumeSize)
	first := &partCounter{stored: make(chan int, 8)}
	b := open(t, srv, bucket, func(o *s3.Options) { o.PartSize = resumePart; o.Transport = first })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Parts 1 and 2 are read and sent; the read of part 3 waits until they
	// are stored, then cancels.
	r := &cancelAt{r: cachetest.Plain(data), at: 13 << 20, stored: first.stored, cancel: cancel}
	if err := b.Put(ctx, "nar/cancelled.nar", r, resumeSize, "application/x-nix-nar"); err == nil {
		t.Fatal("cancelled Put succeeded")
	} else {
		t.Logf("cancelled Put: %v", err)
	}
	u := incomplete(t, c, bucket, "nar/cancelled.nar")
	stored, err := minio.Core{Client: c}.ListObjectParts(context.Background(), bucket, "nar/cancelled.nar", u.UploadID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	pc := &partCounter{}
	b2 := open(t, srv, bucket, func(o *s3.Options) { o.PartSize = resumePart; o.Transport = pc })
	if err := b2.Put(context.Background(), "nar/cancelled.nar", cachetest.Plain(data), resumeSize, "application/x-nix-nar"); err != nil {
		t.Fatalf("resumed Put: %v", err)
	}
	parts, n := pc.sent()
	t.Logf("%d parts stored after the cancel; resumed Put sent parts %v, %d bytes", len(stored.ObjectParts), parts, n)
	if want := []int{3, 4, 5, 6, 7, 8}; len(stored.ObjectParts) != 2 || !slices.Equal(parts, want) || n != int64(len(want))*resumePart {
		t.Errorf("%d parts stored, resumed Put sent %v (%d bytes): want %v", len(stored.ObjectParts), parts, n, want)
	}
	if got := cachetest.Read(t, b2, "nar/cancelled.nar"); !bytes.Equal(got, data) {
		t.Fatal("resumed object differs")
	}
	if left := uploads(t, c, bucket); len(left) != 0 {
		t.Errorf("unfinished uploads left: %q", left)
	}
}

// TestConcurrentResumers: four Puts of the same key and bytes (a fleet of
// daemons) start at once while a killed writer's upload holds some parts:
// they resume the same upload, and all either succeed or fail with a clean
// error; the object is the data and no unfinished upload is left.
func TestConcurrentResumers(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	c := srv.Client(t)
	core := minio.Core{Client: c}
	key := "nar/shared.nar"
	data := cachetest.Data(resumeSeed+2, resumeSize)
	id, err := core.NewMultipartUpload(context.Background(), bucket, key, minio.PutObjectOptions{ContentType: "application/x-nix-nar"})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 3, 6} {
		off := (i - 1) * resumePart
		if _, err := core.PutObjectPart(context.Background(), bucket, key, id, i, bytes.NewReader(data[off:off+resumePart]), resumePart,
			minio.PutObjectPartOptions{DisableContentSha256: true}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	counters := make([]*partCounter, 4)
	for w := range 4 {
		counters[w] = &partCounter{}
		b := open(t, srv, bucket, func(o *s3.Options) { o.PartSize = resumePart; o.Transport = counters[w]; o.SkipBucketCheck = true })
		wg.Go(func() {
			var r io.Reader = bytes.NewReader(data)
			if w%2 == 1 {
				r = cachetest.Plain(data)
			}
			errs[w] = b.Put(context.Background(), key, r, resumeSize, "application/x-nix-nar")
		})
	}
	wg.Wait()
	ok := 0
	for w, err := range errs {
		parts, _ := counters[w].sent()
		t.Logf("resumer %d: sent parts %v: %v", w, parts, err)
		if err == nil {
			ok++
		}
	}
	if ok == 0 {
		t.Fatal("no resumer succeeded")
	}
	if got := cachetest.Read(t, open(t, srv, bucket, nil), key); !bytes.Equal(got, data) {
		t.Fatal("object differs from the data")
	}
	noUploadsLeft(t, c, bucket)
}

// noUploadsLeft checks that the bucket holds no unfinished upload within
// 10 s: a part request racing the completion may revive the upload for a
// moment, and the Put that sent it removes it.
func noUploadsLeft(t *testing.T, c *minio.Client, bucket string) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left = uploads(t, c, bucket); len(left) == 0 {
			return
		}
	}
	t.Errorf("unfinished uploads left: %q", left)
}

// createBarrier makes n Puts begin their uploads at the same moment: it
// holds the answers to the first n listings of unfinished uploads (so that
// every Put finds none) until all n were answered, then the answers to the
// first n CreateMultipartUpload likewise (so that every Put has begun one
// before any looks again). It records the uploads completed
// (CompleteMultipartUpload answered 200).
type createBarrier struct {
	n       int
	mu      sync.Mutex
	count   map[string]int           // "list", "create": answers so far
	all     map[string]chan struct{} // closed when count reaches n
	done    map[string]bool          // upload ID: completed
	created int
}

func newCreateBarrier(n int) *createBarrier {
	return &createBarrier{n: n, count: map[string]int{}, done: map[string]bool{},
		all: map[string]chan struct{}{"list": make(chan struct{}), "create": make(chan struct{})}}
}

// wait holds the caller until n answers of the kind arrived (at most 20 s:
// a Put that makes no such request must not hang the test).
func (c *createBarrier) wait(kind string) {
	c.mu.Lock()
	c.count[kind]++
	n := c.count[kind]
	if n == c.n {
		close(c.all[kind])
	}
	c.mu.Unlock()
	if n > c.n {
		return
	}
	select {
	case <-c.all[kind]:
	case <-time.After(20 * time.Second):
	}
}

func (c *createBarrier) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	q := req.URL.Query()
	switch {
	case req.Method == http.MethodGet && q.Has("uploads"):
		c.wait("list")
	case req.Method == http.MethodPost && q.Has("uploads"):
		c.mu.Lock()
		c.created++
		c.mu.Unlock()
		c.wait("create")
	case req.Method == http.MethodPost && q.Has("uploadId"):
		c.mu.Lock()
		c.done[q.Get("uploadId")] = true
		c.mu.Unlock()
	}
	return resp, err
}

// TestSimultaneousPutsJoin: two Puts (two daemons) of the same key find no
// upload and each begin one at the same moment. One of them must abort its
// own and join the other's, so that one upload of the key is completed,
// not two (the NAR stored twice); both Puts succeed, the object is the
// data and nothing is left unfinished. Run on versitygw and on MinIO.
// Before the join, each Put completed its own upload.
func TestSimultaneousPutsJoin(t *testing.T) {
	for _, server := range servers {
		t.Run(server.name, func(t *testing.T) {
			srv := server.start(t)
			bucket := newBucket(t, srv, false)
			c := srv.Client(t)
			data := cachetest.Data(resumeSeed+3, 3*resumePart)
			cb := newCreateBarrier(2)
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for w := range 2 {
				b := open(t, srv, bucket, func(o *s3.Options) { o.PartSize = resumePart; o.Transport = cb; o.SkipBucketCheck = true })
				wg.Go(func() {
					var r io.Reader = bytes.NewReader(data)
					if w == 1 {
						r = cachetest.Plain(data)
					}
					errs[w] = b.Put(context.Background(), "nar/both.nar", r, int64(len(data)), "application/x-nix-nar")
				})
			}
			wg.Wait()
			for w, err := range errs {
				if err != nil {
					t.Errorf("Put %d: %v", w, err)
				}
			}
			cb.mu.Lock()
			t.Logf("%d uploads begun, completed: %v", cb.created, cb.done)
			if cb.created != 2 || len(cb.done) != 1 {
				t.Errorf("%d uploads of the key begun, %d completed; want 2 begun (at once) and 1 completed (the other Put joins it)", cb.created, len(cb.done))
			}
			cb.mu.Unlock()
			if got := cachetest.Read(t, open(t, srv, bucket, nil), "nar/both.nar"); !bytes.Equal(got, data) {
				t.Fatal("object differs from the data")
			}
			noUploadsLeft(t, c, bucket)
		})
	}
}
