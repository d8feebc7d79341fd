package file

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestCommitOrderedFlush: on a file system that keeps rename order, Commit
// renames without a directory fsync and records the directory; Flush
// fsyncs it (nar/ before the root) and forgets it. Elsewhere Commit syncs
// at once and leaves nothing to Flush.
func TestCommitOrderedFlush(t *testing.T) {
	for _, ordered := range []bool{true, false} {
		b, err := New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		b.ordered = ordered
		ctx := context.Background()
		for _, key := range []string{"nar/x.nar", "x.narinfo"} {
			dir := filepath.Dir(key)
			if dir == "." {
				dir = ""
			}
			s, err := b.Stage(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Write([]byte("data " + key)); err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(ctx, key); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(filepath.Join(b.root, key)); err != nil || string(got) != "data "+key {
				t.Fatalf("%s: %q, %v", key, got, err)
			}
		}
		if want := map[bool]int{true: 2, false: 0}[ordered]; len(b.dirty) != want {
			t.Errorf("ordered=%v: %d dirty directories before Flush, want %d", ordered, len(b.dirty), want)
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if len(b.dirty) != 0 {
			t.Errorf("ordered=%v: %d dirty directories after Flush", ordered, len(b.dirty))
		}
	}
}
