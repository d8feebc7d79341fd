package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// stats collects one binary's samples per phase, in microseconds.
type stats struct {
	order []string
	us    map[string][]float64
}

func (s *stats) add(phase string, d time.Duration) {
	if s.us == nil {
		s.us = map[string][]float64{}
	}
	if _, ok := s.us[phase]; !ok {
		s.order = append(s.order, phase)
	}
	s.us[phase] = append(s.us[phase], float64(d.Nanoseconds())/1e3)
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// call runs bin once and records its phases.
func call(s *stats, bin, drv, queue string) error {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "OUT_PATHS=", "DRV_PATH="+drv, "NIXCACHE_QUEUE="+queue)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	err := cmd.Run()
	t1 := time.Now()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", bin, err, stderr.String())
	}
	s.add("total", t1.Sub(t0))
	prev, last := t0.UnixNano(), ""
	for _, line := range strings.Split(stderr.String(), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "hooktrace" {
			continue
		}
		ns, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			continue
		}
		ph := f[1]
		if last == "" {
			ph = "spawn"
		}
		s.add(ph, time.Duration(ns-prev))
		prev, last = ns, f[1]
	}
	if last != "" {
		s.add("exit", time.Duration(t1.UnixNano()-prev))
	}
	return nil
}

// removeRoots deletes the GC roots under Nix's gcroots/auto that point into
// work, so the fake paths leave nothing behind.
func removeRoots(work string) {
	state := os.Getenv("NIX_STATE_DIR")
	if state == "" {
		state = "/nix/var/nix"
	}
	links, _ := filepath.Glob(filepath.Join(state, "gcroots", "auto", "nixcache-queue-*"))
	for _, l := range links {
		if t, err := os.Readlink(l); err == nil && strings.HasPrefix(t, work+"/") {
			_ = os.Remove(l)
		}
	}
}
