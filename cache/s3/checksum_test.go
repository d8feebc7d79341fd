package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
)

// partHeaders records, for every part request (a PUT with a partNumber),
// whether it carried an x-amz-checksum-crc32c header and a Content-MD5. With
// refuse set (an S3 error code and message) it answers a part request
// carrying any x-amz-checksum header with 400 and that error.
// With corrupt set it flips one byte of the body of that part number on
// every attempt, after the checksums were computed (a fault on the way).
type partHeaders struct {
	refuse  [2]string
	corrupt int

	mu      sync.Mutex
	crc     int
	md5     int
	refused int
}

func (p *partHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	n, _ := strconv.Atoi(req.URL.Query().Get("partNumber"))
	if req.Method != http.MethodPut || n == 0 {
		return http.DefaultTransport.RoundTrip(req)
	}
	crc := req.Header.Get("X-Amz-Checksum-Crc32c") != ""
	p.mu.Lock()
	if crc {
		p.crc++
	}
	if req.Header.Get("Content-Md5") != "" {
		p.md5++
	}
	refuse := false
	for k := range req.Header {
		if p.refuse[0] != "" && strings.HasPrefix(strings.ToLower(k), "x-amz-checksum-") {
			refuse = true
			p.refused++
			p.crc--
		}
	}
	p.mu.Unlock()
	if refuse {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
		body := `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Error><Code>` + p.refuse[0] + `</Code><Message>` + p.refuse[1] + `</Message></Error>`
		return &http.Response{StatusCode: 400, Status: "400 Bad Request", Header: http.Header{"Content-Type": {"application/xml"}},
			Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
	}
	if n == p.corrupt && req.Body != nil {
		req.Body = &flipFirst{r: req.Body}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// flipFirst flips the first byte read through it.
type flipFirst struct {
	r    io.ReadCloser
	done bool
}

func (f *flipFirst) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if n > 0 && !f.done {
		b[0] ^= 1
		f.done = true
	}
	return n, err
}

func (f *flipFirst) Close() error { return f.r.Close() }

// servers are the two S3 judges: versitygw and a single-node MinIO.
var servers = []struct {
	name  string
	start func(testenv.TB) *testenv.S3
}{{"versitygw", testenv.StartS3}, {"minio", testenv.StartMinIO}}

// TestPartsCarryCRC32C: every part of a multipart upload, from an
// io.ReaderAt and from a plain reader, carries its CRC32C checksum and no
// Content-MD5 (whose MD5 cost about 40% of the upload's CPU); the object is
// the data. Before, every part carried Content-MD5.
func TestPartsCarryCRC32C(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	data := cachetest.Data(91, 3*s3.MinPartSize+1)
	for _, plain := range []bool{false, true} {
		ph := &partHeaders{}
		b := open(t, srv, bucket, func(o *s3.Options) { o.PartSize = s3.MinPartSize; o.Transport = ph; o.SkipBucketCheck = true })
		var r io.Reader = bytes.NewReader(data)
		if plain {
			r = cachetest.Plain(data)
		}
		key := "nar/crc-" + strconv.FormatBool(plain) + ".nar"
		if err := b.Put(context.Background(), key, r, int64(len(data)), "application/x-nix-nar"); err != nil {
			t.Fatal(err)
		}
		if ph.crc != 4 || ph.md5 != 0 {
			t.Errorf("plain=%v: %d of 4 parts sent with a CRC32C, %d with Content-MD5; want 4 and 0", plain, ph.crc, ph.md5)
		}
		if got := cachetest.Read(t, b, key); !bytes.Equal(got, data) {
			t.Fatalf("plain=%v: object differs from the data", plain)
		}
	}
}

// TestPartCorruptedOnTheWay: a part whose bytes change after its checksum
// was computed (one bit flipped on the way, on every attempt) is refused by
// the server; the Put fails and stores nothing. On versitygw and MinIO.
func TestPartCorruptedOnTheWay(t *testing.T) {
	for _, server := range servers {
		t.Run(server.name, func(t *testing.T) {
			srv := server.start(t)
			bucket := newBucket(t, srv, false)
			data := cachetest.Data(92, 3*s3.MinPartSize)
			for _, plain := range []bool{false, true} {
				ph := &partHeaders{corrupt: 2}
				b := open(t, srv, bucket, func(o *s3.Options) {
					o.PartSize = s3.MinPartSize
					o.Transport = ph
					o.SkipBucketCheck = true
					o.Retries = 2
				})
				var r io.Reader = bytes.NewReader(data)
				if plain {
					r = cachetest.Plain(data)
				}
				err := b.Put(context.Background(), "nar/corrupt.nar", r, int64(len(data)), "application/x-nix-nar")
				t.Logf("plain=%v: %v", plain, err)
				if err == nil {
					t.Fatalf("plain=%v: Put of a part corrupted on the way succeeded", plain)
				}
				if _, err := b.Stat(context.Background(), "nar/corrupt.nar"); !errors.Is(err, cache.ErrNotFound) {
					t.Fatalf("plain=%v: after the failed Put, Stat: %v, want not found", plain, err)
				}
			}
		})
	}
}

// TestChecksumRefusedFallsBack: a server that refuses S3's checksum headers
// gets the parts with Content-MD5 instead: the Put succeeds, and once
// refused the Backend sends no more CRC32C headers. Backblaze B2 refuses the
// header; AWS S3 refuses a part checksum that CreateMultipartUpload did not
// announce (an upload begun by an older version, say).
func TestChecksumRefusedFallsBack(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	data := cachetest.Data(93, 6*s3.MinPartSize)
	for _, refusal := range [][2]string{
		{"InvalidArgument", "Unsupported header 'x-amz-checksum-crc32c' received for this API call."},
		{"InvalidRequest", "Checksum Type mismatch occurred, expected checksum Type: null, actual checksum Type: crc32c"},
	} {
		ph := &partHeaders{refuse: refusal}
		b := open(t, srv, bucket, func(o *s3.Options) {
			o.PartSize = s3.MinPartSize
			o.Transport = ph
			o.SkipBucketCheck = true
			o.Threads = 2
		})
		for i, plain := range []bool{false, true} {
			var r io.Reader = bytes.NewReader(data)
			if plain {
				r = cachetest.Plain(data)
			}
			key := "nar/" + refusal[0] + strconv.Itoa(i) + ".nar"
			if err := b.Put(context.Background(), key, r, int64(len(data)), "application/x-nix-nar"); err != nil {
				t.Fatalf("%s, plain=%v: %v", refusal[0], plain, err)
			}
			if got := cachetest.Read(t, b, key); !bytes.Equal(got, data) {
				t.Fatalf("%s, plain=%v: object differs from the data", refusal[0], plain)
			}
		}
		t.Logf("%s: %d part requests refused, %d sent with Content-MD5", refusal[0], ph.refused, ph.md5)
		if ph.refused < 1 || ph.refused > 2 || ph.md5 != 12 {
			t.Errorf("%s: %d part requests refused, %d of 12 parts sent with Content-MD5; want 1 or 2 (the threads) and 12", refusal[0], ph.refused, ph.md5)
		}
	}
}

// TestStreamedPutMemory: a multipart Put from a plain reader (or a
// cache.Producer: a NAR dumped while it is uploaded) holds at most 3 part
// buffers of 8 MiB: the bytes the process allocates during a 96 MiB Put stay
// under 32 MiB, and the parts sent are 8 MiB, each with its CRC32C. Before,
// it held Threads x PartSize (4 x 16 MiB).
func TestStreamedPutMemory(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	data := cachetest.Data(94, 96<<20)
	for _, kind := range []string{"plain", "producer"} {
		t.Run(kind, func(t *testing.T) {
			pc := &partCounter{}
			ph := &partHeaders{}
			b := open(t, srv, bucket, func(o *s3.Options) { o.Transport = pc; pc.next = ph })
			var r io.Reader = cachetest.Plain(data)
			if kind == "producer" {
				r = &producer{data: data}
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if err := b.Put(context.Background(), "nar/streamed.nar", r, int64(len(data)), "application/x-nix-nar"); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			parts, n := pc.sent()
			t.Logf("streamed Put of 96 MiB: %.1f MiB allocated, %d parts (%d bytes)", float64(alloc)/(1<<20), len(parts), n)
			if alloc > 32<<20 {
				t.Errorf("streamed Put of 96 MiB allocated %.1f MiB, want at most 32 (3 buffers of 8 MiB and change)", float64(alloc)/(1<<20))
			}
			if len(parts) != 12 || n != int64(len(data)) {
				t.Errorf("sent %d parts (%d bytes), want 12 of 8 MiB", len(parts), n)
			}
			if ph.crc != 12 || ph.md5 != 0 {
				t.Errorf("%d parts carried a CRC32C and %d a Content-MD5, want 12 and 0", ph.crc, ph.md5)
			}
			if got := cachetest.Read(t, b, "nar/streamed.nar"); !bytes.Equal(got, data) {
				t.Fatal("object differs from the data")
			}
		})
	}
}
