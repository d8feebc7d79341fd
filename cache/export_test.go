package cache

// SetListSplitUnit makes Present count n foreign keys as one listing
// request when it decides to split a prefix, until the test ends.
func SetListSplitUnit(t interface{ Cleanup(func()) }, n int) {
	old := splitUnit
	splitUnit = n
	t.Cleanup(func() { splitUnit = old })
}
