package testenv

import (
	"os"
	"strings"
)

// DeleteWithReferrers deletes paths from the store with everything that
// refers to them (`nix-store --query --referrers-closure`), referrers
// first: nix-store --delete refuses a path that a valid path still refers
// to. A content-addressed build needs it: the resolved .drv Nix built
// refers to its inputs' outputs. Paths already gone are fine; one that
// stays (a GC root) fails the test.
func DeleteWithReferrers(t TB, paths ...string) {
	t.Helper()
	var all []string
	for _, p := range paths {
		if out, err := NixCmd("nix-store", "--query", "--referrers-closure", p); err == nil {
			all = append(all, strings.Fields(string(out))...)
		}
	}
	// Each round deletes what nothing left refers to.
	for range len(all) + 1 {
		var left []string
		for _, p := range all {
			if _, err := os.Lstat(p); err == nil {
				if _, err := NixCmd("nix-store", "--delete", p); err != nil {
					left = append(left, p)
				}
			}
		}
		if all = left; len(all) == 0 {
			return
		}
	}
	t.Fatalf("testenv: cannot delete %v", all)
}
