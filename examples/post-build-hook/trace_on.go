//go:build hooktrace

package main

import (
	"os"
	"strconv"
	"time"
)

// With -tags hooktrace, the hook notes the wall clock at each phase and
// writes "hooktrace PHASE UNIXNANO" lines to stderr before it exits, for
// examples/bench/hooktrace, which adds the process's start and exit.
var marks []byte

func mark(phase string) {
	marks = append(marks, "hooktrace "+phase+" "+strconv.FormatInt(time.Now().UnixNano(), 10)+"\n"...)
}

func flushMarks() { _, _ = os.Stderr.Write(marks) }
