package main_test

// Tests of the upload-daemon command as it is run: the built binary on a
// real store (Nix builds the paths), a file:// cache judged by
// `nix store verify`.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/internal/testenv"
)

func binaries(t *testing.T) (daemon, push string) {
	t.Helper()
	dir := testenv.GoBuild(t, "github.com/nixcache/nixcache/examples/upload-daemon", "github.com/nixcache/nixcache/examples/push")
	return filepath.Join(dir, "upload-daemon"), filepath.Join(dir, "push")
}

// run runs a command with an environment free of NIXCACHE_ settings and
// returns its exit code and combined output.
func run(t *testing.T, env []string, name string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append([]string{"NIXCACHE_CONFIG=" + emptyConfig(t)}, env...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "NIXCACHE_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

// emptyConfig is a config file with nothing in it, so that the machine's
// /etc/nixcache/hook.conf does not leak into the test.
func emptyConfig(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "empty.conf")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func genKey(t *testing.T) (sec, pub string) {
	t.Helper()
	k := testenv.NixKeyPair(t, "daemon-test-1")
	return k.SecretFile, k.Public
}

// The daemon drains a queue into a file:// cache that Nix accepts; status
// tells the queue's state before and after; a path that was never in the
// store is dropped without holding back the paths queued with it (issue
// 8.4), and logged as such.
func TestDrainStatusAndBadEntry(t *testing.T) {
	daemon, _ := binaries(t)
	c := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "daemon-drain", N: 4})
	sec, pub := genKey(t)
	qdir, cacheDir := filepath.Join(t.TempDir(), "q"), t.TempDir()
	if code, out := run(t, nil, daemon, append([]string{"enqueue", "--queue", qdir}, c.Paths...)...); code != 0 {
		t.Fatalf("enqueue: exit %d\n%s", code, out)
	}
	// A hand-made entry for a path that was never built.
	bogus := "/nix/store/00000000000000000000000000000000-never-built"
	if err := os.Symlink(bogus, filepath.Join(qdir, "entries", filepath.Base(bogus))); err != nil {
		t.Fatal(err)
	}
	code, out := run(t, nil, daemon, "status", "--queue", qdir)
	if code != 0 || !strings.Contains(out, "daemon:   not running") || !strings.Contains(out, fmt.Sprintf("queued:   %d paths", len(c.Paths)+1)) {
		t.Fatalf("status before: exit %d\n%s", code, out)
	}
	code, out = run(t, nil, daemon, "--queue", qdir, "--to", "file://"+cacheDir+"?compression=zstd", "--secret-key", sec, "--exit-when-empty", "--batch", "8")
	if code != 0 {
		t.Fatalf("daemon: exit %d\n%s", code, out)
	}
	if got := testenv.NixStoreVerify(t, "file://"+cacheDir, pub, c.Paths...); got != 0 {
		t.Fatalf("nix store verify exit %d on the drained cache\n%s", got, out)
	}
	if strings.Contains(out, "attempt=2") || strings.Contains(out, "will retry") {
		t.Errorf("good paths waited for a retry because of the bad entry:\n%s", out)
	}
	if strings.Contains(out, "no longer in the store") || !strings.Contains(out, "not in the store (garbage-collected, or never built here)") {
		t.Errorf("the never-built path is not logged as such:\n%s", out)
	}
	code, out = run(t, nil, daemon, "status", "--queue", qdir, "--json")
	var r queue.Report
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil {
		t.Fatalf("status --json: exit %d, %v\n%s", code, err, out)
	}
	if r.Running || len(r.Pending) != 0 || r.Status == nil || r.Status.Uploaded != int64(len(c.Paths)) || r.Status.Dropped != 1 {
		t.Fatalf("status after the drain: %+v", r)
	}
}

// A second daemon on a locked queue exits 1, saying so, and never logs that
// it started (issue 8.4); status reports the lock holder's pid.
func TestLockedQueue(t *testing.T) {
	daemon, _ := binaries(t)
	qdir := filepath.Join(t.TempDir(), "q")
	q, err := queue.Open(qdir)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := q.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	code, out := run(t, nil, daemon, "--queue", qdir, "--to", "file://"+t.TempDir(), "--exit-when-empty")
	if code != 1 || !strings.Contains(out, "another daemon holds the queue lock") {
		t.Fatalf("second daemon: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "upload daemon started") {
		t.Fatalf("a daemon that did not get the lock logged that it started:\n%s", out)
	}
	code, out = run(t, nil, daemon, "status", "--queue", qdir)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("daemon:   running (pid %d)", os.Getpid())) {
		t.Fatalf("status with the lock held: exit %d\n%s", code, out)
	}
}

// Key material passed where a key file name belongs is never echoed, by
// upload-daemon push, push or the daemon; the error names the setting
// (issue 8.12, command side).
func TestSecretKeyNotEchoed(t *testing.T) {
	daemon, push := binaries(t)
	c := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "daemon-secret", N: 1})
	sec, _ := genKey(t)
	key, err := os.ReadFile(sec)
	if err != nil {
		t.Fatal(err)
	}
	material := strings.SplitN(strings.TrimSpace(string(key)), ":", 2)[1]
	to := "file://" + t.TempDir()
	qdir := filepath.Join(t.TempDir(), "q")
	for _, tt := range []struct {
		name string
		env  []string
		cmd  []string
		want string
	}{
		{"push --secret-key", nil, []string{push, "--to", to, "--secret-key", string(key), c.Top}, "--secret-key: signature: a key itself, not the name of a key file"},
		{"upload-daemon push --secret-key", nil, []string{daemon, "push", "--to", to, "--secret-key", string(key)[:30], c.Top}, "--secret-key: signature: cannot read the secret key file"},
		{"NIXCACHE_SECRET_KEY_FILE", []string{"NIXCACHE_SECRET_KEY_FILE=" + string(key)}, []string{daemon, "push", "--to", to, c.Top}, "NIXCACHE_SECRET_KEY_FILE: signature: a key itself"},
		{"daemon", []string{"NIXCACHE_SECRET_KEY_FILE=" + string(key)}, []string{daemon, "--queue", qdir, "--to", to, "--exit-when-empty"}, "NIXCACHE_SECRET_KEY_FILE: signature: a key itself"},
		{"a device as key file", nil, []string{push, "--to", to, "--secret-key", "/dev/null", c.Top}, "--secret-key: signature: cannot read the secret key file: not a regular file (a character device)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out := run(t, tt.env, tt.cmd[0], tt.cmd[1:]...)
			if code != 1 || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, want 1 and %q:\n%s", code, tt.want, out)
			}
			if strings.Contains(out, material) || strings.Contains(out, material[:16]) {
				t.Fatalf("key material echoed:\n%s", out)
			}
		})
	}
}

// Usage errors exit 2 and name what is missing.
func TestUsage(t *testing.T) {
	daemon, push := binaries(t)
	for _, tt := range []struct {
		cmd  []string
		want string
	}{
		{[]string{daemon}, "--queue is required (or set NIXCACHE_QUEUE)"},
		{[]string{daemon, "status"}, "--queue is required"},
		{[]string{daemon, "push", "/nix/store/x"}, "--to is required (or set NIXCACHE_TO)"},
		{[]string{push, "--to", "file:///tmp/x"}, "no store paths given"},
		{[]string{push, "--bogus-flag"}, "flag provided but not defined"},
	} {
		code, out := run(t, nil, tt.cmd[0], tt.cmd[1:]...)
		if code != 2 || !strings.Contains(out, tt.want) {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s", tt.cmd[1:], code, tt.want, out)
		}
	}
}
