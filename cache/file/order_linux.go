//go:build linux

package file

import "golang.org/x/sys/unix"

// keepsRenameOrder reports whether the file system holding dir makes
// metadata changes durable in the order they were made, so that a rename
// can never survive a crash that an earlier rename did not: ext4 and xfs
// commit their journal (log) as a whole and in sequence, and an fsync
// forces it up to that point. Not btrfs: its fsync logs the one inode, so
// a later rename fsynced can survive an earlier one in another directory.
func keepsRenameOrder(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC:
		return true
	}
	return false
}
