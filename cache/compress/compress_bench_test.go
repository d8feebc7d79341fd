package compress

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/nixcache/nixcache/nar"
)

var benchInput = sync.OnceValues(func() ([]byte, error) {
	// Text and binaries from the Go toolchain, as in the bench script's
	// push rows (which use the whole tree): the NAR of src/net and the
	// first 12 MiB of the NAR of the tool binaries.
	var text, bin bytes.Buffer
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return nil, err
	}
	root := strings.TrimSpace(string(goroot))
	if err := nar.DumpPath(&text, filepath.Join(root, "src", "net")); err != nil {
		return nil, err
	}
	if err := nar.DumpPath(&bin, filepath.Join(root, "pkg", "tool", runtime.GOOS+"_"+runtime.GOARCH)); err != nil {
		return nil, err
	}
	return append(text.Bytes(), bin.Bytes()[:min(bin.Len(), 12<<20)]...), nil
})

var benchRef sync.Map // method -> size written by the reference tool

// refSize is the size the C library Nix links writes at Nix's default
// level (xz -6 for liblzma, zstd -3 for libzstd), or 0 without the tool.
func refSize(b *testing.B, method string, data []byte) int {
	if v, ok := benchRef.Load(method); ok {
		return v.(int)
	}
	args := map[string][]string{XZ: {"xz", "-6", "-T1", "-c"}, Zstd: {"zstd", "-3", "-c"}}[method]
	n := 0
	if _, err := exec.LookPath(args[0]); err == nil {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("%v: %v", args, err)
		}
		n = len(out)
	}
	benchRef.Store(method, n)
	return n
}

// BenchmarkCompress compresses 17 MiB of the Go toolchain's NAR the way a
// push does (parallel xz streams, parallel zstd frames at the default
// level) and reports the output size as a fraction of the input
// ("ratio") and of what Nix's library writes at its default level
// ("x-nix": liblzma preset 6, libzstd level 3; 0 without the tool).
// Targets of issue 13: xz <= 1.25x, zstd <= 1.05x (zstd-level3 shows what
// the size target costs in time).
func BenchmarkCompress(b *testing.B) {
	data, err := benchInput()
	if err != nil {
		b.Skip("no Go toolchain tree:", err)
	}
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"zstd", Options{Method: Zstd}},
		// libzstd's level 3 (klauspost's default level): the size
		// target holds (about 1.04x on the Go toolchain), for about 1.45x
		// the compression time of the default here.
		{"zstd-level3", Options{Method: Zstd, Level: 3}},
		{"xz-parallel", Options{Method: XZ, Parallel: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ref := refSize(b, tc.o.Method, data)
			b.SetBytes(int64(len(data)))
			var out bytes.Buffer
			for b.Loop() {
				out.Reset()
				w, err := NewWriter(&out, tc.o)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := w.Write(data); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(out.Len())/float64(len(data)), "ratio")
			if ref > 0 {
				b.ReportMetric(float64(out.Len())/float64(ref), "x-nix")
			}
		})
	}
}
