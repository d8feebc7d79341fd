package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// caFeatures turns on content-addressed derivations for one Nix command.
var caFeatures = []string{"--extra-experimental-features", "nix-command ca-derivations"}

// caBuild is a floating content-addressed derivation (top) depending on
// another (dep), built with real Nix: the expression file and its argument,
// the top derivation as evaluated (not resolved) and both outputs.
type caBuild struct {
	file, nonce string
	drv         storepath.Path
	top, dep    storepath.Path
}

func (b caBuild) fileArgs() []string { return []string{"--file", b.file, "--argstr", "nonce", b.nonce} }

func buildCA(t *testing.T) caBuild {
	t.Helper()
	testenv.RequireNix(t)
	dir := t.TempDir()
	b := caBuild{file: filepath.Join(dir, "ca.nix"), nonce: testenv.Nonce()}
	expr := `{ nonce }:
let mk = name: script: derivation { inherit name; system = builtins.currentSystem; builder = "/bin/sh";
  PATH = "/usr/bin:/bin"; args = ["-c" script]; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; };
  dep = mk "nixcache-cadep" "echo building dep ${nonce}; echo dep-${nonce} > $out";
in mk "nixcache-catop" "echo building top; echo ${dep} > $out"
`
	if err := os.WriteFile(b.file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, caFeatures...), "--option", "substituters", "", "--no-out-link", b.file, "--argstr", "nonce", b.nonce)
	b.top = mustPath(t, strings.TrimSpace(string(testenv.Nix(t, "nix-build", args...))))
	b.dep = mustPath(t, strings.TrimSpace(readFile(t, string(b.top))))
	b.drv = mustPath(t, strings.TrimSpace(string(testenv.Nix(t, "nix-instantiate", append(append([]string{}, caFeatures...), b.file, "--argstr", "nonce", b.nonce)...))))
	t.Cleanup(func() { deleteCA(t, b) })
	return b
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// deleteCA deletes both outputs and what refers to them, so the store is
// as clean as another machine's; the evaluated .drv files stay.
func deleteCA(t *testing.T, b caBuild) {
	t.Helper()
	testenv.DeleteWithReferrers(t, string(b.top), string(b.dep))
}

// copyFrom deletes b's outputs and runs `nix copy --from` the cache at
// from, trusting only the key trusted. It checks the realisations'
// signatures (Nix 2.8's --realise checks only the narinfos'), and it
// evaluates the expression against the source store and writes the .drv
// files there: possible on file:// only (over HTTP the cache is read-only).
func (b caBuild) copyFrom(t *testing.T, from, trusted string) error {
	t.Helper()
	deleteCA(t, b)
	_, err := testenv.NixCmd("nix", append(append(append([]string{}, caFeatures...), "copy", "--from", from, "--to", "auto",
		"--option", "trusted-public-keys", trusted), b.fileArgs()...)...)
	return err
}

// realise deletes b's outputs and substitutes its derivation from the
// cache at nixURL with --max-jobs 0 (no build), trusting only trusted; it
// returns what nix-store --realise printed.
func (b caBuild) realise(t *testing.T, nixURL, trusted string) ([]byte, error) {
	t.Helper()
	deleteCA(t, b)
	return testenv.NixCmd("nix-store", append(append([]string{}, caFeatures[:2]...), "--realise", string(b.drv),
		"--option", "substituters", nixURL, "--option", "trusted-public-keys", trusted, "--max-jobs", "0")...)
}

// TestPushRealisationsCA (issue 14, realisations): pushing the output of a
// floating content-addressed derivation publishes its realisations after
// the narinfos, as `nix copy` writes them (byte for byte but for our
// signature); from our cache Nix 2.8 then substitutes the derivation into
// a store without its outputs with --max-jobs 0 (no build), and `nix copy
// --from` our cache registers the realisations when our key is trusted and
// refuses them ("lacks a valid signature") when another key is (file://
// only: nix copy --from writes the .drv files into the source store).
// Substitution is judged on file:// and on the S3 server over HTTP.
func TestPushRealisationsCA(t *testing.T) {
	for _, backend := range []string{"file", "s3"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			b := buildCA(t)
			sec, pub := nixKey(t, "nixcache-ca-1")
			_, otherPub := nixKey(t, "nixcache-ca-1") // same name, other key
			url, nixURL := zstdCache(t, backend, "realisations")

			c, err := cache.Open(ctx, url+"&secret-key="+sec)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := c.Push(ctx, openStore(t), []storepath.Path{b.top}, cache.PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Realisations < 2 {
				t.Fatalf("Summary.Realisations = %d, want at least 2 (dep and top)", sum.Realisations)
			}

			if backend == "file" {
				verifyExtras(t, c, b, pub)
			}

			// What nix copy writes for the same derivation.
			nixDir := t.TempDir()
			testenv.Nix(t, "nix", append(append(append([]string{}, caFeatures...), "copy", "--to", "file://"+nixDir), b.fileArgs()...)...)
			docs, _ := filepath.Glob(filepath.Join(nixDir, "realisations", "*.doi"))
			if len(docs) != 2 {
				t.Fatalf("nix copy wrote %d realisations, want 2", len(docs))
			}
			unsigned := regexp.MustCompile(`"signatures":\[[^]]*\]`)
			for _, f := range docs {
				key := "realisations/" + filepath.Base(f)
				ours := cachetest.Read(t, c.Backend, key)
				if !strings.Contains(string(ours), "nixcache-ca-1:") {
					t.Errorf("%s is not signed by us: %s", key, ours)
				}
				if got, want := unsigned.ReplaceAllString(string(ours), `"signatures":[]`), readFile(t, f); got != want {
					t.Errorf("%s:\n got %s\nwant %s (nix copy)", key, got, want)
				}
			}

			if backend == "file" {
				if err := b.copyFrom(t, nixURL, otherPub); err == nil || !strings.Contains(err.Error(), "lacks a valid signature") {
					t.Fatalf("nix copy --from our cache trusting another key: %v, want a refused realisation", err)
				}
			}
			if out, err := b.realise(t, nixURL, pub); err != nil {
				t.Fatalf("nix-store --realise %s --max-jobs 0 from our cache: %v\n%s", b.drv, err, out)
			} else if got := strings.TrimSpace(string(out)); got != string(b.top) {
				t.Fatalf("realised %s, want %s", got, b.top)
			}
			if backend == "file" {
				if err := b.copyFrom(t, nixURL, pub); err != nil {
					t.Fatalf("nix copy --from our cache trusting our key: %v", err)
				}
				for _, p := range []storepath.Path{b.top, b.dep} {
					if _, err := os.Lstat(string(p)); err != nil {
						t.Fatalf("%s not copied back: %v", p, err)
					}
				}
			}
		})
	}
}

// verifyExtras: Verify of the whole cache accepts our realisations, and
// reports one re-signed by an untrusted key, one whose output's narinfo is
// gone, and a log not named after a derivation; nothing else.
func verifyExtras(t *testing.T, c *cache.Cache, b caBuild, pub string) {
	t.Helper()
	ctx := context.Background()
	keys := func(s ...string) []signature.PublicKey {
		var out []signature.PublicKey
		for _, k := range s {
			pk, err := signature.ParsePublicKey(k)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, pk)
		}
		return out
	}
	bad := func() map[storepath.Path]error {
		got := map[storepath.Path]error{}
		_, err := c.Verify(ctx, nil, cache.VerifyOptions{TrustedKeys: keys(pub), Result: func(p storepath.Path, err error) {
			if err != nil {
				got[p] = err
			}
		}})
		if (err == nil) != (len(got) == 0) {
			t.Fatalf("Verify: %v with %d bad", err, len(got))
		}
		return got
	}
	if got := bad(); len(got) != 0 {
		t.Fatalf("Verify of a good cache: %v", got)
	}
	var docs []string
	if err := c.Backend.List(ctx, "realisations/", func(oi cache.ObjectInfo) error { docs = append(docs, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	var topDoc string
	for _, key := range docs {
		r, err := cache.ParseRealisation(cachetest.Read(t, c.Backend, key), storepath.DefaultDir)
		if err != nil {
			t.Fatal(err)
		}
		if r.OutPath == b.top {
			topDoc = key
		}
	}
	orig := cachetest.Read(t, c.Backend, topDoc)
	r, _ := cache.ParseRealisation(orig, storepath.DefaultDir)
	otherSec, _ := nixKey(t, "nixcache-ca-1")
	sk, err := signature.LoadSecretKeyFile(otherSec)
	if err != nil {
		t.Fatal(err)
	}
	r.Signatures = nil
	r.Sign(sk)
	forged, _ := r.MarshalJSON()
	put := func(key string, data []byte) {
		t.Helper()
		if err := c.Backend.Put(ctx, key, bytes.NewReader(data), int64(len(data)), ""); err != nil {
			t.Fatal(err)
		}
	}
	put(topDoc, forged)
	put("log/not-a-derivation", []byte("x"))
	got := bad()
	if !errors.Is(got[b.top], signature.ErrUntrusted) || !errors.Is(got[""], cache.ErrBadLog) || len(got) != 2 {
		t.Fatalf("Verify after forging %s and adding a bad log: %v", topDoc, got)
	}
	if sum, err := c.Repair(ctx, nil, cache.RepairOptions{Verify: cache.VerifyOptions{TrustedKeys: keys(pub)}}); sum.Bad != 2 || !errors.Is(err, signature.ErrUntrusted) || !errors.Is(err, cache.ErrBadLog) {
		t.Fatalf("Repair (verify --repair) must report what Verify does: %v, %v", sum, err)
	}
	// Rotation leaves the forged realisation as it is, reported once.
	rotSec, _ := nixKey(t, "nixcache-ca-rot-1")
	rot, err := signature.LoadSecretKeyFile(rotSec)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.Repair(ctx, nil, cache.RepairOptions{Verify: cache.VerifyOptions{TrustedKeys: keys(pub)}, SignWith: []signature.SecretKey{rot}})
	if sum.NotSigned != 1 || sum.Bad != 2 || !errors.Is(err, cache.ErrBadLog) || strings.Count(fmt.Sprint(err), "has no valid signature") != 1 {
		t.Fatalf("Repair with SignWith beside a forged realisation: %v, %v; want it not signed and reported once", sum, err)
	}
	if data := cachetest.Read(t, c.Backend, topDoc); !bytes.Equal(data, forged) {
		t.Fatalf("Repair with SignWith rewrote the forged %s: %s", topDoc, data)
	}
	put(topDoc, orig)
	if err := c.Backend.Delete(ctx, "log/not-a-derivation"); err != nil {
		t.Fatal(err)
	}
	ni := cachetest.Read(t, c.Backend, cache.NarInfoKey(b.dep))
	if err := c.Backend.Delete(ctx, cache.NarInfoKey(b.dep)); err != nil {
		t.Fatal(err)
	}
	got = bad()
	if !errors.Is(got[b.dep], cache.ErrReferenceMissing) || !errors.Is(got[b.top], cache.ErrReferenceMissing) {
		t.Fatalf("Verify without %s's narinfo: %v", b.dep, got)
	}
	put(cache.NarInfoKey(b.dep), ni)
	if got := bad(); len(got) != 0 {
		t.Fatalf("Verify after restoring: %v", got)
	}
}

// TestRotateRealisations (key rotation with content-addressed derivations):
// after a push signed by OLD, a Repair of the two output paths with
// SignWith NEW signs their narinfos but not the realisations, and `nix copy
// --from` trusting only NEW refuses them ("lacks a valid signature"). A
// Repair of the whole cache signs the realisations too, keeping OLD's
// signatures and changing nothing else; nix copy --from trusting only NEW
// then registers them, Nix substitutes the derivation with --max-jobs 0
// trusting either key alone, and one more Repair changes nothing. Nix
// judges copy --from on file:// (it writes .drv files into the source
// store), substitution on file:// and on the S3 server over HTTP.
func TestRotateRealisations(t *testing.T) {
	for _, backend := range []string{"file", "s3"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			b := buildCA(t)
			oldSec, oldPub := nixKey(t, "nixcache-ca-old-1")
			newSec, newPub := nixKey(t, "nixcache-ca-new-1")
			url, nixURL := zstdCache(t, backend, "rotate-ca")
			c, err := cache.Open(ctx, url+"&secret-key="+oldSec)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Push(ctx, openStore(t), []storepath.Path{b.top}, cache.PushOptions{}); err != nil {
				t.Fatal(err)
			}
			newKey, err := signature.LoadSecretKeyFile(newSec)
			if err != nil {
				t.Fatal(err)
			}
			opts := cache.RepairOptions{Verify: cache.VerifyOptions{TrustedKeys: mustPub(t, oldPub)}, SignWith: []signature.SecretKey{newKey}}
			docs := func() map[string][]byte {
				t.Helper()
				got := map[string][]byte{}
				if err := c.Backend.List(ctx, "realisations/", func(oi cache.ObjectInfo) error {
					got[oi.Key] = cachetest.Read(t, c.Backend, oi.Key)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if len(got) < 2 {
					t.Fatalf("%d realisations in the cache, want at least 2 (dep and top)", len(got))
				}
				return got
			}
			sum, err := c.Repair(ctx, []storepath.Path{b.top, b.dep}, opts)
			if err != nil || sum.Signed != 2 {
				t.Fatalf("Repair of the two paths with SignWith: %v, %v; want 2 narinfos signed", sum, err)
			}
			before := docs()
			for key, data := range before {
				if strings.Contains(string(data), "nixcache-ca-new-1:") {
					t.Fatalf("%s signed by NEW by a Repair of paths: %s", key, data)
				}
			}
			if backend == "file" {
				// From a copy: the .drv files it writes must not be in the
				// cache the whole-cache Repair checks next.
				snapshot := filepath.Join(t.TempDir(), "cache")
				if err := os.CopyFS(snapshot, os.DirFS(strings.TrimPrefix(nixURL, "file://"))); err != nil {
					t.Fatal(err)
				}
				if err := b.copyFrom(t, "file://"+snapshot, newPub); err == nil || !strings.Contains(err.Error(), "lacks a valid signature") {
					t.Fatalf("nix copy --from trusting only NEW before the realisations were signed: %v, want a refused realisation", err)
				}
			}

			var (
				mu     sync.Mutex
				signed []string
			)
			opts.Signed = func(p storepath.Path, key string, changed bool, err error) { // from several goroutines
				if strings.HasPrefix(key, "realisations/") {
					if err != nil || !changed || (p != b.top && p != b.dep) {
						t.Errorf("Signed(%s, %s, %v, %v)", p, key, changed, err)
					}
					mu.Lock()
					signed = append(signed, key)
					mu.Unlock()
				}
			}
			sum, err = c.Repair(ctx, nil, opts)
			if err != nil || sum.Signed != len(before) || sum.NotSigned != 0 || sum.Bad != 0 || len(signed) != len(before) {
				t.Fatalf("Repair of the whole cache with SignWith: %v, %v, realisations reported %v; want the %d realisations signed", sum, err, signed, len(before))
			}
			for key, data := range docs() {
				r, err := cache.ParseRealisation(data, storepath.DefaultDir)
				if err != nil {
					t.Fatal(err)
				}
				if r.Verify(mustPub(t, newPub)) != nil || r.Verify(mustPub(t, oldPub)) != nil || len(r.Signatures) != 2 {
					t.Fatalf("%s after rotation: %s, want OLD's and NEW's signatures", key, data)
				}
				old, err := cache.ParseRealisation(before[key], storepath.DefaultDir)
				if err != nil {
					t.Fatal(err)
				}
				if r.Fingerprint() != old.Fingerprint() {
					t.Fatalf("%s changed beyond its signatures:\n%s\nwas\n%s", key, data, before[key])
				}
			}
			for _, pub := range []string{newPub, oldPub} {
				if out, err := b.realise(t, nixURL, pub); err != nil {
					t.Fatalf("nix-store --realise %s --max-jobs 0 trusting only %s: %v\n%s", b.drv, pub, err, out)
				} else if got := strings.TrimSpace(string(out)); got != string(b.top) {
					t.Fatalf("realised %s, want %s", got, b.top)
				}
			}
			opts.Signed = nil
			after := docs()
			if sum, err := c.Repair(ctx, nil, opts); err != nil || sum.Signed != 0 || sum.NotSigned != 0 {
				t.Fatalf("Repair again: %v, %v; want nothing signed", sum, err)
			}
			for key, data := range docs() {
				if !bytes.Equal(data, after[key]) {
					t.Fatalf("%s rewritten by a Repair with nothing to sign", key)
				}
			}
			if backend == "file" {
				if err := b.copyFrom(t, nixURL, newPub); err != nil {
					t.Fatalf("nix copy --from trusting only NEW after rotation: %v", err)
				}
			}
		})
	}
}
