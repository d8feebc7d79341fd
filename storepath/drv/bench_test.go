package drv

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func BenchmarkParseOutputs(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "lsx-multi.drv"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseOutputs(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadOutputs(b *testing.B) {
	path := filepath.Join("testdata", "lsx-multi.drv")
	for b.Loop() {
		if _, err := ReadOutputs(path); err != nil {
			b.Fatal(err)
		}
	}
}
