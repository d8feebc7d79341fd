package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUploadLogsSetting(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "hook.conf")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string]bool{"": true, "1": true, "on": true, "TRUE": true, "yes": true,
		"0": false, "off": false, "False": false, "no": false} {
		c, err := Load(func(k string) string {
			if k == EnvUploadLogs {
				return v
			}
			if k == EnvConfig {
				return empty
			}
			return ""
		})
		if err != nil || c.LogsEnabled() != want {
			t.Errorf("%s=%q: LogsEnabled %v, err %v; want %v", EnvUploadLogs, v, c.LogsEnabled(), err, want)
		}
	}
	c, err := Load(func(k string) string {
		switch k {
		case EnvUploadLogs:
			return "s3cr3t"
		case EnvConfig:
			return empty
		}
		return ""
	})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), EnvUploadLogs) || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("bad value: err %v (want ErrConfig naming the setting, not the value)", err)
	}
	if !c.LogsEnabled() {
		t.Fatal("bad value: logs turned off, want the default (on)")
	}
}
