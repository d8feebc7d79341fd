package localstore

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/storepath"
)

// PathFromHashPart returns the valid path whose hash part (the 32 nix32
// characters before the first dash of its base name) is hashPart, as Nix's
// queryPathFromHashPart: a narinfo's key is "<hash part>.narinfo", so this is
// how a narinfo that cannot be read is mapped back to its store path. It
// fails with an error wrapping ErrNotValid when no valid path has that hash
// part. It looks for "<dir>/<hashPart>-*" on disk, then asks the store
// which of those is valid.
func (s *Store) PathFromHashPart(ctx context.Context, hashPart string) (storepath.Path, error) {
	if err := storepath.ValidateBase(hashPart + "-x"); err != nil || len(hashPart) != storepath.HashPartLen {
		return "", fmt.Errorf("localstore: %q is not a store path hash part", hashPart)
	}
	matches, err := filepath.Glob(filepath.Join(string(s.dir), hashPart+"-*"))
	if err != nil {
		return "", fmt.Errorf("localstore: %w", err)
	}
	var cands []storepath.Path
	for _, m := range matches {
		if p, err := s.dir.Parse(m); err == nil {
			cands = append(cands, p)
		}
	}
	if len(cands) > 0 {
		valid, err := s.src.pathInfos(ctx, cands)
		if err != nil {
			return "", err
		}
		for _, p := range cands {
			if _, ok := valid[p]; ok {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("localstore: no valid path with hash part %s: %w", hashPart, ErrNotValid)
}

var _ cache.HashPartSource = (*Store)(nil)
