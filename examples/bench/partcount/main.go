// Command partcount is run.sh's byte counter for the resume row: a loopback
// reverse proxy in front of an S3 server that counts the multipart part
// uploads passing through it (PUT requests with a partNumber) and the body
// bytes the client sent in them, whether or not the request completed.
//
//	partcount -target http://127.0.0.1:PORT -addr-file FILE
//
// It listens on a free loopback port, writes its base URL to FILE, and
// answers GET /-/stats with "parts N bytes M first F", where F counts the
// bytes of the first upload (upload ID) seen since the last reset, and POST
// /-/reset by zeroing the counters; everything else goes to the target
// unchanged. (A push to a server that cannot renew modification times,
// such as versitygw, may upload a NAR a second time to refresh it before
// publishing its narinfo: F is the NAR's own upload.)
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync/atomic"
)

// counted adds the bytes read from a request body to counters.
type counted struct {
	io.ReadCloser
	n []*atomic.Int64
}

func (c counted) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	for _, x := range c.n {
		x.Add(int64(n))
	}
	return n, err
}

func main() {
	target := flag.String("target", "", "S3 server base URL (http://127.0.0.1:PORT)")
	addrFile := flag.String("addr-file", "", "file to write the proxy's base URL to")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" || *addrFile == "" {
		fmt.Fprintln(os.Stderr, "usage: partcount -target URL -addr-file FILE")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "partcount:", err)
		os.Exit(1)
	}
	var parts, bytes, first atomic.Int64
	var firstID atomic.Pointer[string]
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = u.Scheme, u.Host
			r.Out.Host = r.In.Host // keep the signed Host header
		},
		FlushInterval: -1,
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/-/stats":
			fmt.Fprintf(w, "parts %d bytes %d first %d\n", parts.Load(), bytes.Load(), first.Load())
			return
		case "/-/reset":
			parts.Store(0)
			bytes.Store(0)
			first.Store(0)
			firstID.Store(nil)
			return
		}
		if q := r.URL.Query(); r.Method == http.MethodPut && q.Has("partNumber") {
			parts.Add(1)
			id := q.Get("uploadId")
			firstID.CompareAndSwap(nil, &id)
			counters := []*atomic.Int64{&bytes}
			if p := firstID.Load(); p != nil && *p == id {
				counters = append(counters, &first)
			}
			r.Body = counted{r.Body, counters}
		}
		rp.ServeHTTP(w, r)
	})
	if err := os.WriteFile(*addrFile, []byte("http://"+ln.Addr().String()+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "partcount:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "partcount:", http.Serve(ln, h))
	os.Exit(1)
}
