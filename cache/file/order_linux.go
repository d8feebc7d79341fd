//go:build linux

package file

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// keepsRenameOrder reports whether the file system holding dir makes
// metadata changes durable in the order they were made, so that a rename
// can never survive a crash that an earlier rename did not: xfs and a
// journaled ext4 commit their journal (log) as a whole and in sequence, and
// an fsync forces it up to that point. Not an ext2/ext3/ext4 mounted
// without a journal (same magic number; no ordering at all: the machine
// this was measured on is one), nor btrfs: its fsync logs the one inode,
// so a later rename fsynced can survive an earlier one in another
// directory.
func keepsRenameOrder(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.XFS_SUPER_MAGIC:
		return true
	case unix.EXT4_SUPER_MAGIC:
		return hasJournal(dir)
	}
	return false
}

// hasJournal reports whether the ext2/3/4 file system holding dir runs a
// jbd2 journal: the kernel lists each journal it runs under /proc/fs/jbd2
// as <block device>-<inode of the journal, 8>.
func hasJournal(dir string) bool {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false
	}
	dev := blockDevice(unix.Major(st.Dev), unix.Minor(st.Dev))
	if dev == "" {
		return false
	}
	_, err := os.Stat("/proc/fs/jbd2/" + dev + "-8")
	return err == nil
}

// blockDevice is the kernel's name of the block device major:minor (such
// as "vda" or "dm-0"), or "".
func blockDevice(major, minor uint32) string {
	f, err := os.Open(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", major, minor))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "DEVNAME="); ok && name != "" && !strings.ContainsAny(name, "/.") {
			return name
		}
	}
	return ""
}
