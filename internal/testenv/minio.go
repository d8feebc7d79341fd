package testenv

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

// MinIO is the project's second S3 judge next to versitygw: the unmodified
// MinIO server run as a separate process (its code is AGPL: never import
// it). .ci/run builds it into ~/.cache/nixcache-bin/minio.

// MinIOPath finds the minio binary: $NIXCACHE_MINIO, then PATH, then
// ~/.cache/nixcache-bin/minio (where .ci/run installs it).
func MinIOPath() string { return serverPath("NIXCACHE_MINIO", "minio") }

// requireMinIO returns the minio binary, or skips the test (fails it under
// CI=true) when there is none.
func requireMinIO(t TB) string {
	t.Helper()
	bin := MinIOPath()
	if bin == "" {
		missing(t, "the MinIO server (set NIXCACHE_MINIO)")
		return ""
	}
	if _, err := os.Stat(bin); err != nil {
		missing(t, fmt.Sprintf("the MinIO server (%v)", err))
	}
	return bin
}

// minioEnv is the environment of a MinIO server: its root credentials,
// MINIO_CI_CD (drives on the root file system allowed) and no web console.
func minioEnv(access, secret string) []string {
	return []string{"MINIO_ROOT_USER=" + access, "MINIO_ROOT_PASSWORD=" + secret, "MINIO_CI_CD=1", "MINIO_BROWSER=off"}
}

// StartMinIO starts a single-node MinIO on a free loopback port with a fresh
// data directory, and stops it when the test ends. Stop and Start kill and
// restart it with the same data.
func StartMinIO(t TB) *S3 {
	t.Helper()
	bin := requireMinIO(t)
	s := &S3{AccessKey: "nixcacheaccess", SecretKey: "nixcachesecret123", DataDir: t.TempDir()}
	s.Host = freePort(t)
	s.Endpoint = "http://" + s.Host
	s.argv = []string{bin, "server", "--address", s.Host, "--quiet", s.DataDir}
	s.env = minioEnv(s.AccessKey, s.SecretKey)
	client := &http.Client{Timeout: 2 * time.Second}
	s.ready = func(host string) error { return healthy(client, "http://"+host+"/minio/health/cluster") }
	if err := s.Start(); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// healthy reports nil when GET url answers 200.
func healthy(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
