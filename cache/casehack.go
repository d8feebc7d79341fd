package cache

import "github.com/nixcache/nixcache/nar"

// CaseHackSource is a Source that knows its store's use-case-hack setting
// (*localstore.Store reads it from nix.conf). Nix dumps a store path, and
// computes its NarHash, with its case hack when the setting is on (the
// default on macOS): names carrying nar.CaseHackSuffix lose it in the NAR.
// Push dumps each path the same way, so that the NAR matches the NarHash
// the store records; for a Source without this method it uses Nix's
// default for the platform, nar.DefaultCaseHack.
type CaseHackSource interface {
	Source
	CaseHack() bool
}

func sourceCaseHack(src Source) bool {
	if s, ok := src.(CaseHackSource); ok {
		return s.CaseHack()
	}
	return nar.DefaultCaseHack
}
