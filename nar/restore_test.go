package nar

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRestoreDestination(t *testing.T) {
	dirNAR := narOf(dir(entry("f", file("x")...)))
	fileNAR := narOf(file("x"))
	base := t.TempDir()
	mkdir(t, filepath.Join(base, "empty"))
	mkdir(t, filepath.Join(base, "full"))
	mkfile(t, filepath.Join(base, "full/x"), "", 0o644)
	mkfile(t, filepath.Join(base, "afile"), "", 0o644)
	mklink(t, "empty", filepath.Join(base, "link-to-empty"))
	cases := []struct {
		name, dest string
		data       []byte
		want       error // nil: success
	}{
		{"dir into missing", "new", dirNAR, nil},
		{"dir into empty dir", "empty", dirNAR, nil},
		{"dir into non-empty dir", "full", dirNAR, ErrNotEmpty},
		{"dir onto a file", "afile", dirNAR, ErrNotEmpty},
		{"dir through a symlink", "link-to-empty", dirNAR, ErrNotEmpty},
		{"file into missing", "newfile", fileNAR, nil},
		{"file onto existing file", "afile", fileNAR, os.ErrExist},
		{"file onto a symlink", "link-to-empty", fileNAR, os.ErrExist},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Restore(bytes.NewReader(c.data), filepath.Join(base, c.dest))
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("Restore = %v, want %v", err, c.want)
			}
		})
	}
	if _, err := os.Lstat(filepath.Join(base, "empty/f")); err != nil {
		t.Errorf("dir restored through the symlink? %v", err)
	}
}

// TestRestoreNeverEscapes feeds archives that try to write through a
// symlink they created; nothing may appear outside the destination.
func TestRestoreNeverEscapes(t *testing.T) {
	outside := t.TempDir()
	sym := []any{"(", "type", "symlink", "target", str(outside), ")"}
	for name, data := range map[string][]byte{
		"same name twice": narOf(dir(entry("l", sym...), entry("l", dir(entry("x", file("pwned")...))...))),
		"slash in name":   narOf(dir(entry("l", sym...), entry("l/x", file("pwned")...))),
		"dotdot":          narOf(dir(entry("..", dir(entry("x", file("pwned")...))...))),
	} {
		t.Run(name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "out")
			if err := Restore(bytes.NewReader(data), dest); err == nil {
				t.Fatal("Restore accepted the archive")
			}
			if ents, _ := os.ReadDir(outside); len(ents) > 0 {
				t.Fatalf("Restore wrote %s outside its destination", ents[0].Name())
			}
		})
	}
}
