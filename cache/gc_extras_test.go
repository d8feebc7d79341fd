package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/s3"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// TestCollectLogsAndRealisations: the build log and the realisation of a
// collected path go with it; those of a kept (pinned) path stay; a dry run
// removes neither.
func TestCollectLogsAndRealisations(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		collectExtras(t, "file://"+dir, func() { ageFiles(t, dir, 2*time.Hour) })
	})
	t.Run("s3", func(t *testing.T) {
		s := testenv.StartS3(t)
		s.MakeBucket(t, "gcextras", true)
		s.SetEnv(t)
		// S3 cannot backdate objects: wait out the collector's clock margin.
		collectExtras(t, s.URL("gcextras"), func() { time.Sleep(8 * time.Second) })
	})
}

func collectExtras(t *testing.T, url string, age func()) {
	ctx := context.Background()
	sk, pk, err := signature.GenerateKey("gc-extras-1", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	skFile := filepath.Join(t.TempDir(), "key.sec")
	if err := signature.WriteSecretKeyFile(skFile, sk); err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(ctx, url, cache.WithSecretKeyFiles(skFile))
	if err != nil {
		t.Fatal(err)
	}
	src := newFakeSource(t)
	put := func(key string, data []byte) {
		t.Helper()
		if err := c.Backend.Put(ctx, key, bytes.NewReader(data), int64(len(data)), ""); err != nil {
			t.Fatal(err)
		}
	}
	type item struct {
		path     storepath.Path
		log, doi string
	}
	var kept, gone item
	for _, it := range []*item{&kept, &gone} {
		name := "kept"
		if it == &gone {
			name = "gone"
		}
		drv := src.MustAdd(t, name+".drv", nil, nil)
		it.path = src.MustAdd(t, name, nil, nil)
		src.Infos[it.path].Deriver = drv
		pin := ""
		if it == &kept {
			pin = "kept"
		}
		if _, err := c.Push(ctx, src, []storepath.Path{it.path}, cache.PushOptions{Pin: pin}); err != nil {
			t.Fatal(err)
		}
		it.log = cache.LogKey(drv)
		put(it.log, []byte("build log of "+name+"\n"))
		h := sha256.Sum256([]byte(drv))
		r := cache.Realisation{ID: "sha256:" + hex.EncodeToString(h[:]) + "!out", OutPath: it.path}
		r.Sign(sk)
		doc, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		it.doi = cache.RealisationKey(r.ID)
		put(it.doi, doc)
	}
	age()
	verify := func() {
		t.Helper()
		checkConsistent(t, c)
		if _, err := c.Verify(ctx, nil, cache.VerifyOptions{TrustedKeys: []signature.PublicKey{pk}}); err != nil {
			t.Fatal(err)
		}
	}
	verify()

	before := listing(t, c.Backend)
	var planned []string
	rep, err := c.Collect(ctx, cache.GCOptions{Removed: func(key, reason string) {
		if reason == "log" || reason == "realisation" {
			planned = append(planned, key+" "+reason)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if after := listing(t, c.Backend); !slices.Equal(before, after) {
		t.Fatalf("dry run changed the cache:\nbefore %v\nafter  %v", before, after)
	}
	slices.Sort(planned)
	if want := []string{gone.log + " log", gone.doi + " realisation"}; !slices.Equal(planned, want) || rep.Logs.Count != 1 || rep.Realisations.Count != 1 {
		t.Fatalf("dry run plan %v, want %v; report %s", planned, want, rep)
	}

	rep, err = c.Collect(ctx, cache.GCOptions{Delete: true, Trash: "trash/1/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	if rep.Removed.Count != 1 || rep.Logs.Count != 1 || rep.Realisations.Count != 1 || !strings.Contains(rep.String(), "1 logs, 1 realisations") {
		t.Fatalf("report: %s", rep)
	}
	for _, key := range []string{cache.NarInfoKey(kept.path), kept.log, kept.doi} {
		if !exists(t, c.Backend, key) {
			t.Errorf("%s was removed, want it kept", key)
		}
	}
	for _, key := range []string{cache.NarInfoKey(gone.path), gone.log, gone.doi} {
		if exists(t, c.Backend, key) {
			t.Errorf("%s is still there, want it removed", key)
		}
	}
	verify()
	for _, key := range []string{gone.log, gone.doi} {
		if !exists(t, c.Backend, "trash/1/"+key) {
			t.Errorf("%s is not in the trash", key)
		}
	}
	if n, err := c.Restore(ctx, "trash/1/"); err != nil || n != 4 {
		t.Fatalf("restore: %d objects, %v", n, err)
	}
	for _, key := range []string{cache.NarInfoKey(gone.path), gone.log, gone.doi} {
		if !exists(t, c.Backend, key) {
			t.Errorf("%s was not restored", key)
		}
	}
	verify()
}
