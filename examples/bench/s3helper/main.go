// Command s3helper is run.sh's S3 side: it makes buckets and uploads the
// plain-PutObject baseline that `push --to s3://...` is compared against.
//
//	s3helper -endpoint http://127.0.0.1:PORT [-public] mkbucket BUCKET
//	s3helper -endpoint http://127.0.0.1:PORT put BUCKET KEY FILE
//	s3helper -endpoint http://127.0.0.1:PORT put-stream BUCKET KEY FILE
//
// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. put is one
// minio-go PutObject of FILE with DisableContentSha256 (no aws-chunked
// payload, as Nix needs over plain HTTP), minio-go's own part size and
// concurrency: what any Go program would do without this library.
// put-stream uploads FILE through this library's S3 backend as a plain
// reader, as push streams a NAR (8 MiB parts, 3 buffers, each part's
// CRC32C), but without dumping or hashing anything: the upload side of
// push alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nixcache/nixcache/cache/s3"
)

func main() {
	endpoint := flag.String("endpoint", "", "S3 endpoint URL (http://host:port)")
	public := flag.Bool("public", false, "mkbucket: allow anonymous s3:GetObject (so Nix can read over HTTP)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: s3helper -endpoint URL [-public] mkbucket BUCKET | put BUCKET KEY FILE | put-stream BUCKET KEY FILE")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*endpoint, *public, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "s3helper:", err)
		os.Exit(1)
	}
}

func run(endpoint string, public bool, args []string) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bad -endpoint %q", endpoint)
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewEnvAWS(),
		Secure:       u.Scheme == "https",
		Region:       "us-east-1",
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch {
	case len(args) == 2 && args[0] == "mkbucket":
		b := args[1]
		if err := c.MakeBucket(ctx, b, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
			return fmt.Errorf("make bucket %s: %w", b, err)
		}
		if public {
			policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::` + b + `/*"]}]}`
			if err := c.SetBucketPolicy(ctx, b, policy); err != nil {
				return fmt.Errorf("policy on %s: %w", b, err)
			}
		}
		return nil
	case len(args) == 4 && args[0] == "put":
		f, size, err := open(args[3])
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = c.PutObject(ctx, args[1], args[2], f, size, minio.PutObjectOptions{
			ContentType:          "application/x-nix-nar",
			DisableContentSha256: true,
		})
		if err != nil {
			return fmt.Errorf("put %s/%s: %w", args[1], args[2], err)
		}
		return nil
	case len(args) == 4 && args[0] == "put-stream":
		b, err := s3.New(ctx, s3.Options{
			Bucket: args[1], Endpoint: endpoint, Region: "us-east-1", AddressingStyle: "path",
			Creds: credentials.NewEnvAWS(),
		})
		if err != nil {
			return err
		}
		f, size, err := open(args[3])
		if err != nil {
			return err
		}
		defer f.Close()
		// Only Read: an io.ReaderAt would go up in parallel 16 MiB parts.
		r := struct{ io.Reader }{f}
		return b.Put(ctx, args[2], r, size, "application/x-nix-nar")
	}
	flag.Usage()
	os.Exit(2)
	return nil
}

// open opens the file to upload and returns its size.
func open(name string) (*os.File, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}
