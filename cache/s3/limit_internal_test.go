package s3

import (
	"context"
	"net/http"
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
	// Throttled one by one, it goes down to the floor and no further.
	for range 20 {
		l.release(take(1)[0], throttled, 0)
	}
	if l.limit != minLimit {
		t.Fatalf("limit %v after 20 throttled answers, want the floor %v", l.limit, minLimit)
	}
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
// parts take seconds), requests are spaced at most maxSpacing apart, not
// round trip / limit (16 s for 1 s answers), which stalled throttled
// daemons long after the server recovered.
func TestLimiterSpacingBounded(t *testing.T) {
	l := newLimiter(16)
	l.limit, l.rtt = minLimit, time.Second
	tk, err := l.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	gap := time.Until(l.notBefore)
	l.mu.Unlock()
	l.release(tk, failed, 0)
	if gap > maxSpacing || gap <= 0 {
		t.Errorf("next request %v later, want at most %v", gap, maxSpacing)
	}
}
