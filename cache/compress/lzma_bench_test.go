package compress

import "testing"

// BenchmarkLZMAEncode runs the parallel xz encoder on one goroutine over
// the benchmark input (the Go toolchain's source and binaries) in blocks of
// xzBlockSize, as each worker of a push does: at the default level (the
// normal parser) and at 2 (the fast one); "x-nix" is the output against
// xz -6 of the whole input.
func BenchmarkLZMAEncode(b *testing.B) {
	data, err := benchInput()
	if err != nil {
		b.Skip("no Go toolchain tree:", err)
	}
	for _, level := range []int{-1, 2} {
		b.Run(map[int]string{-1: "default", 2: "fast"}[level], func(b *testing.B) {
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
