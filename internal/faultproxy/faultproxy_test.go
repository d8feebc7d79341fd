package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func do(t testing.TB, method, url string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestLog(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("missing") {
			http.NotFound(w, r)
		}
	}))
	defer upstream.Close()
	p, err := Start(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var forwarded []string
	p.OnForward(func(r Request) { forwarded = append(forwarded, r.Method+" "+r.Path) })

	for _, tc := range []struct {
		name     string
		faults   Faults
		method   string
		path     string
		status   int
		injected bool
	}{
		{"forwarded", Faults{}, "PUT", "/b/k?uploadId=u&partNumber=1", 200, false},
		{"upstream 404", Faults{}, "HEAD", "/b/k?missing", 404, false},
		{"slowdown", Faults{SlowDownRate: 1}, "PUT", "/b/k", 503, true},
		{"too many", Faults{TooManyRate: 1}, "POST", "/b/k?uploads", 429, true},
		{"down", Faults{Down: true}, "PUT", "/b/k", 502, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.ResetLog()
			p.Set(tc.faults)
			if got := do(t, tc.method, p.URL+tc.path); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if !p.WaitIdle(5 * time.Second) {
				t.Fatalf("%d requests still in flight", p.InFlight.Load())
			}
			log := p.Log()
			if len(log) != 1 {
				t.Fatalf("log has %d entries: %+v", len(log), log)
			}
			r := log[0]
			path, query, _ := strings.Cut(tc.path, "?")
			if r.Method != tc.method || r.Path != path || r.Query != query || r.Status != tc.status || r.Injected != tc.injected {
				t.Errorf("logged %+v", r)
			}
			if r.Failed() != (tc.status != 200) {
				t.Errorf("Failed() = %v for status %d", r.Failed(), r.Status)
			}
		})
	}
	if p.InFlight.Load() != 0 {
		t.Errorf("InFlight = %d after all answers", p.InFlight.Load())
	}
	if want := "[PUT /b/k HEAD /b/k]"; fmt.Sprint(forwarded) != want {
		t.Errorf("OnForward saw %v, want %s", forwarded, want)
	}
}

// Upstream gone: the proxy answers 502 and logs it as a failure.
func TestUpstreamDown(t *testing.T) {
	upstream := httptest.NewServer(http.NotFoundHandler())
	url := upstream.URL
	upstream.Close()
	p, err := Start(url)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := do(t, "PUT", p.URL+"/b/k"); got != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", got)
	}
	p.WaitIdle(5 * time.Second)
	if log := p.Log(); len(log) != 1 || !log[0].Failed() || log[0].Injected {
		t.Errorf("log %+v", log)
	}
}

// TestStall checks the stall modes against an upstream that records the
// bodies it receives: a stalled request gets no answer (the client's own
// timeout ends it) and never reaches the server; requests past StallLimit,
// outside StallPath or with a body no longer than StallBodyAfter are
// forwarded whole; Close ends the stalled requests.
func TestStall(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{} // path -> body length received
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		mu.Lock()
		got[r.URL.Path] = int(n)
		mu.Unlock()
	}))
	defer upstream.Close()
	p, err := Start(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client := &http.Client{Timeout: 300 * time.Millisecond}
	put := func(path string, size int) error {
		req, err := http.NewRequest("PUT", p.URL+path, bytes.NewReader(make([]byte, size)))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	const mb = 1 << 20
	for _, tc := range []struct {
		name   string
		faults Faults
		path   string
		size   int
		stall  bool
	}{
		{"body after 1 MB", Faults{StallBodyAfter: mb}, "/b/big", 8 * mb, true},
		{"body short", Faults{StallBodyAfter: mb}, "/b/short", mb, false},
		{"silent", Faults{Silent: true}, "/b/silent", 10, true},
		{"silent, path matches", Faults{Silent: true, StallPath: "/nar/"}, "/b/nar/x", 10, true},
		{"silent, other path", Faults{Silent: true, StallPath: "/nar/"}, "/b/x.narinfo", 10, false},
		{"short body, silent", Faults{StallBodyAfter: mb, Silent: true}, "/b/short-silent", 10, true},
		{"over limit", Faults{Silent: true, StallLimit: 4}, "/b/over", 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Set(tc.faults)
			before := p.Stalled.Load()
			err := put(tc.path, tc.size)
			stalled := p.Stalled.Load() - before
			mu.Lock()
			n, reached := got[tc.path]
			mu.Unlock()
			if tc.stall {
				if err == nil || stalled != 1 || reached {
					t.Fatalf("want a stall: err %v, stalled %d, upstream got %d bytes (%v)", err, stalled, n, reached)
				}
				return
			}
			if err != nil || stalled != 0 || n != tc.size {
				t.Fatalf("want forwarding: err %v, stalled %d, upstream got %d of %d bytes", err, stalled, n, tc.size)
			}
		})
	}
	// The silent requests ended when their clients went away; the one
	// stalled mid-body ends with Close.
	p.Close()
	for deadline := time.Now().Add(5 * time.Second); p.InFlight.Load() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d stalled requests still in flight after Close", p.InFlight.Load())
		}
	}
	injected := 0
	for _, r := range p.Log() {
		if r.Injected {
			injected++
			if !r.Failed() {
				t.Errorf("stalled request %s logged as a success (status %d)", r.Path, r.Status)
			}
		}
	}
	if injected != 4 || p.Injected.Load() != 4 {
		t.Errorf("%d stalled requests logged, Injected = %d; want 4", injected, p.Injected.Load())
	}
}

func BenchmarkForward(b *testing.B) {
	p := emptyProxy(b)
	for b.Loop() {
		do(b, "PUT", p.URL+"/b/k")
	}
}

func Example() {
	upstream := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer upstream.Close()
	p, _ := Start(upstream.URL)
	defer p.Close()
	p.Set(Faults{SlowDownRate: 1}) // every request: 503 SlowDown
	resp, _ := http.Post(p.URL+"/bucket/key", "text/plain", nil)
	resp.Body.Close()
	p.WaitIdle(5 * time.Second)
	for _, r := range p.Log() {
		fmt.Println(r.Method, r.Path, r.Status, r.Injected)
	}
	// Output: POST /bucket/key 503 true
}

// A server-side copy (x-amz-copy-source) is logged as such.
func TestLogCopy(t *testing.T) {
	p := emptyProxy(t)
	for _, copySource := range []string{"", "/b/k"} {
		req, _ := http.NewRequest("PUT", p.URL+"/b/k", nil)
		if copySource != "" {
			req.Header.Set("X-Amz-Copy-Source", copySource)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	p.WaitIdle(5 * time.Second)
	if log := p.Log(); len(log) != 2 || log[0].Copy || !log[1].Copy {
		t.Errorf("log %+v, want a plain PUT then a copy", log)
	}
}

// TestLimitInFlight: beyond MaxInFlight requests being forwarded, the proxy
// answers 503 SlowDown at once (no Retry-After unless asked), and forwards
// again once the server answered.
func TestLimitInFlight(t *testing.T) {
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
	}))
	defer upstream.Close()
	p, err := Start(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Set(Faults{Limit: Limit{MaxInFlight: 2}})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { do(t, "GET", p.URL+"/slow") })
	}
	for deadline := time.Now().Add(10 * time.Second); p.Forwarding.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the two slow requests never reached the server")
		}
	}
	resp, err := http.Get(p.URL + "/fast")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "<Code>SlowDown</Code>") || resp.Header.Get("Retry-After") != "" {
		t.Errorf("third request: %d %q Retry-After %q, want 503 SlowDown without Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	close(release)
	wg.Wait()
	if got := do(t, "GET", p.URL+"/fast"); got != 200 {
		t.Errorf("after the slow ones: %d, want 200", got)
	}
	if p.Limited.Load() != 1 || p.MaxForwarding.Load() != 2 {
		t.Errorf("Limited %d MaxForwarding %d, want 1 and 2", p.Limited.Load(), p.MaxForwarding.Load())
	}
	p.WaitIdle(5 * time.Second)
	limited := 0
	for _, r := range p.Log() {
		if r.Limited {
			limited++
		}
	}
	if limited != 1 {
		t.Errorf("log has %d limited requests, want 1", limited)
	}
}

// TestLimitRate: a token bucket of Burst requests refilled at Rate a second;
// the refusals carry the asked-for Retry-After (rounded up to seconds) and
// status.
func TestLimitRate(t *testing.T) {
	p := emptyProxy(t)
	// One token every 10 s: the five requests below all come before it.
	p.Set(Faults{Limit: Limit{Rate: 0.1, Burst: 2, TooMany: true, RetryAfter: 1500 * time.Millisecond}})
	var codes []int
	var retryAfter string
	for range 5 {
		resp, err := http.Get(p.URL + "/k")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == 429 {
			retryAfter = resp.Header.Get("Retry-After")
		}
	}
	if fmt.Sprint(codes) != "[200 200 429 429 429]" || retryAfter != "2" {
		t.Errorf("codes %v, Retry-After %q; want [200 200 429 429 429] and 2", codes, retryAfter)
	}
}

// emptyProxy is a proxy in front of a server that answers every request
// with an empty 200, both closed when the test ends.
func emptyProxy(tb testing.TB) *Proxy {
	tb.Helper()
	upstream := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	tb.Cleanup(upstream.Close)
	p, err := Start(upstream.URL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}
