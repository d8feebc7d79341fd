package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/config"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // KEY=VALUE of the good lines
		errs     []string // each must appear in the error
	}{
		{"empty", "", nil, nil},
		{"comments and blanks", "# c\n\n; c\n  \n", nil, nil},
		{"plain", "NIXCACHE_TO=file:///c\n", []string{"NIXCACHE_TO=file:///c"}, nil},
		{"export and spaces", "export NIXCACHE_QUEUE = /q \n", []string{"NIXCACHE_QUEUE=/q"}, nil},
		{"double quotes", `NIXCACHE_TO="s3://b?endpoint=http://h:1&region=x"`, []string{"NIXCACHE_TO=s3://b?endpoint=http://h:1&region=x"}, nil},
		{"single quotes", "AWS_SECRET_ACCESS_KEY='a b'", []string{"AWS_SECRET_ACCESS_KEY=a b"}, nil},
		{"value with =", "NIXCACHE_TO=s3://b?a=1", []string{"NIXCACHE_TO=s3://b?a=1"}, nil},
		{"no equals", "NIXCACHE_TO\n", nil, []string{"line 1: not a KEY=VALUE line"}},
		{"bad key", "\n1X=2", nil, []string{"line 2: key is not a variable name"}},
		{"typo in known prefix", "NIXCACHE_SECRET_KEY=/k", nil, []string{"line 1: NIXCACHE_SECRET_KEY: unknown key"}},
		{"CRLF tolerated", "NIXCACHE_QUEUE=/q\r\n", []string{"NIXCACHE_QUEUE=/q"}, nil},
		// Like systemd's EnvironmentFile=, bad lines are skipped, good ones kept.
		{"good lines around bad ones", "NIXCACHE_QUEUE=/q\nAWS-REGION=x\nNIXCACHE_SECRET_KEYFILE=/k\nAWS_ACCESS_KEY_ID=id\n",
			[]string{"NIXCACHE_QUEUE=/q", "AWS_ACCESS_KEY_ID=id"},
			[]string{"line 2: key is not a variable name", "line 3: NIXCACHE_SECRET_KEYFILE: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Parse([]byte(tt.in))
			var kv []string
			for _, s := range got {
				kv = append(kv, s.Key+"="+s.Value)
			}
			if !slices.Equal(kv, tt.want) {
				t.Errorf("settings = %q, want %q", kv, tt.want)
			}
			if len(tt.errs) == 0 && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(tt.errs) > 0 && !errors.Is(err, config.ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
			for _, e := range tt.errs {
				if !strings.Contains(err.Error(), e) {
					t.Errorf("error %q lacks %q", err, e)
				}
			}
		})
	}
}

// TestParseNeverShowsValues is the regression test for a config error that
// quoted the whole line: with a nix-daemon, the hook's stderr reaches the
// build's client, any local user, and hook.conf holds credentials.
func TestParseNeverShowsValues(t *testing.T) {
	secrets := []string{"wJalrXUtnFEMI", "K7MDENGbPxRfiCY", "c2VjcmV0LWtleS1ieXRlcw", "etc-nix-hidden"}
	in := "AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI\n" + // YAML habit
		"AWS-SECRET=K7MDENGbPxRfiCY\n" + // invalid key
		"cache-1:c2VjcmV0LWtleS1ieXRlcw==\n" + // a pasted key on its own line
		"NIXCACHE_SECRET_KEYFILE=/etc-nix-hidden\n" + // typo
		"NIXCACHE_QUEUE=/var/lib/q\n"
	got, err := config.Parse([]byte(in))
	if err == nil {
		t.Fatal("no error for four bad lines")
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error shows a value %q:\n%v", s, err)
		}
	}
	for _, line := range []string{"line 1", "line 2", "line 3", "line 4"} {
		if !strings.Contains(err.Error(), line) {
			t.Errorf("error does not name %s:\n%v", line, err)
		}
	}
	if len(got) != 1 || got[0].Key != config.EnvQueue || got[0].Value != "/var/lib/q" || got[0].Line != 5 {
		t.Fatalf("good line lost: %+v", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hook.conf")
	// A bad line anywhere keeps the rest of the file, the queue included.
	if err := os.WriteFile(file, []byte("NIXCACHE_TO=file:///from-file\nAWS_SECRET_ACCESS_KEY: x\nNIXCACHE_QUEUE=/q\nNIXCACHE_TEST_UNUSED_X=1\nQUEUE_TEST_EXPORTED=v\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{config.EnvConfig: file}
	c, err := config.Load(func(k string) string { return env[k] })
	if !errors.Is(err, config.ErrConfig) || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "line 4: NIXCACHE_TEST_UNUSED_X") {
		t.Fatalf("Load error = %v, want ErrConfig naming lines 2 and 4", err)
	}
	if c.Queue != "/q" || c.To != "file:///from-file" || c.File != file {
		t.Fatalf("good settings lost: %+v", c)
	}
	// The environment wins; other keys are returned, never exported.
	env = map[string]string{config.EnvConfig: file, config.EnvTo: "file:///from-env", config.EnvSecretKeyFile: "/k"}
	c, _ = config.Load(func(k string) string { return env[k] })
	if c.To != "file:///from-env" || c.SecretKeyFile != "/k" || c.Queue != "/q" {
		t.Fatalf("config = %+v", c)
	}
	if _, set := os.LookupEnv("QUEUE_TEST_EXPORTED"); set {
		t.Fatal("Load changed the process environment")
	}
	if !slices.Equal(c.Env, []string{"QUEUE_TEST_EXPORTED=v"}) {
		t.Fatalf("Env = %q", c.Env)
	}
	got := c.Environ([]string{"PATH=/bin", "QUEUE_TEST_EXPORTED=mine"})
	if !slices.Equal(got, []string{"PATH=/bin", "QUEUE_TEST_EXPORTED=mine"}) {
		t.Fatalf("Environ overrode the process's own value: %q", got)
	}
	if got := c.Environ([]string{"PATH=/bin"}); !slices.Equal(got, []string{"PATH=/bin", "QUEUE_TEST_EXPORTED=v"}) {
		t.Fatalf("Environ = %q", got)
	}
	// An explicit missing config file is an error; the default one may be absent.
	env = map[string]string{config.EnvConfig: filepath.Join(dir, "missing.conf"), config.EnvQueue: "/q2"}
	c, err = config.Load(func(k string) string { return env[k] })
	if !errors.Is(err, config.ErrConfig) || !errors.Is(err, fs.ErrNotExist) || c.Queue != "/q2" {
		t.Fatalf("missing explicit config: %+v, %v", c, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("NIXCACHE_TO=file:///c\n# x\nexport A='b'\n"))
	f.Add([]byte("AWS_SECRET_ACCESS_KEY: v\nNIXCACHE_QUEUE=/q\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		settings, err := config.Parse(data)
		for _, s := range settings {
			if s.Key == "" || strings.ContainsAny(s.Key, "= \t\n") {
				t.Fatalf("bad key %q", s.Key)
			}
			if strings.Contains(s.Value, "\n") {
				t.Fatalf("value spans lines: %q", s.Value)
			}
		}
		if err != nil && !errors.Is(err, config.ErrConfig) {
			t.Fatalf("error does not wrap ErrConfig: %v", err)
		}
		// A bad line's error shows no value: nothing after an '=' that has
		// a character no message contains.
		if err != nil {
			for _, line := range strings.Split(string(data), "\n") {
				if _, v, ok := strings.Cut(line, "="); ok && strings.ContainsAny(v, "+@") && strings.Contains(err.Error(), strings.TrimSpace(v)) {
					t.Fatalf("error shows a value %q: %v", v, err)
				}
			}
		}
	})
}

// TestLoadUpstreamSettings: NIXCACHE_SKIP_SIGNED_BY and NIXCACHE_UPSTREAM
// are read from the file (not reported as unknown keys, nor exported as
// other settings) and the environment wins.
func TestLoadUpstreamSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hook.conf")
	data := "NIXCACHE_SKIP_SIGNED_BY=\"cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY= /etc/nix/up.pub\"\nNIXCACHE_UPSTREAM=file:///srv/up\n"
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{config.EnvConfig: file}
	c, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.SkipSignedBy != "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY= /etc/nix/up.pub" || c.Upstream != "file:///srv/up" || len(c.Env) != 0 {
		t.Fatalf("config = %+v", c)
	}
	env[config.EnvUpstream] = "file:///from-env"
	env[config.EnvSkipSignedBy] = "/k.pub"
	if c, _ = config.Load(func(k string) string { return env[k] }); c.Upstream != "file:///from-env" || c.SkipSignedBy != "/k.pub" {
		t.Fatalf("environment did not win: %+v", c)
	}
}
