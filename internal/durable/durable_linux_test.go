//go:build linux

package durable

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// fsOfTempDir returns a new temporary directory, its file system's type as
// stat -f names it, and how many jbd2 journals the kernel runs.
func fsOfTempDir(t *testing.T) (dir, fs string, journals int) {
	dir = t.TempDir()
	out, err := exec.Command("stat", "-f", "-c", "%T", dir).Output()
	if err != nil {
		t.Skipf("stat -f: %v", err)
	}
	js, _ := os.ReadDir("/proc/fs/jbd2")
	return dir, strings.TrimSpace(string(out)), len(js)
}

// TestKeepsRenameOrderNeedsJournal: an ext4 without a journal (as mounted
// here: /proc/fs/jbd2 lists no journal for its device) keeps no order
// between renames, so every Commit must be durable on its own there; with
// a journal, ordering holds. Checked against the kernel's own list of
// journals and mount options, not against the function's answer alone.
func TestKeepsRenameOrderNeedsJournal(t *testing.T) {
	dir, fs, journals := fsOfTempDir(t)
	got := KeepsRenameOrder(dir)
	switch fs {
	case "ext2/ext3":
		if journals == 0 && got {
			t.Fatalf("KeepsRenameOrder(%s) = true on an ext4 with no journal running on this machine", dir)
		}
		t.Logf("%s: ext4, %d journals running, KeepsRenameOrder %v", dir, journals, got)
	case "xfs":
		if !got {
			t.Errorf("KeepsRenameOrder on xfs = false")
		}
	case "btrfs", "tmpfs":
		if got {
			t.Errorf("KeepsRenameOrder on %s = true", fs)
		}
	default:
		t.Logf("%s: file system %s, KeepsRenameOrder %v", dir, fs, got)
	}
}

// TestUnjournaled: an ext2/3/4 directory on a device the kernel runs no
// jbd2 journal for (as on this machine) is unjournaled: new symlinks there
// need a syncfs; xfs, btrfs and tmpfs are not. Checked against stat -f and
// the kernel's list of journals, not against the function alone.
func TestUnjournaled(t *testing.T) {
	dir, fs, journals := fsOfTempDir(t)
	got := Unjournaled(dir)
	switch fs {
	case "ext2/ext3":
		if journals == 0 && !got {
			t.Fatalf("Unjournaled(%s) = false on an ext4 with no journal running on this machine", dir)
		}
		if got == KeepsRenameOrder(dir) {
			t.Errorf("ext4: Unjournaled %v and KeepsRenameOrder %v: one of them must hold", got, !got)
		}
	case "xfs", "btrfs", "tmpfs":
		if got {
			t.Errorf("Unjournaled on %s = true", fs)
		}
	}
	t.Logf("%s: %s, Unjournaled %v", dir, fs, got)
}

// TestMajorMinor: the split of a dev_t matches the kernel's own names in
// /proc/self/mountinfo for the file system holding the test's directory.
func TestMajorMinor(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Stat(t.TempDir(), &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d:%d", major(uint64(st.Dev)), minor(uint64(st.Dev)))
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == want {
			return
		}
	}
	t.Errorf("no mount in /proc/self/mountinfo has device %s", want)
}

// TestSyncfs: the system call number is right for this architecture:
// syncfs of an open directory succeeds, of -1 fails with EBADF.
func TestSyncfs(t *testing.T) {
	fd, err := syscall.Open(t.TempDir(), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := Syncfs(fd); err != nil {
		t.Fatalf("syncfs: %v", err)
	}
	if err := Syncfs(-1); err != syscall.EBADF && sysSyncfs >= 0 {
		t.Errorf("syncfs(-1) = %v, want EBADF", err)
	}
}
