// Command s3helper is run.sh's S3 side: it makes buckets and uploads the
// plain-PutObject baseline that `push --to s3://...` is compared against.
//
//	s3helper -endpoint http://127.0.0.1:PORT [-public] mkbucket BUCKET
//	s3helper -endpoint http://127.0.0.1:PORT put BUCKET KEY FILE
//
// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. put is one
// minio-go PutObject of FILE with DisableContentSha256 (no aws-chunked
// payload, as Nix needs over plain HTTP), minio-go's own part size and
// concurrency: what any Go program would do without this library.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func main() {
	endpoint := flag.String("endpoint", "", "S3 endpoint URL (http://host:port)")
	public := flag.Bool("public", false, "mkbucket: allow anonymous s3:GetObject (so Nix can read over HTTP)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: s3helper -endpoint URL [-public] mkbucket BUCKET | put BUCKET KEY FILE")
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
		f, err := os.Open(args[3])
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		_, err = c.PutObject(ctx, args[1], args[2], f, fi.Size(), minio.PutObjectOptions{
			ContentType:          "application/x-nix-nar",
			DisableContentSha256: true,
		})
		if err != nil {
			return fmt.Errorf("put %s/%s: %w", args[1], args[2], err)
		}
		return nil
	}
	flag.Usage()
	os.Exit(2)
	return nil
}
