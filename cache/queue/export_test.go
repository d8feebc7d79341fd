package queue

// SetSyncfsHook sets the function called after each syncfs of a new
// entry's directory, until the test ends.
func SetSyncfsHook(t interface{ Cleanup(func()) }, f func(dir string)) {
	syncfsHook = f
	t.Cleanup(func() { syncfsHook = nil })
}
