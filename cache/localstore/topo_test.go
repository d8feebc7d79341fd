package localstore

import (
	"errors"
	"slices"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/storepath"
)

func TestTopoSortRules(t *testing.T) {
	p := func(c byte, name string) storepath.Path {
		h := make([]byte, storepath.HashPartLen)
		for i := range h {
			h[i] = c
		}
		return storepath.Path("/nix/store/" + string(h) + "-" + name)
	}
	a, b, c, d := p('a', "a"), p('b', "b"), p('c', "c"), p('d', "d")
	graph := func(edges map[storepath.Path][]storepath.Path) map[storepath.Path]*PathInfo {
		m := make(map[storepath.Path]*PathInfo)
		for from, to := range edges {
			m[from] = &PathInfo{PathInfo: cache.PathInfo{Path: from, References: sortRefs(slices.Clone(to))}}
		}
		return m
	}
	tests := []struct {
		name    string
		roots   []storepath.Path
		edges   map[storepath.Path][]storepath.Path
		want    []storepath.Path
		wantErr error
	}{
		{"single", []storepath.Path{a}, map[storepath.Path][]storepath.Path{a: nil}, []storepath.Path{a}, nil},
		{"self reference", []storepath.Path{a}, map[storepath.Path][]storepath.Path{a: {a}}, []storepath.Path{a}, nil},
		{"chain", []storepath.Path{c}, map[storepath.Path][]storepath.Path{c: {b, c}, b: {a}, a: {a}}, []storepath.Path{a, b, c}, nil},
		{"diamond", []storepath.Path{d}, map[storepath.Path][]storepath.Path{d: {b, c}, b: {a}, c: {a}, a: nil}, []storepath.Path{a, b, c, d}, nil},
		{"roots in any order", []storepath.Path{d, a, d}, map[storepath.Path][]storepath.Path{d: {b, c}, b: {a}, c: {a}, a: nil}, []storepath.Path{a, b, c, d}, nil},
		{"cycle", []storepath.Path{a}, map[storepath.Path][]storepath.Path{a: {b}, b: {a}}, nil, ErrCycle},
		{"missing reference", []storepath.Path{a}, map[storepath.Path][]storepath.Path{a: {b}}, nil, ErrNotValid},
		{"missing root", []storepath.Path{a}, map[storepath.Path][]storepath.Path{}, nil, ErrNotValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			infos, err := topoSort(tt.roots, graph(tt.edges))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []storepath.Path
			for _, pi := range infos {
				got = append(got, pi.Path)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("order %v, want %v", got, tt.want)
			}
		})
	}
}
