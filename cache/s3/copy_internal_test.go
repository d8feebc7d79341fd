package s3

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nixcache/nixcache/internal/testenv"
)

// TestTouchAndMoveBeyondCopyLimit: an object larger than what one
// CopyObject copies (5 GiB on S3; lowered here) is touched and moved by a
// multipart copy, on MinIO, which renews modification times: Touch renews
// it, Move moves it, the bytes stay the same. Before, both failed on such
// objects (S3 refuses a CopyObject over 5 GiB).
func TestTouchAndMoveBeyondCopyLimit(t *testing.T) {
	srv := testenv.StartMinIO(t)
	ctx := context.Background()
	bucket := "copylimit"
	srv.MakeBucket(t, bucket, false)
	partCopies := &countPartCopies{}
	b, err := New(ctx, Options{Bucket: bucket, Endpoint: srv.Endpoint, AddressingStyle: "path",
		Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""), Transport: partCopies})
	if err != nil {
		t.Fatal(err)
	}
	defer func(old int64) { maxCopySize = old }(maxCopySize)
	maxCopySize = 1 << 20
	data := bytes.Repeat([]byte("nixcache copy limit "), 7<<20/20)
	if err := b.Put(ctx, "nar/big.nar", bytes.NewReader(data), int64(len(data)), "application/x-nix-nar"); err != nil {
		t.Fatal(err)
	}
	before, err := b.Stat(ctx, "nar/big.nar")
	if err != nil {
		t.Fatal(err)
	}
	// Modification times have one-second resolution: let the clock pass
	// the next second so that a renewal shows.
	for time.Now().Before(before.ModTime.Add(1100 * time.Millisecond)) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := b.Touch(ctx, "nar/big.nar"); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	after, err := b.Stat(ctx, "nar/big.nar")
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime.After(before.ModTime) || after.Size != int64(len(data)) {
		t.Errorf("after Touch: %v, %d bytes; before %v", after.ModTime, after.Size, before.ModTime)
	}
	if err := b.Move(ctx, "nar/big.nar", "trash/big.nar"); err != nil {
		t.Fatalf("Move: %v", err)
	}
	if n := partCopies.n.Load(); n < 2 {
		t.Errorf("%d part copies (UploadPartCopy) for a Touch and a Move beyond the copy limit, want 2 or more", n)
	}
	if _, err := b.Stat(ctx, "nar/big.nar"); err == nil {
		t.Error("Move left the source")
	}
	rc, err := b.Get(ctx, "trash/big.nar")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("moved object differs (%d bytes, err %v)", len(got), err)
	}
}

// countPartCopies counts UploadPartCopy requests (a PUT of a part with a
// copy source).
type countPartCopies struct{ n atomic.Int64 }

func (c *countPartCopies) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.URL.Query().Has("partNumber") && req.Header.Get("X-Amz-Copy-Source") != "" {
		c.n.Add(1)
	}
	return http.DefaultTransport.RoundTrip(req)
}
