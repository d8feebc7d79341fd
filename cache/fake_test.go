package cache_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/nar"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixbase32"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// fakeSource is a Source over a temporary "store" directory, for tests of
// the pipeline's own rules (mismatch refusal, cancellation) and benchmarks.
type fakeSource struct {
	dir   storepath.Dir
	infos map[storepath.Path]*cache.PathInfo
	order []storepath.Path
}

func newFakeSource(t testing.TB) *fakeSource {
	return &fakeSource{dir: storepath.Dir(t.TempDir()), infos: map[storepath.Path]*cache.PathInfo{}}
}

// add creates a store path holding files (name -> contents; a default file
// if nil) that references refs, and records its NAR hash and size.
func (f *fakeSource) add(t testing.TB, name string, refs []storepath.Path, files map[string][]byte) storepath.Path {
	t.Helper()
	d := sha256.Sum256([]byte(string(f.dir) + name))
	p, err := f.dir.FromBase(nixbase32.EncodeToString(d[:20]) + "-" + name)
	if err != nil {
		t.Fatal(err)
	}
	if files == nil {
		files = map[string][]byte{"file": []byte("contents of " + name + "\n")}
	}
	for rel, data := range files {
		full := filepath.Join(string(p), rel)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := nixhash.NewHasher(nixhash.SHA256)
	if err := nar.DumpPath(h, string(p)); err != nil {
		t.Fatal(err)
	}
	f.infos[p] = &cache.PathInfo{Path: p, NarHash: h.SumHash(), NarSize: uint64(h.Len()), References: refs}
	f.order = append(f.order, p)
	return p
}

func (f *fakeSource) QueryPathInfo(_ context.Context, p storepath.Path) (*cache.PathInfo, error) {
	info, ok := f.infos[p]
	if !ok {
		return nil, fmt.Errorf("%s: not a valid path", p)
	}
	cp := *info
	return &cp, nil
}

// Closure returns every path added before and including the requested ones
// that they reach, in insertion order (references are added first).
func (f *fakeSource) Closure(_ context.Context, paths []storepath.Path) ([]storepath.Path, error) {
	want := map[storepath.Path]bool{}
	var visit func(p storepath.Path) error
	visit = func(p storepath.Path) error {
		if want[p] {
			return nil
		}
		info, ok := f.infos[p]
		if !ok {
			return fmt.Errorf("%s: not a valid path", p)
		}
		want[p] = true
		for _, r := range info.References {
			if err := visit(r); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range paths {
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	var out []storepath.Path
	for _, p := range f.order {
		if want[p] {
			out = append(out, p)
		}
	}
	return out, nil
}

func mustPub(t testing.TB, s string) []signature.PublicKey {
	t.Helper()
	k, err := signature.ParsePublicKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return []signature.PublicKey{k}
}
