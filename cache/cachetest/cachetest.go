// Package cachetest is the conformance suite every cache.Backend must pass:
// the contract of cache.Backend (atomic, all-or-nothing Put of exactly size
// bytes, ErrNotFound, listing by prefix, concurrency, cancellation) checked
// the same way against each implementation; and Source, the store of test
// paths that push tests without Nix share.
package cachetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
)

// LargeSize is the size of the large objects TestBackend writes: more than
// the 16 MiB default S3 part size, so that multipart paths run.
const LargeSize = 17<<20 + 12345

// TestBackend runs the conformance suite. newBackend must return an empty
// backend; it is called once per subtest.
func TestBackend(t *testing.T, newBackend func(t *testing.T) cache.Backend) {
	t.Run("PutGetStat", func(t *testing.T) { testPutGetStat(t, newBackend(t)) })
	t.Run("Empty", func(t *testing.T) { testEmpty(t, newBackend(t)) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, newBackend(t)) })
	t.Run("Overwrite", func(t *testing.T) { testOverwrite(t, newBackend(t)) })
	t.Run("ShortReader", func(t *testing.T) { testShort(t, newBackend(t)) })
	t.Run("LongReader", func(t *testing.T) { testLong(t, newBackend(t)) })
	t.Run("ReaderError", func(t *testing.T) { testReaderError(t, newBackend(t)) })
	t.Run("InvalidKeys", func(t *testing.T) { testInvalidKeys(t, newBackend(t)) })
	t.Run("List", func(t *testing.T) { testList(t, newBackend(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newBackend(t)) })
	t.Run("TouchMove", func(t *testing.T) { testTouchMove(t, newBackend(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newBackend(t)) })
	t.Run("Cancel", func(t *testing.T) { testCancel(t, newBackend(t)) })
	t.Run("LargeReaderAt", func(t *testing.T) { testLarge(t, newBackend(t), true) })
	t.Run("LargePlainReader", func(t *testing.T) { testLarge(t, newBackend(t), false) })
}

// Data returns n deterministic pseudo-random bytes for seed.
func Data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// plainReader hides every method but Read (no ReaderAt, no Seeker, no WriterTo).
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

// Plain wraps b in a reader with only a Read method.
func Plain(b []byte) io.Reader { return plainReader{bytes.NewReader(b)} }

func put(t *testing.T, b cache.Backend, key string, data []byte) {
	t.Helper()
	if err := b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), "application/octet-stream"); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

// Read returns the whole object at key, failing the test on error.
func Read(t testing.TB, b cache.Backend, key string) []byte {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	return data
}

// Snapshot lists every object of b, sorted, each with its size and
// sha256: two equal snapshots show that nothing was written in between.
func Snapshot(t testing.TB, b cache.Backend) string {
	t.Helper()
	var lines []string
	err := b.List(context.Background(), "", func(oi cache.ObjectInfo) error {
		lines = append(lines, fmt.Sprintf("%s %d %x", oi.Key, oi.Size, sha256.Sum256(Read(t, b, oi.Key))))
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func checkObject(t *testing.T, b cache.Backend, key string, want []byte) {
	t.Helper()
	got := Read(t, b, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes sha256 %x, want %d bytes sha256 %x", key, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
	st, err := b.Stat(context.Background(), key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if st.Key != key || st.Size != int64(len(want)) {
		t.Fatalf("Stat(%q) = %+v, want key %q size %d", key, st, key, len(want))
	}
}

func checkMissing(t *testing.T, b cache.Backend, key string) {
	t.Helper()
	ctx := context.Background()
	if _, err := b.Stat(ctx, key); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Stat(%q) error = %v, want ErrNotFound", key, err)
	}
	rc, err := b.Get(ctx, key)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get(%q) error = %v, want ErrNotFound", key, err)
	}
	if keys, _ := tryListKeys(t, b, ""); slices.Contains(keys, key) {
		t.Fatalf("List shows %q, which should not exist (all: %q)", key, keys)
	}
}

func listKeys(t *testing.T, b cache.Backend, prefix string) []string {
	t.Helper()
	var keys []string
	err := b.List(context.Background(), prefix, func(oi cache.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	sort.Strings(keys)
	return keys
}

func testPutGetStat(t *testing.T, b cache.Backend) {
	data := []byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n")
	put(t, b, "nix-cache-info", data)
	checkObject(t, b, "nix-cache-info", data)
	nar := Data(1, 100000)
	key := "nar/0qk0rv9dk5vfdxb91cq2298y6g818wmqi9xvnnnppqw5iba8azdj.nar.zst"
	if err := b.Put(context.Background(), key, Plain(nar), int64(len(nar)), "application/x-nix-nar"); err != nil {
		t.Fatalf("Put plain reader: %v", err)
	}
	checkObject(t, b, key, nar)
	st, _ := b.Stat(context.Background(), key)
	if !st.ModTime.IsZero() && time.Since(st.ModTime) > time.Hour {
		t.Errorf("Stat(%q).ModTime = %v, not recent", key, st.ModTime)
	}
}

func testEmpty(t *testing.T, b cache.Backend) {
	put(t, b, "empty", nil)
	checkObject(t, b, "empty", nil)
}

func testNotFound(t *testing.T, b cache.Backend) {
	checkMissing(t, b, "nosuch.narinfo")
	checkMissing(t, b, "nar/nosuch.nar.zst")
	if err := b.Delete(context.Background(), "nosuch.narinfo"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Delete(missing) error = %v, want ErrNotFound", err)
	}
	// A "directory" is not an object.
	put(t, b, "dir/obj", []byte("x"))
	checkMissing(t, b, "dir")
}

func testOverwrite(t *testing.T, b cache.Backend) {
	put(t, b, "k.narinfo", []byte("first version, longer than the second"))
	put(t, b, "k.narinfo", []byte("second"))
	checkObject(t, b, "k.narinfo", []byte("second"))
	if keys := listKeys(t, b, ""); !slices.Equal(keys, []string{"k.narinfo"}) {
		t.Fatalf("List after overwrite = %q, want [k.narinfo]", keys)
	}
}

func testShort(t *testing.T, b cache.Backend) {
	ctx := context.Background()
	for _, size := range []int{10, 1 << 20, LargeSize} {
		for _, plain := range []bool{true, false} {
			data := Data(uint64(size), size)
			var r io.Reader = bytes.NewReader(data[:size-1])
			if plain {
				r = Plain(data[:size-1])
			}
			key := fmt.Sprintf("short-%d-%v", size, plain)
			err := b.Put(ctx, key, r, int64(size), "application/x-nix-nar")
			if err == nil {
				t.Fatalf("Put(%q) with %d of %d bytes succeeded", key, size-1, size)
			}
			if !errors.Is(err, cache.ErrSizeMismatch) {
				t.Errorf("Put(%q) short reader error = %v, want ErrSizeMismatch", key, err)
			}
			checkMissing(t, b, key)
		}
	}
	// A failed overwrite keeps the old object.
	put(t, b, "keep", []byte("old"))
	if err := b.Put(ctx, "keep", Plain([]byte("ne")), 3, "text/plain"); err == nil {
		t.Fatal("short overwrite succeeded")
	}
	checkObject(t, b, "keep", []byte("old"))
}

func testLong(t *testing.T, b cache.Backend) {
	ctx := context.Background()
	for _, size := range []int{0, 10, 1 << 20, LargeSize} {
		for _, plain := range []bool{true, false} {
			data := Data(uint64(size)+7, size+1)
			var r io.Reader = bytes.NewReader(data)
			if plain {
				r = Plain(data)
			}
			key := fmt.Sprintf("long-%d-%v", size, plain)
			err := b.Put(ctx, key, r, int64(size), "application/x-nix-nar")
			if err == nil {
				t.Fatalf("Put(%q) with %d bytes for size %d succeeded", key, size+1, size)
			}
			if !errors.Is(err, cache.ErrSizeMismatch) {
				t.Fatalf("Put(%q) long reader error = %v, want ErrSizeMismatch", key, err)
			}
			checkMissing(t, b, key)
		}
	}
}

type errReader struct {
	n   int
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	if e.n == 0 {
		return 0, e.err
	}
	n := min(len(p), e.n)
	clear(p[:n])
	e.n -= n
	return n, nil
}

func testReaderError(t *testing.T, b cache.Backend) {
	boom := errors.New("boom: disk read failed")
	for _, size := range []int{100, LargeSize} {
		key := fmt.Sprintf("rerr-%d", size)
		err := b.Put(context.Background(), key, &errReader{n: size / 2, err: boom}, int64(size), "application/x-nix-nar")
		if err == nil {
			t.Fatalf("Put(%q) with failing reader succeeded", key)
		}
		checkMissing(t, b, key)
	}
}

func testInvalidKeys(t *testing.T, b cache.Backend) {
	ctx := context.Background()
	before, _ := tryListKeys(t, b, "")
	for _, key := range invalidKeys {
		if err := b.Put(ctx, key, bytes.NewReader([]byte("x")), 1, "text/plain"); !errors.Is(err, cache.ErrInvalidKey) {
			t.Errorf("Put(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if _, err := b.Stat(ctx, key); !errors.Is(err, cache.ErrInvalidKey) {
			t.Errorf("Stat(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if rc, err := b.Get(ctx, key); !errors.Is(err, cache.ErrInvalidKey) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if err := b.Delete(ctx, key); !errors.Is(err, cache.ErrInvalidKey) {
			t.Errorf("Delete(%q) error = %v, want ErrInvalidKey", key, err)
		}
	}
	if keys, _ := tryListKeys(t, b, ""); !slices.Equal(keys, before) {
		t.Fatalf("invalid puts left objects: %q", keys)
	}
}

func testList(t *testing.T, b cache.Backend) {
	keys := []string{"nix-cache-info", "aaa.narinfo", "aab.narinfo", "bbb.narinfo", "nar/x1.nar.zst", "nar/x2.nar.xz", "nar/y1.nar", "log/abc-foo.drv"}
	sizes := map[string]int64{}
	for i, k := range keys {
		put(t, b, k, Data(uint64(i), i*10))
		sizes[k] = int64(i * 10)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", keys},
		{"nar/", []string{"nar/x1.nar.zst", "nar/x2.nar.xz", "nar/y1.nar"}},
		{"nar/x", []string{"nar/x1.nar.zst", "nar/x2.nar.xz"}},
		{"aa", []string{"aaa.narinfo", "aab.narinfo"}},
		{"n", []string{"nar/x1.nar.zst", "nar/x2.nar.xz", "nar/y1.nar", "nix-cache-info"}},
		{"zzz", nil},
		{"nosuchdir/", nil},
	}
	for _, tt := range tests {
		want := slices.Clone(tt.want)
		sort.Strings(want)
		if got := listKeys(t, b, tt.prefix); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", tt.prefix, got, want)
		}
	}
	err := b.List(context.Background(), "", func(oi cache.ObjectInfo) error {
		if oi.Size != sizes[oi.Key] {
			t.Errorf("List: %q size %d, want %d", oi.Key, oi.Size, sizes[oi.Key])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop here")
	calls := 0
	err = b.List(context.Background(), "", func(cache.ObjectInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("List with failing fn: err %v after %d calls, want the fn's error after 1", err, calls)
	}
}

func testDelete(t *testing.T, b cache.Backend) {
	put(t, b, "nar/a.nar", []byte("a"))
	put(t, b, "nar/b.nar", []byte("b"))
	if err := b.Delete(context.Background(), "nar/a.nar"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	checkMissing(t, b, "nar/a.nar")
	checkObject(t, b, "nar/b.nar", []byte("b"))
	if err := b.Delete(context.Background(), "nar/a.nar"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("second Delete error = %v, want ErrNotFound", err)
	}
}

func testConcurrent(t *testing.T, b cache.Backend) {
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	versions := make([][]byte, n)
	for i := range n {
		versions[i] = Data(uint64(1000+i), 64<<10)
	}
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			d := Data(uint64(i), 1000+i)
			key := fmt.Sprintf("c/%d", i)
			if err := b.Put(context.Background(), key, bytes.NewReader(d), int64(len(d)), "text/plain"); err != nil {
				errs <- err
				return
			}
			rc, err := b.Get(context.Background(), key)
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(got, d) {
				errs <- fmt.Errorf("read back %q: %d bytes, err %v", key, len(got), err)
			}
		}()
		go func() {
			// Everyone writes the same key: the result must be one whole version.
			defer wg.Done()
			if err := b.Put(context.Background(), "same", bytes.NewReader(versions[i]), int64(len(versions[i])), "text/plain"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := Read(t, b, "same")
	if !slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, got) }) {
		t.Fatalf("concurrent writes to one key left %d bytes matching no writer", len(got))
	}
	if keys := listKeys(t, b, "c/"); len(keys) != n {
		t.Fatalf("List(c/) = %q, want %d keys", keys, n)
	}
}

// cancelReader cancels its context after handing out the first part of data.
type cancelReader struct {
	r      io.Reader
	after  int
	n      int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

func testCancel(t *testing.T, b cache.Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Put(ctx, "pre", bytes.NewReader([]byte("x")), 1, "text/plain"); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with cancelled context: error %v, want context.Canceled", err)
	}
	if _, err := b.Stat(ctx, "pre"); err == nil {
		t.Errorf("Stat with cancelled context succeeded")
	}
	checkMissing(t, b, "pre")
	for _, size := range []int{1 << 20, LargeSize} {
		ctx, cancel := context.WithCancel(context.Background())
		data := Data(9, size)
		key := fmt.Sprintf("mid-%d", size)
		r := &cancelReader{r: bytes.NewReader(data), after: size / 3, cancel: cancel}
		start := time.Now()
		err := b.Put(ctx, key, r, int64(size), "application/x-nix-nar")
		cancel()
		if err == nil {
			t.Fatalf("Put(%q) cancelled mid-way succeeded", key)
		}
		if !errors.Is(err, context.Canceled) {
			t.Logf("Put(%q) cancelled mid-way: error does not wrap context.Canceled: %v", key, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Put(%q) took %v to notice cancellation", key, d)
		}
		checkMissing(t, b, key)
	}
}

func testLarge(t *testing.T, b cache.Backend, readerAt bool) {
	data := Data(42, LargeSize)
	var r io.Reader = bytes.NewReader(data)
	if !readerAt {
		r = Plain(data)
	}
	key := "nar/large.nar.zst"
	if err := b.Put(context.Background(), key, r, int64(len(data)), "application/x-nix-nar"); err != nil {
		t.Fatalf("Put(%d bytes): %v", len(data), err)
	}
	checkObject(t, b, key, data)
}

// testTouchMove checks the optional Toucher and Mover: a touch renews
// ModTime and keeps the bytes, and never creates a missing object; a move
// renames (replacing the target), and a missing source is ErrNotFound.
func testTouchMove(t *testing.T, b cache.Backend) {
	ctx := context.Background()
	data := Data(7, 1000)
	put(t, b, "a/x", data)
	if tb, ok := b.(cache.Toucher); ok {
		before, err := b.Stat(ctx, "a/x")
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for { // until the backend's clock (S3: whole seconds) moves on
			err := tb.Touch(ctx, "a/x")
			if errors.Is(err, cache.ErrTouchUnsupported) {
				t.Logf("Touch: %v", err)
				break
			}
			if err != nil {
				t.Fatalf("Touch: %v", err)
			}
			after, err := b.Stat(ctx, "a/x")
			if err != nil {
				t.Fatal(err)
			}
			if after.ModTime.After(before.ModTime) {
				break
			}
			if time.Now().After(deadline) { // older than 2 s: Touch must have said so
				t.Fatalf("Touch did not renew ModTime %v", before.ModTime)
			}
			time.Sleep(100 * time.Millisecond)
		}
		checkObject(t, b, "a/x", data)
		if err := tb.Touch(ctx, "a/missing"); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Touch of a missing object: %v, want ErrNotFound", err)
		}
		checkMissing(t, b, "a/missing")
	}
	if mb, ok := b.(cache.Mover); ok {
		put(t, b, "b/y", []byte("old"))
		if err := mb.Move(ctx, "a/x", "b/y"); err != nil {
			t.Fatalf("Move: %v", err)
		}
		checkObject(t, b, "b/y", data)
		checkMissing(t, b, "a/x")
		if err := mb.Move(ctx, "a/x", "c/z"); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Move of a missing object: %v, want ErrNotFound", err)
		}
		checkMissing(t, b, "c/z")
	}
}
