package compress

import "testing"

// BenchmarkLZMAEncode runs the parallel xz encoder at the default level on
// one goroutine over the benchmark input (the Go toolchain's source and
// binaries) in 2 MiB blocks, as each worker of a push does; "x-nix" is the
// output against xz -6 of the whole input (0 without xz).
func BenchmarkLZMAEncode(b *testing.B) {
	data, err := benchInput()
	if err != nil {
		b.Skip("no Go toolchain tree:", err)
	}
	for _, level := range []int{6, 2} {
		b.Run(map[int]string{6: "normal", 2: "fast"}[level], func(b *testing.B) {
			ref := refSize(b, XZ, data)
			e := newXZEncoder(level)
			b.SetBytes(int64(len(data)))
			var out []byte
			n := 0
			for b.Loop() {
				n = 0
				for off := 0; off < len(data); off += xzBlockSize {
					out = appendXZStream(out[:0], data[off:min(off+xzBlockSize, len(data))], e)
					n += len(out)
				}
			}
			if ref > 0 {
				b.ReportMetric(float64(n)/float64(ref), "x-nix")
			}
		})
	}
}
