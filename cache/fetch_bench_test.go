package cache_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// BenchmarkFetch restores a 64 MiB path (half random, half compressible, in
// 64 files) from a file:// cache, zstd and uncompressed, into a fresh
// directory per iteration: the signature check, the NAR read and
// decompressed, its FileHash and NarHash checked while it streams, and the
// tree written (what Nix does when it substitutes, but for registering the
// path in its database).
func BenchmarkFetch(b *testing.B) {
	ctx := context.Background()
	sk, pk, err := signature.GenerateKey("bench-fetch-1", nil)
	if err != nil {
		b.Fatal(err)
	}
	src := newFakeSource(b)
	size := 64 << 20
	data := benchData(size)
	files := map[string][]byte{}
	for i := range 64 {
		files[fmt.Sprintf("d%d/f%d", i%8, i)] = data[i*size/64 : (i+1)*size/64]
	}
	p := src.MustAdd(b, "bench", nil, files)
	for _, method := range []string{"zstd", "none"} {
		b.Run(method, func(b *testing.B) {
			c, err := cache.Open(ctx, "file://"+b.TempDir()+"?compression="+method)
			if err != nil {
				b.Fatal(err)
			}
			opts := c.Options()
			opts.SecretKeys = []signature.SecretKey{sk}
			c = cache.New(c.Backend, opts)
			if _, err := c.Push(ctx, src, []storepath.Path{p}, cache.PushOptions{}); err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			b.SetBytes(int64(size))
			i := 0
			for b.Loop() {
				i++
				if _, err := c.Fetch(ctx, p, filepath.Join(dir, fmt.Sprint(i)), cache.FetchOptions{TrustedKeys: []signature.PublicKey{pk}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
