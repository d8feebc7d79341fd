package main_test

// BenchmarkGC measures the gc command on a generated cache of tiny paths
// (issue 11: 100,000 narinfos, at most 60 s and 256 MiB on file://): wall
// time per collection, backend requests, and the command's peak RSS (from
// the kernel's rusage of the child process). Half the paths are pinned
// (closures of chains of 10), the rest are garbage. "plan" is the dry run
// (list, read every narinfo, mark); "delete" removes a fresh 10% of
// garbage each run. Sizes: NIXCACHE_GC_BENCH_N (file://, default 100000)
// and NIXCACHE_GC_BENCH_S3_N (S3 server, default 10000: writing 200,000
// objects to versitygw on 2 shared cores takes too long; extrapolate).
//
//	go test ./examples/gc -run XXX -bench GC -benchtime 1x -timeout 0

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath/nixbase32"
)

func benchN(env string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(env)); err == nil && n > 0 {
		return n
	}
	return def
}

// genCache writes n paths (ids from, from+1, ...) through put: chains of
// 10 (each path refers to the previous one of its chain and to the chain's
// first), a NAR of 64 bytes each; the tops of even chains are pinned by
// the returned root text.
func genCache(n, from int, put func(key string, data []byte)) (pins string) {
	hashPart := func(i int) string {
		d := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
		return nixbase32.EncodeToString(d[:20])
	}
	var roots strings.Builder
	for i := from; i < from+n; i++ {
		nar := make([]byte, 64)
		binary.LittleEndian.PutUint64(nar, uint64(i))
		fh := sha256.Sum256(nar)
		fileHash := nixbase32.EncodeToString(fh[:])
		var refs []string
		if i%10 != 0 {
			refs = append(refs, fmt.Sprintf("%s-p%d", hashPart(i-1), i-1), fmt.Sprintf("%s-p%d", hashPart(i-i%10), i-i%10))
		}
		ni := fmt.Sprintf("StorePath: /nix/store/%s-p%d\nURL: nar/%s.nar\nCompression: none\nFileHash: sha256:%s\nFileSize: 64\nNarHash: sha256:%s\nNarSize: 64\nReferences: %s\n",
			hashPart(i), i, fileHash, fileHash, fileHash, strings.Join(refs, " "))
		put("nar/"+fileHash+".nar", nar)
		put(hashPart(i)+".narinfo", []byte(ni))
		if i%10 == 9 && (i/10)%2 == 0 {
			fmt.Fprintf(&roots, "/nix/store/%s-p%d\n", hashPart(i), i)
		}
	}
	return roots.String()
}

func BenchmarkGC(b *testing.B) {
	bin := testenv.GoBuild(b, "github.com/nixcache/nixcache/examples/gc")
	old := time.Now().Add(-48 * time.Hour)
	b.Run("file", func(b *testing.B) {
		n := benchN("NIXCACHE_GC_BENCH_N", 100000)
		dir := b.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "nar"), 0o755); err != nil {
			b.Fatal(err)
		}
		put := func(key string, data []byte) {
			p := filepath.Join(dir, key)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				b.Fatal(err)
			}
			if err := os.Chtimes(p, old, old); err != nil {
				b.Fatal(err)
			}
		}
		put("nix-cache-info", []byte("StoreDir: /nix/store\n"))
		os.Mkdir(filepath.Join(dir, "gcroots"), 0o755)
		put("gcroots/half", []byte(genCache(n, 0, put)))
		url := "file://" + dir
		b.Run(fmt.Sprintf("plan-%d", n), func(b *testing.B) { benchRun(b, bin, url, nil, nil) })
		next := n
		b.Run(fmt.Sprintf("delete-%d", n/10), func(b *testing.B) {
			benchRun(b, bin, url, nil, func() {
				genCache(n/10, next, func(key string, data []byte) {
					if !strings.HasPrefix(key, "gcroots/") {
						put(key, data)
					}
				})
				next += n / 10
			}, "--delete")
		})
	})
	b.Run("s3", func(b *testing.B) {
		n := benchN("NIXCACHE_GC_BENCH_S3_N", 10000)
		s := testenv.StartS3(b)
		s.MakeBucket(b, "gcbench", false)
		url := s.URL("gcbench")
		for _, kv := range s.Env() {
			k, v, _ := strings.Cut(kv, "=")
			b.Setenv(k, v)
		}
		ctx := context.Background()
		c, err := cache.Open(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		type obj struct {
			key  string
			data []byte
		}
		objs := make(chan obj)
		done := make(chan struct{})
		for range 16 {
			go func() {
				for o := range objs {
					if err := c.Backend.Put(ctx, o.key, strings.NewReader(string(o.data)), int64(len(o.data)), "application/octet-stream"); err != nil {
						b.Error(err)
					}
				}
				done <- struct{}{}
			}()
		}
		start := time.Now()
		pins := genCache(n, 0, func(key string, data []byte) { objs <- obj{key, data} })
		objs <- obj{"gcroots/half", []byte(pins)}
		objs <- obj{"nix-cache-info", []byte("StoreDir: /nix/store\n")}
		close(objs)
		for range 16 {
			<-done
		}
		b.Logf("wrote %d objects in %s", 2*n+2, time.Since(start).Round(time.Second))
		time.Sleep(7 * time.Second) // past the collector's 6 s margin: S3 objects cannot be back-dated
		b.Run(fmt.Sprintf("plan-%d", n), func(b *testing.B) { benchRun(b, bin, url, s.Env(), nil) })
	})
}

// benchRun runs the gc command b.N times (prepare, untimed, before each),
// and reports time, requests and peak RSS per collection.
func benchRun(b *testing.B, bin, url string, env []string, prepare func(), extra ...string) {
	var rss int64
	var rep cache.GCReport
	for range b.N {
		if prepare != nil {
			b.StopTimer()
			prepare()
			b.StartTimer()
		}
		cmd := exec.Command(filepath.Join(bin, "gc"), append([]string{"--cache", url, "--keep-days", "0", "--grace", "0", "--json"}, extra...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("gc: %v\n%s", err, out)
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			b.Fatal(err)
		}
		rss = max(rss, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)
	}
	b.ReportMetric(float64(rss)/1024, "peak-RSS-MiB")
	r := rep.Requests
	b.ReportMetric(float64(r.List+r.Get+r.Stat+r.Delete+r.Move), "requests/op")
	b.ReportMetric(float64(rep.NarInfos), "narinfos")
	b.Logf("last report: %s; requests %+v", rep.String(), r)
}
