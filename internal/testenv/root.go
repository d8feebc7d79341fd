package testenv

import "os"

// RequireRoot skips (or fails in CI, which runs as root) unless the test
// runs as root: for tests that change owners, run commands as another user
// or start a nix-daemon.
func RequireRoot(t TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "root")
	}
}
