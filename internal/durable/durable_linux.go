//go:build linux

package durable

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Magic numbers of statfs(2)'s f_type.
const (
	ext4Magic = 0xEF53 // ext2, ext3 and ext4 alike
	xfsMagic  = 0x58465342
)

// KeepsRenameOrder reports whether the file system holding dir makes
// metadata changes durable in the order they were made, so that a rename
// can never survive a crash that an earlier rename did not: xfs and a
// journaled ext4 commit their journal (log) as a whole and in sequence, and
// an fsync forces it up to that point. Not an ext2/ext3/ext4 mounted
// without a journal (same magic number; no ordering at all: the machine
// this was measured on is one), nor btrfs: its fsync logs the one inode,
// so a later rename fsynced can survive an earlier one in another
// directory.
func KeepsRenameOrder(dir string) bool {
	switch fsType(dir) {
	case xfsMagic:
		return true
	case ext4Magic:
		return hasJournal(dir)
	}
	return false
}

// Unjournaled reports whether dir is on an ext2/ext3/ext4 file system that
// runs without a journal. There an fsync of a directory writes the
// directory's blocks and its own inode, but not the inode of an entry just
// created in it: the new inode's table block and the inode bitmap are
// written back later, so after a power cut the entry can name an inode
// never written, which fsck then removes. A regular file can be fsynced
// itself; a symlink (a queue entry, a GC root) cannot, and only
// syncfs(2) (Syncfs) writes its inode. Journaled file systems commit the
// new inode with the directory.
func Unjournaled(dir string) bool {
	return fsType(dir) == ext4Magic && !hasJournal(dir)
}

// Syncfs writes every dirty inode and block of the file system holding
// the open file fd (syncfs(2)). Its cost depends on how much other data
// is waiting to be written there, not only on this process's.
// Where this package does not know the system call's number, it falls
// back to sync(2), which writes every file system.
func Syncfs(fd int) error {
	num := sysSyncfs
	if num < 0 {
		syscall.Sync()
		return nil
	}
	if _, _, errno := syscall.Syscall(uintptr(num), uintptr(fd), 0, 0); errno != 0 {
		return errno
	}
	return nil
}

func fsType(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return int64(st.Type)
}

// hasJournal reports whether the ext2/3/4 file system holding dir runs a
// jbd2 journal: the kernel lists each journal it runs under /proc/fs/jbd2
// as <block device>-<inode of the journal, 8>.
func hasJournal(dir string) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return false
	}
	dev := blockDevice(major(uint64(st.Dev)), minor(uint64(st.Dev)))
	if dev == "" {
		return false
	}
	_, err := os.Stat("/proc/fs/jbd2/" + dev + "-8")
	return err == nil
}

// major and minor split a Linux dev_t (glibc's gnu_dev_major/minor).
func major(dev uint64) uint32 { return uint32((dev>>8)&0xfff | (dev>>32)&^0xfff) }
func minor(dev uint64) uint32 { return uint32(dev&0xff | (dev>>12)&^0xff) }

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
