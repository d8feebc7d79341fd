package faultproxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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

func BenchmarkForward(b *testing.B) {
	upstream := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer upstream.Close()
	p, err := Start(upstream.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
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
