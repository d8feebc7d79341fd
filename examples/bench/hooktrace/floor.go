package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// floorEnv, set in its environment, makes hooktrace act as the "floor"
// hook instead; emptyEnv makes it exit at once, as the "empty" binary: a
// Go process that does nothing (the runtime's start and exit, and
// hooktrace's package initialisers, which are the floor's too).
const (
	floorEnv = "HOOKTRACE_FLOOR"
	emptyEnv = "HOOKTRACE_EMPTY"
)

// floor does the least a queue-mode hook must do for an entry to be
// durable, with nothing else (no configuration, no watchdog, no checks,
// no log): read the .drv named by DRV_PATH, take its first output path
// (hooktrace's .drv files have one), symlink it into
// $NIXCACHE_QUEUE/entries and fsync that directory. It returns the exit
// status. Like a hook built with -tags hooktrace, it writes its marks
// (main, outputs, enqueue) in one write before it exits.
func floor() int {
	marks := floorMark(nil, "main")
	defer func() { _, _ = os.Stderr.Write(marks) }()
	b, err := os.ReadFile(os.Getenv("DRV_PATH"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	_, rest, ok := strings.Cut(string(b), `("out","`)
	out, _, ok2 := strings.Cut(rest, `"`)
	if !ok || !ok2 {
		fmt.Fprintln(os.Stderr, "floor: no output in", os.Getenv("DRV_PATH"))
		return 1
	}
	marks = floorMark(marks, "outputs")
	entries := filepath.Join(os.Getenv("NIXCACHE_QUEUE"), "entries")
	if err := os.MkdirAll(entries, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	if err := os.Symlink(out, filepath.Join(entries, filepath.Base(out))); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	fd, err := syscall.Open(entries, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err == nil {
		err = syscall.Fsync(fd)
		syscall.Close(fd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor: fsync", entries+":", err)
		return 1
	}
	marks = floorMark(marks, "enqueue")
	return 0
}

func floorMark(b []byte, phase string) []byte {
	return append(b, "hooktrace "+phase+" "+strconv.FormatInt(time.Now().UnixNano(), 10)+"\n"...)
}
