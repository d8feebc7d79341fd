package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// TestRepairAndRotate (issue 10, proof 4), on file:// and on the S3 server:
// a pushed closure with one NAR truncated, one deleted and one narinfo
// garbled fails `nix store verify`; Repair from the local store makes Nix
// accept it again, and a second Repair writes nothing. Rotation: after
// Repair with SignWith NEW (trusting OLD), Nix trusting only NEW accepts
// every path and OLD's signature is still there; again, nothing changes. A
// damaged path the local store no longer has is reported as not repairable
// and left as it was.
func TestRepairAndRotate(t *testing.T) {
	for _, backend := range []string{"file", "s3"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			cl := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "nixcache-repair", N: 4, Blob: 100000})
			var closure []storepath.Path
			for _, p := range cl.Paths {
				closure = append(closure, mustPath(t, p))
			}
			top := mustPath(t, cl.Top)
			oldSec, oldPub := nixKey(t, "nixcache-old-1")
			newSec, newPub := nixKey(t, "nixcache-new-1")
			url, nixURL := zstdCache(t, backend, "repair")
			c, err := cache.Open(ctx, url+"&secret-key="+oldSec)
			if err != nil {
				t.Fatal(err)
			}
			store := openStore(t)
			if _, err := c.Push(ctx, store, []storepath.Path{top}, cache.PushOptions{}); err != nil {
				t.Fatal(err)
			}
			// A path pushed, then gone from the local store.
			goneCl := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "nixcache-gone", N: 1})
			gone := mustPath(t, goneCl.Top)
			if _, err := c.Push(ctx, store, []storepath.Path{gone}, cache.PushOptions{}); err != nil {
				t.Fatal(err)
			}
			testenv.Nix(t, "nix-store", "--delete", string(gone))
			nixVerify(t, nixURL, oldPub, closure)

			b := c.Backend
			get := func(key string) []byte { return cachetest.Read(t, b, key) }
			put := func(key string, data []byte) {
				t.Helper()
				if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data)), ""); err != nil {
					t.Fatal(err)
				}
			}
			narOf := func(p storepath.Path) string {
				ni, err := narinfo.Unmarshal(get(cache.NarInfoKey(p)))
				if err != nil {
					t.Fatal(err)
				}
				return ni.URL
			}
			// closure[1] also carries a signature by a key the store does
			// not have: its fresh narinfo must keep it.
			extraSec, _ := nixKey(t, "nixcache-extra-1")
			extra, err := signature.LoadSecretKeyFile(extraSec)
			if err != nil {
				t.Fatal(err)
			}
			if sum, err := c.Repair(ctx, closure[1:2], cache.RepairOptions{Verify: cache.VerifyOptions{TrustedKeys: mustPub(t, oldPub)}, SignWith: []signature.SecretKey{extra}}); err != nil || sum.Signed != 1 {
				t.Fatalf("sign with the extra key: %v, %v", sum, err)
			}
			truncated := narOf(closure[0])
			put(truncated, get(truncated)[:100])
			if err := b.Delete(ctx, narOf(closure[1])); err != nil {
				t.Fatal(err)
			}
			put(cache.NarInfoKey(closure[2]), []byte("StorePath: garbage\n"))
			// Same size, one bit off: the fresh NAR has the same name and
			// size, so only reading it back shows it must be rewritten.
			flipped := narOf(closure[3])
			data := get(flipped)
			data[len(data)/2] ^= 1
			put(flipped, data)
			goneNAR := narOf(gone)
			if err := b.Delete(ctx, goneNAR); err != nil {
				t.Fatal(err)
			}
			goneInfo := get(cache.NarInfoKey(gone))
			if code := testenv.NixStoreVerify(t, nixURL, oldPub, pathStrings(closure)...); code == 0 {
				t.Fatal("nix store verify accepts the damaged cache")
			}

			trusted := mustPub(t, oldPub)
			if _, err := c.Verify(ctx, nil, cache.VerifyOptions{TrustedKeys: trusted}); strings.Count(err.Error(), "\n") != 4 {
				t.Fatalf("Verify of the damaged cache: want 5 bad paths, got %v", err)
			}
			var results []cache.RepairResult
			sum, err := c.Repair(ctx, nil, cache.RepairOptions{
				Verify:   cache.VerifyOptions{TrustedKeys: trusted},
				Source:   store,
				Repaired: func(r cache.RepairResult) { results = append(results, r) },
			})
			for _, r := range results {
				t.Log(r)
			}
			if sum.Checked != 5 || sum.Bad != 5 || sum.Repaired != 4 || len(results) != 5 {
				t.Errorf("repair: %v", sum)
			}
			var pe *cache.PathError
			if !errors.Is(err, cache.ErrNotRepairable) || !errors.As(err, &pe) || pe.Path != gone || strings.Contains(err.Error(), "\n") {
				t.Fatalf("repair error: %v; want only %s not repairable", err, gone)
			}
			nixVerify(t, nixURL, oldPub, closure)
			if text := string(get(cache.NarInfoKey(closure[1]))); !strings.Contains(text, "Sig: nixcache-extra-1:") {
				t.Errorf("the repaired narinfo lost the signature by a key the store does not have:\n%s", text)
			}
			if narOf(closure[3]) != flipped {
				t.Errorf("the bit-flipped NAR %s was repaired under another name", flipped)
			}
			if !bytes.Equal(get(cache.NarInfoKey(gone)), goneInfo) {
				t.Error("the narinfo of the unrepairable path was changed")
			}

			// Idempotent: nothing written the second time.
			before := cachetest.Snapshot(t, b)
			sum, err = c.Repair(ctx, closure, cache.RepairOptions{Verify: cache.VerifyOptions{TrustedKeys: trusted}, Source: store})
			if err != nil || sum.Bad != 0 || sum.Repaired != 0 {
				t.Fatalf("second repair: %v, %v", sum, err)
			}
			if after := cachetest.Snapshot(t, b); after != before {
				t.Errorf("second repair changed the cache:\n%s\n---\n%s", before, after)
			}

			// Rotation.
			newKey, err := signature.LoadSecretKeyFile(newSec)
			if err != nil {
				t.Fatal(err)
			}
			if code := testenv.NixStoreVerify(t, nixURL, newPub, pathStrings(closure)...); code&2 == 0 {
				t.Fatalf("nix store verify trusting only NEW before rotation: exit %d, want untrusted", code)
			}
			for round := range 2 {
				sum, err = c.Repair(ctx, closure, cache.RepairOptions{Verify: cache.VerifyOptions{TrustedKeys: trusted}, SignWith: []signature.SecretKey{newKey}})
				if want := []int{4, 0}[round]; err != nil || sum.Signed != want || sum.NotSigned != 0 {
					t.Fatalf("rotation round %d: %v, %v; want %d signed", round+1, sum, err, want)
				}
			}
			nixVerify(t, nixURL, newPub, closure)
			nixVerify(t, nixURL, oldPub, closure)
			for _, p := range closure {
				text := string(get(cache.NarInfoKey(p)))
				if strings.Count(text, "Sig: nixcache-new-1:") != 1 || strings.Count(text, "Sig: nixcache-old-1:") != 1 {
					t.Errorf("%s after rotation:\n%s", p, text)
				}
			}
			// The gone path's narinfo still verifies: it is signed, though
			// its NAR is missing and the path stays bad.
			sum, err = c.Repair(ctx, []storepath.Path{gone}, cache.RepairOptions{Verify: cache.VerifyOptions{TrustedKeys: trusted}, SignWith: []signature.SecretKey{newKey}})
			if !errors.Is(err, cache.ErrNotFound) || sum.Signed != 1 || sum.Bad != 1 {
				t.Errorf("rotation of a path with its NAR missing: %v, %v", sum, err)
			}
			// A narinfo that does not verify with the trusted keys is not signed.
			other := testenv.NixKeyPair(t, "nixcache-other-1")
			sum, err = c.Repair(ctx, closure, cache.RepairOptions{Verify: cache.VerifyOptions{TrustedKeys: mustPub(t, other.Public)}, SignWith: []signature.SecretKey{newKey}})
			if !errors.Is(err, signature.ErrUntrusted) || sum.NotSigned != 4 || sum.Signed != 0 {
				t.Errorf("rotation with an untrusting key: %v, %v", sum, err)
			}
		})
	}
}

// TestRepairWhilePushing: Repair and a Push of the same path at once (a
// concurrent pusher publishing it too) leave a cache Nix accepts, and at no
// instant a narinfo whose NAR is missing or of the wrong size, or whose
// references are missing (CheckConsistency polled all along).
func TestRepairWhilePushing(t *testing.T) {
	ctx := context.Background()
	top, closure := buildClosure(t)
	sec, pub := nixKey(t, "nixcache-race-1")
	dir := t.TempDir()
	url := "file://" + dir + "?compression=zstd&secret-key=" + sec
	repairer, err := cache.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	pusher, err := cache.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	store := openStore(t)
	if _, err := pusher.Push(ctx, store, []storepath.Path{top}, cache.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	b := pusher.Backend
	for round := range 3 {
		// Damage that keeps the cache consistent: top's narinfo gone, one
		// byte of the middle path's NAR changed (same size).
		if err := b.Delete(ctx, cache.NarInfoKey(top)); err != nil {
			t.Fatal(err)
		}
		ni, err := narinfo.Unmarshal(cachetest.Read(t, b, cache.NarInfoKey(closure[1])))
		if err != nil {
			t.Fatal(err)
		}
		data := cachetest.Read(t, b, ni.URL)
		data[len(data)/2] ^= 1
		if err := b.Put(ctx, ni.URL, bytes.NewReader(data), int64(len(data)), ""); err != nil {
			t.Fatal(err)
		}
		checkConsistent(t, pusher)

		done := make(chan struct{})
		checked := make(chan int)
		go func() {
			n := 0
			for {
				select {
				case <-done:
					checked <- n
					return
				default:
				}
				if err := pusher.CheckConsistency(ctx); err != nil {
					t.Errorf("round %d: inconsistent while repairing and pushing: %v", round, err)
				}
				n++
			}
		}()
		var repairErr, pushErr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, repairErr = repairer.Repair(ctx, closure, cache.RepairOptions{Verify: cache.VerifyOptions{TrustedKeys: mustPub(t, pub)}, Source: store})
		}()
		go func() {
			defer wg.Done()
			_, pushErr = pusher.Push(ctx, store, []storepath.Path{top}, cache.PushOptions{})
		}()
		wg.Wait()
		close(done)
		t.Logf("round %d: %d consistency checks while both ran", round, <-checked)
		if repairErr != nil || pushErr != nil {
			t.Fatalf("round %d: repair: %v; push: %v", round, repairErr, pushErr)
		}
		if _, err := repairer.Verify(ctx, nil, cache.VerifyOptions{TrustedKeys: mustPub(t, pub)}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	nixVerify(t, "file://"+dir, pub, closure)
}

// TestRepairReferenceMissing: a path whose reference's narinfo is gone is
// bad for Verify (Nix could not substitute its closure, and `nix store
// verify` of the closure fails); Repair uploads the reference again from
// the local store and Nix accepts the closure.
func TestRepairReferenceMissing(t *testing.T) {
	ctx := context.Background()
	_, closure := buildClosure(t)
	sec, pub := nixKey(t, "nixcache-refs-1")
	dir := t.TempDir()
	c, err := cache.Open(ctx, "file://"+dir+"?compression=zstd&secret-key="+sec)
	if err != nil {
		t.Fatal(err)
	}
	store := openStore(t)
	if _, err := c.Push(ctx, store, closure[2:], cache.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Backend.Delete(ctx, cache.NarInfoKey(closure[0])); err != nil {
		t.Fatal(err)
	}
	if code := testenv.NixStoreVerify(t, "file://"+dir, pub, pathStrings(closure)...); code == 0 {
		t.Fatal("nix store verify accepts a closure with a narinfo missing")
	}
	trusted := mustPub(t, pub)
	if _, err := c.Verify(ctx, nil, cache.VerifyOptions{TrustedKeys: trusted}); !errors.Is(err, cache.ErrReferenceMissing) {
		t.Fatalf("Verify: %v, want ErrReferenceMissing", err)
	}
	sum, err := c.Repair(ctx, nil, cache.RepairOptions{Verify: cache.VerifyOptions{TrustedKeys: trusted}, Source: store})
	if err != nil || sum.Bad != 2 || sum.Repaired != 2 {
		t.Fatalf("Repair: %v, %v", sum, err)
	}
	nixVerify(t, "file://"+dir, pub, closure)
	checkConsistent(t, c)
}

// TestRepairWithUpstream: with Verify.Upstream, a reference upstream serves
// is not uploaded by Repair, and a bad path of ours is uploaded again even
// when the store holds an upstream signature for it (the skip rules of Push
// never apply to the path being repaired).
func TestRepairWithUpstream(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource(t)
	base, mid, top := chain(t, src)
	upSK, upPK, _ := upstreamKeys(t)
	up, _ := upstreamCache(t, src, upSK, base)
	c, ourPK, dir := ourCache(t)
	upKeys := []signature.PublicKey{upPK}
	if sum, err := c.Push(ctx, src, []storepath.Path{top}, cache.PushOptions{SkipSignedBy: upKeys, Upstream: up}); err != nil || sum.Uploaded != 2 {
		t.Fatalf("push: %+v, %v", sum, err)
	}
	signInfo(t, src, mid, upSK)
	ni, err := narinfo.Unmarshal(cachetest.Read(t, c.Backend, cache.NarInfoKey(mid)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Backend.Delete(ctx, ni.URL); err != nil {
		t.Fatal(err)
	}
	vopts := cache.VerifyOptions{TrustedKeys: []signature.PublicKey{ourPK}, Upstream: up, UpstreamKeys: upKeys}
	sum, err := c.Repair(ctx, nil, cache.RepairOptions{Verify: vopts, Source: src})
	if err != nil || sum.Bad != 1 || sum.Repaired != 1 {
		t.Fatalf("repair: %v, %v", sum, err)
	}
	want := []string{cache.NarInfoKey(mid), cache.NarInfoKey(top)}
	slices.Sort(want)
	if got := narinfoKeys(t, dir); !slices.Equal(got, want) {
		t.Errorf("narinfos after repair: %v, want %v (base stays upstream's)", got, want)
	}
	if _, err := c.Verify(ctx, nil, vopts); err != nil {
		t.Fatal(err)
	}
}

// narReadFails is a Backend whose reads of NAR files fail (a server
// answering 500 for a while), counting the NAR files written.
type narReadFails struct {
	cache.Backend
	mu   sync.Mutex
	puts []string
}

var errNarRead = errors.New("read refused for the test")

func (b *narReadFails) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if strings.HasPrefix(key, "nar/") {
		return nil, errNarRead
	}
	return b.Backend.Get(ctx, key)
}

func (b *narReadFails) Put(ctx context.Context, key string, r io.Reader, size int64, ct string) error {
	if strings.HasPrefix(key, "nar/") {
		b.mu.Lock()
		b.puts = append(b.puts, key)
		b.mu.Unlock()
	}
	return b.Backend.Put(ctx, key, r, size, ct)
}

// TestRepairReadErrorNoReupload: Repair reads a NAR file of the right name
// and size back to compare its hash; when that read fails (not a missing
// object, an error), the path is reported with that error and the NAR file
// is not uploaded again as if its contents were wrong.
func TestRepairReadErrorNoReupload(t *testing.T) {
	ctx := context.Background()
	b, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src := newFakeSource(t)
	p := src.MustAdd(t, "repair-read-error", nil, nil)
	if _, err := cache.New(b, cache.Options{}).Push(ctx, src, []storepath.Path{p}, cache.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	bad := []byte("StorePath: garbage\n")
	if err := b.Put(ctx, cache.NarInfoKey(p), bytes.NewReader(bad), int64(len(bad)), ""); err != nil {
		t.Fatal(err)
	}
	fb := &narReadFails{Backend: b}
	var results []cache.RepairResult
	_, err = cache.New(fb, cache.Options{}).Repair(ctx, []storepath.Path{p}, cache.RepairOptions{
		Source:   src,
		Repaired: func(r cache.RepairResult) { results = append(results, r) },
	})
	if len(fb.puts) != 0 {
		t.Errorf("NAR files uploaded again after a failed read: %v", fb.puts)
	}
	if len(results) != 1 || !errors.Is(results[0].Err, errNarRead) || !errors.Is(err, errNarRead) {
		t.Errorf("repair: %v, results %v; want the read error reported", err, results)
	}
}

// signSetup returns an empty file:// backend and a fake store for the
// signing tests.
func signSetup(t *testing.T) (cache.Backend, *fakeSource) {
	t.Helper()
	b, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b, newFakeSource(t)
}

// genKey generates a signing key pair.
func genKey(t *testing.T, name string) (signature.SecretKey, signature.PublicKey) {
	t.Helper()
	sk, pk, err := signature.GenerateKey(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sk, pk
}

// countGets counts the reads of each key; before, when set, runs ahead of
// each read with the key's read number (from 1).
type countGets struct {
	cache.Backend
	mu     sync.Mutex
	gets   map[string]int
	before func(ctx context.Context, key string, n int) error
}

func (b *countGets) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	b.mu.Lock()
	b.gets[key]++
	n := b.gets[key]
	b.mu.Unlock()
	if b.before != nil {
		if err := b.before(ctx, key, n); err != nil {
			return nil, err
		}
	}
	return b.Backend.Get(ctx, key)
}

// TestRepairSignReadsNarInfoTwice: key rotation (Repair with SignWith)
// reads each narinfo twice, Verify's read and the read right before the
// write that checks nothing changed it meanwhile, and once when it is
// already signed. A narinfo whose text is not the one this package writes
// (fields in another order, which Nix accepts) is signed too, from the text
// read again: three reads. Every narinfo then verifies with the new key
// alone.
func TestRepairSignReadsNarInfoTwice(t *testing.T) {
	ctx := context.Background()
	b, src := signSetup(t)
	oldKey, oldPub := genKey(t, "repair-old-1")
	newKey, newPub := genKey(t, "repair-new-1")
	leaf := src.MustAdd(t, "sign-leaf", nil, map[string][]byte{"f": []byte("leaf")})
	mid := src.MustAdd(t, "sign-mid", []storepath.Path{leaf}, map[string][]byte{"f": []byte("mid")})
	top := src.MustAdd(t, "sign-top", []storepath.Path{mid, leaf}, map[string][]byte{"f": []byte("top")})
	if _, err := cache.New(b, cache.Options{SecretKeys: []signature.SecretKey{oldKey}}).Push(ctx, src, []storepath.Path{top}, cache.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	// mid's narinfo with NarSize before NarHash.
	midKey := cache.NarInfoKey(mid)
	text := string(cachetest.Read(t, b, midKey))
	lines := strings.Split(text, "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "NarHash: ") })
	if i < 0 || !strings.HasPrefix(lines[i+1], "NarSize: ") {
		t.Fatalf("unexpected narinfo:\n%s", text)
	}
	lines[i], lines[i+1] = lines[i+1], lines[i]
	reordered := strings.Join(lines, "\n")
	if err := b.Put(ctx, midKey, strings.NewReader(reordered), int64(len(reordered)), narinfo.MIMEType); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{cache.NarInfoKey(leaf): 2, midKey: 3, cache.NarInfoKey(top): 2}

	sign := func() (*cache.RepairSummary, map[string]int) {
		t.Helper()
		cb := &countGets{Backend: b, gets: map[string]int{}}
		sum, err := cache.New(cb, cache.Options{}).Repair(ctx, nil, cache.RepairOptions{
			Verify:   cache.VerifyOptions{TrustedKeys: []signature.PublicKey{oldPub}},
			SignWith: []signature.SecretKey{newKey},
		})
		if err != nil {
			t.Fatalf("Repair with SignWith: %v", err)
		}
		got := map[string]int{}
		for k, n := range cb.gets {
			if strings.HasSuffix(k, ".narinfo") {
				got[k] = n
			}
		}
		return sum, got
	}
	sum, got := sign()
	if sum.Signed != 3 || !maps.Equal(got, want) {
		t.Errorf("first rotation: %v; narinfo reads %v, want %v", sum, got, want)
	}
	if _, err := cache.New(b, cache.Options{}).Verify(ctx, nil, cache.VerifyOptions{TrustedKeys: []signature.PublicKey{newPub}}); err != nil {
		t.Errorf("after the rotation, the new key alone: %v", err)
	}
	for k := range want {
		want[k] = 1
	}
	if sum, got := sign(); sum.Signed != 0 || !maps.Equal(got, want) {
		t.Errorf("second rotation: %v; narinfo reads %v, want %v", sum, got, want)
	}
}

// TestRepairSignConcurrentChange: a narinfo replaced between Verify's read
// and the signing's write (here by one carrying a third signature) is not
// overwritten by the signed old text: the signature goes onto the new text,
// which keeps the third one.
func TestRepairSignConcurrentChange(t *testing.T) {
	ctx := context.Background()
	b, src := signSetup(t)
	oldKey, oldPub := genKey(t, "change-old-1")
	newKey, newPub := genKey(t, "change-new-1")
	thirdKey, thirdPub := genKey(t, "change-third-1")
	p := src.MustAdd(t, "sign-change", nil, map[string][]byte{"f": []byte("change")})
	if _, err := cache.New(b, cache.Options{SecretKeys: []signature.SecretKey{oldKey}}).Push(ctx, src, []storepath.Path{p}, cache.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	key := cache.NarInfoKey(p)
	ni, err := narinfo.Unmarshal(cachetest.Read(t, b, key))
	if err != nil {
		t.Fatal(err)
	}
	if err := ni.Sign(thirdKey); err != nil {
		t.Fatal(err)
	}
	third, err := ni.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	// A concurrent push replaces the narinfo just before its second read.
	cb := &countGets{Backend: b, gets: map[string]int{}, before: func(ctx context.Context, k string, n int) error {
		if k != key || n != 2 {
			return nil
		}
		return b.Put(ctx, key, bytes.NewReader(third), int64(len(third)), narinfo.MIMEType)
	}}
	sum, err := cache.New(cb, cache.Options{}).Repair(ctx, nil, cache.RepairOptions{
		Verify:   cache.VerifyOptions{TrustedKeys: []signature.PublicKey{oldPub}},
		SignWith: []signature.SecretKey{newKey},
	})
	if err != nil || sum.Signed != 1 {
		t.Fatalf("Repair with SignWith: %v, %v", sum, err)
	}
	got, err := narinfo.Unmarshal(cachetest.Read(t, b, key))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []signature.PublicKey{oldPub, thirdPub, newPub} {
		if err := got.Verify([]signature.PublicKey{k}); err != nil {
			t.Errorf("signature by %s: %v", k.Name(), err)
		}
	}
	if n := cb.gets[key]; n != 3 {
		t.Errorf("%d reads of the narinfo, want 3 (Verify's, the one that found the change, the one before the write)", n)
	}
}
