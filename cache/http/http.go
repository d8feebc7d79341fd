// Package http is a read-only cache.Backend on a binary cache served over
// HTTP or HTTPS, the way Nix reads one (cache.nixos.org, a web server in
// front of a file:// cache directory, a public S3 bucket): GET and HEAD of
// nix-cache-info, <hash>.narinfo and NAR files below the URL.
//
// It follows Nix 2.8's rules (filetransfer.cc and HttpBinaryCacheStore):
//   - HTTP 404, 410, 401, 403 and 407 mean the object is missing: the error
//     wraps cache.ErrNotFound (an S3 bucket answers 403 for a key it does not
//     have when listing is not allowed).
//   - 408, 429 and 5xx other than 501, 505 and 511, network errors and a
//     request that makes no progress for the stall timeout are transient:
//     the request is retried with exponential backoff and full jitter. A
//     body cut off or stalled mid-way is resumed with a Range request for
//     the rest of the same version (If-Range), as Nix resumes a download.
//   - Any other status is a permanent error naming it.
//   - A Content-Encoding other than none (or identity) is decoded the way
//     Nix's decompression sink (libarchive) does: by the data's own magic
//     bytes (gzip, xz, bzip2, zstd), not by the name, peeling every layer
//     it recognises, so that a gzip-encoded xz NAR fails here as in Nix;
//     data in no recognised format, such as the "aws-chunked" framing some
//     S3 servers serve back, is an error ("input compression not
//     recognized", as in Nix). Brotli (br), which Nix also decodes, is not
//     supported. No Accept-Encoding is sent.
//   - Credentials in the URL (https://user:password@host/...) are sent as
//     HTTP basic authentication; they never appear in an error, and a
//     redirect to another host does not carry them.
//
// Put and Delete fail with an error wrapping cache.ErrReadOnly, List with
// one wrapping cache.ErrNotSupported: HTTP cannot write a cache nor list
// one, so cache.Verify needs explicit store paths there.
//
// Importing the package registers the "http" and "https" store URL schemes
// with cache.Register. Their parameters are retry-attempts and
// stall-timeout, as for s3:// stores.
package http

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	nethttp "net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/compress"
)

// Defaults of the HTTP backend.
const (
	// DefaultRetries is how many times a request is tried when it fails
	// transiently (Nix's download-attempts is 5 as well).
	DefaultRetries = 5
	// DefaultStallTimeout is how long a request may go without progress
	// (no connection, no answer, no byte of the answer's body) before it
	// is abandoned and, if attempts are left, retried.
	DefaultStallTimeout = 30 * time.Second
	// maxBackoff caps the wait between attempts.
	maxBackoff = 2 * time.Second
)

// Errors, for errors.Is.
var (
	// ErrBadParam is wrapped when an http:// or https:// URL parameter or
	// location is invalid.
	ErrBadParam = errors.New("http: invalid store URL")
	// ErrStalled is wrapped when a request made no progress for the stall
	// timeout.
	ErrStalled = errors.New("http: request made no progress")
	// ErrEncoding is wrapped when an answer's Content-Encoding cannot be
	// decoded.
	ErrEncoding = errors.New("http: cannot decode Content-Encoding")
)

func init() {
	cache.Register("http", func(loc string, params map[string]string) (cache.Location, error) {
		return ParseLocation("http", loc, params)
	})
	cache.Register("https", func(loc string, params map[string]string) (cache.Location, error) {
		return ParseLocation("https", loc, params)
	})
}

// Options configure a Backend. Options is the cache.Location of an http://
// or https:// store URL.
type Options struct {
	// URL is the cache's base URL, scheme http or https, without a trailing
	// slash, query or fragment: "https://cache.example.org/team". It may
	// hold user information (user:password@), sent as basic authentication.
	URL string
	// Retries is the number of attempts per request; 0 means
	// DefaultRetries, 1 disables retries.
	Retries int
	// StallTimeout is how long a request may go without progress before it
	// is abandoned (with an error wrapping ErrStalled); 0 means
	// DefaultStallTimeout.
	StallTimeout time.Duration
	// Transport overrides the HTTP transport (tests inject failures here).
	Transport nethttp.RoundTripper
}

// ParseLocation reads the backend part of an http:// or https:// store URL
// (scheme is "http" or "https"; location is what follows "scheme://",
// percent-escapes intact): "host[:port][/path]", optionally with
// "user:password@" before the host. The parameters are retry-attempts
// (1..100) and stall-timeout (a duration such as 30s, or whole seconds;
// 1ms..24h). Errors wrap ErrBadParam and name the parameter or part, never
// a value.
func ParseLocation(scheme, location string, params map[string]string) (cache.Location, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrBadParam, what) }
	o := Options{}
	for name, v := range params {
		switch name {
		case "retry-attempts":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100 {
				return nil, bad(fmt.Sprintf("parameter %q: not a count from 1 to 100", name))
			}
			o.Retries = n
		case "stall-timeout":
			d, err := cache.ParseTimeout(v)
			if err != nil {
				return nil, bad(fmt.Sprintf("parameter %q: %v", name, err))
			}
			o.StallTimeout = d
		default:
			return nil, bad(fmt.Sprintf("unknown parameter %q", name))
		}
	}
	if scheme != "http" && scheme != "https" {
		return nil, bad("scheme must be http or https")
	}
	u, err := url.Parse(scheme + "://" + location)
	if err != nil {
		// url.Parse errors repeat the URL, which may hold a password.
		return nil, bad("location is not a valid URL (want " + scheme + "://host[:port][/path])")
	}
	if u.Host == "" {
		return nil, bad("missing host (want " + scheme + "://host[:port][/path])")
	}
	if u.Port() != "" {
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			return nil, bad("port must be 1 to 65535")
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	o.URL = u.String()
	return o, nil
}

// Open returns the backend: New(o). It makes no request.
func (o Options) Open(context.Context) (cache.Backend, error) { return New(o) }

// String renders the options as a store URL that ParseLocation reads back,
// credentials included (see Redacted for one fit for messages).
func (o Options) String() string {
	s := o.URL
	var params []string
	if o.Retries != 0 {
		params = append(params, "retry-attempts="+strconv.Itoa(o.Retries))
	}
	if o.StallTimeout != 0 {
		params = append(params, "stall-timeout="+o.StallTimeout.String())
	}
	if len(params) > 0 {
		s += "?" + strings.Join(params, "&")
	}
	return s
}

// Redacted is the base URL with any password replaced by "xxxxx" and the
// user name by "***".
func (o Options) Redacted() string { return redactURL(o.URL) }

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	if u.User != nil {
		u.User = url.User("***")
	}
	return u.String()
}

// Backend reads a binary cache over HTTP(S). It is safe for concurrent use.
type Backend struct {
	base    *url.URL // without user information
	user    *url.Userinfo
	shown   string // base URL for messages, never with credentials
	client  *nethttp.Client
	own     *nethttp.Transport // the transport New made, if any
	retries int
	stall   time.Duration
}

var _ cache.Backend = (*Backend)(nil)

// New returns a backend reading the cache at o.URL.
func New(o Options) (*Backend, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: base URL must be http(s)://host[:port][/path]", ErrBadParam)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: base URL must have no query or fragment", ErrBadParam)
	}
	b := &Backend{user: u.User, retries: o.Retries, stall: o.StallTimeout}
	u.User = nil
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	b.base, b.shown = u, u.String()
	if b.retries <= 0 {
		b.retries = DefaultRetries
	}
	if b.stall <= 0 {
		b.stall = DefaultStallTimeout
	}
	rt := o.Transport
	if rt == nil {
		t := nethttp.DefaultTransport.(*nethttp.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: b.stall, KeepAlive: 30 * time.Second}).DialContext
		t.TLSHandshakeTimeout = min(b.stall, 10*time.Second)
		t.MaxIdleConnsPerHost = 32
		// Nix sends no Accept-Encoding and decodes what comes itself; so do
		// we (Go would otherwise ask for gzip and decode it silently).
		t.DisableCompression = true
		b.own, rt = t, t
	}
	b.client = &nethttp.Client{Transport: rt}
	return b, nil
}

// CloseIdleConnections closes the connections kept open for reuse.
func (b *Backend) CloseIdleConnections() { b.client.CloseIdleConnections() }

// URL returns the cache's base URL without credentials.
func (b *Backend) URL() string { return b.shown }

// Get opens the object for reading, its Content-Encoding decoded.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	resp, err := b.request(ctx, nethttp.MethodGet, key)
	if err != nil {
		return nil, err
	}
	body, err := decode(resp)
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("http: GET %s: %w", b.where(key), err)
	}
	if plainEncoding(resp.Header.Get("Content-Encoding")) {
		body = &resumingBody{ReadCloser: body, ctx: ctx, b: b, key: key, validator: validator(resp)}
	}
	return &keyedBody{ReadCloser: body, b: b, key: key}, nil
}

// validator is what identifies the version of an object that an answer
// holds, for If-Range: its strong ETag, else its Last-Modified.
func validator(resp *nethttp.Response) string {
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		return et
	}
	return resp.Header.Get("Last-Modified")
}

// resumingBody is a body (without Content-Encoding) that, when reading it
// fails the way a request fails transiently (a network error, a stall),
// asks for the rest with a Range request, as Nix resumes a download: at
// most Retries attempts in all, each after a backoff, and only when the
// server answers 206 with the rest of the same version (If-Range).
type resumingBody struct {
	io.ReadCloser
	ctx       context.Context
	b         *Backend
	key       string
	validator string
	off       int64
	attempt   int
}

func (r *resumingBody) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.off += int64(n)
	if err == nil || err == io.EOF || r.ctx.Err() != nil || r.validator == "" {
		return n, err
	}
	for r.attempt++; r.attempt < r.b.retries; r.attempt++ {
		if werr := r.b.backoff(r.ctx, r.attempt); werr != nil {
			return n, err
		}
		resp, rerr := r.b.request(r.ctx, nethttp.MethodGet, r.key,
			"Range", fmt.Sprintf("bytes=%d-", r.off), "If-Range", r.validator)
		if rerr != nil {
			continue
		}
		if resp.StatusCode != nethttp.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", r.off)) ||
			!plainEncoding(resp.Header.Get("Content-Encoding")) {
			resp.Body.Close()
			return n, err // no resumption offered: the first error stands
		}
		r.ReadCloser.Close()
		r.ReadCloser = resp.Body
		return n, nil
	}
	return n, err
}

// Stat asks for the object's metadata with HEAD (GET when the server does
// not allow HEAD). Size is the Content-Length, or -1 when the server does
// not say or sends the object with a Content-Encoding (the decoded length
// is then unknown); ModTime is Last-Modified when given.
func (b *Backend) Stat(ctx context.Context, key string) (cache.ObjectInfo, error) {
	resp, err := b.request(ctx, nethttp.MethodHead, key)
	var se *StatusError
	if errors.As(err, &se) && (se.Code == nethttp.StatusMethodNotAllowed || se.Code == nethttp.StatusNotImplemented) {
		resp, err = b.request(ctx, nethttp.MethodGet, key)
	}
	if err != nil {
		return cache.ObjectInfo{}, err
	}
	resp.Body.Close()
	oi := cache.ObjectInfo{Key: key, Size: resp.ContentLength}
	if enc := resp.Header.Get("Content-Encoding"); !plainEncoding(enc) {
		oi.Size = -1
	}
	if t, err := nethttp.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		oi.ModTime = t
	}
	return oi, nil
}

// Put fails: the backend is read-only. The error wraps cache.ErrReadOnly
// (cache.ErrInvalidKey for an invalid key).
func (b *Backend) Put(_ context.Context, key string, _ io.Reader, _ int64, _ string) error {
	return b.readOnly("write", key)
}

// Delete fails: the backend is read-only. The error wraps
// cache.ErrReadOnly (cache.ErrInvalidKey for an invalid key).
func (b *Backend) Delete(_ context.Context, key string) error {
	return b.readOnly("delete", key)
}

func (b *Backend) readOnly(op, key string) error {
	if err := cache.ValidateKey(key); err != nil {
		return fmt.Errorf("http: %w", err)
	}
	return fmt.Errorf("http: cannot %s %s: %w (an HTTP binary cache is read-only)", op, key, cache.ErrReadOnly)
}

// List fails with an error wrapping cache.ErrNotSupported: HTTP has no way
// to list a binary cache (Nix does not list one either).
func (b *Backend) List(context.Context, string, func(cache.ObjectInfo) error) error {
	return fmt.Errorf("http: %s: %w: an HTTP binary cache cannot be listed (name the store paths)", b.shown, cache.ErrNotSupported)
}

// where names an object in messages: base URL (no credentials) and key.
func (b *Backend) where(key string) string { return b.shown + "/" + key }

// StatusError is the error for an HTTP answer that is not a success.
// Missing objects (404, 410, 401, 403, 407) match cache.ErrNotFound.
type StatusError struct {
	Method string // GET or HEAD
	URL    string // the object's URL, without credentials
	Code   int    // the HTTP status code
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d %s", e.Method, e.URL, e.Code, nethttp.StatusText(e.Code))
}

// Is reports whether the status means the object is missing (target
// cache.ErrNotFound), as Nix's HTTP binary cache store decides.
func (e *StatusError) Is(target error) bool {
	return target == cache.ErrNotFound && missing(e.Code)
}

// missing: Nix's NotFound (404, 410) and Forbidden (401, 403, 407), both
// of which its HTTP binary cache store reads as "no such file".
func missing(code int) bool {
	switch code {
	case 404, 410, 401, 403, 407:
		return true
	}
	return false
}

// transient: what Nix retries. 408 and 429 among the client errors, and
// every server error but 501, 505 and 511.
func transient(code int) bool {
	switch {
	case code == 408, code == 429:
		return true
	case code == 501, code == 505, code == 511:
		return false
	}
	return code >= 500 && code < 600
}

// request sends method for key, retrying transient failures, and returns a
// successful answer whose body is watched for stalls.
func (b *Backend) request(ctx context.Context, method, key string, hdr ...string) (*nethttp.Response, error) {
	if err := cache.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	u := b.base.JoinPath(key)
	for attempt := 1; ; attempt++ {
		resp, err := b.once(ctx, method, u.String(), hdr)
		if err == nil {
			switch c := resp.StatusCode; {
			case c >= 200 && c < 300:
				return resp, nil
			default:
				// Drain a little so that the connection can be reused.
				_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
				resp.Body.Close()
				err = &StatusError{Method: method, URL: b.where(key), Code: c}
				if !transient(c) {
					return nil, fmt.Errorf("http: %w", err)
				}
			}
		} else {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("http: %s %s: %w", method, b.where(key), context.Cause(ctx))
			}
			err = fmt.Errorf("%s %s: %w", method, b.where(key), err)
		}
		if attempt >= b.retries {
			return nil, fmt.Errorf("http: %w (after %d attempts)", err, attempt)
		}
		if err := b.backoff(ctx, attempt); err != nil {
			return nil, fmt.Errorf("http: %s %s: %w", method, b.where(key), err)
		}
	}
}

// backoff waits before attempt+1: a random time up to 200 ms doubling
// with each attempt, at most maxBackoff (full jitter). It returns the
// context's cause if ctx ends first.
func (b *Backend) backoff(ctx context.Context, attempt int) error {
	wait := maxBackoff
	if attempt < 8 {
		wait = min(maxBackoff, 200*time.Millisecond<<(attempt-1))
	}
	t := time.NewTimer(rand.N(wait) + time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// once sends one request. The request is abandoned when it makes no
// progress for the stall timeout: no answer, or (on the returned body) no
// byte while a Read waits for the network.
func (b *Backend) once(ctx context.Context, method, target string, hdr []string) (*nethttp.Response, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	req, err := nethttp.NewRequestWithContext(rctx, method, target, nil)
	if err != nil {
		cancel(nil)
		return nil, errors.New("cannot make the request (bad URL)")
	}
	if b.user != nil {
		pw, _ := b.user.Password()
		req.SetBasicAuth(b.user.Username(), pw)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	stalled := &stallError{b.stall}
	timer := time.AfterFunc(b.stall, func() { cancel(stalled) })
	resp, err := b.client.Do(req)
	timer.Stop()
	if err != nil {
		cancel(nil)
		if errors.Is(context.Cause(rctx), ErrStalled) && ctx.Err() == nil {
			return nil, stalled
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL
		}
		return nil, err
	}
	resp.Body = &watchedBody{rc: resp.Body, timer: timer, stall: b.stall, ctx: rctx, cancel: cancel}
	return resp, nil
}

// stallError is the error of a stalled request; it matches ErrStalled.
type stallError struct{ timeout time.Duration }

func (e *stallError) Error() string {
	return fmt.Sprintf("request made no progress for %v (stall timeout)", e.timeout)
}

func (e *stallError) Is(target error) bool { return target == ErrStalled }

// watchedBody is an answer's body whose Reads must make progress within
// the stall timeout; time between the caller's Reads does not count.
type watchedBody struct {
	rc     io.ReadCloser
	timer  *time.Timer
	stall  time.Duration
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (w *watchedBody) Read(p []byte) (int, error) {
	w.timer.Reset(w.stall)
	n, err := w.rc.Read(p)
	w.timer.Stop()
	if err != nil && err != io.EOF {
		if cause := context.Cause(w.ctx); cause != nil && errors.Is(cause, ErrStalled) {
			err = cause
		}
	}
	return n, err
}

func (w *watchedBody) Close() error {
	w.timer.Stop()
	err := w.rc.Close()
	w.cancel(nil)
	return err
}

// keyedBody names the object in errors from reading it.
type keyedBody struct {
	io.ReadCloser
	b   *Backend
	key string
}

func (k *keyedBody) Read(p []byte) (int, error) {
	n, err := k.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("http: GET %s: read: %w", k.b.where(k.key), err)
	}
	return n, err
}

// plainEncoding reports whether a Content-Encoding leaves the bytes as
// they are. Nix passes "" and "none" through; "identity" means the same in
// HTTP.
func plainEncoding(enc string) bool {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "", "none", "identity":
		return true
	}
	return false
}

// maxLayers bounds how many compression layers decode peels.
const maxLayers = 8

// decode returns the answer's body with its Content-Encoding undone the
// way Nix 2.8 undoes it: it hands any encoding but none and br to
// libarchive with every filter enabled, which recognises formats by their
// magic bytes, not by the encoding's name, and peels every layer it
// recognises. So a gzip-encoded xz NAR comes out as the bare NAR (and then
// fails as xz, in Nix as here), and data in no known format is refused.
func decode(resp *nethttp.Response) (io.ReadCloser, error) {
	enc := resp.Header.Get("Content-Encoding")
	if plainEncoding(enc) {
		return resp.Body, nil
	}
	if len(enc) > 40 {
		enc = enc[:40] + "..."
	}
	if strings.EqualFold(strings.TrimSpace(enc), "br") {
		return nil, fmt.Errorf("%w %q: brotli is not supported", ErrEncoding, enc)
	}
	d := &decoded{closers: []io.Closer{resp.Body}}
	r := bufio.NewReader(resp.Body)
	for len(d.closers) <= maxLayers {
		magic, _ := r.Peek(10)
		method := Sniff(magic)
		if method == "" {
			break
		}
		var dec io.ReadCloser
		var err error
		if method == "gzip" {
			var zr *gzip.Reader
			zr, err = gzip.NewReader(r)
			dec = zr
		} else {
			dec, err = compress.NewReader(r, method)
		}
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("%w %q: %s: %w", ErrEncoding, enc, method, err)
		}
		d.closers = append(d.closers, dec)
		r = bufio.NewReader(dec)
	}
	if len(d.closers) == 1 {
		return nil, fmt.Errorf("%w %q: input compression not recognized", ErrEncoding, enc)
	}
	d.Reader = r
	return d, nil
}

// Sniff names the compression format data starts with, by the magic
// bytes libarchive bids on: "gzip", "xz", "bzip2", "zstd", or "" for none
// of them.
func Sniff(data []byte) string {
	switch s := string(data); {
	case strings.HasPrefix(s, "\x1f\x8b\x08"):
		return "gzip"
	case strings.HasPrefix(s, "\xfd7zXZ\x00"):
		return compress.XZ
	case len(s) >= 10 && s[:3] == "BZh" && s[3] >= '1' && s[3] <= '9' &&
		(s[4:10] == "\x31\x41\x59\x26\x53\x59" || s[4:10] == "\x17\x72\x45\x38\x50\x90"):
		return compress.Bzip2
	case strings.HasPrefix(s, "\x28\xb5\x2f\xfd"):
		return compress.Zstd
	}
	return ""
}

type decoded struct {
	io.Reader
	closers []io.Closer
}

func (d *decoded) Close() error {
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i].Close())
	}
	return errors.Join(errs...)
}
