package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 is a real S3 server listening on loopback for one test: versitygw
// (StartS3), a single-node MinIO (StartMinIO), or a loopback entrance to a
// distributed MinIO whose processes the cluster manages (MinIOCluster.S3;
// Start and Stop do nothing there).
type S3 struct {
	Endpoint  string // http://127.0.0.1:PORT
	Host      string // 127.0.0.1:PORT
	AccessKey string
	SecretKey string
	DataDir   string

	mu    sync.Mutex
	argv  []string                // the server's command line; nil: not ours to run
	env   []string                // added to its environment
	ready func(host string) error // nil: the port accepts connections
	cmd   *exec.Cmd
}

// VersitygwPath finds the versitygw binary: $NIXCACHE_VERSITYGW, then PATH,
// then ~/.cache/nixcache-bin/versitygw (where .ci/run installs it).
func VersitygwPath() string { return serverPath("NIXCACHE_VERSITYGW", "versitygw") }

// serverPath finds a server binary: $env, then name on PATH, then
// ~/.cache/nixcache-bin/name (where .ci/run installs it); "" if none.
func serverPath(env, name string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache", "nixcache-bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// StartS3 starts versitygw on a free loopback port with a fresh data
// directory, and stops it when the test ends.
func StartS3(t TB) *S3 {
	t.Helper()
	bin := VersitygwPath()
	if bin == "" {
		missing(t, "the S3 server (versitygw; set NIXCACHE_VERSITYGW)")
	} else if _, err := os.Stat(bin); err != nil {
		missing(t, fmt.Sprintf("the S3 server (versitygw: %v)", err))
	}
	s := &S3{
		AccessKey: "nixcacheaccess",
		SecretKey: "nixcachesecret123",
		DataDir:   t.TempDir(),
	}
	s.Host = freePort(t)
	s.Endpoint = "http://" + s.Host
	s.argv = []string{bin, "--port", s.Host, "--quiet", "posix", s.DataDir}
	s.env = []string{"ROOT_ACCESS_KEY=" + s.AccessKey, "ROOT_SECRET_KEY=" + s.SecretKey}
	if err := s.Start(); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// freePort returns a loopback address with a port free a moment ago.
func freePort(t TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start (re)starts the server on its port and waits until it answers.
func (s *S3) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil || s.argv == nil {
		return nil
	}
	name := filepath.Base(s.argv[0])
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Env = append(os.Environ(), s.env...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	s.cmd = cmd
	ready := s.ready
	if ready == nil {
		ready = func(host string) error {
			c, err := net.DialTimeout("tcp", host, 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		}
	}
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = ready(s.Host); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s did not answer on %s: %w", name, s.Host, err)
}

// Stop kills the server; Start brings it back with the same data.
func (s *S3) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Client returns a minio client for the server (path style, us-east-1).
func (s *S3) Client(t TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:       false,
		Region:       "us-east-1",
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	return c
}

// MakeBucket creates a bucket. If public, anonymous GetObject is allowed, so
// that Nix can substitute from http://HOST/BUCKET.
func (s *S3) MakeBucket(t TB, name string, public bool) {
	t.Helper()
	ctx := context.Background()
	c := s.Client(t)
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil &&
		// minio-go retried a request the server had carried out (a MinIO
		// cluster settling): the bucket is ours.
		minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	if public {
		policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::` + name + `/*"]}]}`
		if err := c.SetBucketPolicy(ctx, name, policy); err != nil {
			t.Fatalf("set policy on %s: %v", name, err)
		}
	}
}

// URL returns an s3:// store URL for the bucket on this server.
func (s *S3) URL(bucket string, extra ...string) string {
	u := "s3://" + bucket + "?endpoint=" + s.Endpoint + "&region=us-east-1&addressing-style=path"
	for _, e := range extra {
		u += "&" + e
	}
	return u
}

// Env returns the AWS credential environment for this server.
func (s *S3) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey}
}

// SetEnv sets the AWS credential environment for the rest of the test
// (t is a *testing.T; testing.T.Setenv restores it at the end).
func (s *S3) SetEnv(t interface{ Setenv(key, value string) }) {
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
}
