package regularfile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nixcache/nixcache/internal/regularfile"
)

// TestReadBounded is the regression test for a config file that blocked
// the hook before its watchdog started (a FIFO) or grew it without bound
// (/dev/zero): Read refuses both at once, and files over the limit.
func TestReadBounded(t *testing.T) {
	const limit = 64 << 10
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, limit+1), 0o600); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("name:key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path string
		want error
	}{
		{fifo, regularfile.ErrNotRegular},
		{"/dev/zero", regularfile.ErrNotRegular},
		{dir, regularfile.ErrNotRegular},
		{big, regularfile.ErrTooLarge},
		{filepath.Join(dir, "secret-looking-name"), fs.ErrNotExist},
	} {
		_, err := regularfile.Read(tt.path, limit)
		if !errors.Is(err, tt.want) {
			t.Errorf("Read(%s) = %v, want %v", tt.path, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), tt.path) {
			t.Errorf("Read error shows the path: %v", err)
		}
	}
	if b, err := regularfile.Read(small, limit); err != nil || string(b) != "name:key\n" {
		t.Fatalf("Read(small) = %q, %v", b, err)
	}
}
