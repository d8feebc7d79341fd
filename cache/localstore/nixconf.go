package localstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixcache/nixcache/nar"
)

// UseCaseHack returns the store's use-case-hack setting: whether Nix
// applies its case hack (see nar.DumpOptions.CaseHack) when it dumps the
// store's paths, and so whether their recorded NarHash is that of the
// hacked dump. It reads the setting as the nix-daemon (or root's Nix, with
// no daemon) does: $NIX_CONF_DIR/nix.conf (default /etc/nix/nix.conf, where
// nix-darwin writes it too), following include and !include, then the
// NIX_CONFIG variable, a later line winning; unset, it is Nix's default
// for the platform, nar.DefaultCaseHack (on for darwin only). Per-user
// nix.conf files are not read: the store's hashes are the daemon's. A value
// other than true or false is an error, as Nix refuses it.
func UseCaseHack(getenv func(string) string) (bool, error) {
	on := nar.DefaultCaseHack
	dir := getenv("NIX_CONF_DIR")
	if dir == "" {
		dir = "/etc/nix"
	}
	c := confReader{value: &on}
	if err := c.file(filepath.Join(dir, "nix.conf"), false, 0); err != nil {
		return on, err
	}
	if env := getenv("NIX_CONFIG"); env != "" {
		if err := c.apply(env, "NIX_CONFIG", "", 0); err != nil {
			return on, err
		}
	}
	return on, nil
}

// confReader applies nix.conf lines, keeping only use-case-hack.
type confReader struct{ value *bool }

const maxConfSize = 1 << 20

func (c confReader) file(path string, optional bool, depth int) error {
	if depth > 16 {
		return fmt.Errorf("localstore: nix.conf: %s: includes nested too deeply", path)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && (depth == 0 || optional) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("localstore: nix.conf: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("localstore: nix.conf: %s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfSize+1))
	if err != nil {
		return fmt.Errorf("localstore: nix.conf: %w", err)
	}
	if len(data) > maxConfSize {
		return fmt.Errorf("localstore: nix.conf: %s is larger than %d bytes", path, maxConfSize)
	}
	return c.apply(string(data), path, filepath.Dir(path), depth)
}

// apply reads nix.conf syntax as Nix does: '#' starts a comment, a line is
// "name = value" or "include FILE" / "!include FILE" (relative to dir; the
// '!' form ignores a missing file).
func (c confReader) apply(text, from, dir string, depth int) error {
	for n, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		tokens := strings.Fields(line)
		if len(tokens) == 0 {
			continue
		}
		if len(tokens) == 2 && (tokens[0] == "include" || tokens[0] == "!include") {
			p := tokens[1]
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			if err := c.file(p, tokens[0] == "!include", depth+1); err != nil {
				return err
			}
			continue
		}
		if len(tokens) < 2 || tokens[1] != "=" || tokens[0] != "use-case-hack" {
			continue
		}
		switch v := strings.Join(tokens[2:], " "); v {
		case "true":
			*c.value = true
		case "false":
			*c.value = false
		default:
			return fmt.Errorf("localstore: nix.conf: %s line %d: use-case-hack must be true or false, not %q", from, n+1, v)
		}
	}
	return nil
}
