package queuedir_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache/queue/queuedir"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, in string
		want     [][2]string
		errLine  string
	}{
		{"empty", "", nil, ""},
		{"comments and blanks", "# c\n\n; c\n  \n", nil, ""},
		{"plain", "NIXCACHE_TO=file:///c\n", [][2]string{{"NIXCACHE_TO", "file:///c"}}, ""},
		{"export and spaces", "export NIXCACHE_QUEUE = /q \n", [][2]string{{"NIXCACHE_QUEUE", "/q"}}, ""},
		{"double quotes", `NIXCACHE_TO="s3://b?endpoint=http://h:1&region=x"`, [][2]string{{"NIXCACHE_TO", "s3://b?endpoint=http://h:1&region=x"}}, ""},
		{"single quotes", "AWS_SECRET_ACCESS_KEY='a b'", [][2]string{{"AWS_SECRET_ACCESS_KEY", "a b"}}, ""},
		{"value with =", "NIXCACHE_TO=s3://b?a=1", [][2]string{{"NIXCACHE_TO", "s3://b?a=1"}}, ""},
		{"no equals", "NIXCACHE_TO\n", nil, "line 1"},
		{"bad key", "\n1X=2", nil, "line 2"},
		{"typo in known prefix", "NIXCACHE_SECRET_KEY=/k", nil, "line 1: unknown key NIXCACHE_SECRET_KEY"},
		{"CRLF tolerated", "NIXCACHE_QUEUE=/q\r\n", [][2]string{{"NIXCACHE_QUEUE", "/q"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := queuedir.ParseConfig([]byte(tt.in))
			if tt.errLine != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errLine) {
					t.Fatalf("err = %v, want mention of %q", err, tt.errLine)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hook.conf")
	if err := os.WriteFile(file, []byte("NIXCACHE_TO=file:///from-file\nNIXCACHE_QUEUE=/q\nNIXCACHE_TEST_UNUSED_X=1\n"), 0o644); err == nil {
		// The unknown NIXCACHE_ key makes the whole file an error.
		env := map[string]string{queuedir.EnvConfig: file}
		if _, err := queuedir.LoadConfig(func(k string) string { return env[k] }); !errors.Is(err, queuedir.ErrConfig) || !strings.Contains(err.Error(), "line 3") {
			t.Fatalf("LoadConfig = %v, want ErrConfig naming line 3", err)
		}
	}
	// Other keys (AWS credentials) are exported unless already set.
	if err := os.WriteFile(file, []byte("NIXCACHE_TO=file:///from-file\nNIXCACHE_QUEUE=/q\nQUEUE_TEST_EXPORTED=v\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("QUEUE_TEST_EXPORTED", "")
	_ = os.Unsetenv("QUEUE_TEST_EXPORTED")
	env := map[string]string{queuedir.EnvConfig: file, queuedir.EnvTo: "file:///from-env", queuedir.EnvSecretKeyFile: "/k"}
	c, err := queuedir.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.To != "file:///from-env" || c.Queue != "/q" || c.File != file {
		t.Fatalf("config = %+v", c)
	}
	if os.Getenv("QUEUE_TEST_EXPORTED") != "v" {
		t.Fatal("non-NIXCACHE key not exported")
	}
	if got := c.StoreURL(); got != "file:///from-env?secret-key=/k" {
		t.Fatalf("StoreURL = %q", got)
	}
	// An explicit missing config file is an error; the default one may be absent.
	env = map[string]string{queuedir.EnvConfig: filepath.Join(dir, "missing.conf")}
	if _, err := queuedir.LoadConfig(func(k string) string { return env[k] }); !errors.Is(err, queuedir.ErrConfig) {
		t.Fatalf("missing explicit config: %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("NIXCACHE_TO=file:///c\n# x\nexport A='b'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kv, err := queuedir.ParseConfig(data)
		if err != nil {
			return
		}
		for _, e := range kv {
			if e[0] == "" || strings.ContainsAny(e[0], "= \t\n") {
				t.Fatalf("bad key %q", e[0])
			}
			if strings.Contains(e[1], "\n") {
				t.Fatalf("value spans lines: %q", e[1])
			}
		}
	})
}

func TestStoreURLEscapesKeyPath(t *testing.T) {
	c := queuedir.Config{To: "file:///srv/cache?compression=zstd", SecretKeyFile: "/etc/nix/a&b %1#.sec"}
	got := c.StoreURL()
	want := "file:///srv/cache?compression=zstd&secret-key=/etc/nix/a%26b%20%251%23.sec"
	if got != want {
		t.Errorf("StoreURL() = %q, want %q", got, want)
	}
}
