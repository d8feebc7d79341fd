package main

// The hook as it is deployed: a nix-daemon (root) runs it after a build
// that an unprivileged user asked for, with the configuration in a config
// file; the user sees the hook's messages in the build log.

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath"
)

// testUser is the unprivileged user that builds through the daemon; the
// test creates it (in group nix-users when that group exists) if missing.
const testUser = "nixcache-test"

func requireTestUser(t *testing.T) (uid, gid uint32) {
	t.Helper()
	testenv.RequireRoot(t)
	u, err := user.Lookup(testUser)
	if err != nil {
		args := []string{"--system", "--no-create-home", "--shell", "/usr/sbin/nologin"}
		if _, err := user.LookupGroup("nix-users"); err == nil {
			args = append(args, "--gid", "nix-users")
		} else {
			args = append(args, "--user-group")
		}
		if out, err := exec.Command("useradd", append(args, testUser)...).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v\n%s", testUser, err, out)
		}
		if u, err = user.Lookup(testUser); err != nil {
			t.Fatal(err)
		}
	}
	u64, _ := strconv.ParseUint(u.Uid, 10, 32)
	g64, _ := strconv.ParseUint(u.Gid, 10, 32)
	return uint32(u64), uint32(g64)
}

// startNixDaemon runs a nix-daemon on its own socket in dir (the store is
// the machine's), with the hook in its settings and NIXCACHE_CONFIG=conf in
// its environment (as a unit's Environment= would set it), and returns the
// socket. The daemon and its per-connection children stop with the test.
func startNixDaemon(t *testing.T, dir, hook, conf string) string {
	t.Helper()
	testenv.RequireTool(t, "nix-daemon")
	sock := filepath.Join(dir, "daemon.sock")
	cmd := exec.Command("nix-daemon", "--option", "post-build-hook", hook, "--option", "substituters", "")
	cmd.Env = append(testenv.Environ("NIXCACHE_"), "NIX_DAEMON_SOCKET_PATH="+sock, "NIXCACHE_CONFIG="+conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var log testenv.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
	})
	waitFor(t, 10*time.Second, "the nix-daemon's socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	return sock
}

// TestHookUnderNixDaemon is the deployed setup of issue 8 ("Done when"):
// the queue is named only in the config file, which also holds a
// malformed line with a credential in it. The unprivileged user's build
// succeeds, the path is queued, and the user never sees the credential;
// without a queue the build fails (sync mode), and still shows no secret.
func TestHookUnderNixDaemon(t *testing.T) {
	testenv.RequireNix(t)
	uid, gid := requireTestUser(t)
	hook, _ := binaries(t)
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil { // the user reads its expression here
			t.Fatal(err)
		}
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	qdir := filepath.Join(dir, "queue")
	conf := filepath.Join(dir, "hook.conf")
	writeConf := func(lines ...string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sock := startNixDaemon(t, dir, hook, conf)

	build := func(name string) (out string, stderr string, err error) {
		t.Helper()
		expr, err := testenv.WriteClosureExpr(dir, testenv.ClosureSpec{Name: name, N: 1})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("nix-build", "--no-out-link", expr)
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "NIX_REMOTE=unix://" + sock}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		err = cmd.Run()
		return strings.TrimSpace(so.String()), se.String(), err
	}

	// Queue mode, from the config file only, with malformed lines around it.
	writeConf("# nixcache", "AWS_SECRET_ACCESS_KEY: "+secretValue, "AWS-REGION=eu-1", "NIXCACHE_SECRET_KEYFILE=/etc/nix/"+secretValue, "NIXCACHE_QUEUE="+qdir)
	out, stderr, err := build("nixcache-daemon-queue")
	if err != nil {
		t.Fatalf("the user's build failed under the nix-daemon: %v\n%s", err, stderr)
	}
	p, perr := storepath.Parse(out)
	if perr != nil {
		t.Fatalf("nix-build printed %q: %v\n%s", out, perr, stderr)
	}
	q, err := queue.Open(qdir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Done(p) })
	if es, err := q.Pending(); err != nil || len(es) != 1 || es[0].Path != p {
		t.Fatalf("queue holds %v, %v; want %s\nthe user saw:\n%s", es, err, p, stderr)
	}
	for _, want := range []string{"running post-build-hook", "queued for upload", "configuration problem; still queueing", "line 2", "line 3", "line 4: NIXCACHE_SECRET_KEYFILE"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the user's build log lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, secretValue) {
		t.Fatalf("the unprivileged user saw a secret from hook.conf:\n%s", stderr)
	}

	// Sync mode (no queue) with the same bad line: the build fails, as a
	// failing hook must make it, and the message still shows no secret.
	writeConf("AWS_SECRET_ACCESS_KEY: "+secretValue, "NIXCACHE_TO=file://"+filepath.Join(dir, "cache"))
	_, stderr, err = build("nixcache-daemon-sync")
	if err == nil || !strings.Contains(stderr, "line 1: not a KEY=VALUE line") {
		t.Fatalf("sync mode with a bad config line: err=%v, the user saw:\n%s", err, stderr)
	}
	if strings.Contains(stderr, secretValue) {
		t.Fatalf("the unprivileged user saw a secret from hook.conf:\n%s", stderr)
	}
}
