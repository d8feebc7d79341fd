//go:build !unix

package testenv

import "errors"

// access reports that Nix cannot run here: there is no Nix for this
// platform, so tests needing it skip (and fail under CI=true).
func access(string, uint32) error { return errors.New("no Nix store on this platform") }
