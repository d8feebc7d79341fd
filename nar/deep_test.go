package nar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// deepNAR returns a NAR of depth nested directories named name, holding a
// file "f" at the bottom, built token by token (not by the Writer, which
// refuses what is too deep).
func deepNAR(depth int, name string) []byte {
	var b bytes.Buffer
	b.Write(appendStr(nil, "nix-archive-1"))
	b.Write(tokDirectory)
	open := tokens("entry", "(", "name", name, "node")
	for range depth {
		b.Write(open)
		b.Write(tokDirectory)
	}
	b.Write(tokens("entry", "(", "name", "f", "node", "(", "type", "regular", "contents", "deep", ")", ")"))
	for range depth {
		b.Write(tokCloseClose)
	}
	b.Write(tokClose)
	return b.Bytes()
}

// deepPathLen is the length of the path of "f" in deepNAR(depth, name).
func deepPathLen(depth int, name string) int { return depth*(len(name)+1) + 1 }

// TestDeepNAR is the regression test for issue 8.5: a NAR of 6000 nested
// 255-byte names (2.2 MiB) took 4.4 GiB in List, as every open directory
// kept its full path. Paths longer than MaxPathLen are now refused at once
// (Nix cannot restore them: "File name too long"), and the deepest NAR
// within the limit reads, lists and writes back.
func TestDeepNAR(t *testing.T) {
	for _, tc := range []struct {
		depth int
		name  string
	}{{6000, strings.Repeat("n", 255)}, {16, strings.Repeat("n", 255)}, {2048, "a"}, {4000, "a"}} {
		data := deepNAR(tc.depth, tc.name)
		if err := readAll(data); !errors.Is(err, ErrPathTooLong) {
			t.Errorf("depth %d of %d-byte names: Reader error %v, want ErrPathTooLong", tc.depth, len(tc.name), err)
		}
		if _, err := List(bytes.NewReader(data)); !errors.Is(err, ErrPathTooLong) {
			t.Errorf("depth %d: List error %v, want ErrPathTooLong", tc.depth, err)
		}
		if strings.Count(fmt.Sprint(readAll(data)), "nar:") != 1 {
			t.Errorf("error %q is not prefixed once", readAll(data))
		}
	}
	for _, tc := range []struct {
		depth int
		name  string
	}{{15, strings.Repeat("n", 255)}, {2047, "a"}} {
		if n := deepPathLen(tc.depth, tc.name); n > MaxPathLen {
			t.Fatalf("test NAR has a path of %d bytes", n)
		}
		data := deepNAR(tc.depth, tc.name)
		if out := rewrite(t, data); !bytes.Equal(out, data) {
			t.Errorf("depth %d: rewrite differs at %d", tc.depth, firstDiff(out, data))
		}
		l, err := List(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("depth %d: List: %v", tc.depth, err)
		}
		n := l.Root
		for range tc.depth {
			n = n.Entries[tc.name]
		}
		if f := n.Entries["f"]; f == nil || f.Size != 4 {
			t.Errorf("depth %d: listing lacks the bottom file", tc.depth)
		}
	}
	// The Writer refuses the same paths the Reader does.
	w := NewWriter(io.Discard)
	long := strings.Repeat("a/", MaxPathLen/2+1) + "f"
	if err := w.WriteHeader(&Header{Path: long, Type: TypeRegular}); !errors.Is(err, ErrPathTooLong) {
		t.Errorf("Writer took a %d-byte path: %v", len(long), err)
	}
}

// TestRestoreDeep restores the deepest NAR that fits below the destination
// and checks that one more byte is refused as nix-store --restore refuses
// it, with ENAMETOOLONG; where Nix is installed it is the judge.
func TestRestoreDeep(t *testing.T) {
	base := t.TempDir()
	dest := filepath.Join(base, "d")
	room := MaxPathLen - len(dest) - 1 // longest path Nix can create below dest
	// Names of 1 byte: depth levels "a/" then "f"; pad the last directory
	// name so that the path of "f" is exactly room bytes.
	depth := (room - 1) / 2
	fits := deepNAR(depth, "a")
	if deepPathLen(depth, "a") > room {
		t.Fatal("bad arithmetic")
	}
	if err := Restore(bytes.NewReader(fits), dest); err != nil {
		t.Fatalf("Restore of depth %d: %v", depth, err)
	}
	p := dest + strings.Repeat("/a", depth) + "/f"
	if b, err := os.ReadFile(p); err != nil || string(b) != "deep" {
		t.Errorf("bottom file: %q, %v", b, err)
	}
	tooDeep := deepNAR(depth+1, "a")
	dest2 := filepath.Join(base, "e")
	err := Restore(bytes.NewReader(tooDeep), dest2)
	if !errors.Is(err, ErrPathTooLong) || !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("Restore of depth %d = %v, want ErrPathTooLong and ENAMETOOLONG", depth+1, err)
	}
	if !testenv.HaveNix(t) {
		return
	}
	for _, tc := range []struct {
		data []byte
		dest string
		ok   bool
	}{{fits, filepath.Join(base, "n"), true}, {tooDeep, filepath.Join(base, "m"), false}} {
		cmd := exec.Command("nix-store", "--restore", tc.dest)
		cmd.Stdin = bytes.NewReader(tc.data)
		out, err := cmd.CombinedOutput()
		if (err == nil) != tc.ok {
			t.Errorf("nix-store --restore %s: %v, want ok=%v\n%.300s", tc.dest, err, tc.ok, out)
		}
		if !tc.ok && !bytes.Contains(out, []byte("File name too long")) {
			t.Errorf("nix-store --restore failed otherwise: %.300s", out)
		}
	}
}

// BenchmarkListDeep lists the deepest archives the limit allows, of short
// and of long names: time and memory per level stay constant as depth
// grows (before issue 8.5 both grew with the square of the depth).
func BenchmarkListDeep(b *testing.B) {
	for _, depth := range []int{256, 1024, 2047} {
		data := deepNAR(depth, "a")
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := List(bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(depth), "ns/level")
		})
	}
}

// BenchmarkRestoreDeep restores deep archives: with one directory handle
// per level each object costs the same few system calls whatever its depth
// (before, every call walked the whole path from the root: 4000 levels took
// 20 s).
func BenchmarkRestoreDeep(b *testing.B) {
	base := b.TempDir()
	for _, depth := range []int{256, 1024, 2000} {
		data := deepNAR(depth, "a")
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				if err := Restore(bytes.NewReader(data), filepath.Join(base, fmt.Sprint(depth, "-", i))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(depth), "ns/level")
		})
	}
}
