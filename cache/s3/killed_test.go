package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
)

// uploaderEnv, when set to "ENDPOINT BUCKET KEY" in the environment of this
// test binary, makes it an uploader child: it Puts a 40 MiB object (5 MiB
// parts) read from a reader that gives 12 MiB, prints "uploading" and then
// waits on its standard input, unless it is killed first. The credentials
// come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
const uploaderEnv = "NIXCACHE_S3_TEST_UPLOADER"

func TestMain(m *testing.M) {
	if v := os.Getenv(uploaderEnv); v != "" {
		os.Exit(uploader(strings.Fields(v)))
	}
	if v := os.Getenv(resumerEnv); v != "" {
		os.Exit(resumer(strings.Fields(v)))
	}
	os.Exit(m.Run())
}

func uploader(args []string) int {
	b, err := s3.New(context.Background(), s3.Options{
		Endpoint: args[0], Bucket: args[1], AddressingStyle: "path", PartSize: s3.MinPartSize,
		Creds:           credentials.NewStaticV4(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), ""),
		SkipBucketCheck: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := io.MultiReader(bytes.NewReader(cachetest.Data(1, 12<<20)), testenv.Announce("uploading"), os.Stdin)
	err = b.Put(context.Background(), args[2], r, 40<<20, "application/x-nix-nar")
	fmt.Fprintln(os.Stderr, "put:", err)
	return 2
}

// incomplete returns the unfinished upload of key in bucket, polling until
// it is listed with at least one stored part.
func incomplete(t *testing.T, c *minio.Client, bucket, key string) minio.ObjectMultipartInfo {
	t.Helper()
	core := minio.Core{Client: c}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for u := range c.ListIncompleteUploads(context.Background(), bucket, key, false) {
			if u.Err != nil {
				t.Fatal(u.Err)
			}
			if u.Key != key {
				continue
			}
			parts, err := core.ListObjectParts(context.Background(), bucket, key, u.UploadID, 0, 100)
			if err == nil && len(parts.ObjectParts) > 0 {
				return u
			}
		}
	}
	t.Fatalf("no incomplete upload of %s with a part", key)
	return minio.ObjectMultipartInfo{}
}

// uploads lists the keys of the unfinished uploads in bucket.
func uploads(t *testing.T, c *minio.Client, bucket string) []string {
	t.Helper()
	var keys []string
	for u := range c.ListIncompleteUploads(context.Background(), bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		keys = append(keys, u.Key)
	}
	return keys
}

// TestKilledMultipartAborted kills an uploader process (SIGKILL) in the
// middle of a multipart upload: its upload and parts stay on the server.
// Opening the backend aborts it once it is older than StaleUploadAge, and
// leaves alone the younger upload of a writer still at work, which then
// completes.
func TestKilledMultipartAborted(t *testing.T) {
	srv := testenv.StartS3(t)
	bucket := newBucket(t, srv, false)
	c := srv.Client(t)

	cmd, _ := testenv.StartSelf(t, "uploading", append(srv.Env(), uploaderEnv+"="+srv.Endpoint+" "+bucket+" nar/killed.nar")...)
	dead := incomplete(t, c, bucket, "nar/killed.nar")
	cmd.Process.Kill()
	cmd.Wait()
	if got := uploads(t, c, bucket); len(got) != 1 {
		t.Fatalf("after the kill: incomplete uploads %q, want the killed one", got)
	}

	// The live upload must begin measurably later than the dead one: the
	// server may keep whole seconds.
	for time.Now().Before(dead.Initiated.Add(2500 * time.Millisecond)) {
		time.Sleep(50 * time.Millisecond)
	}
	b := open(t, srv, bucket, func(o *s3.Options) { o.PartSize = s3.MinPartSize; o.SkipBucketCheck = true })
	data := cachetest.Data(2, 12<<20)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- b.Put(context.Background(), "nar/live.nar", pr, int64(len(data)), "application/x-nix-nar")
	}()
	go pw.Write(data[:8<<20])
	live := incomplete(t, c, bucket, "nar/live.nar")
	t.Logf("killed upload began %v, live one %v", dead.Initiated, live.Initiated)

	// Open with an age between the two: the killed upload is stale.
	mid := dead.Initiated.Add(live.Initiated.Sub(dead.Initiated) / 2)
	open(t, srv, bucket, func(o *s3.Options) { o.StaleUploadAge = time.Since(mid) })
	if got := uploads(t, c, bucket); len(got) != 1 || got[0] != "nar/live.nar" {
		t.Fatalf("after New: incomplete uploads %q, want only nar/live.nar", got)
	}
	go func() { pw.Write(data[8<<20:]); pw.Close() }()
	if err := <-done; err != nil {
		t.Fatalf("live upload: %v", err)
	}
	if got := cachetest.Read(t, b, "nar/live.nar"); !bytes.Equal(got, data) {
		t.Fatal("live upload stored other bytes")
	}
	if got := uploads(t, c, bucket); len(got) != 0 {
		t.Fatalf("incomplete uploads left: %q", got)
	}
}
