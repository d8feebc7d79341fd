package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportGraphIsSmall keeps the hook cheap to start: Nix waits for it
// after every build, so its binary must not link the store database, the
// network stack, TLS or crypto code, or compressors (sync mode execs
// upload-daemon for those).
func TestImportGraphIsSmall(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	banned := []string{"modernc.org/sqlite", "database/sql", "net", "net/http", "crypto/tls", "crypto/sha256",
		"github.com/minio/minio-go/v7", "github.com/klauspost/compress/zstd", "github.com/ulikunitz/xz",
		"github.com/nixcache/nixcache/cache/localstore", "github.com/nixcache/nixcache/cache/queue"}
	deps := map[string]bool{}
	for _, d := range strings.Fields(string(out)) {
		deps[d] = true
	}
	for _, b := range banned {
		if deps[b] {
			t.Errorf("post-build-hook imports %s", b)
		}
	}
}
