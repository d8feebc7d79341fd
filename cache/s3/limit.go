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

	initialLimit = 4 // the window a Backend starts with (slow start from here)
	defaultRTT   = 10 * time.Millisecond
	minRound     = 100 * time.Millisecond // the shortest round of growth
	// minRate is the slowest pace: a request a second. The pace is set by
	// answers, and a pause of seconds between requests would stall a
	// daemon long after the server recovered.
	minRate = 1.0
	// paceKeep is what a throttled pace keeps (CUBIC's beta): gentler than
	// halving, so that a fleet near a server's rate limit loses little
	// throughput to each refusal.
	paceKeep = 0.7
	// okWindow is the time over which the rate of answered requests is
	// measured: the pace starts there.
	okWindow = time.Second
	// probeWindow and probePace are how many rounds a probe above the last
	// peak takes to accelerate to doubling each round (the window's and
	// the pace's): the pace probes more gently, since a fleet at a rate
	// limit spends its time there, and each probe past the limit costs a
	// refused request.
	probeWindow = 64
	probePace   = 128
	// approachPace: a throttled pace closes 1/approachPace of the gap to
	// its last peak a round (the window an eighth), and addPace (requests
	// a second) is its additive growth a round.
	approachPace = 16
	addPace      = 0.02
)

// LimitStats are a Backend's request counters and its current limit.
type LimitStats struct {
	// Max is the most requests in flight the limit may reach (0: no
	// limiter).
	Max int
	// Limit is the current window: how many requests may be in flight (at
	// least 1).
	Limit float64
	// Rate, when > 0, is the pace the Backend keeps to: at most Rate
	// requests a second, evenly spaced (the server throttled it even at
	// one request in flight: a rate limit below one request per round
	// trip). 0 when not pacing.
	Rate float64
	// InFlight is how many requests are in flight now.
	InFlight int
	// Requests counts the requests sent (each part of a multipart upload,
	// each HEAD, each retry).
	Requests int64
	// Throttled counts the throttling answers: 503 (SlowDown and the like)
	// and 429.
	Throttled int64
	// Decreases counts the times the limit (or the pace) was lowered.
	Decreases int64
}

// limiter is one Backend's adaptive limit on requests in flight, and on
// their rate below one request in flight.
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
// sharing a server converge towards equal shares: it climbs back towards
// the limit it had at the last decrease, closing an eighth of the gap a
// round, so that it spends most of its time just under the server's limit;
// past that it probes upwards, slowly at first, faster the longer no
// throttling answer comes, back to doubling after 64 rounds, so that it
// recovers the whole range once the throttling stops. A backend throttled
// below its last peak lowers that peak further, leaving room to others
// sharing the server (CUBIC's fast convergence).
//
// A throttling answer at a window of 1 means the server wants fewer
// requests a second than one per round trip (a rate limit: on loopback a
// round trip takes milliseconds, and S3 limits requests a second). The
// limiter then paces requests by rate, evenly spaced, instead of by window:
// the pace starts at the rate of requests answered over the last second
// (what the server let through; lowered at each refusal until a request
// is answered) and adapts by the same rules in wall-clock rounds: kept at 0.7
// on a decrease (not halved), at most one decrease a round (the refusals
// of requests sent just after a decrease, retries among them, answer the
// rate before it), approaching the last peak more slowly (1/16 of the gap
// a round), plus an additive step (0.2 requests a second, each second)
// that brings backends towards equal shares, and probing more gently past
// the peak. Pacing ends, back to the window, once the pace allows more
// than one request per round trip. A window of requests sent at once,
// however small, exceeds a token bucket of a few requests; requests spaced
// a little under the rate do not.
// minio-go's retries go through the transport, so they wait for a slot like
// any request.
type limiter struct {
	max float64

	mu        sync.Mutex
	limit     float64   // the window, >= 1
	wmax      float64   // the limit at the last decrease; 0 before the first (slow start)
	pace      float64   // requests a second while pacing; 0: not pacing
	pmax      float64   // the pace at the last decrease
	probe     float64   // rounds spent at or above wmax (or pmax)
	grown     time.Time // when the limit last grew
	decreased time.Time // when the limit last decreased
	// descending: pacing, and no request answered since the pace began
	// or last decreased: each refusal lowers the pace, however soon after
	// the last decrease.
	descending bool
	first      time.Time // when the first request was sent
	okN        float64   // answered requests, decaying over okWindow
	okAt       time.Time // when okN was last updated
	inflight   int
	epoch      uint64        // incremented at each decrease
	notBefore  time.Time     // no request starts before (Retry-After, pacing)
	rtt        time.Duration // moving average of the time to an answer
	waiters    int
	changed    chan struct{} // closed (and replaced) when a slot frees or the gate moves

	requests, throttled, decreases atomic.Int64
}

// ticket is a request's slot.
type ticket struct {
	epoch uint64
	start time.Time
	full  bool // the limit held requests back: at least half the window in use, or, pacing, a request waited
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
	waited := false
	for {
		now := time.Now()
		var wait time.Duration
		if l.inflight < l.slots() {
			if wait = l.notBefore.Sub(now); wait <= 0 {
				l.inflight++
				t := ticket{epoch: l.epoch, start: now, full: float64(2*l.inflight) >= l.limit}
				if l.first.IsZero() {
					l.first = now
				}
				if l.pace > 0 {
					t.full = waited || l.waiters > 0
					l.notBefore = now.Add(time.Duration(float64(time.Second) / l.pace))
				}
				l.mu.Unlock()
				l.requests.Add(1)
				metrics.requests.Add(1)
				metrics.inflight.Add(1)
				return t, nil
			}
		}
		waited = true
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
		// Pacing, requests go one at a time, each in its own window: a
		// refusal lowers the pace only a round after the last decrease,
		// when the server has seen the lower pace (refusals just after,
		// retries' among them, answer the rate before).
		if t.epoch == l.epoch && (l.pace == 0 || l.descending || t.start.Sub(l.decreased) >= minRound) {
			l.decrease(now)
		}
	case answered:
		if d := now.Sub(t.start); l.rtt == 0 {
			l.rtt = d
		} else {
			l.rtt += (d - l.rtt) / 16
		}
		l.okN = l.okN*math.Exp(-now.Sub(l.okAt).Seconds()/okWindow.Seconds()) + 1
		l.okAt = now
		l.descending = false
		if t.full && t.epoch == l.epoch {
			l.grow(now)
		}
	}
	if retryAfter > 0 {
		if until := now.Add(min(retryAfter, MaxRetryAfter)); until.After(l.notBefore) {
			l.notBefore = until
		}
	}
	metrics.limit.Store(math.Float64bits(l.limit))
	metrics.rate.Store(math.Float64bits(l.pace))
	if l.waiters > 0 {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	l.mu.Unlock()
	metrics.inflight.Add(-1)
}

// rttOr1 is the round-trip average (defaultRTT before any answer).
func (l *limiter) rttOr1() time.Duration {
	if l.rtt <= 0 {
		return defaultRTT
	}
	return l.rtt
}

// decrease lowers the window (halved, down to 1) or, at a window of 1, the
// pace, after a throttling answer.
func (l *limiter) decrease(now time.Time) {
	if l.pace == 0 && l.limit > 1 {
		if l.limit < l.wmax {
			l.wmax = l.limit * 0.75 // others took a share: give way faster
		} else {
			l.wmax = l.limit
		}
		l.limit = max(l.limit/2, 1)
	} else {
		cur, keep := l.pace, paceKeep
		if cur == 0 {
			// From the rate of answered requests (what the server let
			// through lately), or half a request per round trip before
			// any answer.
			cur, keep = 0.5/l.rttOr1().Seconds(), 1
			if l.okN > 0 {
				cur = min(cur, l.okRate(now))
			}
			l.pmax, l.descending = 0, true
			l.wmax = max(l.wmax, 1)
		}
		if cur < l.pmax && !l.descending {
			l.pmax = cur * (1 + keep) / 2 // others took a share: give way faster
		} else {
			l.pmax = cur
		}
		l.pace = max(cur*keep, minRate)
	}
	l.probe = 0
	l.grown, l.decreased = now, now
	l.epoch++
	l.decreases.Add(1)
}

// okRate is the rate of answered requests over the last okWindow (or
// since the first request, when that is shorter), in requests a second.
func (l *limiter) okRate(now time.Time) float64 {
	span := min(now.Sub(l.first), okWindow).Seconds()
	if l.okN == 0 || span <= 0 {
		return minRate
	}
	return l.okN * math.Exp(-now.Sub(l.okAt).Seconds()/okWindow.Seconds()) / span
}

// grow raises the window or the pace after an answer to a request the
// limit held back.
func (l *limiter) grow(now time.Time) {
	// Growth goes by wall-clock rounds, the same for every backend
	// whatever its share, so that they converge to equal shares.
	round := min(now.Sub(l.grown).Seconds()/max(l.rttOr1(), minRound).Seconds(), 4)
	l.grown = now
	if l.pace > 0 {
		l.pace = l.climb(l.pace, l.pmax, round, approachPace, probePace, addPace)
		if l.pace*l.rttOr1().Seconds() >= 1 {
			// More than a request per round trip: the window of 1 holds
			// requests back again, not the pace.
			l.pace = 0
		}
		return
	}
	if l.limit >= l.max {
		return
	}
	if l.wmax == 0 { // slow start
		l.limit++
	} else {
		l.limit = l.climb(l.limit, l.wmax, round, 8, probeWindow, 0)
	}
	l.limit = min(l.limit, l.max)
}

// climb grows v after round rounds: towards peak, closing 1/approach of
// the gap a round (a little at least); past it, probing, slowly at first,
// then faster, doubling each round after probeRounds rounds; plus add a
// round (an additive part, which brings backends sharing a server towards
// equal shares: a multiplicative growth alone keeps their ratios). The
// window grows by at most one round an answer; the pace by every round
// since the last answer (a slow pace sees few answers, and would otherwise
// climb back slowest where it fell lowest).
func (l *limiter) climb(v, peak, round, approach, probeRounds, add float64) float64 {
	if v < peak {
		gap := (peak - v) * math.Pow(1-1/approach, round)
		return max(peak-gap, v*(1+round/probeRounds)+add*round)
	}
	l.probe += round
	g := min(1, (1+l.probe)/probeRounds)
	if l.pace > 0 {
		return v*math.Pow(1+g, round) + add*round
	}
	return v*(1+min(round, 1)*g) + add*min(round, 1)
}

// stats returns the counters.
func (l *limiter) stats() LimitStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LimitStats{Max: int(l.max), Limit: l.limit, Rate: l.pace, InFlight: l.inflight,
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
	limit, rate                   atomic.Uint64 // float64 bits
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
		{"nixcache_s3_request_limit", "gauge", "Adaptive limit on S3 requests in flight.", math.Float64frombits(metrics.limit.Load())},
		{"nixcache_s3_request_rate", "gauge", "Pace of S3 requests a second when throttled at one request in flight (0: not pacing).", math.Float64frombits(metrics.rate.Load())},
	} {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", m.name, m.help, m.name, m.typ, m.name, m.v); err != nil {
			return err
		}
	}
	return nil
}
