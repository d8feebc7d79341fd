package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ErrStalled is wrapped when a request made no progress for the stall
// timeout: the server stopped reading the upload, never answered, or
// stopped sending the answer. The request is abandoned and, like a network
// error, retried.
var ErrStalled = errors.New("s3: request made no progress")

// stallTransport abandons a request when the network makes no progress for
// timeout: no byte of the request body taken, no answer, or no byte of the
// answer's body, while the network side holds control. Time spent in the
// request body's own Read (reading the upload's source) and between the
// caller's reads of the answer does not count, so a slow source or a slow
// consumer never trips it. The error, wrapping ErrStalled, reaches minio-go
// as a transport error, which it retries with backoff.
type stallTransport struct {
	next    http.RoundTripper
	timeout time.Duration
}

func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{timeout: t.timeout, cancel: cancel}
	out := req.Clone(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		out.Body = &watchedBody{rc: req.Body, w: w}
		if req.GetBody != nil {
			out.GetBody = func() (io.ReadCloser, error) {
				rc, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				return &watchedBody{rc: rc, w: w}, nil
			}
		}
	}
	w.arm(false) // connect, send the headers and the body, wait for the answer
	resp, err := t.next.RoundTrip(out)
	w.answer()
	if err != nil {
		cancel(nil)
		return nil, w.explain(err)
	}
	resp.Body = &watchedAnswer{rc: resp.Body, w: w}
	return resp, nil
}

// watchdog cancels a request once it is armed for timeout without progress.
type watchdog struct {
	timeout time.Duration
	cancel  context.CancelCauseFunc

	mu       sync.Mutex
	timer    *time.Timer
	fired    bool
	answered bool // the answer's headers came: the body no longer counts
}

// arm starts (or restarts) the countdown: the network has control. A read
// of the request body (body) no longer arms it once the answer came, as a
// server may answer before it read the whole body.
func (w *watchdog) arm(body bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fired || (body && w.answered) {
		return
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.timeout, w.fire)
	} else {
		w.timer.Reset(w.timeout)
	}
}

// answer stops the countdown: the answer's headers came (or the request
// failed).
func (w *watchdog) answer() {
	w.mu.Lock()
	w.answered = true
	w.mu.Unlock()
	w.disarm()
}

// disarm stops the countdown.
func (w *watchdog) disarm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
}

func (w *watchdog) fire() {
	w.mu.Lock()
	w.fired = true
	w.mu.Unlock()
	w.cancel(w.err())
}

func (w *watchdog) err() error { return &stallError{w.timeout} }

// stallError is the error of a stalled request; it matches ErrStalled.
type stallError struct{ timeout time.Duration }

func (e *stallError) Error() string {
	return fmt.Sprintf("request made no progress for %v (stall timeout)", e.timeout)
}

func (e *stallError) Is(target error) bool { return target == ErrStalled }

// explain replaces err by the stall error when the watchdog ended the
// request.
func (w *watchdog) explain(err error) error {
	w.mu.Lock()
	fired := w.fired
	w.mu.Unlock()
	if fired {
		return w.err()
	}
	return err
}

// watchedBody is a request body: each Read the transport makes is progress.
// The source's own reading time is not the network's, so the countdown
// pauses during Read.
type watchedBody struct {
	rc io.ReadCloser
	w  *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.w.disarm()
	n, err := b.rc.Read(p)
	b.w.arm(true)
	return n, err
}

func (b *watchedBody) Close() error { return b.rc.Close() }

// watchedAnswer is a response body: the countdown runs only while a Read
// waits for the network.
type watchedAnswer struct {
	rc io.ReadCloser
	w  *watchdog
}

func (a *watchedAnswer) Read(p []byte) (int, error) {
	a.w.arm(false)
	n, err := a.rc.Read(p)
	a.w.disarm()
	if err != nil && err != io.EOF {
		err = a.w.explain(err)
	}
	return n, err
}

func (a *watchedAnswer) Close() error {
	a.w.disarm()
	err := a.rc.Close()
	a.w.cancel(nil)
	return err
}
