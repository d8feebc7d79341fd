package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/cache/queue"
	"github.com/nixcache/nixcache/internal/testenv"
)

// TestRecoveryAfterPowerCut: with an upload daemon's checkpoint in the
// queue, the hook queues without fsync. A power cut then loses the entries
// (and their GC roots); the daemon started on the next boot finds the
// paths in Nix's database, uploads them, and Nix verifies and substitutes
// them from the cache. It runs on a Nix store of its own (NIX_STORE_DIR,
// NIX_STATE_DIR), so that the recovery finds only this test's builds, not
// those of tests running beside it (whose paths it would root).
func TestRecoveryAfterPowerCut(t *testing.T) {
	testenv.RequireNix(t)
	hook, daemon := binaries(t)
	if queue.BootID() == "" {
		t.Skip("no boot id on this system: hooks always fsync")
	}
	k := genKey(t)
	// Nix's build users write the outputs: the store's parent must be
	// open to them (a t.TempDir is not).
	root, err := os.MkdirTemp("", "nixcache-store-")
	if err == nil {
		err = os.Chmod(root, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	store := []string{"NIX_STORE_DIR=" + filepath.Join(root, "store"), "NIX_STATE_DIR=" + filepath.Join(root, "var"), "NIX_LOG_DIR=" + filepath.Join(root, "log")}
	for _, e := range store {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v) // for queue.StateDir and the nix commands below
	}
	cacheDir, qdir := t.TempDir(), t.TempDir()
	runDaemon := func() string {
		t.Helper()
		cmd := exec.Command(daemon, "--queue", qdir, "--to", "file://"+cacheDir+"?compression=zstd", "--secret-key", k.sec, "--exit-when-empty")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("upload-daemon: %v\n%s", err, out)
		}
		return string(out)
	}
	// A first build creates the store and its database.
	if _, stderr, err := nixBuild(t, writeExpr(t, 1), "", nil); err != nil {
		t.Fatalf("nix-build in the test's store: %v\n%s", err, stderr)
	}
	// The daemon, run once on the empty queue, leaves its checkpoint.
	runDaemon()
	q, err := queue.Open(qdir)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := q.ReadCheckpoint()
	if err != nil {
		t.Fatalf("no checkpoint after the daemon ran: %v", err)
	}
	if cp.BootID != queue.BootID() || cp.LastID == 0 {
		t.Fatalf("checkpoint %+v: want this boot's id and Nix's last row id", cp)
	}
	if out, err := exec.Command(daemon, "status", "--queue", qdir).CombinedOutput(); err != nil || !strings.Contains(string(out), "entries:  written without fsync") {
		t.Fatalf("status does not say that hooks skip the fsync: %v\n%s", err, out)
	}

	outs, stderr, err := nixBuild(t, writeExpr(t, 4), hook, []string{"NIXCACHE_QUEUE=" + qdir})
	if err != nil || !strings.Contains(stderr, "queued for upload") {
		t.Fatalf("nix-build: %v\n%s", err, stderr)
	}
	entries, _ := os.ReadDir(q.EntriesDir())
	if len(entries) != len(outs) {
		t.Fatalf("%d entries for %d outputs", len(entries), len(outs))
	}
	// The power cut: the entries and their GC roots never reached the
	// disk, and the machine boots again (another boot id).
	for _, e := range entries {
		if err := os.Remove(filepath.Join(q.EntriesDir(), e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	links, _ := filepath.Glob(filepath.Join(queue.StateDir(), "gcroots", "auto", "nixcache-queue-*"))
	for _, l := range links {
		if target, _ := os.Readlink(l); strings.HasPrefix(target, q.EntriesDir()+"/") {
			os.Remove(l)
		}
	}
	cp.BootID = "00000000-0000-4000-8000-000000000000"
	if err := q.WriteCheckpoint(cp); err != nil {
		t.Fatal(err)
	}

	log := runDaemon()
	if !strings.Contains(log, "queued again what Nix built since the checkpoint") {
		t.Fatalf("the daemon did not recover:\n%s", log)
	}
	for _, p := range outs {
		if !hasNarinfo(cacheDir, p) {
			t.Fatalf("%s not uploaded after the recovery; daemon log:\n%s", p, log)
		}
	}
	if cp, err := q.ReadCheckpoint(); err != nil || cp.BootID != queue.BootID() {
		t.Fatalf("checkpoint after the recovery: %+v, %v; want this boot's", cp, err)
	}
	checkFileCacheInvariant(t, cacheDir)
	for _, p := range outs {
		if !strings.HasPrefix(p, filepath.Join(root, "store")+"/") {
			t.Fatalf("%s: built outside the test's store", p)
		}
	}
	verifyAndSubstitute(t, "file://"+cacheDir, k, outs)
}
