package compress

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/ulikunitz/xz"
)

// BenchmarkXZReadGuard decodes a 16 MiB multi-stream .xz (what parallel
// compression writes) through ulikunitz/xz alone and with the memory guard
// in front: the guard follows chunk headers only, so both run at the
// decoder's speed.
func BenchmarkXZReadGuard(b *testing.B) {
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(i*7/3 ^ i>>9)
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{Method: XZ, Level: 0, Parallel: true, Concurrency: 2})
	if err != nil {
		b.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	in := buf.Bytes()
	for _, guarded := range []bool{false, true} {
		name := "plain"
		if guarded {
			name = "guarded"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var src io.Reader = bytes.NewReader(in)
				if guarded {
					src = &xzLimit{r: src, limit: DefaultMaxMemory, want: 12}
				}
				r, err := xz.NewReader(bufio.NewReaderSize(src, 64<<10))
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, r); err != nil || n != int64(len(data)) {
					b.Fatal(n, err)
				}
			}
		})
	}
}
