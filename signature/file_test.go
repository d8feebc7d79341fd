package signature

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/regularfile"
)

// TestLoadKeyFileBounded is the regression test for key files read without
// bounds (issue 8, items 2 and 12): a FIFO named as a key file blocked the
// reader forever, /dev/zero grew it without limit, and key material passed
// where a file name belongs was repeated in the error.
func TestLoadKeyFileBounded(t *testing.T) {
	sk, pk, err := GenerateKey("cache-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "k.sec")
	if err := WriteSecretKeyFile(good, sk); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "k.pub")
	if err := WritePublicKeyFile(pub, pk); err != nil {
		t.Fatal(err)
	}
	secret := sk.Secret()
	for _, tt := range []struct {
		path string
		want error
	}{
		{fifo, regularfile.ErrNotRegular},
		{"/dev/zero", regularfile.ErrNotRegular},
		{secret, ErrKeyAsFileName},
		{secret[:30], os.ErrNotExist},
	} {
		_, err := LoadSecretKeyFile(tt.path)
		if !errors.Is(err, tt.want) {
			t.Errorf("LoadSecretKeyFile(%.12s...) = %v, want %v", tt.path, err, tt.want)
		}
		if err != nil && (strings.Contains(err.Error(), secret[10:30]) || strings.Contains(err.Error(), dir)) {
			t.Errorf("LoadSecretKeyFile error shows the path or key material: %v", err)
		}
		if _, err := LoadPublicKeyFile(tt.path); !errors.Is(err, tt.want) {
			t.Errorf("LoadPublicKeyFile(%.12s...) = %v, want %v", tt.path, err, tt.want)
		}
	}
	if k, err := LoadSecretKeyFile(good); err != nil || k.Secret() != secret {
		t.Fatalf("LoadSecretKeyFile(good) = %v", err)
	}
	if k, err := LoadPublicKeyFile(pub); err != nil || k != pk {
		t.Fatalf("LoadPublicKeyFile(pub) = %v", err)
	}
}
