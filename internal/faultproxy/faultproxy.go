// Package faultproxy is a loopback HTTP proxy for fault-injection tests: it
// forwards requests to an S3 server and can add latency, answer a fraction
// of requests with 503 SlowDown or 429, impose a server-side limit (requests
// in flight, requests per second) as a real server does, refuse everything,
// or stall (stop reading a request's body, or never answer), changing its
// behaviour while a test runs.
package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Faults says what the proxy does to each request.
type Faults struct {
	// Latency is added before each request is forwarded.
	Latency time.Duration
	// SlowDownRate is the fraction (0..1) of requests answered with
	// 503 SlowDown instead of being forwarded.
	SlowDownRate float64
	// TooManyRate is the fraction (0..1) answered with 429 Too Many Requests.
	TooManyRate float64
	// Down makes every request fail with 502, as if the server were gone.
	Down bool
	// StallBodyAfter, when > 0, stalls each request whose body is longer
	// than this many bytes: the proxy reads that many bytes, then stops
	// reading and never answers, like a server that hangs mid-upload (the
	// client's writes block once the socket buffers are full). Requests with
	// shorter bodies are forwarded whole.
	StallBodyAfter int64
	// Silent stalls each request after reading its body whole: the
	// connection stays open and no answer ever comes, like a server that
	// accepts requests and hangs.
	Silent bool
	// StallLimit, when > 0, is how many requests are stalled in all (by
	// StallBodyAfter or Silent); later ones are forwarded. 0 stalls all.
	StallLimit int
	// StallPath, when set, limits stalls to requests whose URL path
	// contains it.
	StallPath string
	// Limit imposes a server-side request limit.
	Limit Limit
}

// Limit is a server-side request limit, as S3 servers impose one (AWS:
// about 3,500 writes a second per prefix; MinIO: requests_max in flight).
// A request beyond it is answered with 503 SlowDown (or 429) at once and
// counted in Proxy.Limited; the others are forwarded. The zero Limit
// limits nothing.
type Limit struct {
	// MaxInFlight, when > 0, is how many requests may be forwarded at once.
	MaxInFlight int
	// Rate, when > 0, is how many requests a second are forwarded, on
	// average: a token bucket refilled at Rate holding at most Burst.
	Rate float64
	// Burst is the token bucket's size; 0 means Rate/10 (100 ms worth),
	// at least 1.
	Burst float64
	// TooMany answers 429 TooManyRequests instead of 503 SlowDown.
	TooMany bool
	// RetryAfter, when > 0, is sent as a Retry-After header (in whole
	// seconds, rounded up) with each refusal; else none is sent, as AWS
	// does with SlowDown.
	RetryAfter time.Duration
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	// URL is the proxy's base URL, http://127.0.0.1:PORT.
	URL string

	mu      sync.Mutex
	faults  Faults
	srv     *http.Server
	release chan struct{} // closed by Close: stalled requests end

	// Requests, Injected count the requests seen and the faults injected.
	Requests atomic.Int64
	Injected atomic.Int64
	// Stalled counts the requests stalled so far. A stalled request stays
	// in InFlight until its client goes away or the proxy is closed.
	Stalled atomic.Int64
	// InFlight counts the requests being answered and not yet in the log:
	// a client may see its answer a moment before the proxy logs it, so
	// WaitIdle before reading a complete Log.
	InFlight atomic.Int64
	// Limited counts the requests refused by Faults.Limit; Forwarding is
	// how many requests are being forwarded now, and MaxForwarding the
	// most ever forwarded at once (what a server's in-flight limit sees).
	Limited       atomic.Int64
	Forwarding    atomic.Int64
	MaxForwarding atomic.Int64

	bucketMu sync.Mutex
	tokens   float64   // the rate limit's token bucket
	refilled time.Time // when tokens was last refilled

	logMu sync.Mutex
	log   []Request

	onForward atomic.Pointer[func(Request)]
}

// OnForward sets a function called with each request just before it is
// forwarded to the server (not for injected faults), so that a test can
// strike at a precise moment, such as while the server completes a
// multipart upload. nil removes it. f must not block for long.
func (p *Proxy) OnForward(f func(Request)) {
	if f == nil {
		p.onForward.Store(nil)
		return
	}
	p.onForward.Store(&f)
}

// Request is one request the proxy answered, as recorded in its log.
type Request struct {
	// Method is the HTTP method (PUT, POST, GET, HEAD, DELETE).
	Method string
	// Path is the request's URL path, e.g. "/bucket/nar/<hash>.nar.zst".
	Path string
	// Query is the raw query string (S3 multipart requests carry
	// "uploads", "uploadId=..." and "partNumber=..." here).
	Query string
	// Status is the status code sent to the client: 502 when the upstream
	// server could not be reached or the client went away mid-request.
	Status int
	// Injected is true when the proxy answered with a fault itself.
	Injected bool
	// Copy is true for a server-side copy (a PUT with x-amz-copy-source,
	// such as a cache touching an object it reuses): no object data is
	// uploaded.
	Copy bool
	// Limited is true when Faults.Limit refused the request (Injected is
	// true too).
	Limited bool
	// Start is when the proxy received the request.
	Start time.Time
	// End is when the proxy finished answering it (or gave up).
	End time.Time
}

// Failed reports whether the request did not succeed: a status outside
// 2xx, or no status at all.
func (r Request) Failed() bool { return r.Status < 200 || r.Status > 299 }

// statusWriter records the status code a handler sends.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (used by httputil.ReverseProxy to
// flush) reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Start starts a proxy to target (http://host:port).
func Start(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), release: make(chan struct{})}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme = u.Scheme
			r.Out.URL.Host = u.Host
			r.Out.Host = r.In.Host // keep the signed Host header
		},
		FlushInterval: -1,
		// A stopped server is an expected fault here: answer 502 (the
		// default) without logging every refused connection.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		p.Requests.Add(1)
		p.InFlight.Add(1)
		w := &statusWriter{ResponseWriter: rw}
		rec := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Start: time.Now(),
			Copy: r.Header.Get("X-Amz-Copy-Source") != ""}
		defer func() {
			rec.Status, rec.End = w.status, time.Now()
			if r.Context().Err() != nil && !rec.Injected {
				// The client gave up (or was killed) before the answer
				// reached it: whatever the server did, the client saw
				// a failure.
				rec.Status = http.StatusBadGateway
			}
			p.logMu.Lock()
			p.log = append(p.log, rec)
			p.logMu.Unlock()
			p.InFlight.Add(-1)
		}()
		f := p.Faults()
		if f.Latency > 0 {
			time.Sleep(f.Latency)
		}
		inject := func(answer func()) {
			rec.Injected = true
			p.Injected.Add(1)
			drain(r)
			answer()
		}
		switch {
		case f.Down:
			inject(func() { http.Error(w, "proxy: server down", http.StatusBadGateway) })
			return
		case f.SlowDownRate > 0 && rand.Float64() < f.SlowDownRate:
			inject(func() { s3Error(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.") })
			return
		case f.TooManyRate > 0 && rand.Float64() < f.TooManyRate:
			inject(func() { s3Error(w, http.StatusTooManyRequests, "TooManyRequests", "Too many requests.") })
			return
		}
		if (f.StallBodyAfter > 0 || f.Silent) && strings.Contains(r.URL.Path, f.StallPath) {
			if p.stall(w, r, f) {
				rec.Injected = true
				p.Injected.Add(1)
				return
			}
		}
		if !p.admit(f.Limit) {
			rec.Limited = true
			inject(func() { p.refuse(w, f.Limit) })
			return
		}
		defer p.Forwarding.Add(-1)
		if f := p.onForward.Load(); f != nil {
			(*f)(rec)
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	return p, nil
}

// admit counts one more request being forwarded and reports whether lim
// lets it through; a refused request is counted in Limited and not as
// forwarded.
func (p *Proxy) admit(lim Limit) bool {
	n := p.Forwarding.Add(1)
	if lim.MaxInFlight > 0 && n > int64(lim.MaxInFlight) {
		p.Forwarding.Add(-1)
		p.Limited.Add(1)
		return false
	}
	if lim.Rate > 0 && !p.takeToken(lim) {
		p.Forwarding.Add(-1)
		p.Limited.Add(1)
		return false
	}
	for m := p.MaxForwarding.Load(); n > m && !p.MaxForwarding.CompareAndSwap(m, n); m = p.MaxForwarding.Load() {
	}
	return true
}

// takeToken takes one token from the rate limit's bucket, refilled at
// lim.Rate, and reports whether there was one.
func (p *Proxy) takeToken(lim Limit) bool {
	burst := lim.Burst
	if burst <= 0 {
		burst = max(1, lim.Rate/10)
	}
	p.bucketMu.Lock()
	defer p.bucketMu.Unlock()
	now := time.Now()
	if p.refilled.IsZero() {
		p.tokens = burst
	} else {
		p.tokens = min(burst, p.tokens+now.Sub(p.refilled).Seconds()*lim.Rate)
	}
	p.refilled = now
	if p.tokens < 1 {
		return false
	}
	p.tokens--
	return true
}

// refuse answers a request beyond lim as a throttling S3 server does.
func (p *Proxy) refuse(w http.ResponseWriter, lim Limit) {
	if lim.RetryAfter > 0 {
		secs := (lim.RetryAfter + time.Second - 1) / time.Second
		w.Header().Set("Retry-After", fmt.Sprint(int64(secs)))
	}
	if lim.TooMany {
		writeS3Error(w, http.StatusTooManyRequests, "TooManyRequests", "Too many requests.")
		return
	}
	writeS3Error(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
}

// stall stalls r as f says and reports whether it did; a request it does
// not stall is left whole for forwarding.
func (p *Proxy) stall(w http.ResponseWriter, r *http.Request, f Faults) bool {
	if f.StallBodyAfter > 0 {
		// Read one byte more than the limit to know the body is longer.
		head := make([]byte, f.StallBodyAfter+1)
		n, _ := io.ReadFull(r.Body, head)
		long := int64(n) > f.StallBodyAfter
		if long && p.takeStall(f.StallLimit) {
			p.hold(w, r) // the rest of the body stays unread
			return true
		}
		r.Body = readCloser{io.MultiReader(bytes.NewReader(head[:n]), r.Body), r.Body}
		if long {
			return false // over StallLimit
		}
	}
	if !f.Silent || !p.takeStall(f.StallLimit) {
		return false
	}
	drain(r)
	p.hold(w, r)
	return true
}

// hold keeps a stalled request open, unanswered, until its client goes away
// (noticed only once its body was read whole) or the proxy is closed, then
// closes its connection without an answer.
func (p *Proxy) hold(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-p.release:
	}
	if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
		c.Close()
	}
}

// takeStall counts one more stalled request unless limit (when > 0) is
// reached.
func (p *Proxy) takeStall(limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if limit > 0 && p.Stalled.Load() >= int64(limit) {
		return false
	}
	p.Stalled.Add(1)
	return true
}

type readCloser struct {
	io.Reader
	io.Closer
}

func drain(r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Retry-After", "0")
	writeS3Error(w, status, code, msg)
}

// writeS3Error answers an S3 error document, with the Retry-After
// header only if the caller set one.
func writeS3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
}

// Faults returns the current faults.
func (p *Proxy) Faults() Faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults
}

// Set replaces the faults.
func (p *Proxy) Set(f Faults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Log returns a copy of the requests answered so far, in the order their
// answers completed.
func (p *Proxy) Log() []Request {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return append([]Request(nil), p.log...)
}

// WaitIdle waits up to timeout for InFlight to reach 0, so that Log holds
// every answer the clients have already seen, and reports whether it did.
func (p *Proxy) WaitIdle(timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); p.InFlight.Load() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// ResetLog empties the request log.
func (p *Proxy) ResetLog() {
	p.logMu.Lock()
	p.log = nil
	p.logMu.Unlock()
}

// Close stops the proxy and ends the stalled requests.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	p.mu.Lock()
	select {
	case <-p.release:
	default:
		close(p.release)
	}
	p.mu.Unlock()
	return err
}
