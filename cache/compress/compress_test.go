package compress_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os/exec"
	"testing"

	"github.com/nixcache/nixcache/cache/compress"
	"github.com/nixcache/nixcache/internal/testenv"
)

func testData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b[:n/2]) // half random, half compressible
	for i := n / 2; i < n; i++ {
		b[i] = byte(i % 251)
	}
	return b
}

// TestCompressorExternalTools: what NewWriter writes is read by the real
// xz and zstd tools (the same liblzma/libzstd Nix links), including the
// concatenated multi-stream xz of parallel compression.
func TestCompressorExternalTools(t *testing.T) {
	data := testData(9<<20 + 12345) // two 8 MiB xz blocks
	tests := []struct {
		name string
		opts compress.Options
		tool []string
	}{
		{"zstd", compress.Options{Method: "zstd"}, []string{"zstd", "-dc"}},
		{"zstd-19", compress.Options{Method: "zstd", Level: 19}, []string{"zstd", "-dc"}},
		{"xz", compress.Options{Method: "xz", Level: 1}, []string{"xz", "-dc"}},
		{"xz-parallel", compress.Options{Method: "xz", Parallel: true, Concurrency: 3}, []string{"xz", "-dc"}},
		{"none", compress.Options{Method: "none"}, []string{"cat"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := compress.NewWriter(&buf, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			// Odd write sizes cross block boundaries.
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 1<<20+7)
				if _, err := w.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if testenv.HaveTool(t, tt.tool[0]) {
				cmd := exec.Command(tt.tool[0], tt.tool[1:]...)
				cmd.Stdin = bytes.NewReader(buf.Bytes())
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("%v: %v", tt.tool, err)
				}
				if !bytes.Equal(out, data) {
					t.Fatalf("%v output differs (%d bytes, want %d)", tt.tool, len(out), len(data))
				}
			}
			r, err := compress.NewReader(bytes.NewReader(buf.Bytes()), tt.opts.Method)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("round trip: %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestParallelXZEmptyInput(t *testing.T) {
	var buf bytes.Buffer
	w, _ := compress.NewWriter(&buf, compress.Options{Method: "xz", Parallel: true, Concurrency: 2})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := compress.NewReader(bytes.NewReader(buf.Bytes()), "xz")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || len(got) != 0 {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
}

// TestDecompressBzip2 reads what the real bzip2 tool writes (narinfos
// without a Compression line mean bzip2).
func TestDecompressBzip2(t *testing.T) {
	testenv.RequireTool(t, "bzip2")
	data := testData(100000)
	cmd := exec.Command("bzip2", "-c")
	cmd.Stdin = bytes.NewReader(data)
	comp, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bzip2", ""} {
		r, err := compress.NewReader(bytes.NewReader(comp), name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%q: %d bytes, %v", name, len(got), err)
		}
	}
}

func TestUnsupportedCompression(t *testing.T) {
	for _, m := range []string{"br", "gzip", "lz4"} {
		if _, err := compress.NewWriter(io.Discard, compress.Options{Method: m}); !errors.Is(err, compress.ErrUnsupported) {
			t.Errorf("NewWriter(%q): %v", m, err)
		}
		if _, err := compress.NewReader(bytes.NewReader(nil), m); !errors.Is(err, compress.ErrUnsupported) {
			t.Errorf("NewReader(%q): %v", m, err)
		}
	}
}

// FuzzCompressRoundTrip: every method gives back exactly its input.
func FuzzCompressRoundTrip(f *testing.F) {
	f.Add([]byte(""), uint8(0))
	f.Add([]byte("nix-archive-1"), uint8(1))
	f.Add(bytes.Repeat([]byte("ab"), 5000), uint8(2))
	methods := []compress.Options{
		{Method: "zstd"}, {Method: "xz", Level: 0}, {Method: "xz", Level: 0, Parallel: true, Concurrency: 2}, {Method: "none"},
	}
	f.Fuzz(func(t *testing.T, data []byte, m uint8) {
		o := methods[int(m)%len(methods)]
		var buf bytes.Buffer
		w, err := compress.NewWriter(&buf, o)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := compress.NewReader(&buf, o.Method)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%+v: round trip %d -> %d bytes, %v", o, len(data), len(got), err)
		}
	})
}

// FuzzDecompress: decompressing arbitrary bytes never panics or hangs.
func FuzzDecompress(f *testing.F) {
	f.Add([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, "xz")
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd}, "zstd")
	f.Add([]byte("BZh91AY&SY"), "bzip2")
	f.Add(xzWithDict(f, []byte("nix-archive-1"), 39), "xz") // a 3 GiB dictionary
	f.Fuzz(func(t *testing.T, data []byte, method string) {
		r, err := compress.NewReader(bytes.NewReader(data), method)
		if err != nil {
			return
		}
		io.Copy(io.Discard, io.LimitReader(r, 1<<20))
		r.Close()
	})
}
