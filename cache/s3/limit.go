package s3

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Adaptive concurrency: each Backend limits its requests in flight and
// adapts the limit to the server's throttling answers (AIMD, as TCP does
// with its congestion window).
const (
	// DefaultMaxRequests is the most requests a Backend has in flight at
	// once, however long the server keeps up: above what the upload
	// daemon's defaults use (jobs x threads x pushes = 32).
	DefaultMaxRequests = 64
	// MaxRetryAfter bounds the pause a Retry-After header imposes on every
	// request of a Backend. Servers send it blindly: MinIO attaches
	// "Retry-After: 60" to every 503, including a read or write quorum
	// missed for a moment and a lock wait on one object after a node
	// restarted; honoured whole, each such answer (and each retry that
	// meets another) would hold a daemon for a minute, and a push for
	// several, with nothing logged. The window's halving still slows the
	// Backend down.
	MaxRetryAfter = 5 * time.Second

	initialLimit = 4        // the window a Backend starts with (slow start from here)
	minLimit     = 1.0 / 16 // below 1: one request at a time, spaced
	defaultRTT   = 10 * time.Millisecond
	minRound     = 100 * time.Millisecond // the shortest round of growth
	// maxSpacing bounds the pause between requests below a window of 1:
	// the round-trip average includes uploads' bodies (a part takes seconds
	// on a loaded link), and rtt/limit could space requests tens of seconds
	// apart, which stalls a daemon long after the server recovered.
	maxSpacing = time.Second
)

// LimitStats are a Backend's request counters and its current limit.
type LimitStats struct {
	// Max is the most requests in flight the limit may reach (0: no
	// limiter).
	Max int
	// Limit is the current window: how many requests may be in flight. Below
	// 1, one request at a time goes out, the next one after the last one's
	// answer time divided by Limit (a rate below one request per round
	// trip), at most a second later.
	Limit float64
	// InFlight is how many requests are in flight now.
	InFlight int
	// Requests counts the requests sent (each part of a multipart upload,
	// each HEAD, each retry).
	Requests int64
	// Throttled counts the throttling answers: 503 (SlowDown and the like)
	// and 429.
	Throttled int64
	// Decreases counts the times the limit was halved.
	Decreases int64
}

// limiter is one Backend's adaptive limit on requests in flight.
//
// A request takes a slot before it is sent and frees it when its answer's
// headers come (or it fails): an upload's body counts, a download's body,
// read at the caller's pace, does not, so that a caller holding an object
// open never blocks other requests. A throttling answer (503 or 429) halves
// the limit, once per window: answers to requests sent before the last
// decrease do not halve it again. A Retry-After header (seconds or an HTTP
// date, at most MaxRetryAfter) holds every new request until then. Each
// other answer to a request sent while at least half the window was in use
// grows the limit, up to max. In slow start (until the first throttling
// answer) each such answer adds 1: the window doubles every round trip.
// Afterwards the limit grows by wall-clock rounds (a round trip, at least
// 100 ms), the same for every backend whatever its share, so that backends
// sharing a server converge towards equal shares, and sparse requests
// (below a window of 1) still see many answers between two decreases: it
// climbs back towards the limit it had at the last decrease, closing an
// eighth of the gap a round, so that it spends most of its time just under
// the server's limit; past that it probes upwards, slowly at first (1/64 a
// round), faster the longer no throttling answer comes, back to doubling
// after 64 rounds, so that it recovers the whole range once the throttling
// stops. A backend throttled below its last peak lowers that peak to 3/4 of
// where it is, leaving room to others sharing the server (CUBIC's fast
// convergence).
// minio-go's retries go through the transport, so they wait for a slot like
// any request.
type limiter struct {
	max float64

	mu        sync.Mutex
	limit     float64
	wmax      float64   // the limit at the last decrease; 0 before the first (slow start)
	probe     float64   // rounds spent at or above wmax
	grown     time.Time // when the limit last grew
	inflight  int
	epoch     uint64        // incremented at each decrease
	notBefore time.Time     // no request starts before (Retry-After, spacing below a window of 1)
	rtt       time.Duration // moving average of the time to an answer
	waiters   int
	changed   chan struct{} // closed (and replaced) when a slot frees or the gate moves

	requests, throttled, decreases atomic.Int64
}

// ticket is a request's slot.
type ticket struct {
	epoch uint64
	start time.Time
	full  bool // at least half the window was in use
}

// newLimiter returns a limiter allowing up to max requests in flight.
func newLimiter(max int) *limiter {
	return &limiter{max: float64(max), limit: min(initialLimit, float64(max)), changed: make(chan struct{})}
}

// slots is how many requests may be in flight.
func (l *limiter) slots() int { return max(1, int(l.limit)) }

// acquire waits for a slot (or ctx's end).
func (l *limiter) acquire(ctx context.Context) (ticket, error) {
	l.mu.Lock()
	for {
		now := time.Now()
		var wait time.Duration
		if l.inflight < l.slots() {
			if wait = l.notBefore.Sub(now); wait <= 0 {
				l.inflight++
				t := ticket{epoch: l.epoch, start: now, full: float64(2*l.inflight) >= l.limit}
				if l.limit < 1 {
					rtt := l.rtt
					if rtt == 0 {
						rtt = defaultRTT
					}
					l.notBefore = now.Add(min(time.Duration(float64(rtt)/l.limit), maxSpacing))
				}
				l.mu.Unlock()
				l.requests.Add(1)
				metrics.requests.Add(1)
				metrics.inflight.Add(1)
				return t, nil
			}
		}
		ch := l.changed
		l.waiters++
		l.mu.Unlock()
		var timeout <-chan time.Time
		var timer *time.Timer
		if wait > 0 {
			timer = time.NewTimer(wait)
			timeout = timer.C
		}
		var err error
		select {
		case <-ch:
		case <-timeout:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if timer != nil {
			timer.Stop()
		}
		l.mu.Lock()
		l.waiters--
		if err != nil {
			l.mu.Unlock()
			return ticket{}, err
		}
	}
}

// Outcomes of a request, for release.
const (
	failed    = iota // no answer: neither grows nor shrinks the limit
	answered         // an answer other than a throttling one
	throttled        // 503 or 429
)

// release frees t's slot and adapts the limit to the outcome; retryAfter
// (> 0) holds new requests for that long.
func (l *limiter) release(t ticket, outcome int, retryAfter time.Duration) {
	now := time.Now()
	l.mu.Lock()
	l.inflight--
	switch outcome {
	case throttled:
		l.throttled.Add(1)
		metrics.throttled.Add(1)
		if t.epoch == l.epoch {
			if l.limit < l.wmax {
				l.wmax = l.limit * 0.75 // others took a share: give way faster
			} else {
				l.wmax = l.limit
			}
			l.limit = max(l.limit/2, minLimit)
			l.probe = 0
			l.grown = now
			l.epoch++
			l.decreases.Add(1)
		}
	case answered:
		if d := now.Sub(t.start); l.rtt == 0 {
			l.rtt = d
		} else {
			l.rtt += (d - l.rtt) / 16
		}
		if t.full && t.epoch == l.epoch && l.limit < l.max {
			// Growth goes by wall-clock rounds, the same for every backend
			// whatever its share, so that they converge to equal shares.
			round := min(now.Sub(l.grown).Seconds()/max(l.rtt, minRound).Seconds(), 4)
			l.grown = now
			switch {
			case l.wmax == 0: // slow start
				l.limit++
			case l.limit < l.wmax:
				// Close an eighth of the gap a round (a little at least).
				gap := (l.wmax - l.limit) * math.Pow(7.0/8, round)
				l.limit = max(l.wmax-gap, l.limit*(1+round/64))
			default:
				l.probe += round
				l.limit *= 1 + min(round, 1)*min(1, (1+l.probe)/64)
			}
			l.limit = min(l.limit, l.max)
		}
	}
	if retryAfter > 0 {
		if until := now.Add(min(retryAfter, MaxRetryAfter)); until.After(l.notBefore) {
			l.notBefore = until
		}
	}
	metrics.limit.Store(math.Float64bits(l.limit))
	if l.waiters > 0 {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	l.mu.Unlock()
	metrics.inflight.Add(-1)
}

// stats returns the counters.
func (l *limiter) stats() LimitStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LimitStats{Max: int(l.max), Limit: l.limit, InFlight: l.inflight,
		Requests: l.requests.Load(), Throttled: l.throttled.Load(), Decreases: l.decreases.Load()}
}

// limitTransport sends each request through a limiter.
type limitTransport struct {
	next http.RoundTripper
	l    *limiter
}

// wrap returns next behind l; a nil limiter limits nothing.
func (l *limiter) wrap(next http.RoundTripper) http.RoundTripper {
	if l == nil {
		return next
	}
	return &limitTransport{next: next, l: l}
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tk, err := t.l.acquire(req.Context())
	if err != nil {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper always closes the body
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.l.release(tk, failed, 0)
		return nil, err
	}
	outcome := answered
	if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
		outcome = throttled
	}
	var ra time.Duration
	if v := resp.Header.Get("Retry-After"); v != "" {
		ra = parseRetryAfter(v, time.Now())
	}
	t.l.release(tk, outcome, ra)
	return resp, nil
}

// parseRetryAfter reads a Retry-After header (RFC 9110: whole seconds, or
// an HTTP date) as a wait from now; 0 for a date past, a malformed value or
// 0 seconds. Waits are capped at MaxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if strings.Trim(v, "0123456789") == "" {
				return MaxRetryAfter // all digits, but too many
			}
			return 0
		}
		if n >= uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), MaxRetryAfter)
}

// parseMaxRequests reads the max-requests parameter: 1..4096, or 0 for no
// limiter (returned as -1, Options' value for none).
func parseMaxRequests(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 4096 {
		return 0, fmt.Errorf("%w \"max-requests\": not a count from 0 (no limit) to 4096", ErrBadParam)
	}
	if n == 0 {
		return -1, nil
	}
	return n, nil
}

// newLimiterFor returns the limiter Options.MaxRequests asks for: nil for a
// negative value (none), DefaultMaxRequests for 0.
func newLimiterFor(maxRequests int) *limiter {
	switch {
	case maxRequests < 0:
		return nil
	case maxRequests == 0:
		return newLimiter(DefaultMaxRequests)
	}
	return newLimiter(maxRequests)
}

// LimitStats returns the Backend's request counters and current limit (all
// zero when Options.MaxRequests turned the limiter off).
func (b *Backend) LimitStats() LimitStats {
	if b.limiter == nil {
		return LimitStats{}
	}
	return b.limiter.stats()
}

// metrics are the process's totals over all Backends, for WriteMetrics.
var metrics struct {
	requests, throttled, inflight atomic.Int64
	limit                         atomic.Uint64 // float64 bits
}

// WriteMetrics writes the process's S3 request counters (over all its
// Backends) in Prometheus text format: requests sent, throttling answers,
// requests in flight, and the limit of the Backend whose limit changed last
// (a daemon has one Backend).
func WriteMetrics(w io.Writer) error {
	for _, m := range []struct {
		name, typ, help string
		v               float64
	}{
		{"nixcache_s3_requests_total", "counter", "S3 requests sent (parts, HEADs and retries each count).", float64(metrics.requests.Load())},
		{"nixcache_s3_throttled_total", "counter", "S3 throttling answers (503 SlowDown, 429).", float64(metrics.throttled.Load())},
		{"nixcache_s3_requests_in_flight", "gauge", "S3 requests in flight now.", float64(metrics.inflight.Load())},
		{"nixcache_s3_request_limit", "gauge", "Adaptive limit on S3 requests in flight (below 1: requests spaced out).", math.Float64frombits(metrics.limit.Load())},
	} {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", m.name, m.help, m.name, m.typ, m.name, m.v); err != nil {
			return err
		}
	}
	return nil
}
