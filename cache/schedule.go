package cache

import (
	"sort"

	"github.com/nixcache/nixcache/storepath"
)

// levelWeight is what one level of referrers waiting on a path counts for,
// in NAR bytes, when Push orders its uploads: about what a job compresses
// in the time of one durable narinfo commit (a directory fsync, about a
// millisecond, on cache/file).
const levelWeight = 256 << 10

// criticalFirst orders the paths to upload so that the longest chains of
// work start first. A path's own work grows with its NarSize; and every
// narinfo of the push that refers to it, directly or through others, is
// published after its narinfo, one durable commit per level. So a path's
// priority is its NarSize plus levelWeight for each level of referrers
// above it in the push: a chain of small paths (each referring to the one
// before) starts at its bottom, whose narinfo all the others wait for,
// while a NAR far larger than the chain still starts first. Ties keep the
// closure's order (references before referrers).
func criticalFirst(missing []*pushItem) {
	byPath := make(map[storepath.Path]*pushItem, len(missing))
	for _, it := range missing {
		byPath[it.path] = it
	}
	referrers := make(map[*pushItem][]*pushItem, len(missing))
	for _, it := range missing {
		for _, ref := range it.info.References {
			if dep, ok := byPath[ref]; ok && dep != it {
				referrers[dep] = append(referrers[dep], it)
			}
		}
	}
	// height is the longest chain of referrers above a path, computed
	// without recursion (closures can be thousands of levels deep):
	// a path's height is known once all its referrers' are.
	height := make(map[*pushItem]int, len(missing))
	pending := make(map[*pushItem]int, len(missing)) // referrers not yet done
	var ready []*pushItem
	for _, it := range missing {
		pending[it] = len(referrers[it])
		if pending[it] == 0 {
			ready = append(ready, it)
		}
	}
	for len(ready) > 0 {
		it := ready[len(ready)-1]
		ready = ready[:len(ready)-1]
		for _, ref := range it.info.References {
			dep, ok := byPath[ref]
			if !ok || dep == it {
				continue
			}
			height[dep] = max(height[dep], height[it]+1)
			if pending[dep]--; pending[dep] == 0 {
				ready = append(ready, dep)
			}
		}
	}
	key := func(it *pushItem) uint64 { return it.info.NarSize + uint64(height[it])*levelWeight }
	sort.SliceStable(missing, func(i, j int) bool { return key(missing[i]) > key(missing[j]) })
}
