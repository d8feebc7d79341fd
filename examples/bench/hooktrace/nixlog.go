package main

import (
	"fmt"
	"os"
	"strings"
)

// summariseLog prints the per-phase medians (and 90th percentiles) of the
// hook calls whose marks a Nix build log holds: each call's marks start
// with "main"; a phase lasts from the previous mark to its own.
func summariseLog(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var s stats
	calls := 0
	for _, m := range parseMarks(string(b)) {
		if m.phase == "main" {
			calls++
			continue
		}
		if calls > 0 {
			s.add(m.phase, m.since)
		}
	}
	if calls == 0 {
		return fmt.Errorf("%s: no hooktrace marks (was the hook built with -tags hooktrace?)", file)
	}
	var parts []string
	for _, ph := range s.order {
		parts = append(parts, fmt.Sprintf("%s %.0f (p90 %.0f)", ph, median(s.us[ph]), percentile(s.us[ph], 90)))
	}
	fmt.Printf("%d calls; phases (median us): %s\n", calls, strings.Join(parts, ", "))
	return nil
}
