package localstore

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixcache/nixcache/storepath"
)

func openBench(b *testing.B, mode Mode) (*Store, storepath.Path, storepath.Path) {
	out, drv := buildClosure(b, "live")
	s, err := Open(context.Background(), Options{Mode: mode})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, out, drv
}

// BenchmarkOpenPathInfo is the cost a post-build hook pays: open the
// database, read one path, close.
func BenchmarkOpenPathInfo(b *testing.B) {
	out, _ := buildClosure(b, "live")
	ctx := context.Background()
	for b.Loop() {
		s, err := Open(ctx, Options{Mode: ModeDB})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.PathInfo(ctx, out); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

func BenchmarkPathInfo(b *testing.B) {
	for _, mode := range []Mode{ModeDB, ModeCLI} {
		b.Run(mode.String(), func(b *testing.B) {
			s, out, _ := openBench(b, mode)
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.PathInfo(ctx, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkClosure(b *testing.B) {
	for _, mode := range []Mode{ModeDB, ModeCLI} {
		b.Run(mode.String(), func(b *testing.B) {
			s, out, drv := openBench(b, mode)
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.Closure(ctx, []storepath.Path{out, drv}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDerivationOutputs(b *testing.B) {
	s, _, drv := openBench(b, ModeDB)
	ctx := context.Background()
	for b.Loop() {
		if _, err := s.DerivationOutputs(ctx, drv); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodePathInfoJSON(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "nix-2.8-path-info.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := DecodePathInfoJSON(data, storepath.DefaultDir); err != nil {
			b.Fatal(err)
		}
	}
}
