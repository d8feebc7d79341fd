package cache

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GCLeasePrefix is where a collector that removes objects keeps its
// lease: objects "gcleases/ID-SEQ" (ID random: the bucket may be public),
// written before it lists the cache, renewed every gcLeaseRenew under a
// new SEQ (the previous one is deleted only after the new one is stored,
// so that some lease of a running collector is always there), and deleted
// after its last removal ended. A
// collector removes nothing past gcLeaseTTL after the start of its last
// successful renewal; a push that finds no live lease after touching what
// it reuses (and after writing its pin) need not wait ReuseSettle. Keys
// under it are never narinfos, so Nix ignores them.
const GCLeasePrefix = "gcleases/"

// gcLeaseTTL is how long after the start of its last successful renewal a
// collector may still end a removal; gcLeaseRenew how often it renews.
// Variables for tests.
var (
	gcLeaseTTL   = 30 * time.Second
	gcLeaseRenew = 10 * time.Second
)

// gcLeaseSkew is added to a lease's ModTime plus gcLeaseTTL by pushers: a
// server's ModTime may lag the collector's clock by the clock skew the
// package assumes (a second) plus S3's one-second resolution.
const gcLeaseSkew = 3 * time.Second

// errLeaseLapsed stops a collection whose lease could not be renewed in
// time: past it, pushes no longer wait for the collector.
var errLeaseLapsed = errors.New("lease lapsed (could not renew it in time): stopped removing")

// gcLease is a running collector's lease.
type gcLease struct {
	b     Backend
	id    string // GCLeasePrefix + host + random, without SEQ
	mu    sync.Mutex
	seq   int
	key   string    // the newest stored lease object
	until time.Time // removals must end before it
	stop  chan struct{}
	done  chan struct{}
}

// takeLease stores a new lease and renews it in the background until
// release.
func takeLease(ctx context.Context, b Backend) (*gcLease, error) {
	l := &gcLease{
		b:    b,
		id:   GCLeasePrefix + rand.Text(),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	if err := l.renew(ctx); err != nil {
		return nil, err
	}
	go l.keep(ctx)
	return l, nil
}

// renew stores the lease under the next SEQ, then deletes the previous
// one; on success, removals may end until its start plus gcLeaseTTL.
func (l *gcLease) renew(ctx context.Context) error {
	start := time.Now()
	l.mu.Lock()
	l.seq++
	key := l.id + "-" + strconv.Itoa(l.seq)
	prev := l.key
	l.mu.Unlock()
	body := "nixcache garbage collector, renewed " + start.UTC().Format(time.RFC3339) + "\n"
	if err := l.b.Put(ctx, key, strings.NewReader(body), int64(len(body)), "text/plain"); err != nil {
		return fmt.Errorf("lease %s: %w", key, err)
	}
	l.mu.Lock()
	l.key, l.until = key, start.Add(gcLeaseTTL)
	l.mu.Unlock()
	if prev != "" {
		_ = l.b.Delete(ctx, prev) // a leftover is ignored once old, and removed by the next collector
	}
	return nil
}

// keep renews the lease every gcLeaseRenew until release; a failed renewal
// is tried again at the next tick (the lease lapses if none succeeds).
func (l *gcLease) keep(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(gcLeaseRenew)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			_ = l.renew(ctx)
		}
	}
}

// holds reports whether a removal that ends by end is covered by the lease.
func (l *gcLease) holds(end time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return end.Before(l.until)
}

// release stops the renewals and deletes every object of this lease, and
// leases of other collectors that lapsed long ago (a crashed collector's).
// Called after the last removal ended.
func (l *gcLease) release(ctx context.Context) {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	old := time.Now().Add(-gcLeaseTTL - gcLeaseSkew - time.Minute)
	var keys []string
	_ = l.b.List(ctx, GCLeasePrefix, func(oi ObjectInfo) error {
		if strings.HasPrefix(oi.Key, l.id+"-") || oi.ModTime.Before(old) {
			keys = append(keys, oi.Key)
		}
		return nil
	})
	for _, k := range keys {
		_ = l.b.Delete(ctx, k)
	}
}

// noCollector reports whether no collector held a live lease when it
// looked (a List of GCLeasePrefix begun after its call): then every removal
// of any collector that ran before has ended, and any collector that starts
// later lists the cache after this call. False when the listing fails.
func (c *Cache) noCollector(ctx context.Context) bool {
	now := time.Now()
	live := false
	err := c.Backend.List(ctx, GCLeasePrefix, func(oi ObjectInfo) error {
		if oi.ModTime.Add(gcLeaseTTL + gcLeaseSkew).After(now) {
			live = true
		}
		return nil
	})
	return err == nil && !live
}
