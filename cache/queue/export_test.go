package queue

// SetSyncHook sets the function called after each syncfs and each fsync
// ("syncfs", "fsync") of a queue directory, until the test ends.
func SetSyncHook(t interface{ Cleanup(func()) }, f func(dir, op string)) {
	syncHook = f
	t.Cleanup(func() { syncHook = nil })
}

// SetBootID makes BootID return id until the test ends (a reboot, seen
// from the Drainer).
func SetBootID(t interface{ Cleanup(func()) }, id string) {
	old := bootID
	bootID = func() string { return id }
	t.Cleanup(func() { bootID = old })
}
