package testenv

import (
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
)

// ServeDir serves the files under dir over HTTP on 127.0.0.1, the way a
// web server in front of a file:// binary cache does (GET and HEAD; a
// directory or a missing file is 404, never a listing or a redirect), and
// returns its base URL, "http://127.0.0.1:PORT". wrap, if given, wraps the
// file handler (to inject faults or encodings). The server stops when the
// test ends.
func ServeDir(t TB, dir string, wrap ...func(http.Handler) http.Handler) string {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatalf("serve %s: %v", dir, err)
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/")
		f, err := root.Open(name)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) || name == "" {
			http.NotFound(w, r)
			if f != nil {
				f.Close()
			}
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", st.ModTime(), f)
	})
	for _, wr := range wrap {
		h = wr(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		root.Close()
	})
	return srv.URL
}
