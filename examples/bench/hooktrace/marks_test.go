package main

import (
	"strings"
	"testing"
	"time"
)

// A Nix 2.8 build log as nix-build prints it: the hook's lines prefixed
// by Nix, two calls, with Nix's own lines and the hook's log in between.
const nixLog = `building '/nix/store/2p711p25vvnjv9d5g3yiv8l1akhgmqlc-bench-d0.drv'...
running post-build-hook '/tmp/b/post-build-hook-trace'...
post-build-hook: level=INFO msg="queued for upload" prog=nixcache-hook paths=1 took=3.28ms
post-build-hook: hooktrace main 1000000
post-build-hook: hooktrace config 1100000
post-build-hook: hooktrace enqueue 1600000
running post-build-hook '/tmp/b/post-build-hook-trace'...
post-build-hook: hooktrace main 9000000
post-build-hook: hooktrace config 9300000
post-build-hook: hooktrace enqueue 9400000
post-build-hook: hooktrace broken x
hooktrace too many fields 1 2
`

func TestParseMarks(t *testing.T) {
	got := parseMarks(nixLog)
	want := []mark{
		{"main", 1000000, 0},
		{"config", 1100000, 100 * time.Microsecond},
		{"enqueue", 1600000, 500 * time.Microsecond},
		{"main", 9000000, 7400 * time.Microsecond},
		{"config", 9300000, 300 * time.Microsecond},
		{"enqueue", 9400000, 100 * time.Microsecond},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d marks %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mark %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func FuzzParseMarks(f *testing.F) {
	f.Add(nixLog)
	f.Add("hooktrace main 1\nhooktrace x -5\n")
	f.Fuzz(func(t *testing.T, text string) {
		marks := parseMarks(text)
		for i, m := range marks {
			if m.phase == "" || strings.ContainsAny(m.phase, " \t\n") || !strings.Contains(text, m.phase) {
				t.Fatalf("mark %d of %q: phase %q", i, text, m.phase)
			}
			if i > 0 && m.since != time.Duration(m.ns-marks[i-1].ns) {
				t.Fatalf("mark %d of %q: since %v, want %v", i, text, m.since, time.Duration(m.ns-marks[i-1].ns))
			}
		}
	})
}
