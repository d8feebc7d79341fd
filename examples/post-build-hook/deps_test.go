package main

import (
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// TestImportGraphIsSmall keeps the hook cheap to start: Nix waits for it
// after every build, so its binary must not link the cache, the store
// database, network, TLS or crypto code, or compressors (sync mode execs
// upload-daemon for those). It pins the arrows that matter: of this
// module, the hook links only the queue (its enqueue side: no HTTP
// metrics), the configuration, the command plumbing and the formats the
// queue and the .drv reader need; no third-party module at all.
func TestImportGraphIsSmall(t *testing.T) {
	const mod = "github.com/nixcache/nixcache/"
	allowed := map[string]bool{
		mod + "cache/queue":              true,
		mod + "internal/config":          true,
		mod + "internal/regularfile":     true, // bounded reads of the config file
		mod + "internal/durable":         true, // which fsyncs make a queue entry durable
		mod + "internal/cli":             true,
		mod + "storepath":                true,
		mod + "storepath/nixbase32":      true,
		mod + "storepath/drv":            true, // the .drv format (formerly cache/localstore/drv)
		mod + "examples/post-build-hook": true,
	}
	bannedStd := []string{"net", "crypto", "database", "compress", "archive", "os/user", "plugin"}
	for d := range testenv.GoListDeps(t, mod+"examples/post-build-hook") {
		first, _, _ := strings.Cut(d, "/")
		switch {
		case strings.HasPrefix(d, mod):
			if !allowed[d] {
				t.Errorf("post-build-hook imports %s", d)
			}
		case strings.Contains(first, "."):
			t.Errorf("post-build-hook imports the third-party package %s", d)
		default:
			for _, b := range bannedStd {
				if d == b || strings.HasPrefix(d, b+"/") {
					t.Errorf("post-build-hook imports %s", d)
				}
			}
		}
	}
}
