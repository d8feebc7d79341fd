package nar

import (
	"crypto/sha256"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
)

// CaseHackSuffix is what Nix's case hack (its use-case-hack setting) inserts
// into a directory entry name: Restore writes the second and later entries
// whose names equal an earlier one's but for ASCII case as
// name + CaseHackSuffix + N (N = 1, 2, ... per first name), so that a
// directory such as {"A", "a"} can exist on a case-insensitive file system
// ("A", "a~nix~case~hack~1"); DumpPath removes the suffix, and everything
// after it, from every name again.
const CaseHackSuffix = "~nix~case~hack~"

// DefaultCaseHack is Nix's default for use-case-hack on the platform the
// program runs on: on for darwin (macOS, whose file systems are
// case-insensitive by default), off elsewhere. DumpPath, DumpPathSum,
// Restore and NewWriter use it.
const DefaultCaseHack = runtime.GOOS == "darwin"

// ErrCaseCollision: with the case hack on, two entries of a directory dump
// as the same name once their suffixes are removed (Nix: "file name
// collision in between ..."), or Restore would give an entry a case-hacked
// name that an earlier entry already has, up to case (Nix: "NAR contains
// file name ... that collides with case-hacked file name ...").
var ErrCaseCollision = errors.New("nar: case hack: file name collision")

// DumpOptions tune DumpPath. The zero value dumps as Nix does with
// use-case-hack = false; DefaultDumpOptions as Nix does by default here.
type DumpOptions struct {
	// CaseHack is Nix's use-case-hack: remove CaseHackSuffix and what
	// follows it from every entry name, sort the entries by the names so
	// obtained, and refuse a directory where two entries end up with the
	// same name (ErrCaseCollision), as `nix-store --option use-case-hack
	// true --dump` does.
	CaseHack bool
}

// DefaultDumpOptions returns the options DumpPath uses: Nix's defaults on
// this platform (CaseHack = DefaultCaseHack).
func DefaultDumpOptions() DumpOptions { return DumpOptions{CaseHack: DefaultCaseHack} }

// DumpPath is the package's DumpPath with these options.
func (o DumpOptions) DumpPath(w io.Writer, path string) error {
	nw := NewWriter(w)
	nw.SetCaseHack(o.CaseHack)
	if err := nw.AddTree("", path); err != nil {
		return err
	}
	return nw.Close()
}

// DumpPathSum is the package's DumpPathSum with these options.
func (o DumpOptions) DumpPathSum(w io.Writer, path string) (narHash [sha256.Size]byte, narSize int64, err error) {
	return dumpPathSum(w, path, o)
}

// RestoreOptions tune Restore. The zero value restores as Nix does with
// use-case-hack = false; DefaultRestoreOptions as Nix does by default here.
type RestoreOptions struct {
	// CaseHack is Nix's use-case-hack: in each directory, an entry whose
	// name equals an earlier entry's up to ASCII case (Nix compares with
	// strcasecmp) is created as name + CaseHackSuffix + N, N counting such
	// entries per earlier name from 1, as `nix-store --option use-case-hack
	// true --restore` does. Like Nix since 2.19, Restore refuses an
	// archive where that name equals, up to case, the name of an earlier
	// entry (ErrCaseCollision): on a case-insensitive file system Nix 2.8
	// fails there too (the file exists), and on a case-sensitive one it
	// would leave a tree that it refuses to dump.
	CaseHack bool
}

// DefaultRestoreOptions returns the options Restore uses: Nix's defaults on
// this platform (CaseHack = DefaultCaseHack).
func DefaultRestoreOptions() RestoreOptions { return RestoreOptions{CaseHack: DefaultCaseHack} }

// Restore is the package's Restore with these options.
func (o RestoreOptions) Restore(r io.Reader, dir string) error { return restore(r, dir, o) }

// SetCaseHack sets whether AddTree applies Nix's case hack (see
// DumpOptions.CaseHack); NewWriter starts with DefaultCaseHack. It changes
// only how file system names become NAR names, nothing in WriteHeader.
func (w *Writer) SetCaseHack(on bool) { w.caseHack = on }

// unhackName returns name without CaseHackSuffix and what follows it.
func unhackName(name string) string {
	if i := strings.Index(name, CaseHackSuffix); i >= 0 {
		return name[:i]
	}
	return name
}

// foldCase folds ASCII letters to lower case, as strcasecmp compares in the
// C locale; other bytes, UTF-8 included, are compared as they are.
func foldCase(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

// caseHacker is the case hack state of one directory being restored: the
// entries seen so far by folded name (Nix's map with strcasecmp order).
type caseHacker map[string]*caseSeen

type caseSeen struct {
	name       string // the entry's name as it came
	collisions int
}

// diskName returns the name under which the entry name is restored, or the
// message of an ErrCaseCollision when that name collides as Nix refuses.
func (c caseHacker) diskName(name string) (disk, collision string) {
	key := foldCase(name)
	s := c[key]
	if s == nil {
		c[key] = &caseSeen{name: name}
		return name, ""
	}
	s.collisions++
	hacked := name + CaseHackSuffix + strconv.Itoa(s.collisions)
	if t := c[foldCase(hacked)]; t != nil {
		return "", "NAR contains file name " + strconv.Quote(name) + " that collides with case-hacked file name " + strconv.Quote(t.name)
	}
	return hacked, ""
}
