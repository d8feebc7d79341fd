package nar

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/nixcache/nixcache/storepath/nixhash"
)

// DumpPath writes the NAR serialisation of the file system object at path to
// w, byte for byte what `nix-store --dump path` writes: path itself is the
// root and is not followed if it is a symlink; directory entries are sorted
// byte-wise; a regular file is executable iff its owner-execute bit
// (S_IXUSR) is set; hard links are written as separate regular files;
// symlink targets are written verbatim; owners, times and other permission
// bits are not recorded. Sockets, FIFOs and devices are refused with
// ErrUnsupported, as Nix refuses them. On Linux it reads directories with
// getdents and opens files relative to their directory, without a stat call
// per directory entry beyond the one fstat of each regular file.
func DumpPath(w io.Writer, path string) error {
	nw := NewWriter(w)
	if err := nw.AddTree("", path); err != nil {
		return err
	}
	return nw.Close()
}

// DumpPathSum is DumpPath that also returns the archive's SHA-256 digest
// and length: the NarHash and NarSize of a store path whose contents are at
// path, computed in the same single pass. w may be nil or io.Discard to
// compute only the hash.
func DumpPathSum(w io.Writer, path string) (narHash [sha256.Size]byte, narSize int64, err error) {
	h := nixhash.NewHasher(nixhash.SHA256)
	var out io.Writer = h
	if w != nil && w != io.Discard {
		out = io.MultiWriter(h, w)
	}
	if err := DumpPath(out, path); err != nil {
		return narHash, h.Len(), err
	}
	h.Sum(narHash[:0])
	return narHash, h.Len(), nil
}

// AddTree writes the file system object at fsPath, and everything below it
// if it is a directory, as the NAR object at narPath ("" for the root),
// with the rules of DumpPath. The usual Writer rules apply: narPath must
// sort after everything written so far.
func (w *Writer) AddTree(narPath, fsPath string) error {
	if w.err != nil {
		return w.err
	}
	// The path is used as given, like Nix 2.8: "link/" follows the link.
	var d treeDumper
	if w.portableDump {
		d = &portableDumper{w: w, root: fsPath}
	} else {
		d = newFastDumper(w, fsPath)
	}
	if err := d.dumpRoot(narPath); err != nil {
		return w.fail(err)
	}
	return nil
}

// treeDumper is a file system walker feeding a Writer: the portable one
// (dump_portable.go) or the platform's fast one (newFastDumper).
type treeDumper interface {
	dumpRoot(narPath string) error
}

func dumpErr(fsRoot, rel, op string, err error) error {
	p := fsRoot
	if rel != "" {
		p += "/" + rel
	}
	if errors.Is(err, ErrUnsupported) || errors.Is(err, ErrPathTooLong) {
		return fmt.Errorf("%w: dump %s: %s", err, p, op)
	}
	return fmt.Errorf("nar: dump %s: %s: %w", p, op, err)
}
