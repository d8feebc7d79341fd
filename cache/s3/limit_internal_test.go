package s3

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"0", 0},
		{"1", time.Second},
		{" 3 ", 3 * time.Second},
		{"5", 5 * time.Second},
		{"60", MaxRetryAfter},
		{"120", MaxRetryAfter},
		{"99999999999999999999999", MaxRetryAfter},
		{now.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second},
		{"Mon, 30 Nov 2026 12:00:04 GMT", 4 * time.Second},
		{"Monday, 30-Nov-26 12:00:04 GMT", 4 * time.Second}, // RFC 850, still allowed
		{"Mon, 30 Nov 2026 12:00:10 GMT", MaxRetryAfter},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{now.Add(time.Hour).Format(http.TimeFormat), MaxRetryAfter},
		{"", 0},
		{"-1", 0},
		{"1.5", 0},
		{"soon", 0},
	} {
		if got := parseRetryAfter(tc.v, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "Mon, 30 Nov 2026 12:00:10 GMT", "-1", "1e3"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d := parseRetryAfter(s, now); d < 0 || d > MaxRetryAfter {
			t.Fatalf("parseRetryAfter(%q) = %v, outside 0..%v", s, d, MaxRetryAfter)
		}
	})
}

// TestLimiterRules: slow start, one decrease per window, the floor, the
// ceiling, and the Retry-After hold.
func TestLimiterRules(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(16)
	take := func(n int) []ticket {
		var ts []ticket
		for range n {
			tk, err := l.acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, tk)
		}
		return ts
	}
	// Slow start: 4 slots, each answer to a request sent with at least
	// half of them in use adds one (the first was not).
	for _, tk := range take(4) {
		l.release(tk, answered, 0)
	}
	if l.limit != 7 {
		t.Fatalf("after 4 answers in slow start: limit %v, want 7", l.limit)
	}
	l.limit = 8
	// A window of 8 throttled at once halves the limit once.
	for _, tk := range take(8) {
		l.release(tk, throttled, 0)
	}
	if st := l.stats(); st.Limit != 4 || st.Decreases != 1 || st.Throttled != 8 {
		t.Fatalf("after a throttled window: %+v, want limit 4 after 1 decrease", st)
	}
	// Throttled one by one, the window goes down to 1, then the pace to
	// its floor, and no further.
	for range 60 {
		l.notBefore, l.decreased = time.Time{}, time.Time{} // not the pacing's wait
		l.release(take(1)[0], throttled, 0)
	}
	if l.limit != 1 || l.pace != minRate {
		t.Fatalf("limit %v, pace %v after 60 throttled answers, want 1 and the floor %v", l.limit, l.pace, minRate)
	}
	l.notBefore = time.Time{}
	// Never above max.
	l = newLimiter(2)
	for range 100 {
		ts := take(2)
		for _, tk := range ts {
			l.release(tk, answered, 0)
		}
	}
	if l.limit != 2 {
		t.Fatalf("limit %v, want the maximum 2", l.limit)
	}
	// Retry-After holds the next request.
	tk := take(1)[0]
	start := time.Now()
	l.release(tk, throttled, 300*time.Millisecond)
	take(1)
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("next request after %v, want >= 300ms (Retry-After)", waited)
	}
	// A waiter gives up with its context.
	l = newLimiter(1)
	take(1)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := l.acquire(cctx); err == nil {
		t.Fatal("acquire beyond the limit returned without its context ending")
	}
}

// BenchmarkLimiter is the limiter's cost per request: a slot taken and
// freed with an answer, from parallel goroutines.
func BenchmarkLimiter(b *testing.B) {
	l := newLimiter(DefaultMaxRequests)
	l.limit = DefaultMaxRequests
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk, err := l.acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			l.release(tk, answered, 0)
		}
	})
}

// TestLimiterSpacingBounded: at the floor, with slow answers (uploads whose
// parts take seconds), requests are spaced at most a second apart, not a
// multiple of the round trip, which stalled throttled daemons long after
// the server recovered.
func TestLimiterSpacingBounded(t *testing.T) {
	l := newLimiter(16)
	l.limit, l.rtt = 1, time.Second
	for range 60 {
		l.notBefore, l.decreased = time.Time{}, time.Time{}
		tk, err := l.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		l.release(tk, throttled, 0)
	}
	l.notBefore = time.Time{}
	tk, err := l.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	gap := time.Until(l.notBefore)
	l.mu.Unlock()
	l.release(tk, failed, 0)
	if gap > time.Second || gap <= 0 {
		t.Errorf("next request %v later, want at most 1s", gap)
	}
}

// TestLimiterPaces: throttled at a window of 1, the limiter spaces requests
// evenly at the rate the server answered lately, lowers it to 0.7 on each
// throttling answer, and leaves pacing for the window once the pace allows
// more than one request per round trip.
func TestLimiterPaces(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(16)
	now := time.Now()
	// 20 requests answered in the last second.
	l.limit, l.rtt, l.first, l.okN, l.okAt = 1, 10*time.Millisecond, now.Add(-2*time.Second), 20, now
	tk, _ := l.acquire(ctx)
	l.release(tk, throttled, 0)
	if l.limit != 1 || l.pace < 19 || l.pace > 20 {
		t.Fatalf("after a throttling answer at a window of 1: limit %v, pace %v, want 1 and 20/s (the rate answered)", l.limit, l.pace)
	}
	// Evenly spaced: 4 more requests at 20/s take 150 ms or more. Their
	// answers end the descent: the next refusal keeps 0.7 of the pace.
	start := time.Now()
	for range 4 {
		tk, _ := l.acquire(ctx)
		l.release(tk, answered, 0)
	}
	if d := time.Since(start); d < 150*time.Millisecond-time.Millisecond {
		t.Errorf("4 requests at a pace of 20/s in %v, want >= 150ms", d)
	}
	pace := l.pace
	l.notBefore = time.Time{}
	l.decreased = time.Now().Add(-minRound)
	tk, _ = l.acquire(ctx)
	l.release(tk, throttled, 0)
	if l.pace != pace*paceKeep {
		t.Errorf("pace %v after a throttling answer, want %v", l.pace, pace*paceKeep)
	}
	// Growth ends the pacing once it allows a request per round trip.
	for i := 0; l.pace > 0; i++ {
		if i == 1000 {
			t.Fatalf("pace %v after 1000 answers to waiting requests", l.pace)
		}
		l.grown = time.Now().Add(-minRound)
		l.grow(time.Now())
	}
	if l.limit != 1 || l.wmax < 1 {
		t.Errorf("after pacing: limit %v, wmax %v, want the window from 1, not slow start", l.limit, l.wmax)
	}
}

// TestLimiterUnderRateLimit: four limiters (four daemons) share a server
// that admits 40 requests a second (a token bucket holding 4, as the fault
// proxy's Limit{Rate: 40}), answering in 2 ms (loopback): a window of one
// request per round trip is then 12 times too fast for each. After the
// first second's probe, few requests are refused (the window's floor
// alone, a 16th of a request per round trip, was 31 requests a second for
// each limiter, and a third or more were refused), and the fleet keeps at
// least 70% of the rate.
func TestLimiterUnderRateLimit(t *testing.T) {
	const rate, burst, rtt = 40.0, 4.0, 2 * time.Millisecond
	var mu sync.Mutex
	tokens, refilled := burst, time.Now()
	admit := func() bool {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		tokens = min(burst, tokens+now.Sub(refilled).Seconds()*rate)
		refilled = now
		if tokens < 1 {
			return false
		}
		tokens--
		return true
	}
	start := time.Now()
	probe, stop := start.Add(time.Second), start.Add(4*time.Second)
	var sent, refused, ok atomic.Int64
	ctx, cancel := context.WithDeadline(context.Background(), stop)
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		l := newLimiter(DefaultMaxRequests)
		for range 8 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					tk, err := l.acquire(ctx)
					if err != nil {
						return // stop
					}
					late := tk.start.After(probe) && tk.start.Before(stop)
					admitted := admit()
					time.Sleep(rtt)
					outcome := answered
					if !admitted {
						outcome = throttled
					}
					l.release(tk, outcome, 0)
					if late {
						sent.Add(1)
						if admitted {
							ok.Add(1)
						} else {
							refused.Add(1)
						}
					}
				}
			})
		}
	}
	wg.Wait()
	secs := stop.Sub(probe).Seconds()
	t.Logf("after the first second: %d requests, %d refused (%.1f%%), %.1f/s admitted", sent.Load(), refused.Load(), 100*float64(refused.Load())/float64(sent.Load()), float64(ok.Load())/secs)
	if refused.Load()*10 > sent.Load() {
		t.Errorf("%d of %d requests refused, want <= 10%%", refused.Load(), sent.Load())
	}
	if r := float64(ok.Load()) / secs; r < 0.7*rate {
		t.Errorf("%.1f requests/s admitted, want >= 70%% of %v", r, rate)
	}
}
