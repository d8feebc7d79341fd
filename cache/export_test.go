package cache

import "time"

// SetListSplitUnit makes Present count n foreign keys as one listing
// request when it decides to split a prefix, until the test ends.
func SetListSplitUnit(t interface{ Cleanup(func()) }, n int) {
	old := splitUnit
	splitUnit = n
	t.Cleanup(func() { splitUnit = old })
}

// SetGCLease sets how long a collector's lease lasts and how often it is
// renewed, until the test ends.
func SetGCLease(t interface{ Cleanup(func()) }, ttl, renew time.Duration) {
	oldTTL, oldRenew := gcLeaseTTL, gcLeaseRenew
	gcLeaseTTL, gcLeaseRenew = ttl, renew
	t.Cleanup(func() { gcLeaseTTL, gcLeaseRenew = oldTTL, oldRenew })
}
