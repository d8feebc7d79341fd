package s3_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
)

// BenchmarkPut256MiB compares a 256 MiB upload through the backend (from an
// io.ReaderAt: parallel 16 MiB parts; from a plain reader, or written in by
// a cache.Producer as the NAR dump does: 8 MiB parts, 3 buffers; unsigned
// payload, each part's CRC32C checked) with plain minio-go
// PutObject calls on the same server: the default options (aws-chunked over
// http, which Nix cannot read back), and DisableContentSha256 alone.
// Run with -benchtime=3x.
func BenchmarkPut256MiB(b *testing.B) {
	srv := testenv.StartS3(b)
	bucket := newBucket(b, srv, false)
	data := cachetest.Data(256, 256<<20)
	ctx := context.Background()
	b.Run("backend-readerat", func(b *testing.B) {
		be := open(b, srv, bucket, nil)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := be.Put(ctx, "nar/bench.nar", bytes.NewReader(data), int64(len(data)), "application/x-nix-nar"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("backend-plain", func(b *testing.B) {
		be := open(b, srv, bucket, nil)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := be.Put(ctx, "nar/bench.nar", cachetest.Plain(data), int64(len(data)), "application/x-nix-nar"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("backend-producer", func(b *testing.B) {
		be := open(b, srv, bucket, nil)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := be.Put(ctx, "nar/bench.nar", &producer{data: data}, int64(len(data)), "application/x-nix-nar"); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range []struct {
		name string
		opts minio.PutObjectOptions
	}{
		{"minio-default", minio.PutObjectOptions{ContentType: "application/x-nix-nar"}},
		{"minio-unsigned", minio.PutObjectOptions{ContentType: "application/x-nix-nar", DisableContentSha256: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			cl := srv.Client(b)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := cl.PutObject(ctx, bucket, "nar/bench.nar", bytes.NewReader(data), int64(len(data)), c.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	_ = s3.DefaultPartSize
}
