package cache_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache"
	_ "github.com/nixcache/nixcache/cache/file"
	"github.com/nixcache/nixcache/signature"
)

func TestParseURLDecodesEscapedKeyPath(t *testing.T) {
	u, err := cache.ParseURL("file:///srv/cache?compression=zstd&secret-key=/etc/nix/a%26b%20%251%23.sec")
	if err != nil {
		t.Fatal(err)
	}
	if len(u.SecretKeys) != 1 || u.SecretKeys[0] != "/etc/nix/a&b %1#.sec" {
		t.Errorf("SecretKeys = %q", u.SecretKeys)
	}
}

func TestOpenWithSecretKeyFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys & more")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sk, _, err := signature.GenerateKey("with-files-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "k.sec")
	if err := signature.WriteSecretKeyFile(file, sk); err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(context.Background(), "file://"+t.TempDir(), cache.WithSecretKeyFiles(file))
	if err != nil {
		t.Fatal(err)
	}
	if keys := c.Options().SecretKeys; len(keys) != 1 || keys[0].Name() != "with-files-1" {
		t.Errorf("keys = %v", keys)
	}
	if _, err := cache.Open(context.Background(), "file://"+t.TempDir(), cache.WithSecretKeyFiles(file+".missing")); err == nil || !strings.Contains(err.Error(), "secret key file 1 of 1") || strings.Contains(err.Error(), "k.sec.missing") {
		t.Errorf("missing key file: %v", err)
	}
}
