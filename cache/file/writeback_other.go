//go:build !linux

package file

import "os"

// startWriteback: only Linux has sync_file_range; the fsync does it all.
func startWriteback(*os.File, int64, int64) {}
