//go:build linux

package file

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestKeepsRenameOrderNeedsJournal: an ext4 without a journal (as mounted
// here: /proc/fs/jbd2 lists no journal for its device) keeps no order
// between renames, so every Commit must be durable on its own there; with
// a journal, ordering holds. Checked against the kernel's own list of
// journals and mount options, not against the function's answer alone.
func TestKeepsRenameOrderNeedsJournal(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command("stat", "-f", "-c", "%T", dir).Output()
	if err != nil {
		t.Skipf("stat -f: %v", err)
	}
	fs := strings.TrimSpace(string(out))
	got := keepsRenameOrder(dir)
	switch fs {
	case "ext2/ext3":
		journals, _ := os.ReadDir("/proc/fs/jbd2")
		if len(journals) == 0 && got {
			t.Fatalf("keepsRenameOrder(%s) = true on an ext4 with no journal running on this machine", dir)
		}
		t.Logf("%s: ext4, %d journals running, keepsRenameOrder %v", dir, len(journals), got)
	case "xfs":
		if !got {
			t.Errorf("keepsRenameOrder on xfs = false")
		}
	case "btrfs", "tmpfs":
		if got {
			t.Errorf("keepsRenameOrder on %s = true", fs)
		}
	default:
		t.Logf("%s: file system %s, keepsRenameOrder %v", dir, fs, got)
	}
}
