package compress

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// lzmaInputs exercise the encoder's paths: empty and tiny inputs, stored
// chunks (random bytes), long runs (repeat distances, matches up to 273
// bytes), text, and more than one LZMA2 chunk (2 MiB uncompressed or 64 KiB
// compressed) with stored and compressed chunks mixed.
func lzmaInputs() map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	text := func(n int) []byte {
		words := []string{"nix", "store", "derivation", "/nix/store/", "lib", "out", "\n", " ", "x86_64-linux", "{", "}", "0123456789abcdfghijklmnpqrsvwxyz"}
		var b bytes.Buffer
		for b.Len() < n {
			b.WriteString(words[rng.IntN(len(words))])
		}
		return b.Bytes()[:n]
	}
	var mixed []byte
	for i := range 12 {
		if i%3 == 0 {
			mixed = append(mixed, random(100<<10)...)
		} else {
			mixed = append(mixed, text(150<<10)...)
		}
	}
	return map[string][]byte{
		"empty":    {},
		"one byte": {'x'},
		"three":    []byte("abc"),
		"zeros":    make([]byte, 3<<20),
		"period 7": bytes.Repeat([]byte("abcdefg"), 100000),
		"random":   random(300 << 10),
		"text":     text(5 << 20),
		"mixed":    mixed,
		"parallel": parallelInput(1 << 20),
	}
}

// TestXZStreamLiblzma: every stream the encoder writes is decoded by
// liblzma (xz -dc, the library Nix links) and by this package's reader to
// exactly its input, and xz --list accepts the container (index, footer,
// checks).
func TestXZStreamLiblzma(t *testing.T) {
	testenv.RequireTool(t, "xz")
	for _, level := range []int{1, 2, 6, 9} { // the fast parser (4 and 16 candidates), the normal one (8, 16)
		e := newXZEncoder(level)
		for name, data := range lzmaInputs() {
			t.Run(fmt.Sprintf("%d/%s", level, name), func(t *testing.T) {
				out := appendXZStream(nil, data, e) // one encoder for all: tables reused
				cmd := exec.Command("xz", "-dc")
				cmd.Stdin = bytes.NewReader(out)
				got, err := cmd.Output()
				if err != nil {
					t.Fatalf("xz -dc: %v", err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("xz -dc: %d bytes, want %d (first difference at %d)", len(got), len(data), firstDiff(got, data))
				}
				r, err := NewReader(bytes.NewReader(out), XZ)
				if err != nil {
					t.Fatal(err)
				}
				got, err = io.ReadAll(r)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("NewReader: %d bytes, %v", len(got), err)
				}
				f := filepath.Join(t.TempDir(), "t.xz")
				if err := os.WriteFile(f, out, 0o644); err != nil {
					t.Fatal(err)
				}
				msg, err := exec.Command("xz", "--robot", "--list", f).CombinedOutput()
				if err != nil {
					t.Fatalf("xz --list: %v: %s", err, msg)
				}
				// totals <streams> <blocks> <compressed> <uncompressed> ...
				want := fmt.Sprintf("totals\t1\t%d\t%d\t%d\t", min(len(data), 1), len(out), len(data))
				if !strings.Contains(string(msg), want) {
					t.Errorf("xz --list: %s\nwant a line starting %q", msg, want)
				}
			})
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

// TestXZSmallerThanGreedy: on a NAR (the Go toolchain's: source and
// binaries) the default encoder writes fewer bytes than ulikunitz/xz's
// greedy one with the same block and dictionary, which is why it exists
// (the whole tree: 1.39x liblzma's size before; see BenchmarkCompress).
func TestXZSmallerThanGreedy(t *testing.T) {
	in, err := benchInput()
	if err != nil {
		t.Skip("no Go toolchain tree:", err)
	}
	for _, off := range []int{0, len(in) - 2<<20} { // source, binaries
		data := in[off : off+2<<20]
		ours := appendXZStream(nil, data, newXZEncoder(-1))
		cfg, err := xzConfig(6)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DictCap = len(data)
		var buf bytes.Buffer
		w, err := cfg.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if len(ours) >= buf.Len() {
			t.Errorf("at %d: ours %d bytes, ulikunitz/xz %d", off, len(ours), buf.Len())
		}
		t.Logf("at %d: ours %d bytes, ulikunitz/xz %d", off, len(ours), buf.Len())
	}
}
