package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// caExpr writes a Nix file building three derivations that print to their
// build logs: an input-addressed one, and a floating content-addressed one
// (ca-derivations) depending on another. nix-build prints the
// input-addressed output, then the content-addressed top output.
func caExpr(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	nonce := testenv.Nonce()
	expr := fmt.Sprintf(`let
  mk = name: script: extra: derivation ({ inherit name; system = builtins.currentSystem; builder = "/bin/sh";
    PATH = "/usr/bin:/bin"; args = ["-c" script]; } // extra);
  ca = { __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; };
  dep = mk "hookca-dep" "echo building dep %[1]s; echo dep >&2; echo dep-%[1]s > $out" ca;
in [
  (mk "hookca-ia" "echo building ia %[1]s; for i in 1 2 3; do echo ia line $i; echo ia err $i >&2; done; echo ia-%[1]s > $out" {})
  (mk "hookca-top" "echo building top %[1]s; echo top err >&2; echo ${dep} > $out" ca)
]
`, nonce)
	file := filepath.Join(dir, "ca.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// hideLocalLog moves Nix's local log of the derivation that built out
// aside until the test ends, so that `nix log` can only read the cache.
func hideLocalLog(t *testing.T, out string) {
	t.Helper()
	drv := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--query", "--deriver", out)))
	b := filepath.Base(drv)
	f := filepath.Join("/nix/var/log/nix/drvs", b[:2], b[2:])
	if d := os.Getenv("NIX_LOG_DIR"); d != "" {
		f = filepath.Join(d, "drvs", b[:2], b[2:])
	}
	for _, name := range []string{f, f + ".bz2"} {
		if err := os.Rename(name, name+".hidden"); err == nil {
			t.Cleanup(func() { os.Rename(name+".hidden", name) })
		}
	}
	if b, err := testenv.NixCmd("nix", "log", out); err == nil {
		t.Fatalf("nix log %s still reads a local log:\n%s", out, b)
	}
}

// TestQueueModeLogsAndCA is issue 14's proof through the deployed path:
// Nix 2.8 builds an input-addressed and a floating content-addressed
// derivation (with a content-addressed dependency) with the hook in queue
// mode; the daemon (NIXCACHE_UPLOAD_LOGS unset: on) drains the queue into
// a file:// cache and into the S3 server. Then:
//   - every output is in the cache: the hook resolved the CA outputs, which
//     `nix-store --query --outputs` cannot ("nothing queued" before);
//   - `nix log --store URL OUTPUT` prints each derivation's log, with the
//     local log hidden, as `nix log OUTPUT` did locally (over HTTP for S3);
//   - with the outputs deleted, Nix substitutes the CA derivation from the
//     cache alone with --max-jobs 0, through our signed realisations.
func TestQueueModeLogsAndCA(t *testing.T) {
	for _, backend := range []string{"file", "s3"} {
		t.Run(backend, func(t *testing.T) {
			testenv.RequireNix(t)
			hook, daemon := binaries(t)
			k := genKey(t)
			qdir := t.TempDir()
			var url, nixURL string
			var env []string
			if backend == "file" {
				dir := t.TempDir()
				// Listings as a daemon's NIXCACHE_TO selects them.
				url, nixURL = "file://"+dir+"?compression=zstd&write-nar-listing=true", "file://"+dir
			} else {
				s3 := testenv.StartS3(t)
				s3.MakeBucket(t, "hookca", true)
				url, nixURL = s3.URL("hookca", "compression=zstd"), s3.Endpoint+"/hookca"
				env = s3.Env()
			}
			t.Setenv("NIX_CONFIG", "extra-experimental-features = ca-derivations nix-command\nnarinfo-cache-negative-ttl = 0")
			expr := caExpr(t)
			outs, stderr, err := nixBuild(t, expr, hook, []string{"NIXCACHE_QUEUE=" + qdir})
			if err != nil || len(outs) != 2 {
				t.Fatalf("nix-build: %v, outputs %v\n%s", err, outs, stderr)
			}
			if strings.Contains(stderr, "nothing queued") {
				t.Errorf("the hook queued nothing for a derivation:\n%s", stderr)
			}
			ia, top := outs[0], outs[1]
			dep := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--query", "--references", top)))
			drvs := strings.Fields(string(testenv.Nix(t, "nix-instantiate", expr)))
			t.Cleanup(func() { testenv.DeleteWithReferrers(t, ia, top, dep) })
			local := map[string]string{}
			for _, o := range []string{ia, top} {
				local[o] = string(testenv.Nix(t, "nix", "log", o))
			}

			cmd := exec.Command(daemon, "--queue", qdir, "--to", url, "--secret-key", k.sec, "--exit-when-empty")
			cmd.Env = append(append(testenv.Environ("NIXCACHE_"), env...), "NIX_CONFIG="+os.Getenv("NIX_CONFIG"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("upload-daemon: %v\n%s", err, out)
			}
			for _, o := range []string{ia, top, dep} {
				if _, err := testenv.NixCmd("nix", "path-info", "--store", nixURL, o); err != nil {
					t.Errorf("%s is not in the cache: %v\nhook and build log:\n%s", o, err, stderr)
				}
			}
			if t.Failed() {
				t.FailNow()
			}
			if backend == "file" {
				for _, o := range []string{ia, top, dep} {
					hash, _, _ := strings.Cut(filepath.Base(o), "-")
					if _, err := os.Stat(filepath.Join(strings.TrimPrefix(nixURL, "file://"), hash+".ls")); err != nil {
						t.Errorf("no listing for %s: %v", o, err)
					}
				}
			}
			for _, o := range []string{ia, top} {
				hideLocalLog(t, o)
				remote, err := testenv.NixCmd("nix", "log", "--store", nixURL, o)
				if err != nil || string(remote) != local[o] {
					t.Errorf("nix log --store %s %s: %v\n%q\nwant (local)\n%q", nixURL, o, err, remote, local[o])
				}
			}

			// Another machine: the CA outputs gone (realisations with them).
			testenv.DeleteWithReferrers(t, top, dep)
			if out, err := testenv.NixCmd("nix-store", "--realise", drvs[1], "--option", "substituters", nixURL,
				"--option", "trusted-public-keys", k.pubText, "--max-jobs", "0"); err != nil {
				t.Fatalf("nix-store --realise %s --max-jobs 0 from the cache: %v\n%s", drvs[1], err, out)
			} else if got := strings.TrimSpace(string(out)); got != top {
				t.Fatalf("realised %s, want %s", got, top)
			}
		})
	}
}
