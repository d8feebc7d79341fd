package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
)

// Objects returns the objects TestReader serves: a nix-cache-info, a
// narinfo, an empty object, a NAR of 100,000 bytes and one of LargeSize
// bytes, and "dir/obj" (so that "dir" is a prefix, not an object).
func Objects() map[string][]byte {
	return map[string][]byte{
		"nix-cache-info": []byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n"),
		"0hhb51h788j6gmjd8j9c6jrk34fji2cq.narinfo": []byte("StorePath: /nix/store/0hhb51h788j6gmjd8j9c6jrk34fji2cq-y\n"),
		"empty": nil,
		"nar/0qk0rv9dk5vfdxb91cq2298y6g818wmqi9xvnnnppqw5iba8azdj.nar.zst": Data(1, 100000),
		"nar/large.nar.zst": Data(42, LargeSize),
		"dir/obj":           []byte("x"),
	}
}

// TestReader runs the read side of the conformance suite, for every
// backend and in particular for read-only ones (http://, https://).
// newBackend must return a backend that holds exactly Objects(); it is
// called once per subtest. Every operation on an invalid key must fail
// with an error wrapping cache.ErrInvalidKey. A backend that cannot list must fail List with
// an error wrapping cache.ErrNotSupported; a backend that cannot write must
// fail Put and Delete with an error wrapping cache.ErrReadOnly and leave
// the object as it was.
func TestReader(t *testing.T, newBackend func(t *testing.T) cache.Backend) {
	objects := Objects()
	t.Run("GetStat", func(t *testing.T) {
		b := newBackend(t)
		for key, data := range objects {
			checkObject(t, b, key, data)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		b := newBackend(t)
		for _, key := range []string{"nosuch.narinfo", "nar/nosuch.nar.zst", "dir", "nar"} {
			checkMissing(t, b, key)
		}
	})
	t.Run("InvalidKeys", func(t *testing.T) { testInvalidKeys(t, newBackend(t)) })
	t.Run("List", func(t *testing.T) {
		b := newBackend(t)
		keys, ok := tryListKeys(t, b, "")
		if !ok {
			return
		}
		want := slices.Sorted(maps.Keys(objects))
		if !slices.Equal(keys, want) {
			t.Fatalf("List = %q, want %q", keys, want)
		}
	})
	t.Run("ReadOnly", func(t *testing.T) {
		b := newBackend(t)
		ctx := context.Background()
		key := "nix-cache-info"
		err := b.Put(ctx, key, bytes.NewReader([]byte("changed")), 7, "text/plain")
		if err == nil {
			return // a writable backend: TestBackend checks its writes
		}
		if !errors.Is(err, cache.ErrReadOnly) {
			t.Fatalf("Put error = %v, want nil or ErrReadOnly", err)
		}
		if err := b.Delete(ctx, key); !errors.Is(err, cache.ErrReadOnly) {
			t.Fatalf("Delete on a read-only backend: error %v, want ErrReadOnly", err)
		}
		checkObject(t, b, key, objects[key])
	})
	t.Run("Concurrent", func(t *testing.T) {
		b := newBackend(t)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := "nar/0qk0rv9dk5vfdxb91cq2298y6g818wmqi9xvnnnppqw5iba8azdj.nar.zst"
				if i%2 == 1 {
					key = "nix-cache-info"
				}
				rc, err := b.Get(context.Background(), key)
				if err != nil {
					errs <- err
					return
				}
				defer rc.Close()
				got, err := io.ReadAll(rc)
				if err != nil || !bytes.Equal(got, objects[key]) {
					errs <- fmt.Errorf("read %q: %d bytes, err %v", key, len(got), err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	t.Run("Cancel", func(t *testing.T) {
		b := newBackend(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.Stat(ctx, "nix-cache-info"); !errors.Is(err, context.Canceled) {
			t.Errorf("Stat with cancelled context: error %v, want context.Canceled", err)
		}
		if rc, err := b.Get(ctx, "nix-cache-info"); err == nil {
			// A backend may open before it looks at ctx; reading must fail.
			_, err = io.ReadAll(rc)
			rc.Close()
			if err == nil {
				t.Errorf("Get with cancelled context read the object")
			}
		}
		// Cancelled mid-read: the read fails soon.
		ctx, cancel = context.WithCancel(context.Background())
		defer cancel()
		rc, err := b.Get(ctx, "nar/large.nar.zst")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if _, err := io.ReadFull(rc, make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		cancel()
		start := time.Now()
		if _, err := io.Copy(io.Discard, rc); err == nil {
			t.Logf("read of a local object finished despite cancellation (buffered)")
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("read took %v after cancellation", d)
		}
	})
}

var invalidKeys = []string{"", "/abs", "a//b", "../x", "a/../b", "./a", "a/.", "a\\b", "a\x00b", "nar/"}

// tryListKeys lists like listKeys; ok is false when the backend cannot
// list (an error wrapping cache.ErrNotSupported).
func tryListKeys(t *testing.T, b cache.Backend, prefix string) (keys []string, ok bool) {
	t.Helper()
	err := b.List(context.Background(), prefix, func(oi cache.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if errors.Is(err, cache.ErrNotSupported) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	sort.Strings(keys)
	return keys, true
}
