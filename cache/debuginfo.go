package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nixcache/nixcache/nar"
)

// DebugInfo is the JSON of a "debuginfo/<build-id>" object: the NAR holding
// an ELF debug file ("../nar/<filehash>.nar.zst", relative to the object)
// and the file's path inside it ("lib/debug/.build-id/ab/cdef….debug").
// Tools such as dwarffs fetch debug symbols by build ID through it.
type DebugInfo struct {
	Archive string `json:"archive"`
	Member  string `json:"member"`
}

// DebugInfoKeys returns, for a NAR listing, the debug files Nix's
// index-debug-info links (BinaryCacheStore::addToStoreCommon): each regular
// file lib/debug/.build-id/XX/Y….debug, where XX is 2 and Y… 38 lowercase
// hex digits, keyed "debuginfo/XXY….debug" (the key keeps ".debug", as
// Nix's does) and mapped to its member path.
func DebugInfoKeys(l *nar.Listing) map[string]string {
	out := map[string]string{}
	n := l.Root
	for _, name := range []string{"lib", "debug", ".build-id"} {
		if n == nil || n.Type != nar.TypeDirectory {
			return out
		}
		n = n.Entries[name]
	}
	if n == nil || n.Type != nar.TypeDirectory {
		return out
	}
	for s1, d := range n.Entries {
		if d.Type != nar.TypeDirectory || len(s1) != 2 || !isLowerHex(s1) {
			continue
		}
		for s2, f := range d.Entries {
			id, ok := strings.CutSuffix(s2, ".debug")
			if f.Type != nar.TypeRegular || !ok || len(id) != 38 || !isLowerHex(id) {
				continue
			}
			out["debuginfo/"+s1+s2] = "lib/debug/.build-id/" + s1 + "/" + s2
		}
	}
	return out
}

func isLowerHex(s string) bool { return strings.Trim(s, "0123456789abcdef") == "" }

// putDebugInfo stores the debuginfo links of a NAR stored at narURL,
// keeping existing ones (as Nix does).
func (c *Cache) putDebugInfo(ctx context.Context, l *nar.Listing, narURL string) error {
	if l == nil {
		return nil
	}
	links := DebugInfoKeys(l)
	keys := make([]string, 0, len(links))
	for k := range links {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		if _, err := c.Backend.Stat(ctx, key); err == nil {
			continue
		} else if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("stat %s: %w", key, err)
		}
		data, err := json.Marshal(DebugInfo{Archive: "../" + narURL, Member: links[key]})
		if err != nil {
			return err
		}
		if err := c.Backend.Put(ctx, key, bytes.NewReader(data), int64(len(data)), "application/json"); err != nil {
			return fmt.Errorf("upload %s: %w", key, err)
		}
	}
	return nil
}
