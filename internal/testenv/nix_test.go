package testenv

import (
	"path/filepath"
	"strings"
	"testing"
)

// RequireNix checks the store it names: the database under NIX_STATE_DIR
// must exist, so a state directory without one is refused, naming it.
func TestRequireNixChecksStateDir(t *testing.T) {
	RequireNix(t)
	if why := checkNix(NixStateDir(), NixStoreDir()); why != "" {
		t.Fatalf("the real store refused: %s", why)
	}
	empty := t.TempDir()
	why := checkNix(empty, NixStoreDir())
	if !strings.Contains(why, filepath.Join(empty, "db", "db.sqlite")) {
		t.Errorf("empty state dir: %q, want a message naming its db.sqlite", why)
	}
	if why := checkNix(NixStateDir(), filepath.Join(empty, "missing-store")); !strings.Contains(why, "missing-store") {
		t.Errorf("missing store dir: %q, want a message naming it", why)
	}
	t.Setenv("NIX_STATE_DIR", empty)
	if NixStateDir() != empty {
		t.Errorf("NixStateDir() = %s with NIX_STATE_DIR=%s", NixStateDir(), empty)
	}
	if nixUnusable() == "" {
		t.Error("RequireNix accepts a state directory with no database")
	}
}
