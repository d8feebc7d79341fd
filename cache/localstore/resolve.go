package localstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixcache/nixcache/storepath"
)

// ErrNotInStore is returned (wrapped) by ResolveStorePath when an argument
// does not lead into the store directory.
var ErrNotInStore = errors.New("localstore: not in the Nix store")

// ResolveStorePath turns a command-line argument into the store path it
// denotes, as Nix's followLinksToStorePath does: symlinks outside the store
// (such as ./result) are followed one at a time until the path is inside
// dir, and a file inside a store path ("/nix/store/<hash>-x/bin/y") stands
// for that store path. Symlinks inside the store are not followed, so a
// store path that is itself a symlink is kept. It reads only the file
// system, not the store database: the path need not be valid.
func ResolveStorePath(dir storepath.Dir, arg string) (storepath.Path, error) {
	p, err := filepath.Abs(arg)
	if err != nil {
		return "", fmt.Errorf("localstore: %s: %w", arg, err)
	}
	prefix := strings.TrimSuffix(string(dir), "/") + "/"
	for range 40 {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			base, _, _ := strings.Cut(rest, "/")
			sp, err := dir.FromBase(base)
			if err != nil {
				return "", fmt.Errorf("localstore: %s: %w", arg, err)
			}
			return sp, nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("localstore: %s: %w", arg, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return "", fmt.Errorf("%w: %s (%s is not under %s)", ErrNotInStore, arg, p, dir)
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", fmt.Errorf("localstore: %s: %w", arg, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = filepath.Clean(target)
	}
	return "", fmt.Errorf("localstore: %s: too many levels of symbolic links", arg)
}
