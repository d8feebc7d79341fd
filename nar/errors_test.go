package nar

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestErrorsPrefixedOnce: each error names the package once, the sentinel
// carrying the prefix as archive/tar's do (issue 9.6: "nar: header "": …:
// nar: invalid header").
func TestErrorsPrefixedOnce(t *testing.T) {
	hdr := func(h *Header) error { return NewWriter(io.Discard).WriteHeader(h) }
	for _, tc := range []struct {
		err  error
		want error
	}{
		{hdr(&Header{Type: 9}), ErrInvalidHeader},
		{hdr(&Header{Type: TypeRegular, Size: -1}), ErrInvalidHeader},
		{hdr(&Header{Path: "a/../b", Type: TypeDirectory}), ErrInvalidName},
		{hdr(&Header{Type: TypeSymlink}), ErrInvalidTarget},
		{NewWriter(io.Discard).Close(), ErrInvalidHeader},
		{readAll([]byte("garbage")), ErrFormat},
		{readAll(narOf(file("x"), ")")), ErrTrailingData},
		{readAll(narOf(dir(entry("b", file("x")...), entry("a", file("x")...)))), ErrUnsorted},
		{readAll(narOf(dir(entry("a", file("x")...), entry("a", file("x")...)))), ErrDuplicate},
		{readAll(narOf(dir(entry("..", file("x")...)))), ErrInvalidName},
		{Restore(bytes.NewReader(narOf(dir())), t.TempDir()+"/x/y"), nil},
	} {
		if tc.err == nil {
			t.Errorf("no error, want %v", tc.want)
			continue
		}
		if tc.want != nil && !errors.Is(tc.err, tc.want) {
			t.Errorf("error %q does not wrap %v", tc.err, tc.want)
		}
		if n := strings.Count(tc.err.Error(), "nar:"); n != 1 {
			t.Errorf("error %q has %d package prefixes", tc.err, n)
		}
	}
}
