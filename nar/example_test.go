package nar_test

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/nixcache/nixcache/nar"
)

// Write an archive from headers (parent directories are implicit), then
// list it as Nix's .ls file would.
func ExampleWriter() {
	var b bytes.Buffer
	w := nar.NewWriter(&b)
	files := []struct {
		h    nar.Header
		data string
	}{
		{nar.Header{Path: "bin/hello", Type: nar.TypeRegular, Executable: true, Size: 10}, "#!/bin/sh\n"},
		{nar.Header{Path: "share/doc", Type: nar.TypeSymlink, LinkTarget: "../bin"}, ""},
	}
	for _, f := range files {
		if err := w.WriteHeader(&f.h); err != nil {
			log.Fatal(err)
		}
		io.WriteString(w, f.data)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	l, err := nar.List(&b)
	if err != nil {
		log.Fatal(err)
	}
	js, _ := l.MarshalJSON()
	fmt.Println(string(js))
	// Output:
	// {"version":1,"root":{"type":"directory","entries":{"bin":{"type":"directory","entries":{"hello":{"type":"regular","size":10,"executable":true,"narOffset":400}}},"share":{"type":"directory","entries":{"doc":{"type":"symlink","target":"../bin"}}}}}}
}

// Compute a path's NarHash and NarSize. The expected digest is what
// `nix-hash --type sha256 f` prints for a file holding "hi\n", and 120 is
// the length of `nix-store --dump f`.
func ExampleDumpPathSum() {
	dir, _ := os.MkdirTemp("", "nar-example")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "f"), []byte("hi\n"), 0o644)
	sum, size, err := nar.DumpPathSum(io.Discard, filepath.Join(dir, "f"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%x %d\n", sum, size)
	// Output:
	// 10551daed7fa467d0b58826e7eb9a0f2af7d693de319f2ef775fffcda244b9f6 120
}

// Read an archive entry by entry. The offset of "a"'s contents is 232:
// the magic and 12 more padded strings, then the 8-byte size, precede it.
func ExampleReader() {
	var b bytes.Buffer
	w := nar.NewWriter(&b)
	w.WriteHeader(&nar.Header{Path: "a", Type: nar.TypeRegular, Size: 5})
	io.WriteString(w, "hello")
	w.Close()

	r := nar.NewReader(&b)
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		data, _ := io.ReadAll(r)
		fmt.Printf("%q %v size=%d offset=%d %q\n", h.Path, h.Type, h.Size, h.Offset, data)
	}
	// Output:
	// "" directory size=0 offset=0 ""
	// "a" regular size=5 offset=232 "hello"
}
