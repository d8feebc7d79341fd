package queue_test

import (
	"path/filepath"
	"testing"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/internal/durable"
)

// TestEnqueueSyncfsUnjournaled: on an ext2/3/4 without a journal (as this
// machine's) an fsync of the entries directory writes the directory but not
// the new symlink's own inode, so a power cut could leave an entry naming
// an inode never written (fsck removes it: the path is lost from the
// queue); Enqueue must syncfs there, for the entries and for the GC roots
// directory. Elsewhere nothing is checked (the directory fsync suffices).
func TestEnqueueSyncfsUnjournaled(t *testing.T) {
	dir := t.TempDir()
	if !durable.Unjournaled(dir) {
		t.Skipf("%s: a directory fsync writes new inodes here (journaled or not ext4)", dir)
	}
	roots := filepath.Join(t.TempDir(), "roots")
	q, err := queue.OpenOptions(filepath.Join(dir, "q"), queue.Options{GCRootsDir: roots})
	if err != nil {
		t.Fatal(err)
	}
	syncfs := countSyncs(t, "syncfs")
	if err := q.Enqueue(fakePath(1), fakePath(2)); err != nil {
		t.Fatal(err)
	}
	if syncfs(q.EntriesDir()) == 0 || syncfs(roots) == 0 {
		t.Errorf("syncfs after Enqueue: %d of the entries directory %s, %d of the roots %s; want both", syncfs(q.EntriesDir()), q.EntriesDir(), syncfs(roots), roots)
	}
}
