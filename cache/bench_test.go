package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

// BenchmarkPush pushes a 64 MiB path (half random, half compressible, in 64
// files) to a fresh file:// cache per iteration.
func BenchmarkPush(b *testing.B) {
	for _, method := range []string{"zstd", "none", "none-streamed", "xz-parallel"} {
		b.Run(method, func(b *testing.B) {
			src := newFakeSource(b)
			files := map[string][]byte{}
			size := 64 << 20
			if method == "xz-parallel" {
				size = 16 << 20
			}
			data := benchData(size)
			for i := range 64 {
				files[fmt.Sprintf("d%d/f%d", i%8, i)] = data[i*size/64 : (i+1)*size/64]
			}
			p := src.MustAdd(b, "bench", nil, files)
			params := "compression=" + method
			switch method {
			case "xz-parallel":
				params = "compression=xz&parallel-compression=true"
			case "none-streamed":
				params = "compression=none"
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				c, err := cache.Open(context.Background(), "file://"+b.TempDir()+"?"+params)
				if err != nil {
					b.Fatal(err)
				}
				if method == "none-streamed" {
					// Only the Backend methods: the dump streams through Put
					// (a pipe), as it does to S3.
					c = cache.New(struct{ cache.Backend }{c.Backend}, c.Options())
				}
				if _, err := c.Push(context.Background(), src, []storepath.Path{p}, cache.PushOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPushSmallPaths pushes a chain of 31 small paths (each referring
// to the one before, a few hundred bytes of NAR) to a fresh file:// cache
// per iteration with zstd: per-path costs (allocations, fsyncs, the
// reference-ordered narinfo commits).
func BenchmarkPushSmallPaths(b *testing.B) {
	src := newFakeSource(b)
	var top storepath.Path
	for i := range 31 {
		var refs []storepath.Path
		if top != "" {
			refs = []storepath.Path{top}
		}
		top = src.MustAdd(b, fmt.Sprintf("small%d", i), refs, nil)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := cache.Open(context.Background(), "file://"+b.TempDir()+"?compression=zstd")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Push(context.Background(), src, []storepath.Path{top}, cache.PushOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPushStorePath pushes a real store path named by
// NIXCACHE_BENCH_PATH (e.g. the result of nix-store --add /usr/local/go)
// with NIXCACHE_BENCH_PARAMS (default compression=zstd).
func BenchmarkPushStorePath(b *testing.B) {
	p, store, params := benchStorePath(b, "compression=zstd")
	b.ResetTimer()
	for range b.N {
		c, err := cache.Open(context.Background(), "file://"+b.TempDir()+"?"+params)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Push(context.Background(), store, []storepath.Path{p}, cache.PushOptions{NoClosure: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchStorePath is the store path NIXCACHE_BENCH_PATH names (the
// benchmark skips without it), the local store, and the cache parameters
// NIXCACHE_BENCH_PARAMS (default params); it sets the bytes per op to the
// path's NarSize.
func benchStorePath(b *testing.B, params string) (storepath.Path, cache.Source, string) {
	raw := os.Getenv("NIXCACHE_BENCH_PATH")
	if raw == "" {
		b.Skip("NIXCACHE_BENCH_PATH not set")
	}
	if v := os.Getenv("NIXCACHE_BENCH_PARAMS"); v != "" {
		params = v
	}
	p := mustPath(b, raw)
	store := openStore(b)
	info, err := store.PathInfo(context.Background(), p)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(info.NarSize))
	return p, store, params
}

// benchData returns n bytes, half random and half a repeating text, so that
// compression has both kinds of input to work on.
func benchData(n int) []byte {
	b := bytes.Repeat([]byte("nix-archive-1 (type regular) "), n/29+1)[:n]
	rand.Read(b[:n/2])
	return b
}

// BenchmarkPushClosureFile pushes the closure of NIXCACHE_BENCH_PATH (the
// bench's 31-path chain, say) to a fresh file:// cache per iteration, zstd,
// signed: the small-push row, durable (every object fsynced).
func BenchmarkPushClosureFile(b *testing.B) {
	raw := os.Getenv("NIXCACHE_BENCH_PATH")
	if raw == "" {
		b.Skip("NIXCACHE_BENCH_PATH not set")
	}
	p := mustPath(b, raw)
	store := openStore(b)
	sec, _ := nixKey(b, "bench-1")
	b.ResetTimer()
	for range b.N {
		c, err := cache.Open(context.Background(), "file://"+b.TempDir()+"?compression=zstd&secret-key="+sec)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Push(context.Background(), store, []storepath.Path{p}, cache.PushOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPushS3StorePath pushes the store path NIXCACHE_BENCH_PATH to a
// fresh bucket of a local S3 server (versitygw) per iteration, with
// NIXCACHE_BENCH_PARAMS (default compression=none: the one-pass upload).
func BenchmarkPushS3StorePath(b *testing.B) {
	p, store, params := benchStorePath(b, "compression=none")
	srv := testenv.StartS3(b)
	for _, e := range srv.Env() {
		k, v, _ := strings.Cut(e, "=")
		b.Setenv(k, v)
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		bucket := fmt.Sprintf("bench%d", i)
		srv.MakeBucket(b, bucket, false)
		c, err := cache.Open(context.Background(), srv.URL(bucket, params))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := c.Push(context.Background(), store, []storepath.Path{p}, cache.PushOptions{NoClosure: true}); err != nil {
			b.Fatal(err)
		}
	}
}
