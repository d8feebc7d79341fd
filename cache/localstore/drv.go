package localstore

import (
	"io"

	"github.com/nixcache/nixcache/cache/localstore/drv"
	"github.com/nixcache/nixcache/storepath"
)

// ReadDerivationOutputs reads the outputs of the store derivation file at
// path (a .drv), without reading past its outputs list.
//
// Deprecated: use [drv.ReadOutputs], which does not link the database
// driver; this wrapper is kept for existing callers.
func ReadDerivationOutputs(path string) (map[string]storepath.Path, error) {
	return drv.ReadOutputs(path)
}

// ParseDerivationOutputs parses the outputs list at the start of a store
// derivation in Nix's ATerm form. Its errors wrap ErrBadDerivation.
//
// Deprecated: use [drv.ParseOutputs]; this wrapper is kept for existing
// callers.
func ParseDerivationOutputs(r io.Reader) (map[string]storepath.Path, error) {
	return drv.ParseOutputs(r)
}
