package file_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/internal/testenv"
)

// writerEnv, when set in the environment of this test binary, makes it a
// writer child: it Puts a 300 MiB object into the cache directory the
// variable names, writes 1 MiB, prints "writing" and then waits for its
// standard input to close (which fails the Put), unless it is killed first.
const writerEnv = "NIXCACHE_FILE_TEST_WRITER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(writerEnv); dir != "" {
		os.Exit(writer(dir))
	}
	if os.Getenv(file.PusherEnv) != "" {
		os.Exit(file.RunPusher())
	}
	os.Exit(m.Run())
}

func writer(dir string) int {
	b, err := file.New(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// io.Copy writes each chunk before it reads the next: "writing" comes
	// once the first MiB is in the temporary file.
	r := io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), testenv.Announce("writing"), os.Stdin)
	err = b.Put(context.Background(), "nar/big.nar", r, 300<<20, "application/x-nix-nar")
	fmt.Fprintln(os.Stderr, "put:", err)
	return 2
}

// startWriter starts a writer child on dir and waits until it is writing.
func startWriter(t *testing.T, dir string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	return testenv.StartSelf(t, "writing", writerEnv+"="+dir)
}

// temps lists the temporary files in dir/nar.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "nar", file.TempPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestKilledWriterTempRemoved kills a writer process (SIGKILL) in the middle
// of a Put: its temporary file stays. Opening the backend leaves it while it
// is fresh (a writer might still be at work), and removes it once it is
// older than StaleTempAge; the temporary file of a live writer in another
// process, just as old, stays. When that writer's Put fails, its file goes.
func TestKilledWriterTempRemoved(t *testing.T) {
	dir := t.TempDir()
	killed, _ := startWriter(t, dir)
	if err := killed.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed.Wait()
	left := temps(t, dir)
	if len(left) != 1 {
		t.Fatalf("killed writer left %q, want one temporary file", left)
	}
	dead := left[0]
	st, err := os.Stat(dead)
	if err != nil || st.Size() < 1<<20 {
		t.Fatalf("killed writer's temporary file: %v, %v; want at least 1 MiB", st, err)
	}

	live, liveStdin := startWriter(t, dir)
	var liveTemp string
	for _, p := range temps(t, dir) {
		if p != dead {
			liveTemp = p
		}
	}
	if liveTemp == "" {
		t.Fatal("live writer's temporary file not found")
	}

	if _, err := file.New(dir); err != nil {
		t.Fatal(err)
	}
	if got := temps(t, dir); len(got) != 2 {
		t.Fatalf("fresh temporary files after New: %q, want both kept", got)
	}

	// An hour passes: every file of the backend's own (the temporary files
	// and New's note of its last look) gets older.
	old := time.Now().Add(-file.StaleTempAge - time.Minute)
	own, _ := filepath.Glob(filepath.Join(dir, file.TempPrefix+"*"))
	for _, p := range append(own, dead, liveTemp) {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	b, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := temps(t, dir); len(got) != 1 || got[0] != liveTemp {
		t.Fatalf("after New with stale files: %q, want only the live writer's %s", got, liveTemp)
	}
	if n, err := b.RemoveStaleTemps(context.Background(), 0); n != 0 || err != nil {
		t.Fatalf("RemoveStaleTemps(0) with a live writer = %d, %v; want 0, nil", n, err)
	}

	liveStdin.Close() // the Put reads EOF early: size mismatch
	if err := live.Wait(); err == nil {
		t.Fatal("live writer's Put succeeded with a short reader")
	}
	if got := temps(t, dir); len(got) != 0 {
		t.Fatalf("temporary files after the live writer failed: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "nar", "big.nar")); !os.IsNotExist(err) {
		t.Fatalf("nar/big.nar exists after two failed writers (%v)", err)
	}
}

// largeCache makes a cache directory of 50,000 paths: 50,000 (empty)
// narinfos in the root and as many NARs in nar/.
func largeCache(b *testing.B) string {
	dir := b.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "nar"), 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range 50000 {
		for _, p := range []string{fmt.Sprintf("%032d.narinfo", i), fmt.Sprintf("nar/%052d.nar.zst", i)} {
			if err := os.WriteFile(filepath.Join(dir, p), nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	return dir
}

// BenchmarkNewLargeCache measures New on a large cache that it swept
// within StaleTempAge (the common case: one stat).
func BenchmarkNewLargeCache(b *testing.B) {
	dir := largeCache(b)
	b.ResetTimer()
	for b.Loop() {
		if _, err := file.New(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRemoveStaleTempsLargeCache measures one sweep of a large cache
// (what New does at most once per StaleTempAge).
func BenchmarkRemoveStaleTempsLargeCache(b *testing.B) {
	c, err := file.New(largeCache(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.RemoveStaleTemps(context.Background(), file.StaleTempAge); err != nil {
			b.Fatal(err)
		}
	}
}
