package queue_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/storepath"
)

// TestRootNames checks the GC root layout: one root per entry in the roots
// directory, named after the entry and distinct per queue, pointing at the
// entry; Done removes both.
func TestRootNames(t *testing.T) {
	roots := t.TempDir()
	p := storepath.Path("/nix/store/0hhb51h788j6gmjd8j9c6jrk34fji2cq-y")
	var links []string
	for _, sub := range []string{"a", "b"} {
		q, err := queue.OpenOptions(filepath.Join(t.TempDir(), sub), queue.Options{GCRootsDir: roots})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Enqueue(p); err != nil {
			t.Fatal(err)
		}
		ls, _ := filepath.Glob(filepath.Join(roots, "nixcache-queue-*-"+p.Base()))
		if len(ls) != len(links)+1 {
			t.Fatalf("roots after enqueueing in queue %s: %v", sub, ls)
		}
		links = ls
	}
	for _, l := range links {
		tgt, err := os.Readlink(l)
		if err != nil || !strings.HasSuffix(tgt, "/entries/"+p.Base()) {
			t.Errorf("root %s -> %q, %v", l, tgt, err)
		}
	}
}

// TestEnqueueLeavesNoTemporaries checks that Enqueue leaves exactly the
// entries (no .tmp- names) and that re-enqueueing merges.
func TestEnqueueLeavesNoTemporaries(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.OpenOptions(dir, queue.Options{GCRootsDir: "-"})
	if err != nil {
		t.Fatal(err)
	}
	paths := []storepath.Path{
		"/nix/store/0hhb51h788j6gmjd8j9c6jrk34fji2cq-y",
		"/nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywab-lsx-multi",
	}
	for range 3 {
		if err := q.Enqueue(paths...); err != nil {
			t.Fatal(err)
		}
	}
	names, err := os.ReadDir(q.EntriesDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(paths) {
		t.Fatalf("entries = %v, want %d", names, len(paths))
	}
	for _, n := range names {
		if strings.HasPrefix(n.Name(), ".") {
			t.Errorf("temporary left: %s", n.Name())
		}
	}
}

// TestEnqueueReplacesMalformed checks that Enqueue replaces a malformed
// entry (a hand-made regular file, a link to another path) at the entry's
// name instead of merging into it.
func TestEnqueueReplacesMalformed(t *testing.T) {
	q, err := queue.OpenOptions(t.TempDir(), queue.Options{GCRootsDir: "-"})
	if err != nil {
		t.Fatal(err)
	}
	p := storepath.Path("/nix/store/0hhb51h788j6gmjd8j9c6jrk34fji2cq-y")
	other := "/nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywab-lsx-multi"
	full := filepath.Join(q.EntriesDir(), p.Base())
	for _, mk := range []func() error{
		func() error { return os.WriteFile(full, []byte("x"), 0o644) },
		func() error { return os.Symlink(other, full) },
	} {
		_ = os.Remove(full)
		if err := mk(); err != nil {
			t.Fatal(err)
		}
		if err := q.Enqueue(p); err != nil {
			t.Fatal(err)
		}
		es, err := q.Pending()
		if err != nil || len(es) != 1 || es[0].Path != p {
			t.Fatalf("Pending = %v, %v; want only %s", es, err, p)
		}
	}
}

// TestEnqueueFailureLeavesNoRoots: the GC roots are made while the entries
// are; when an entry cannot be made (here a directory with a file in it
// holds its name), Enqueue fails and leaves no root for the paths it did
// not queue, while an entry that was made keeps its root.
func TestEnqueueFailureLeavesNoRoots(t *testing.T) {
	roots := t.TempDir()
	q, err := queue.OpenOptions(t.TempDir(), queue.Options{GCRootsDir: roots})
	if err != nil {
		t.Fatal(err)
	}
	good := storepath.Path("/nix/store/0hhb51h788j6gmjd8j9c6jrk34fji2cq-y")
	bad := storepath.Path("/nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywab-z")
	blocker := filepath.Join(q.EntriesDir(), bad.Base())
	if err := os.MkdirAll(filepath.Join(blocker, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(good, bad); err == nil {
		t.Fatal("Enqueue succeeded with a directory in the way of an entry")
	}
	links, err := os.ReadDir(roots)
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || !strings.HasSuffix(links[0].Name(), good.Base()) {
		t.Fatalf("GC roots after the failed Enqueue: %v, want only the one of %s", links, good.Base())
	}
}
