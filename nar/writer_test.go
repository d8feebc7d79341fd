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
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

type op struct {
	h    *Header
	data string
}

func reg(p, data string, exec bool) op {
	return op{&Header{Path: p, Type: TypeRegular, Size: int64(len(data)), Executable: exec}, data}
}
func dirh(p string) op         { return op{h: &Header{Path: p, Type: TypeDirectory}} }
func link(p, target string) op { return op{h: &Header{Path: p, Type: TypeSymlink, LinkTarget: target}} }

func writeOps(ops []op) ([]byte, error) {
	var b bytes.Buffer
	w := NewWriter(&b)
	for _, o := range ops {
		if err := w.WriteHeader(o.h); err != nil {
			return nil, err
		}
		if o.data != "" {
			if _, err := io.WriteString(w, o.data); err != nil {
				return nil, err
			}
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// TestWriterRoundTrip writes each header list, checks that real Nix
// restores the archive and dumps it back to the same bytes, and that the
// Reader returns the headers (with implicit parents made explicit).
func TestWriterRoundTrip(t *testing.T) {
	testenv.RequireNix(t)
	cases := []struct {
		name string
		ops  []op
		want []string // paths the Reader returns, when different from ops
	}{
		{"root file", []op{reg("", "hello", false)}, nil},
		{"root executable", []op{reg("", "#!/bin/sh\n", true)}, nil},
		{"root empty file", []op{reg("", "", false)}, nil},
		{"root symlink", []op{link("", "/dangling")}, nil},
		{"root empty dir", []op{dirh("")}, nil},
		{"flat", []op{dirh(""), reg("a", "1", false), link("b", "a"), dirh("c")}, nil},
		{"nested", []op{dirh(""), dirh("a"), dirh("a/b"), reg("a/b/f", "x", true), reg("a/g", "", false), reg("b", "yy", false)}, nil},
		{"implicit parents", []op{reg("a/b/c", "deep", false), reg("a/d", "", false), link("e/f", "../a")},
			[]string{"", "a", "a/b", "a/b/c", "a/d", "e", "e/f"}},
		{"component order", []op{dirh(""), reg("a/b", "", false), reg("a.b", "", false), reg("a0", "", false)},
			[]string{"", "", "a", "a/b", "a.b", "a0"}[1:]},
		{"non-UTF-8 and odd names", []op{dirh(""), reg("\x01", "", false), reg("a b\nc", "", false), reg("\xff\xfe", "z", false)}, nil},
		{"padding", []op{dirh(""), reg("a", "1234567", false), reg("b", "12345678", false), reg("c", "123456789", false)}, nil},
		{"large file", []op{reg("", strings.Repeat("0123456789", 20000), false)}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, err := writeOps(c.ops)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			cmd := exec.Command("nix-store", "--restore", out)
			cmd.Stdin = bytes.NewReader(data)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nix-store --restore: %v: %s", err, msg)
			}
			if again := nixDump(t, out); !bytes.Equal(again, data) {
				t.Fatalf("Nix dumps the restored tree differently, from byte %d", firstDiff(again, data))
			}
			want := c.want
			if want == nil {
				for _, o := range c.ops {
					want = append(want, o.h.Path)
				}
			}
			r := NewReader(bytes.NewReader(data))
			var got []string
			for i := 0; ; i++ {
				h, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, h.Path)
				b, _ := io.ReadAll(r)
				if h.Type == TypeRegular && int64(len(b)) != h.Size {
					t.Errorf("%s: read %d bytes, size %d", h.Path, len(b), h.Size)
				}
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("Reader paths %q, want %q", got, want)
			}
		})
	}
}

func TestWriterRejects(t *testing.T) {
	long := strings.Repeat("n", 256)
	cases := []struct {
		name string
		ops  []op
		want error
	}{
		{"empty component", []op{reg("a//b", "", false)}, ErrInvalidName},
		{"leading slash", []op{reg("/a", "", false)}, ErrInvalidName},
		{"trailing slash", []op{reg("a/", "", false)}, ErrInvalidName},
		{"dot", []op{reg(".", "", false)}, ErrInvalidName},
		{"dotdot inside", []op{reg("a/../b", "", false)}, ErrInvalidName},
		{"NUL", []op{reg("a\x00", "", false)}, ErrInvalidName},
		{"name too long", []op{reg(long, "", false)}, ErrInvalidName},
		{"unsorted", []op{reg("b", "", false), reg("a", "", false)}, ErrUnsorted},
		{"unsorted nested", []op{reg("a/c", "", false), reg("a/b", "", false)}, ErrUnsorted},
		{"back into closed dir", []op{reg("a/x", "", false), reg("b", "", false), reg("a/y", "", false)}, ErrUnsorted},
		{"duplicate file", []op{reg("a", "", false), reg("a", "", false)}, ErrDuplicate},
		{"duplicate root", []op{dirh(""), dirh("")}, ErrDuplicate},
		{"explicit dir after implicit", []op{reg("a/b", "", false), dirh("a")}, ErrDuplicate},
		{"root after entries", []op{reg("a", "", false), dirh("")}, ErrDuplicate},
		{"entry under a file", []op{reg("a", "", false), reg("a/b", "", false)}, ErrInvalidHeader},
		{"entry after root file", []op{reg("", "", false), reg("a", "", false)}, ErrInvalidHeader},
		{"entry after root symlink", []op{link("", "x"), reg("a", "", false)}, ErrInvalidHeader},
		{"negative size", []op{{h: &Header{Type: TypeRegular, Size: -1}}}, ErrInvalidHeader},
		{"zero type", []op{{h: &Header{Path: "a"}}}, ErrInvalidHeader},
		{"empty target", []op{link("a", "")}, ErrInvalidTarget},
		{"NUL target", []op{link("a", "x\x00")}, ErrInvalidTarget},
		{"long target", []op{link("a", strings.Repeat("t", 4096))}, ErrInvalidTarget},
		{"write too long", []op{{&Header{Type: TypeRegular, Size: 2}, "abc"}}, ErrWriteTooLong},
		{"write to directory", []op{{dirh("").h, "x"}}, ErrWriteTooLong},
		{"write to symlink", []op{{link("", "t").h, "x"}}, ErrWriteTooLong},
		{"short at next header", []op{{&Header{Path: "a", Type: TypeRegular, Size: 5}, "abc"}, reg("b", "", false)}, ErrWriteTooShort},
		{"short at close", []op{{&Header{Type: TypeRegular, Size: 5}, "abc"}}, ErrWriteTooShort},
		{"empty archive", nil, ErrInvalidHeader},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := writeOps(c.ops); !errors.Is(err, c.want) {
				t.Errorf("error = %v, want %v", err, c.want)
			}
		})
	}
}

func TestWriterStickyAndClosed(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.WriteHeader(&Header{Path: "b", Type: TypeDirectory}); err != nil {
		t.Fatal(err)
	}
	first := w.WriteHeader(&Header{Path: "a", Type: TypeDirectory})
	if !errors.Is(first, ErrUnsorted) {
		t.Fatalf("got %v", first)
	}
	if err := w.WriteHeader(&Header{Path: "c", Type: TypeDirectory}); err != first {
		t.Errorf("after an error WriteHeader = %v, want the first error", err)
	}
	if err := w.Close(); err != first {
		t.Errorf("Close = %v, want the first error", err)
	}

	w = NewWriter(io.Discard)
	if err := w.WriteHeader(&Header{Type: TypeDirectory}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := w.WriteHeader(&Header{Path: "x", Type: TypeDirectory}); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteHeader after Close = %v, want ErrClosed", err)
	}
}

// errWriter fails after n bytes.
type errWriter struct{ n int }

var errSink = errors.New("sink failed")

func (e *errWriter) Write(p []byte) (int, error) {
	if len(p) > e.n {
		m := e.n
		e.n = 0
		return m, errSink
	}
	e.n -= len(p)
	return len(p), nil
}

func TestWriterSinkError(t *testing.T) {
	w := NewWriter(&errWriter{n: 100})
	w.WriteHeader(&Header{Type: TypeRegular, Size: 1 << 20})
	_, err := w.Write(make([]byte, 1<<20))
	if !errors.Is(err, errSink) {
		t.Fatalf("Write = %v, want the sink's error", err)
	}
	if err := w.Close(); !errors.Is(err, errSink) {
		t.Errorf("Close = %v, want the sink's error", err)
	}
}

// countWriter counts Write calls reaching the sink.
type countWriter struct{ calls, bytes int }

func (c *countWriter) Write(p []byte) (int, error) {
	c.calls++
	c.bytes += len(p)
	return len(p), nil
}

func TestWriterBatchesSmallFiles(t *testing.T) {
	var c countWriter
	w := NewWriter(&c)
	for i := range 2000 {
		name := fmt.Sprintf("d%02d/f%03d", i/100, i%100)
		if err := w.WriteHeader(&Header{Path: name, Type: TypeRegular, Size: 1024}); err != nil {
			t.Fatal(err)
		}
		w.Write(make([]byte, 1024))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if max := c.bytes/writeBufSize + 2; c.calls > max {
		t.Errorf("%d Write calls for %d bytes, want at most %d", c.calls, c.bytes, max)
	}
}

// TestListingMatchesNix compares Writer and List listings to the .ls file
// real Nix writes with write-nar-listing=true, byte for byte.
func TestListingMatchesNix(t *testing.T) {
	testenv.RequireNix(t)
	for _, c := range smallTrees {
		if c.name == "file-root" || c.name == "symlink-root-dangling" || c.name == "empty-dir" || c.name == "nested-and-empty" || c.name == "exec-bits" || c.name == "symlinks" || c.name == "names" || c.name == "hard-links" {
			t.Run(c.name, func(t *testing.T) { checkListing(t, c.build) })
		}
	}
}

func checkListing(t *testing.T, build tree) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tree")
	build(t, p)
	sp := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", p)))
	cache := filepath.Join(dir, "cache")
	testenv.Nix(t, "nix", "copy", "--to", "file://"+cache+"?write-nar-listing=true&compression=none", sp)
	hashPart := filepath.Base(sp)[:32]
	want, err := os.ReadFile(filepath.Join(cache, hashPart+".ls"))
	if err != nil {
		t.Fatal(err)
	}
	compareListings(t, nixDump(t, sp), sp, want)
}

// compareListings checks List of narData, and the listing a Writer records
// while dumping fsPath, against want, a .ls file written by Nix.
func compareListings(t *testing.T, narData []byte, fsPath string, want []byte) {
	t.Helper()
	l, err := List(bytes.NewReader(narData))
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("List JSON differs from Nix's .ls at byte %d:\n got %s\nwant %s", firstDiff(got, want), got, want)
	}
	var b bytes.Buffer
	w := NewWriter(&b)
	w.EnableListing()
	if err := w.AddTree("", fsPath); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got2, err := w.Listing().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got2, want) {
		t.Errorf("Writer listing differs from Nix's .ls at byte %d:\n got %s\nwant %s", firstDiff(got2, want), got2, want)
	}
}
