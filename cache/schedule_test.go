package cache_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/storepath"
)

// TestPushStartsChainsAtTheBottom: with one job, the order in which Push
// starts the NARs of a chain of small paths (each referring to the one
// before; the bottom one the smallest) is bottom first, since every
// narinfo above waits for it, while a NAR larger than the chain's levels
// are worth (levelWeight each) starts before them all. Before, the order
// was largest first, which started the chain's bottom last.
func TestPushStartsChainsAtTheBottom(t *testing.T) {
	src := newFakeSource(t)
	var chain []storepath.Path
	var prev []storepath.Path
	for i := range 6 {
		files := map[string][]byte{"f": []byte(strings.Repeat("x", 10*i))}
		p := src.MustAdd(t, fmt.Sprintf("chain%d", i), prev, files)
		chain = append(chain, p)
		prev = []storepath.Path{p}
	}
	big := src.MustAdd(t, "big", []storepath.Path{chain[5]}, map[string][]byte{"f": make([]byte, 4<<20)})
	c, err := cache.Open(context.Background(), "file://"+t.TempDir()+"?compression=zstd")
	if err != nil {
		t.Fatal(err)
	}
	var started []storepath.Path
	_, err = c.Push(context.Background(), src, []storepath.Path{big}, cache.PushOptions{Jobs: 1, Progress: func(e cache.Event) {
		if e.Kind == cache.EventStarted {
			started = append(started, e.Path)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]storepath.Path{big}, chain...)
	if fmt.Sprint(started) != fmt.Sprint(want) {
		t.Errorf("started\n%v\nwant\n%v", started, want)
	}
}
