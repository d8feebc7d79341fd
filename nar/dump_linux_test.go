package nar

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestDirentLayout checks parseDirents' offsets against the kernel's struct
// linux_dirent64 as x/sys/unix declares it for this architecture.
func TestDirentLayout(t *testing.T) {
	var d unix.Dirent
	if o := unsafe.Offsetof(d.Reclen); o != direntReclen {
		t.Errorf("d_reclen at %d, parseDirents reads %d", o, direntReclen)
	}
	if o := unsafe.Offsetof(d.Type); o != direntType {
		t.Errorf("d_type at %d, parseDirents reads %d", o, direntType)
	}
	if o := unsafe.Offsetof(d.Name); o != direntName {
		t.Errorf("d_name at %d, parseDirents reads %d", o, direntName)
	}
}
