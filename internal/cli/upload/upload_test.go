package upload_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/internal/cli/upload"
	"github.com/nixcache/nixcache/signature"
)

// TestKeyErrorsNameTheSetting is the unit-level regression test for key
// material echoed in errors (issue 8.12): whatever the value, the error
// names the flag or variable and never shows the value.
func TestKeyErrorsNameTheSetting(t *testing.T) {
	sk, _, err := signature.GenerateKey("cache-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	text := sk.Secret()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.sec")
	if err := signature.WriteSecretKeyFile(good, sk); err != nil {
		t.Fatal(err)
	}
	notKey := filepath.Join(dir, "pub")
	if err := os.WriteFile(notKey, []byte(text[:20]), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range []struct {
		setting cli.Setting
		want    string
	}{
		{cli.Setting{Value: text, Name: "--secret-key"}, "--secret-key: signature: a key itself, not the name of a key file"},
		{cli.Setting{Value: text, Name: "NIXCACHE_SECRET_KEY_FILE"}, "NIXCACHE_SECRET_KEY_FILE: signature: a key itself"},
		{cli.Setting{Value: text[:30], Name: "--secret-key"}, "--secret-key: signature: cannot read the secret key file"},
		{cli.Setting{Value: notKey, Name: "--secret-key"}, "--secret-key: signature: malformed"},
		{cli.Setting{Value: "/dev/zero", Name: "--secret-key"}, "not a regular file"},
	} {
		_, err := upload.LoadSecretKeys([]cli.Setting{tt.setting}, log)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.setting.Name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), text[10:30]) {
			t.Errorf("error shows key material: %v", err)
		}
	}
	keys, err := upload.LoadSecretKeys([]cli.Setting{{Value: good, Name: "--secret-key"}}, log)
	if err != nil || len(keys) != 1 || keys[0].Secret() != text {
		t.Fatalf("good key: %v, %v", keys, err)
	}
}

// TestLoadPublicKeys: --skip-signed-by takes a key or a file holding one;
// a secret key or an unreadable value is an error naming the setting,
// never the value; --upstream without keys is a usage error.
func TestLoadPublicKeys(t *testing.T) {
	sk, pk, err := signature.GenerateKey("upstream-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "up.pub")
	if err := signature.WritePublicKeyFile(file, pk); err != nil {
		t.Fatal(err)
	}
	keys, err := upload.LoadPublicKeys([]cli.Setting{{Value: pk.String(), Name: "--skip-signed-by"}, {Value: file, Name: "NIXCACHE_SKIP_SIGNED_BY"}})
	if err != nil || len(keys) != 2 || keys[0] != pk || keys[1] != pk {
		t.Fatalf("keys %v, %v; want the key twice", keys, err)
	}
	secret := sk.Secret()
	for _, tt := range []struct{ value, want string }{
		{secret, "--skip-signed-by (key 1 of 1) is a secret key"},
		{secret[:30], "--skip-signed-by (key 1 of 1) is neither a public key"},
	} {
		_, err := upload.LoadPublicKeys([]cli.Setting{{Value: tt.value, Name: "--skip-signed-by"}})
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), secret[12:30]) {
			t.Errorf("%v, want %q and no key material", err, tt.want)
		}
	}
	_, _, err = upload.Target{Upstream: cli.Setting{Value: "file://" + t.TempDir(), Name: "--upstream"}}.UpstreamOptions(context.Background())
	if !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), "--upstream needs an upstream key") {
		t.Fatalf("upstream without keys: %v", err)
	}
}
