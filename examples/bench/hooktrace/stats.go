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

func median(v []float64) float64 { return percentile(v, 50) }

// percentile returns the p-th percentile of v (nearest rank below), 0 for no samples.
func percentile(v []float64, p int) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)*p/100]
}

// selfModes maps the binary names that stand for hooktrace itself to the
// variable that sets its mode.
var selfModes = map[string]string{"floor": floorEnv, "empty": emptyEnv}

// call runs bin once and records its phases.
func call(s *stats, bin, drv, queue string) error {
	env := append(os.Environ(), "OUT_PATHS=", "DRV_PATH="+drv, "NIXCACHE_QUEUE="+queue)
	if mode, ok := selfModes[bin]; ok {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		bin, env = self, append(env, mode+"=1")
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	err := cmd.Run()
	t1 := time.Now()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", bin, err, stderr.String())
	}
	s.add("total", t1.Sub(t0))
	prev, first := t0.UnixNano(), true
	for _, m := range parseMarks(stderr.String()) {
		ph := m.phase
		if first {
			ph = "spawn"
		}
		s.add(ph, time.Duration(m.ns-prev))
		prev, first = m.ns, false
	}
	if !first {
		s.add("exit", time.Duration(t1.UnixNano()-prev))
	}
	return nil
}

// mark is one "hooktrace PHASE UNIXNANO" line of a traced hook.
type mark struct {
	phase string
	ns    int64
	since time.Duration // since the previous mark in the text (0 for the first)
}

// parseMarks returns the marks in text, in order; other lines (the hook's
// log, or a prefix such as Nix's "post-build-hook: ") are skipped.
func parseMarks(text string) []mark {
	var out []mark
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		i := slices.Index(f, "hooktrace")
		if i < 0 || len(f) != i+3 {
			continue
		}
		ns, err := strconv.ParseInt(f[i+2], 10, 64)
		if err != nil {
			continue
		}
		m := mark{phase: f[i+1], ns: ns}
		if len(out) > 0 {
			m.since = time.Duration(ns - out[len(out)-1].ns)
		}
		out = append(out, m)
	}
	return out
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
