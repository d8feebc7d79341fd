// Command partcount is run.sh's byte counter for the resume row: a loopback
// reverse proxy in front of an S3 server that counts the multipart part
// uploads passing through it (PUT requests with a partNumber) and the body
// bytes the client sent in them, whether or not the request completed.
//
//	partcount -target http://127.0.0.1:PORT -addr-file FILE
//
// It listens on a free loopback port, writes its base URL to FILE, and
// answers GET /-/stats with "parts N bytes M" and POST /-/reset by zeroing
// the counters; everything else goes to the target unchanged.
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

// counted counts the bytes read from a request body.
type counted struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c counted) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
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
	var parts, bytes atomic.Int64
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
			fmt.Fprintf(w, "parts %d bytes %d\n", parts.Load(), bytes.Load())
			return
		case "/-/reset":
			parts.Store(0)
			bytes.Store(0)
			return
		}
		if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
			parts.Add(1)
			r.Body = counted{r.Body, &bytes}
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
