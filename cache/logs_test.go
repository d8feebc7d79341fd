package cache_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/localstore"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

// loggedBuild builds, with real Nix, a fresh derivation whose builder
// writes several lines to stdout and stderr, and returns its output and
// .drv; both are deleted when the test ends.
func loggedBuild(t *testing.T, name string) (out, drvPath storepath.Path) {
	t.Helper()
	testenv.RequireNix(t)
	dir := t.TempDir()
	nonce := testenv.Nonce()
	expr := fmt.Sprintf(`derivation { name = %q; system = builtins.currentSystem; builder = "/bin/sh";
  PATH = "/usr/bin:/bin"; args = ["-c" "echo 'building %s'; for i in 1 2 3; do echo line $i; echo err $i >&2; done; echo %s > $out"]; }`,
		name, nonce, nonce)
	file := filepath.Join(dir, "log.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	o := strings.TrimSpace(string(testenv.Nix(t, "nix-build", "--option", "substituters", "", "--no-out-link", file)))
	d := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--query", "--deriver", o)))
	t.Cleanup(func() { _, _ = testenv.NixCmd("nix-store", "--delete", o, d) })
	return mustPath(t, o), mustPath(t, d)
}

// localLogFiles are the files Nix keeps the log of drv in.
func localLogFiles(drv storepath.Path) []string {
	b := drv.Base()
	f := filepath.Join(localstore.LogDir(), "drvs", b[:2], b[2:])
	return []string{f, f + ".bz2"}
}

// TestPushLogsNixLog (issue 14, build logs): with PushOptions.Logs, the
// build log of the pushed output's deriver goes to log/<drv base name>,
// and Nix 2.8 reads it back with `nix log --store URL OUTPUT` (through the
// output's narinfo Deriver) with the local log deleted: the same text as
// `nix log OUTPUT` printed locally before. Over the S3 server, Nix reads it
// over plain HTTP, with Nix's content type. Without Logs, no log is pushed.
func TestPushLogsNixLog(t *testing.T) {
	for _, backend := range []string{"file", "s3"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			out, drv := loggedBuild(t, "nixcache-log-"+backend)
			sec, _ := nixKey(t, "nixcache-log-1")
			url, nixURL := zstdCache(t, backend, "logs")

			c, err := cache.Open(ctx, url+"&secret-key="+sec)
			if err != nil {
				t.Fatal(err)
			}
			store := openStore(t)
			local := string(testenv.Nix(t, "nix", "log", string(out)))
			if !strings.Contains(local, "line 3") || !strings.Contains(local, "err 3") {
				t.Fatalf("local nix log lacks the builder's lines:\n%s", local)
			}

			sum, err := c.Push(ctx, store, []storepath.Path{out}, cache.PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Backend.Stat(ctx, cache.LogKey(drv)); err == nil || sum.Logs != 0 {
				t.Fatalf("log pushed without PushOptions.Logs (summary %+v, stat %v)", sum, err)
			}
			sum, err = c.Push(ctx, store, []storepath.Path{out}, cache.PushOptions{Logs: true})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Logs != 1 {
				t.Fatalf("Summary.Logs = %d, want 1", sum.Logs)
			}
			// Pushing again uploads nothing.
			if sum, err = c.Push(ctx, store, []storepath.Path{out}, cache.PushOptions{Logs: true}); err != nil || sum.Logs != 0 {
				t.Fatalf("second push: Logs %d, err %v", sum.Logs, err)
			}

			for _, f := range localLogFiles(drv) {
				os.Rename(f, f+".hidden")
				t.Cleanup(func() { os.Rename(f+".hidden", f) })
			}
			if b, err := testenv.NixCmd("nix", "log", string(out)); err == nil {
				t.Fatalf("nix log still finds the local log:\n%s", b)
			}
			remote := string(testenv.Nix(t, "nix", "log", "--store", nixURL, string(out)))
			if remote != local {
				t.Fatalf("nix log --store %s printed\n%q\nwant (local)\n%q", nixURL, remote, local)
			}
			if backend == "s3" {
				resp, err := http.Head(nixURL + "/" + cache.LogKey(drv))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if ct := resp.Header.Get("Content-Type"); ct != cache.LogMIMEType {
					t.Fatalf("Content-Type %q, want %q", ct, cache.LogMIMEType)
				}
			}
		})
	}
}
