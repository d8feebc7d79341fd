package nar

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

func smallFileHeaders(n int) []Header {
	hs := make([]Header, n)
	for i := range hs {
		hs[i] = Header{Path: fmt.Sprintf("d%03d/f%04d", i/100, i), Type: TypeRegular, Size: 1024, Executable: i%7 == 0}
	}
	return hs
}

// BenchmarkWriter writes 2000 files of 1 KiB in 20 directories.
func BenchmarkWriter(b *testing.B) {
	hs := smallFileHeaders(2000)
	data := make([]byte, 1024)
	var size int64
	for b.Loop() {
		w := NewWriter(io.Discard)
		for i := range hs {
			if err := w.WriteHeader(&hs[i]); err != nil {
				b.Fatal(err)
			}
			w.Write(data)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		size = w.Offset()
	}
	b.SetBytes(size)
}

func BenchmarkReader(b *testing.B) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	data := make([]byte, 1024)
	for _, h := range smallFileHeaders(2000) {
		w.WriteHeader(&h)
		w.Write(data)
	}
	w.Close()
	nar := buf.Bytes()
	b.SetBytes(int64(len(nar)))
	for b.Loop() {
		r := NewReader(bytes.NewReader(nar))
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, r)
		}
	}
}

// benchDump dumps p with each walker: the fast one (getdents, openat, one
// fstat per file on Linux) and the portable one (an Lstat per object).
func benchDump(b *testing.B, p string) {
	_, size, err := DumpPathSum(nil, p)
	if err != nil {
		b.Fatal(err)
	}
	for _, w := range walkers {
		b.Run("walker="+w.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if err := w.dump(io.Discard, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDumpPath(b *testing.B) {
	b.Run("generated", func(b *testing.B) {
		p := filepath.Join(b.TempDir(), "tree")
		for i := range 2000 {
			d := filepath.Join(p, fmt.Sprintf("d%02d", i/100))
			os.MkdirAll(d, 0o755)
			os.WriteFile(filepath.Join(d, fmt.Sprintf("f%04d", i)), make([]byte, 1+i%4096), 0o644)
		}
		benchDump(b, p)
	})
	goroot := testenv.GOROOT(b)
	for _, p := range []string{filepath.Join(goroot, "src", "net"), goroot} {
		b.Run(filepath.Base(p), func(b *testing.B) { benchDump(b, p) })
	}
}

func BenchmarkDumpPathSum(b *testing.B) {
	p := filepath.Join(testenv.GOROOT(b), "src")
	_, size, _ := DumpPathSum(nil, p)
	b.SetBytes(size)
	for b.Loop() {
		if _, _, err := DumpPathSum(nil, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDumpSmallPath dumps a store path of two small files, like each
// path of the bench's 31-path closure: what a closure push pays per path
// besides the cache's own work (the Writer's buffer and the walker's
// getdents buffer are recycled from one dump to the next).
func BenchmarkDumpSmallPath(b *testing.B) {
	p := filepath.Join(b.TempDir(), "path")
	os.Mkdir(p, 0o755)
	os.WriteFile(filepath.Join(p, "seed"), []byte("bench-1 bench-d7\n"), 0o644)
	os.WriteFile(filepath.Join(p, "deps"), []byte("/nix/store/pbvp3a9889qk4hgl900rzf06wsy2pf9p-bench-d6\n"), 0o644)
	b.ReportAllocs()
	for b.Loop() {
		w := NewWriter(io.Discard)
		if err := w.AddTree("", p); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
