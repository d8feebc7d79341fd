package nar

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

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
//
// Names are dumped as Nix's use-case-hack setting has them by default on
// this platform (DefaultCaseHack: on darwin only); DumpOptions.DumpPath
// chooses.
func DumpPath(w io.Writer, path string) error {
	return DefaultDumpOptions().DumpPath(w, path)
}

// DumpPathSum is DumpPath that also returns the archive's SHA-256 digest
// and length: the NarHash and NarSize of a store path whose contents are at
// path, computed in the same single pass. w may be nil or io.Discard to
// compute only the hash.
func DumpPathSum(w io.Writer, path string) (narHash [sha256.Size]byte, narSize int64, err error) {
	return dumpPathSum(w, path, DefaultDumpOptions())
}

func dumpPathSum(w io.Writer, path string, o DumpOptions) (narHash [sha256.Size]byte, narSize int64, err error) {
	h := nixhash.NewHasher(nixhash.SHA256)
	var out io.Writer = h
	if w != nil && w != io.Discard {
		out = io.MultiWriter(h, w)
	}
	if err := o.DumpPath(out, path); err != nil {
		return narHash, h.Len(), err
	}
	h.Sum(narHash[:0])
	return narHash, h.Len(), nil
}

// AddTree writes the file system object at fsPath, and everything below it
// if it is a directory, as the NAR object at narPath ("" for the root),
// with the rules of DumpPath and the Writer's case hack setting
// (SetCaseHack). The usual Writer rules apply: narPath must
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
	err := d.dumpRoot(narPath)
	d.release()
	if err != nil {
		return w.fail(err)
	}
	return nil
}

// treeDumper is a file system walker feeding a Writer: the portable one
// (dump_portable.go) or the platform's fast one (newFastDumper).
type treeDumper interface {
	dumpRoot(narPath string) error
	// release frees what the walk held on to (once dumpRoot returned).
	release()
}

// dirEntry is a directory entry being dumped: its name on disk, its name
// in the NAR (differs only with the case hack) and, on Linux, its d_type.
type dirEntry struct {
	name    string
	narName string
	typ     uint8
}

// sortEntries sorts ents byte-wise by NAR name, as Nix does. With the case
// hack it first derives each NAR name from the file name and refuses two
// entries with the same NAR name, as Nix does.
func (w *Writer) sortEntries(ents []dirEntry, fsRoot, rel string) error {
	if !w.caseHack {
		for i := range ents {
			ents[i].narName = ents[i].name
		}
		slices.SortFunc(ents, func(a, b dirEntry) int { return strings.Compare(a.name, b.name) })
		return nil
	}
	for i := range ents {
		ents[i].narName = unhackName(ents[i].name)
	}
	slices.SortFunc(ents, func(a, b dirEntry) int {
		if c := strings.Compare(a.narName, b.narName); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	for i := 1; i < len(ents); i++ {
		if ents[i].narName == ents[i-1].narName {
			return dumpErr(fsRoot, rel, fmt.Sprintf("file name collision in between %q and %q", ents[i-1].name, ents[i].name), ErrCaseCollision)
		}
	}
	return nil
}

func dumpErr(fsRoot, rel, op string, err error) error {
	p := fsRoot
	if rel != "" {
		p += "/" + rel
	}
	if errors.Is(err, ErrUnsupported) || errors.Is(err, ErrPathTooLong) || errors.Is(err, ErrCaseCollision) {
		return fmt.Errorf("%w: dump %s: %s", err, p, op)
	}
	return fmt.Errorf("nar: dump %s: %s: %w", p, op, err)
}
