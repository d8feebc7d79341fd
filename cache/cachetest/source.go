package cachetest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/nar"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixbase32"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// Source is a cache.Source of store paths that Add makes in a directory
// standing for the store, for tests of pushes without Nix: it knows what
// Add recorded (the NAR hash and size from nar.DumpPath, the references it
// was given) and nothing else.
type Source struct {
	// Dir is the store directory.
	Dir storepath.Dir
	// Infos holds each added path's info; tests may change them (a
	// database that disagrees with the disk).
	Infos map[storepath.Path]*cache.PathInfo
	// Order lists the added paths in the order of Add: references first.
	Order []storepath.Path
}

// NewSource returns an empty Source on the store directory dir.
func NewSource(dir string) *Source {
	return &Source{Dir: storepath.Dir(dir), Infos: map[storepath.Path]*cache.PathInfo{}}
}

// Add makes and records the store path name, referring to refs. Its hash
// part is derived from the store directory and the name, so the same name
// in the same directory makes the same path. The path is a directory
// holding files (relative name -> contents), by default one file naming it.
func (s *Source) Add(name string, refs []storepath.Path, files map[string][]byte) (storepath.Path, error) {
	d := sha256.Sum256([]byte(string(s.Dir) + name))
	p, err := s.Dir.FromBase(nixbase32.EncodeToString(d[:20]) + "-" + name)
	if err != nil {
		return "", err
	}
	if files == nil {
		files = map[string][]byte{"file": []byte("contents of " + name + "\n")}
	}
	for rel, data := range files {
		full := filepath.Join(string(p), rel)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			return "", err
		}
	}
	h := nixhash.NewHasher(nixhash.SHA256)
	if err := nar.DumpPath(h, string(p)); err != nil {
		return "", err
	}
	s.Infos[p] = &cache.PathInfo{Path: p, NarHash: h.SumHash(), NarSize: uint64(h.Len()), References: refs}
	s.Order = append(s.Order, p)
	return p, nil
}

// MustAdd is Add that fails the test on error.
func (s *Source) MustAdd(t testing.TB, name string, refs []storepath.Path, files map[string][]byte) storepath.Path {
	t.Helper()
	p, err := s.Add(name, refs, files)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// QueryPathInfo returns a copy of p's recorded info.
func (s *Source) QueryPathInfo(_ context.Context, p storepath.Path) (*cache.PathInfo, error) {
	info, ok := s.Infos[p]
	if !ok {
		return nil, fmt.Errorf("%s: not a valid path", p)
	}
	cp := *info
	return &cp, nil
}

// Closure returns every added path that paths reach through references,
// themselves included, in the order they were added (references first).
func (s *Source) Closure(_ context.Context, paths []storepath.Path) ([]storepath.Path, error) {
	want := map[storepath.Path]bool{}
	var visit func(p storepath.Path) error
	visit = func(p storepath.Path) error {
		if want[p] {
			return nil
		}
		info, ok := s.Infos[p]
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
	for _, p := range s.Order {
		if want[p] {
			out = append(out, p)
		}
	}
	return out, nil
}
