package nar

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

type raw []byte // bytes copied verbatim
type u64 uint64 // a bare little-endian length or size
type str string // a NAR string

// build assembles a NAR from parts: a Go string is a token, str a NAR
// string, u64 a bare number, raw verbatim bytes.
func build(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			b = appendStr(b, p)
		case str:
			b = appendStr(b, string(p))
		case u64:
			b = binary.LittleEndian.AppendUint64(b, uint64(p))
		case raw:
			b = append(b, p...)
		default:
			panic("bad part")
		}
	}
	return b
}

// Valid building blocks.
var (
	hdrMagic = []any{"nix-archive-1"}
)

func entry(name string, node ...any) []any {
	return append(append([]any{"entry", "(", "name", str(name), "node"}, node...), ")")
}

func file(data string) []any {
	return []any{"(", "type", "regular", "contents", str(data), ")"}
}

func dir(entries ...[]any) []any {
	parts := []any{"(", "type", "directory"}
	for _, e := range entries {
		parts = append(parts, e...)
	}
	return append(parts, ")")
}

func narOf(node []any, extra ...any) []byte {
	return build(append(append(append([]any{}, hdrMagic...), node...), extra...)...)
}

func readAll(data []byte) error {
	r := NewReader(bytes.NewReader(data))
	for {
		h, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Type == TypeRegular {
			if _, err := io.Copy(io.Discard, r); err != nil {
				return err
			}
		}
	}
}

func TestReaderRejects(t *testing.T) {
	long := strings.Repeat("n", 256)
	cases := []struct {
		name string
		data []byte
		want error
		// nixAccepts records that nix-store --restore (Nix 2.8) accepts the
		// input: the Reader is deliberately stricter there.
		nixAccepts bool
	}{
		{"empty input", nil, io.ErrUnexpectedEOF, false},
		{"bad magic", build("nix-archive-2", "(", "type", "regular", "contents", str(""), ")"), ErrFormat, false},
		{"only magic", build("nix-archive-1"), io.ErrUnexpectedEOF, false},
		{"missing open paren", build("nix-archive-1", "type", "regular", "contents", str(""), ")"), ErrFormat, false},
		{"unknown type", build("nix-archive-1", "(", "type", "fifo", ")"), ErrFormat, false},
		{"unknown field", build("nix-archive-1", "(", "type", "regular", "mode", str("x"), ")"), ErrFormat, false},
		{"bad token in directory", build("nix-archive-1", "(", "type", "directory", "entri", ")"), ErrFormat, false},
		// Nix 2.8's parser does not check the order (its prevName is reset for
		// every entry); Nix never writes such a NAR and its hash would differ.
		{"unsorted entries", narOf(dir(entry("b", file("")...), entry("a", file("")...))), ErrUnsorted, true},
		{"duplicate entries", narOf(dir(entry("a", file("")...), entry("a", file("")...))), ErrDuplicate, false},
		{"empty name", narOf(dir(entry("", file("")...))), ErrInvalidName, false},
		{"dot name", narOf(dir(entry(".", file("")...))), ErrInvalidName, false},
		{"dotdot name", narOf(dir(entry("..", file("")...))), ErrInvalidName, false},
		{"slash in name", narOf(dir(entry("a/b", file("")...))), ErrInvalidName, false},
		{"NUL in name", narOf(dir(entry("a\x00b", file("")...))), ErrInvalidName, false},
		{"name too long", narOf(dir(entry(long, file("")...))), ErrInvalidName, false},
		{"empty symlink target", build("nix-archive-1", "(", "type", "symlink", "target", str(""), ")"), ErrInvalidTarget, false},
		// Nix 2.8 passes the target to symlink(2) as a C string: it silently
		// restores "a", a different tree.
		{"NUL in symlink target", build("nix-archive-1", "(", "type", "symlink", "target", str("a\x00b"), ")"), ErrInvalidTarget, true},
		{"symlink target too long", build("nix-archive-1", "(", "type", "symlink", "target", str(strings.Repeat("t", 4096)), ")"), ErrInvalidTarget, false},
		{"non-empty executable marker", build("nix-archive-1", "(", "type", "regular", "executable", str("x"), "contents", str(""), ")"), ErrFormat, false},
		{"executable after contents", build("nix-archive-1", "(", "type", "regular", "contents", str(""), "executable", str(""), ")"), ErrFormat, true},
		{"two type fields", build("nix-archive-1", "(", "type", "regular", "type", "regular", "contents", str(""), ")"), ErrFormat, false},
		{"non-zero token padding", append(build("nix-archive-1")[:8+13], 0, 0, 1), ErrFormat, false},
		{"non-zero name padding", bytes.Replace(narOf(dir(entry("abc", file("")...))), []byte("abc\x00"), []byte("abc\x01"), 1), ErrFormat, false},
		{"non-zero contents padding", bytes.Replace(narOf(file("xyz")), []byte("xyz\x00"), []byte("xyz\x07"), 1), ErrFormat, false},
		{"truncated contents", narOf(file("hello world"))[:8*9+5], io.ErrUnexpectedEOF, false},
		{"missing close paren", build("nix-archive-1", "(", "type", "regular", "contents", str("")), io.ErrUnexpectedEOF, false},
		{"missing directory close", build("nix-archive-1", "(", "type", "directory"), io.ErrUnexpectedEOF, false},
		{"missing entry close", build(append([]any{"nix-archive-1", "(", "type", "directory", "entry", "(", "name", str("a"), "node"}, append(file(""), ")")...)...), io.ErrUnexpectedEOF, false},
		{"huge token length", build("nix-archive-1", u64(1<<40)), ErrFormat, false},
		{"huge contents size", build("nix-archive-1", "(", "type", "regular", "contents", u64(1<<63)), ErrFormat, false},
		{"trailing data after file", narOf(file("x"), raw("garbage!")), ErrTrailingData, true},
		{"trailing data after directory", narOf(dir(), "("), ErrTrailingData, true},
		{"second root", narOf(file("x"), "(", "type", "regular", "contents", str(""), ")"), ErrTrailingData, true},
	}
	haveNix := testenv.HaveNix(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := readAll(c.data)
			if !errors.Is(err, c.want) {
				t.Fatalf("Reader error = %v, want %v", err, c.want)
			}
			if _, lerr := List(bytes.NewReader(c.data)); !errors.Is(lerr, c.want) {
				t.Errorf("List error = %v, want %v", lerr, c.want)
			}
			if rerr := Restore(bytes.NewReader(c.data), filepath.Join(t.TempDir(), "out")); !errors.Is(rerr, c.want) {
				t.Errorf("Restore error = %v, want %v", rerr, c.want)
			}
			if !haveNix {
				return
			}
			cmd := exec.Command("nix-store", "--restore", filepath.Join(t.TempDir(), "out"))
			cmd.Stdin = bytes.NewReader(c.data)
			out, nerr := cmd.CombinedOutput()
			if (nerr == nil) != c.nixAccepts {
				t.Errorf("nix-store --restore: err=%v (%s), table says nixAccepts=%v", nerr, bytes.TrimSpace(out), c.nixAccepts)
			}
		})
	}
}

func TestReaderOffsets(t *testing.T) {
	// 96 is the offset of a root file's contents: magic (24) + "(" (16) +
	// "type" (16) + "regular" (16) + "contents" (16) + size (8).
	data := narOf(dir(entry("a", file("12345")...), entry("b", file("")...)))
	r := NewReader(bytes.NewReader(data))
	var offs []int64
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Type == TypeRegular {
			offs = append(offs, h.Offset)
			b := make([]byte, h.Size)
			if _, err := io.ReadFull(r, b); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data[h.Offset:h.Offset+h.Size], b) {
				t.Errorf("%s: contents at offset %d are %q, read %q", h.Path, h.Offset, data[h.Offset:h.Offset+h.Size], b)
			}
		}
	}
	if len(offs) != 2 {
		t.Fatalf("got %d files", len(offs))
	}
	r = NewReader(bytes.NewReader(narOf(file("x"))))
	if h, err := r.Next(); err != nil || h.Offset != 96 {
		t.Errorf("root file offset = %v, %v; want 96", h, err)
	}
}

// oneByteReader hands out one byte per Read, to exercise buffer refills.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestReaderSmallReads(t *testing.T) {
	data := narOf(dir(entry("a", file(strings.Repeat("z", 100000))...), entry("b", "(", "type", "symlink", "target", str("a"), ")")))
	var b bytes.Buffer
	r := NewReader(oneByteReader{bytes.NewReader(data)})
	w := NewWriter(&b)
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), data) {
		t.Errorf("round trip through one-byte reads differs at %d", firstDiff(b.Bytes(), data))
	}
}
