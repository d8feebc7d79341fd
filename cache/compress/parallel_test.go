package compress

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/nixcache/nixcache/internal/testenv"
)

// failAfter fails every write after n bytes.
type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, f.err
	}
	return len(p), nil
}

// settle waits for goroutines started by a test to exit.
func settle(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left running (had %d)", n-before, before)
	}
}

func parallelInput(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7/3 ^ i>>9) // compressible, not trivial
	}
	return b
}

// TestParallelWriterBlocks: the concatenated streams/frames decode to the
// input whatever the input size relative to the block size, and the real
// xz and zstd tools (the liblzma/libzstd Nix uses) read them. Inputs of at
// most one block start no goroutine.
func TestParallelWriterBlocks(t *testing.T) {
	const bs = 64 << 10
	sizes := []struct {
		name string
		n    int
	}{
		{"empty", 0}, {"one byte", 1}, {"one block", bs}, {"block+1", bs + 1},
		{"many blocks", 9*bs + 123}, {"exact blocks", 4 * bs},
	}
	for _, method := range []string{"zstd", "xz"} {
		for _, sz := range sizes {
			t.Run(method+"/"+sz.name, func(t *testing.T) {
				data := parallelInput(sz.n)
				var buf bytes.Buffer
				w, err := NewWriter(&buf, Options{Method: method, Parallel: true, Concurrency: 3, BlockSize: bs})
				if err != nil {
					t.Fatal(err)
				}
				if pw, ok := w.(*parallelWriter); ok && method == "zstd" {
					pw.size = bs // zstd's block size is fixed; shrink it for the test
				}
				before := runtime.NumGoroutine()
				for rest := data; len(rest) > 0; {
					k := min(len(rest), 10007)
					if _, err := w.Write(rest[:k]); err != nil {
						t.Fatal(err)
					}
					rest = rest[k:]
				}
				if pw := w.(*parallelWriter); sz.n <= bs && pw.started {
					t.Errorf("input of %d bytes started the goroutines", sz.n)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				settle(t, before)
				r, err := NewReader(bytes.NewReader(buf.Bytes()), method)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				if err != nil {
					t.Fatalf("decompress: %v", err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("round trip: got %d bytes, want %d", len(got), len(data))
				}
				if !testenv.HaveTool(t, method) {
					return
				}
				cmd := exec.Command(method, "-dc")
				cmd.Stdin = bytes.NewReader(buf.Bytes())
				out, err := cmd.Output()
				if err != nil || !bytes.Equal(out, data) {
					t.Fatalf("%s -dc: %v, %d bytes (want %d)", method, err, len(out), len(data))
				}
			})
		}
	}
}

// TestParallelWriterOutputError: a failing output stops Write early, Close
// returns the error, and no goroutine is left behind.
func TestParallelWriterOutputError(t *testing.T) {
	boom := errors.New("disk full")
	for _, method := range []string{"zstd", "xz"} {
		t.Run(method, func(t *testing.T) {
			before := runtime.NumGoroutine()
			w, err := NewWriter(&failAfter{n: 10, err: boom}, Options{Method: method, Parallel: true, Concurrency: 2, BlockSize: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			w.(*parallelWriter).size = 64 << 10
			chunk := parallelInput(64 << 10)
			var werr error
			for range 200 {
				if _, werr = w.Write(chunk); werr != nil {
					break
				}
			}
			if !errors.Is(werr, boom) {
				t.Errorf("Write after the output failed: %v, want %v", werr, boom)
			}
			if err := w.Close(); !errors.Is(err, boom) {
				t.Errorf("Close: %v, want %v", err, boom)
			}
			settle(t, before)
		})
	}
}
