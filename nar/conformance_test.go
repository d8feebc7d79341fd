package nar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath/nixbase32"
)

// A tree builds one file system object at path p.
type tree func(t testing.TB, p string)

func mkfile(t testing.TB, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t testing.TB, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mklink(t testing.TB, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func pseudoRandom(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// smallTrees are the conformance cases that also seed the fuzz corpus.
var smallTrees = []struct {
	name  string
	build tree
}{
	{"file-root", func(t testing.TB, p string) { mkfile(t, p, "hello\n", 0o644) }},
	{"exec-root", func(t testing.TB, p string) { mkfile(t, p, "#!/bin/sh\necho hi\n", 0o755) }},
	{"empty-file-root", func(t testing.TB, p string) { mkfile(t, p, "", 0o644) }},
	{"symlink-root-dangling", func(t testing.TB, p string) { mklink(t, "/nonexistent/target", p) }},
	{"symlink-root-relative", func(t testing.TB, p string) { mklink(t, "../x/./y", p) }},
	{"empty-dir", func(t testing.TB, p string) { mkdir(t, p) }},
	{"padding-sizes", func(t testing.TB, p string) {
		mkdir(t, p)
		for n := range 18 {
			mkfile(t, filepath.Join(p, fmt.Sprintf("f%02d", n)), strings.Repeat("x", n), 0o644)
		}
	}},
	{"nested-and-empty", func(t testing.TB, p string) {
		mkdir(t, filepath.Join(p, "a/b/c/d"))
		mkdir(t, filepath.Join(p, "a/empty1"))
		mkdir(t, filepath.Join(p, "a/empty2"))
		mkdir(t, filepath.Join(p, "z/empty"))
		mkfile(t, filepath.Join(p, "a/b/c/d/leaf"), "leaf", 0o644)
		mkfile(t, filepath.Join(p, "a/b/file"), "", 0o644)
	}},
	{"exec-bits", func(t testing.TB, p string) {
		mkdir(t, p)
		for _, m := range []os.FileMode{0o644, 0o755, 0o700, 0o744, 0o100, 0o654, 0o645, 0o611, 0o601, 0o610, 0o4755, 0o2644, 0o1744} {
			f := filepath.Join(p, fmt.Sprintf("m%04o", m))
			mkfile(t, f, "data", 0o644)
			if err := os.Chmod(f, m); err != nil {
				t.Fatal(err)
			}
		}
	}},
	{"symlinks", func(t testing.TB, p string) {
		mkdir(t, filepath.Join(p, "d"))
		mkfile(t, filepath.Join(p, "d/f"), "f", 0o644)
		mklink(t, "/etc/passwd", filepath.Join(p, "abs"))
		mklink(t, "d/f", filepath.Join(p, "rel"))
		mklink(t, "d", filepath.Join(p, "todir"))
		mklink(t, "missing/nothing", filepath.Join(p, "dangling"))
		mklink(t, "..", filepath.Join(p, "dotdot"))
		mklink(t, ".", filepath.Join(p, "dot"))
		mklink(t, "self", filepath.Join(p, "self"))
		mklink(t, "with\nnewline and space", filepath.Join(p, "weird"))
		mklink(t, "\xff\xfe", filepath.Join(p, "nonutf8"))
		mklink(t, strings.Repeat("long/", 800)+"end", filepath.Join(p, "long"))
		mklink(t, strings.Repeat("x", 4095), filepath.Join(p, "longest"))
	}},
	{"names", func(t testing.TB, p string) {
		mkdir(t, p)
		for _, n := range []string{"a b", "new\nline", "tab\there", "\x01ctl", "\b\f\x1f", "\x7f", "caf\xe9", "\xff\xfe", "é", "😀", "-dash", ".hidden", "...", "~", "a\\b", "q\"", strings.Repeat("n", 255)} {
			mkfile(t, filepath.Join(p, n), n, 0o644)
		}
	}},
	{"sort-order", func(t testing.TB, p string) {
		mkdir(t, filepath.Join(p, "a"))
		mkfile(t, filepath.Join(p, "a/b"), "ab", 0o644)
		mkfile(t, filepath.Join(p, "a.b"), "a.b", 0o644)
		mkfile(t, filepath.Join(p, "a-"), "", 0o644)
		mkfile(t, filepath.Join(p, "a0"), "", 0o644)
		mkdir(t, filepath.Join(p, "ab"))
		mkfile(t, filepath.Join(p, "A"), "", 0o644)
		mkfile(t, filepath.Join(p, "B"), "", 0o644)
		mkfile(t, filepath.Join(p, "_"), "", 0o644)
		mkfile(t, filepath.Join(p, "\x80"), "", 0o644)
		mkfile(t, filepath.Join(p, "\xff"), "", 0o644)
		mkfile(t, filepath.Join(p, "a\x01"), "", 0o644)
		mkfile(t, filepath.Join(p, "aa"), "", 0o644)
		mkfile(t, filepath.Join(p, "a/"+"a.b"), "", 0o644)
		mkdir(t, filepath.Join(p, "a/a"))
	}},
	{"hard-links", func(t testing.TB, p string) {
		mkdir(t, p)
		mkfile(t, filepath.Join(p, "orig"), "shared contents", 0o755)
		for _, n := range []string{"link1", "zlink"} {
			if err := os.Link(filepath.Join(p, "orig"), filepath.Join(p, n)); err != nil {
				t.Fatal(err)
			}
		}
	}},
}

var bigTrees = []struct {
	name  string
	build tree
}{
	{"file-20MB", func(t testing.TB, p string) {
		mkdir(t, p)
		if err := os.WriteFile(filepath.Join(p, "big"), pseudoRandom(20<<20+3, 1), 0o755); err != nil {
			t.Fatal(err)
		}
		mkfile(t, filepath.Join(p, "small"), "s", 0o644)
	}},
	{"wide-3000", func(t testing.TB, p string) {
		mkdir(t, p)
		for i := range 3000 {
			mkfile(t, filepath.Join(p, fmt.Sprintf("f%d", i*7919%3001)), strings.Repeat("y", i%50), 0o644)
		}
	}},
	{"deep-200", func(t testing.TB, p string) {
		d := p
		for i := range 200 {
			d = filepath.Join(d, fmt.Sprintf("d%d", i%10))
		}
		mkdir(t, d)
		mkfile(t, filepath.Join(d, "bottom"), "bottom", 0o755)
		mkfile(t, filepath.Join(p, "top"), "top", 0o644)
	}},
}

func nixDump(t testing.TB, p string) []byte {
	t.Helper()
	return testenv.Nix(t, "nix-store", "--dump", p)
}

func dump(t testing.TB, p string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := DumpPath(&b, p); err != nil {
		t.Fatalf("DumpPath(%s): %v", p, err)
	}
	return b.Bytes()
}

// dumpPortable is DumpPath with the portable walker, whatever the platform.
func dumpPortable(w io.Writer, p string) error {
	nw := NewWriter(w)
	nw.portableDump = true
	if err := nw.AddTree("", p); err != nil {
		return err
	}
	return nw.Close()
}

// walkers are the file system walkers AddTree can use, by name.
var walkers = []struct {
	name string
	dump func(io.Writer, string) error
}{{"fast", DumpPath}, {"portable", dumpPortable}}

func TestDumpPathMatchesNix(t *testing.T) {
	testenv.RequireNix(t)
	cases := append(append([]struct {
		name  string
		build tree
	}{}, smallTrees...), bigTrees...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "root")
			c.build(t, p)
			want := nixDump(t, p)
			got := dump(t, p)
			if !bytes.Equal(got, want) {
				t.Fatalf("DumpPath differs from nix-store --dump: %d vs %d bytes, first difference at %d", len(got), len(want), firstDiff(got, want))
			}
			// The portable walker, used where there is no fast one, too.
			var pb bytes.Buffer
			if err := dumpPortable(&pb, p); err != nil || !bytes.Equal(pb.Bytes(), want) {
				t.Fatalf("portable walker differs from nix-store --dump at byte %d (%v)", firstDiff(pb.Bytes(), want), err)
			}
			// NarHash and NarSize against nix-hash.
			sum, size, err := DumpPathSum(nil, p)
			if err != nil {
				t.Fatal(err)
			}
			wantHash := strings.TrimSpace(string(testenv.Nix(t, "nix-hash", "--type", "sha256", "--base32", p)))
			if got := nixbase32.EncodeToString(sum[:]); got != wantHash || size != int64(len(want)) {
				t.Errorf("DumpPathSum = %s, %d; nix-hash says %s, NAR is %d bytes", got, size, wantHash, len(want))
			}
			// Our Restore of Nix's NAR dumps back, by Nix, to the same NAR.
			restored := filepath.Join(dir, "restored")
			if err := Restore(bytes.NewReader(want), restored); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if again := nixDump(t, restored); !bytes.Equal(again, want) {
				t.Errorf("nix-store --dump of Restore output differs at byte %d", firstDiff(again, want))
			}
			// Nix restores our NAR.
			nixRestored := filepath.Join(dir, "nix-restored")
			cmd := exec.Command("nix-store", "--restore", nixRestored)
			cmd.Stdin = bytes.NewReader(got)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nix-store --restore of our NAR: %v: %s", err, out)
			}
			if again := dump(t, nixRestored); !bytes.Equal(again, want) {
				t.Errorf("dump of nix-store --restore output differs at byte %d", firstDiff(again, want))
			}
			// Restore gives files the modes nix-store --restore gives them.
			compareModes(t, restored, nixRestored)
			// Reader round trip through the Writer is the identity.
			if re := rewrite(t, want); !bytes.Equal(re, want) {
				t.Errorf("Reader->Writer rewrite differs at byte %d", firstDiff(re, want))
			}
		})
	}
}

func TestDumpGoSourceNet(t *testing.T) {
	testenv.RequireNix(t)
	p := filepath.Join(testenv.GOROOT(t), "src", "net")
	want := nixDump(t, p)
	for _, w := range walkers {
		var b bytes.Buffer
		if err := w.dump(&b, p); err != nil || !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s walker on %s differs from nix-store --dump at byte %d (%v)", w.name, p, firstDiff(b.Bytes(), want), err)
		}
	}
}

func TestDumpUnsupported(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Skip("mkfifo:", err)
	}
	for _, w := range walkers {
		for _, p := range []string{fifo, dir} {
			err := w.dump(&bytes.Buffer{}, p)
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "fifo") {
				t.Errorf("%s walker on %s = %v, want ErrUnsupported naming the fifo", w.name, p, err)
			}
		}
		if err := w.dump(&bytes.Buffer{}, filepath.Join(dir, "missing")); err == nil {
			t.Errorf("%s walker on a missing path succeeded", w.name)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// rewrite reads a NAR with the Reader and writes it back with the Writer.
func rewrite(t testing.TB, data []byte) []byte {
	t.Helper()
	out, err := rewriteErr(data)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func rewriteErr(data []byte) ([]byte, error) {
	var b bytes.Buffer
	r := NewReader(bytes.NewReader(data))
	w := NewWriter(&b)
	for {
		h, err := r.Next()
		if err != nil {
			if err == io.EOF {
				break
			}
			return nil, err
		}
		if err := w.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Type == TypeRegular {
			if _, err := w.ReadFrom(r); err != nil {
				return nil, err
			}
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// compareModes checks that two restored trees have the same file modes.
func compareModes(t *testing.T, ours, nix string) {
	t.Helper()
	err := filepath.WalkDir(nix, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(nix, p)
		want, err := os.Lstat(p)
		if err != nil {
			return err
		}
		got, err := os.Lstat(filepath.Join(ours, rel))
		if err != nil {
			return err
		}
		if got.Mode() != want.Mode() && want.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: Restore made mode %v, nix-store --restore %v", rel, got.Mode(), want.Mode())
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestDumpPathSpellings checks that the root path is used as Nix 2.8 uses
// it: "link/" follows a symlink to a directory, "link" does not.
func TestDumpPathSpellings(t *testing.T) {
	testenv.RequireNix(t)
	base := t.TempDir()
	mkdir(t, filepath.Join(base, "d/sub"))
	mkfile(t, filepath.Join(base, "d/sub/f"), "f", 0o644)
	mklink(t, "d", filepath.Join(base, "link"))
	for _, p := range []string{"link", "link/", "d/", "d/./sub", "link/../d", "d//sub/"} {
		full := base + "/" + p
		if got, want := dump(t, full), nixDump(t, full); !bytes.Equal(got, want) {
			t.Errorf("DumpPath(%q) differs from nix-store --dump at byte %d", p, firstDiff(got, want))
		}
	}
}
