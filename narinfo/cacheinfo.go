package narinfo

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/nixcache/nixcache/storepath"
)

// CacheInfo is the content of a binary cache's nix-cache-info file.
type CacheInfo struct {
	// StoreDir is the store directory the cache serves; Nix refuses a cache
	// whose StoreDir differs from its own. "" means the line is absent.
	StoreDir storepath.Dir
	// WantMassQuery tells Nix it may query many paths at once (value "1").
	// Written only when true.
	WantMassQuery bool
	// Priority orders substituters, lower first (cache.nixos.org uses 40).
	// Written only when not 0.
	Priority int
}

// ParseCacheInfo parses nix-cache-info the way Nix does: each line is
// "Key: value", the value is trimmed of white space (so CRLF is tolerated),
// lines without ':' and unknown keys are ignored, WantMassQuery is true iff
// its value is "1". Unlike Nix, a Priority that is not an integer or a
// StoreDir that is not an absolute clean path is an error (Nix's stoi would
// throw or silently take a prefix).
func ParseCacheInfo(data []byte) (*CacheInfo, error) {
	ci := new(CacheInfo)
	line := 0
	for len(data) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			l, data = data, nil
		}
		key, val, ok := bytes.Cut(l, []byte{':'})
		if !ok {
			continue
		}
		v := strings.TrimSpace(string(val))
		perr := func(err error) error {
			return &ParseError{File: CacheInfoFile, Line: line, Key: string(key), Err: err}
		}
		switch string(key) {
		case "StoreDir":
			if err := storepath.ValidateDir(v); err != nil {
				return nil, perr(fmt.Errorf("%w: %w", ErrSyntax, err))
			}
			ci.StoreDir = storepath.Dir(v)
		case "WantMassQuery":
			ci.WantMassQuery = v == "1"
		case "Priority":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, perr(fmt.Errorf("%w: %q is not an integer", ErrSyntax, v))
			}
			ci.Priority = n
		}
	}
	return ci, nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseCacheInfo].
func (ci *CacheInfo) UnmarshalText(data []byte) error {
	v, err := ParseCacheInfo(data)
	if err != nil {
		return err
	}
	*ci = *v
	return nil
}

// MarshalText writes nix-cache-info. With only StoreDir set the output is
// exactly what Nix writes ("StoreDir: /nix/store\n"); WantMassQuery and
// Priority lines follow when set, each ending in "\n".
func (ci *CacheInfo) MarshalText() ([]byte, error) {
	var b []byte
	if ci.StoreDir != "" {
		d := string(ci.StoreDir)
		if err := storepath.ValidateDir(d); err != nil {
			return nil, fmt.Errorf("nix-cache-info: %w: StoreDir: %w", ErrInvalid, err)
		}
		b = append(b, "StoreDir: "...)
		b = append(b, d...)
		b = append(b, '\n')
	}
	if ci.WantMassQuery {
		b = append(b, "WantMassQuery: 1\n"...)
	}
	if ci.Priority != 0 {
		b = append(b, "Priority: "...)
		b = strconv.AppendInt(b, int64(ci.Priority), 10)
		b = append(b, '\n')
	}
	return b, nil
}
