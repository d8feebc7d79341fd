package localstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixcache/nixcache/cache/localstore"
	"github.com/nixcache/nixcache/storepath"
)

func TestResolveStorePath(t *testing.T) {
	store := storepath.Dir(t.TempDir())
	p, err := store.FromBase("7rjj86a15146cq1d3qy068lml7n8ykzm-x")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(string(p), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "result")
	os.Symlink(string(p), link)
	link2 := filepath.Join(dir, "result2")
	os.Symlink("result", link2)
	tests := []struct {
		arg  string
		want storepath.Path
		err  error
	}{
		{string(p), p, nil},
		{link, p, nil},
		{link2, p, nil},
		{string(p) + "/file", p, nil},
		{dir, "", localstore.ErrNotInStore},
	}
	for _, tt := range tests {
		got, err := localstore.ResolveStorePath(store, tt.arg)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%s: err %v, want %v", tt.arg, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %s, %v; want %s", tt.arg, got, err, tt.want)
		}
	}
}
