package nar

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

// FuzzReader checks that the Reader never panics and that whatever it
// accepts, the Writer re-encodes byte for byte (so the Reader accepts only
// canonical NARs, the ones Nix writes). The corpus under
// testdata/fuzz/FuzzReader holds `nix-store --dump` output of the small
// conformance trees (regenerate with NAR_WRITE_CORPUS=1 go test -run
// TestWriteFuzzCorpus).
func FuzzReader(f *testing.F) {
	f.Add(narOf(file("hello")))
	// The path limit (MaxPathLen): the deepest NAR within it and one level
	// more (testdata/fuzz holds the same at 255-byte names).
	f.Add(deepNAR(2047, "a"))
	f.Add(deepNAR(2048, "a"))
	f.Add(narOf(dir(entry("a", file("x")...), entry("b", "(", "type", "symlink", "target", str("a"), ")"))))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := readAll(data); err != nil {
			return
		}
		out, err := rewriteErr(data)
		if err != nil {
			t.Fatalf("Reader accepted the input but the Writer refused it: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("rewrite differs from accepted input at byte %d", firstDiff(out, data))
		}
	})
}

// FuzzList checks that List never panics and agrees with the listing the
// Writer records while writing the same archive.
func FuzzList(f *testing.F) {
	f.Add(narOf(dir(entry("a", file("x")...))))
	f.Add(deepNAR(2047, "a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := List(bytes.NewReader(data))
		if err != nil {
			return
		}
		got, err := l.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		r := NewReader(bytes.NewReader(data))
		w := NewWriter(&b)
		w.EnableListing()
		for {
			h, err := r.Next()
			if err != nil {
				break
			}
			if err := w.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if _, err := w.ReadFrom(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		want, err := w.Listing().MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("List JSON %s, Writer listing %s", got, want)
		}
	})
}

// TestWriteFuzzCorpus regenerates the checked-in seed corpora from real
// Nix when NAR_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("NAR_WRITE_CORPUS") != "1" {
		t.Skip("set NAR_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	testenv.RequireNix(t)
	for _, c := range smallTrees {
		p := filepath.Join(t.TempDir(), "root")
		c.build(t, p)
		data := nixDump(t, p)
		for _, fz := range []string{"FuzzReader", "FuzzList"} {
			d := filepath.Join("testdata", "fuzz", fz)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			if err := os.WriteFile(filepath.Join(d, "nix-"+c.name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := filepath.Join("testdata", "fuzz", "FuzzRestoreCaseHack")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range caseTrees[:3] { // not "random": too big for a fast fuzz input
		p := filepath.Join(t.TempDir(), "root")
		c.build(t, p)
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", nixDump(t, p))
		if err := os.WriteFile(filepath.Join(d, "nix-"+c.name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzRestoreCaseHack restores archives with the case hack on, as
// `nix-store --option use-case-hack true --restore` does, and checks that
// it never panics and that whatever it restores, the hacked dump gives the
// archive back byte for byte (names carrying CaseHackSuffix excepted: Nix
// cuts them at the suffix). The corpus under
// testdata/fuzz/FuzzRestoreCaseHack holds Nix's NARs of the case collision
// trees (NAR_WRITE_CORPUS=1 go test -run TestWriteFuzzCorpus).
func FuzzRestoreCaseHack(f *testing.F) {
	f.Add(narOf(dir(entry("A", file("1")...), entry("a", file("2")...))))
	f.Add(narOf(dir(entry("A", file("1")...), entry("A~nix~case~hack~1", file("2")...), entry("a", file("3")...))))
	f.Add(narOf(dir(entry("A", file("1")...), entry("a", file("2")...), entry("a~nix~case~hack~1", file("3")...))))
	f.Add(narOf(dir(entry("D", dir(entry("x", file("1")...), entry("X", file("2")...))...), entry("d", file("3")...))))
	f.Fuzz(func(t *testing.T, data []byte) {
		dest := filepath.Join(t.TempDir(), "r")
		if err := (RestoreOptions{CaseHack: true}).Restore(bytes.NewReader(data), dest); err != nil {
			return
		}
		if bytes.Contains(data, []byte(CaseHackSuffix)) {
			return
		}
		var b bytes.Buffer
		if err := (DumpOptions{CaseHack: true}).DumpPath(&b, dest); err != nil {
			t.Fatalf("restored, but the hacked dump fails: %v", err)
		}
		if !bytes.Equal(b.Bytes(), data) {
			t.Fatalf("hacked dump of the restored tree differs from the archive at byte %d", firstDiff(b.Bytes(), data))
		}
	})
}
