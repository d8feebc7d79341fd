package file_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/cachetest"
	"github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/internal/testenv"
)

func newBackend(t *testing.T) cache.Backend {
	b, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	cachetest.TestBackend(t, newBackend)
}

func TestObjectMode(t *testing.T) {
	old := syscallUmask(0o077)
	defer syscallUmask(old)
	b := newBackend(t).(*file.Backend)
	if err := b.Put(context.Background(), "nar/x.nar", bytes.NewReader([]byte("abc")), 3, "application/x-nix-nar"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(b.Root(), "nar", "x.nar"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("object mode %v, want 0644", st.Mode().Perm())
	}
}

func TestTempFilesHidden(t *testing.T) {
	b := newBackend(t).(*file.Backend)
	ctx := context.Background()
	// A crash mid-Put leaves a temp file behind.
	if err := os.MkdirAll(filepath.Join(b.Root(), "nar"), 0o755); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(b.Root(), "nar", file.TempPrefix+"123")
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := b.List(ctx, "", func(oi cache.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("List shows temp files: %q", keys)
	}
	if _, err := b.Stat(ctx, "nar/"+file.TempPrefix+"123"); !errors.Is(err, cache.ErrInvalidKey) {
		t.Fatalf("Stat(temp name) error = %v, want ErrInvalidKey", err)
	}
	// A failed Put leaves no temp file.
	if err := b.Put(ctx, "nar/y.nar", bytes.NewReader([]byte("ab")), 3, "x"); err == nil {
		t.Fatal("short put succeeded")
	}
	ents, _ := os.ReadDir(filepath.Join(b.Root(), "nar"))
	if len(ents) != 1 {
		t.Fatalf("nar/ holds %d entries after a failed put, want only the old leftover", len(ents))
	}
}

func TestNew(t *testing.T) {
	if _, err := file.New("relative/dir"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("New(relative) error = %v", err)
	}
	f := filepath.Join(t.TempDir(), "afile")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := file.New(f); err == nil {
		t.Fatal("New(regular file) succeeded")
	}
	dir := filepath.Join(t.TempDir(), "a", "b")
	if _, err := file.New(dir); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("New did not create %s: %v", dir, err)
	}
}

func TestOpenFromURL(t *testing.T) {
	dir := t.TempDir()
	u, err := cache.ParseURL("file://" + dir + "?compression=xz")
	if err != nil {
		t.Fatal(err)
	}
	b, err := u.Location.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := b.(*file.Backend).Root(); got != dir {
		t.Fatalf("root %q, want %q", got, dir)
	}
}

// TestNixReadsCache copies a cache Nix wrote (nix copy --to file://) object by
// object through the backend into a fresh directory, deletes the store path
// and has real Nix substitute it back from the copy.
func TestNixReadsCache(t *testing.T) {
	testenv.RequireNix(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	payload := cachetest.Data(uint64(os.Getpid()), 300000)
	os.WriteFile(filepath.Join(src, "sub", "data"), payload, 0o644)
	os.WriteFile(filepath.Join(src, "marker"), []byte(t.Name()+tmp), 0o644)
	storePath := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", src)))
	t.Cleanup(func() { testenv.NixCmd("nix-store", "--delete", storePath) })
	key := testenv.NixKeyPair(t, "nixcache-test-1")
	sec, pub := key.SecretFile, key.PublicFile
	nixDir := filepath.Join(tmp, "nixcache")
	testenv.Nix(t, "nix", "copy", "--to", "file://"+nixDir+"?compression=zstd&secret-key="+sec, storePath)

	ours := filepath.Join(tmp, "ours")
	b, err := file.New(ours)
	if err != nil {
		t.Fatal(err)
	}
	n := copyTree(t, nixDir, b)
	if n < 3 {
		t.Fatalf("copied only %d objects", n)
	}
	testenv.Nix(t, "nix-store", "--delete", storePath)
	pk, _ := os.ReadFile(pub)
	testenv.Nix(t, "nix-store", "--realise", storePath, "--max-jobs", "0",
		"--option", "substituters", "file://"+ours, "--option", "trusted-public-keys", string(pk))
	got, err := os.ReadFile(filepath.Join(storePath, "sub", "data"))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("substituted path content differs (err %v)", err)
	}
}

func copyTree(t *testing.T, dir string, b cache.Backend) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		return b.Put(context.Background(), filepath.ToSlash(rel), bytes.NewReader(data), int64(len(data)), "")
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func BenchmarkPut(b *testing.B) {
	be, err := file.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := cachetest.Data(1, 16<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := be.Put(context.Background(), "nar/bench.nar", bytes.NewReader(data), int64(len(data)), ""); err != nil {
			b.Fatal(err)
		}
	}
}

func TestReaderConformance(t *testing.T) {
	cachetest.TestReader(t, func(t *testing.T) cache.Backend {
		b := newBackend(t)
		for key, data := range cachetest.Objects() {
			if err := b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), "application/octet-stream"); err != nil {
				t.Fatal(err)
			}
		}
		return b
	})
}
