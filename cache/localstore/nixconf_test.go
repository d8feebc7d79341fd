package localstore

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// TestUseCaseHackAsNix checks UseCaseHack against the value `nix
// show-config` reports for the same nix.conf and NIX_CONFIG: comments,
// include and !include, later lines winning, NIX_CONFIG last.
func TestUseCaseHackAsNix(t *testing.T) {
	testenv.RequireNix(t)
	cases := []struct {
		name, conf, extra, env string
	}{
		{"unset", "", "", ""},
		{"on", "use-case-hack = true\n", "", ""},
		{"comment", "use-case-hack = true # but\n# use-case-hack = false\n", "", ""},
		{"later wins", "use-case-hack = true\nuse-case-hack = false\n", "", ""},
		{"include", "use-case-hack = false\ninclude extra.conf\n", "use-case-hack = true\n", ""},
		{"optional include", "!include missing.conf\nuse-case-hack = true\n", "", ""},
		{"NIX_CONFIG last", "use-case-hack = true\n", "", "use-case-hack = false"},
		{"NIX_CONFIG on", "", "", "sandbox = false\nuse-case-hack = true"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.conf != "" {
				os.WriteFile(filepath.Join(dir, "nix.conf"), []byte(c.conf), 0o644)
			}
			if c.extra != "" {
				os.WriteFile(filepath.Join(dir, "extra.conf"), []byte(c.extra), 0o644)
			}
			env := map[string]string{"NIX_CONF_DIR": dir, "NIX_CONFIG": c.env}
			got, err := UseCaseHack(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("nix", "--extra-experimental-features", "nix-command", "show-config")
			cmd.Env = append(testenv.Environ("NIX_CONF_DIR", "NIX_CONFIG", "NIX_USER_CONF_FILES"),
				"NIX_CONF_DIR="+dir, "NIX_CONFIG="+c.env, "NIX_USER_CONF_FILES="+filepath.Join(dir, "none"))
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("nix show-config: %v", err)
			}
			var nix string
			for _, l := range strings.Split(string(out), "\n") {
				if v, ok := strings.CutPrefix(l, "use-case-hack = "); ok {
					nix = v
				}
			}
			if nix == "" {
				t.Fatalf("nix show-config has no use-case-hack line")
			}
			if want := nix == "true"; got != want {
				t.Errorf("UseCaseHack = %v, nix show-config says %s", got, nix)
			}
		})
	}
}

// TestUseCaseHackRefusesBadValues: Nix refuses a use-case-hack that is not
// true or false, and so does UseCaseHack, naming the file and line.
func TestUseCaseHackRefusesBadValues(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "nix.conf"), []byte("\nuse-case-hack = yes\n"), 0o644)
	_, err := UseCaseHack(func(k string) string { return map[string]string{"NIX_CONF_DIR": dir}[k] })
	if err == nil || !strings.Contains(err.Error(), "nix.conf line 2") {
		t.Errorf("UseCaseHack with 'yes': %v, want an error naming nix.conf line 2", err)
	}
	os.WriteFile(filepath.Join(dir, "nix.conf"), []byte("include a.conf\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "a.conf"), []byte("include nix.conf\n"), 0o644)
	if _, err := UseCaseHack(func(k string) string { return map[string]string{"NIX_CONF_DIR": dir}[k] }); err == nil {
		t.Error("UseCaseHack followed an include loop without error")
	}
}
