package main

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/nixcache/nixcache/internal/cli"
)

// sameAsSlog logs one record through hookLog and through the commands'
// slog logger (cli.NewLogger) and fails if the lines differ.
func sameAsSlog(t *testing.T, msg string, kv ...any) {
	t.Helper()
	var ours, theirs bytes.Buffer
	hookLog{&ours}.Error(msg, kv...)
	cli.NewLogger(&theirs, "nixcache-hook", false).Error(msg, kv...)
	if ours.String() != theirs.String() {
		t.Errorf("hookLog wrote\n%q\nslog writes\n%q", ours.String(), theirs.String())
	}
}

// TestHookLogIsSlogText: the hook's own formatter writes byte for byte what
// log/slog's TextHandler writes for the values the hook logs.
func TestHookLogIsSlogText(t *testing.T) {
	sameAsSlog(t, "queued for upload", "paths", 3, "took", 1234567*time.Nanosecond)
	sameAsSlog(t, "no upload-daemon is running on the queue; paths wait until it starts", "queue", "/var/lib/nixcache/queue")
	sameAsSlog(t, "nothing queued", "err", errors.New(`DRV_PATH /nix/store/x.drv: open "x": no such file`))
	sameAsSlog(t, "configuration problem; still queueing", "err", errors.New("config: /etc/nixcache/hook.conf: line 2: NIXCACHE_SECRET_KEYFILE: unknown key"))
	sameAsSlog(t, "x", "queue", "", "err", errors.New("a=b"), "n", -1, "after", 5*time.Second)
	sameAsSlog(t, "tab\there", "s", "new\nline", "u", "ünïcödé", "bad", "\xff", "nbsp", "a\u00a0b", "bs", `a\b`)
}

func FuzzHookLogIsSlogText(f *testing.F) {
	for _, s := range []string{"", "plain", "with space", `q"uote`, "a=b", "\x00", "\x7f", "é", "\u2028", "\xff", `back\slash`} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, msg, val string) {
		sameAsSlog(t, msg, "queue", val, "err", errors.New(val), "paths", len(val))
	})
}
