// Package nar reads and writes Nix Archives (NAR), the serialisation Nix
// uses to hash, sign and transfer store paths, byte for byte as Nix does.
//
// A NAR is a sequence of strings, each encoded as a little-endian uint64
// length, the bytes, and zero padding to a multiple of 8 bytes:
//
//	nix-archive-1 NODE
//	NODE = ( type regular [executable ""] contents <bytes> )
//	     | ( type symlink target <target> )
//	     | ( type directory { entry ( name <name> node NODE ) } )
//
// Directory entries are unique and sorted byte-wise by name. A file is
// executable when its owner-execute bit (S_IXUSR) is set; no other metadata
// (times, owners, other permission bits) is recorded. The shape of the API
// follows archive/tar: a [Writer] takes [Header]s and contents, a [Reader]
// yields them. Neither starts goroutines; both buffer internally.
package nar

import (
	"errors"
	"strings"
)

// MIMEType is the Content-Type Nix binary caches serve NAR files with.
const MIMEType = "application/x-nix-nar"

// Extension is the file name extension of an uncompressed NAR in a binary
// cache (nar/<filehash>.nar); compressed NARs add the compressor's own
// extension (.nar.xz, .nar.zst).
const Extension = ".nar"

// Type is the type of a file system object in a NAR.
type Type uint8

// The three node types Nix knows. The zero value is invalid.
const (
	// TypeRegular is a regular file: contents plus an executable flag.
	TypeRegular Type = iota + 1
	// TypeDirectory is a directory: a sorted list of named entries.
	TypeDirectory
	// TypeSymlink is a symbolic link: a target string, never followed.
	TypeSymlink
)

// String returns the name Nix uses for the type in NARs and .ls listings
// ("regular", "directory", "symlink").
func (t Type) String() string {
	switch t {
	case TypeRegular:
		return "regular"
	case TypeDirectory:
		return "directory"
	case TypeSymlink:
		return "symlink"
	}
	return "invalid"
}

// Header describes one file system object of a NAR.
type Header struct {
	// Path is the object's path inside the archive: "" for the root,
	// otherwise slash-separated names relative to the root ("a/b"), with no
	// leading or trailing slash. Each name must be a valid NAR name (see
	// [ValidateName]).
	Path string
	// Type is the object's type.
	Type Type
	// Executable reports whether a regular file is executable. Nix records
	// it from the owner-execute bit (S_IXUSR) only. Only valid for
	// TypeRegular.
	Executable bool
	// Size is the length of a regular file's contents in bytes.
	Size int64
	// LinkTarget is a symlink's target, stored verbatim: it may be absolute,
	// relative or dangling. It must be non-empty, contain no NUL byte and be
	// at most [MaxTargetLen] bytes long.
	LinkTarget string
	// Offset is set by the Reader: the position in the NAR of a regular
	// file's first content byte (the narOffset of .ls listings).
	Offset int64
}

// Limits that Nix's file system objects obey on Linux; a NAR breaking them
// could not be restored, and Nix never writes one.
const (
	// MaxNameLen is the longest directory entry name (NAME_MAX).
	MaxNameLen = 255
	// MaxTargetLen is the longest symlink target (PATH_MAX-1).
	MaxTargetLen = 4095
	// MaxPathLen is the longest path of an object inside an archive
	// (Header.Path), PATH_MAX-1. Nix restores a NAR through absolute paths
	// (the destination, '/', the path), which the kernel refuses beyond
	// PATH_MAX-1 bytes ("File name too long"), so Nix can never unpack a
	// NAR with a longer path; it bounds the depth of an archive to 2048.
	MaxPathLen = 4095
)

// Errors returned (wrapped, with context) by the Writer, Reader, DumpPath and
// Restore; test for them with errors.Is.
var (
	// ErrInvalidName: an entry name is empty, ".", "..", contains '/' or
	// NUL, or is longer than MaxNameLen bytes. Any other bytes, including
	// non-UTF-8 ones, are allowed, as in Nix.
	ErrInvalidName = errors.New("nar: invalid entry name")
	// ErrUnsorted: directory entries are not in strictly increasing
	// byte-wise order of their names.
	ErrUnsorted = errors.New("nar: entries not sorted")
	// ErrDuplicate: the same path appears twice.
	ErrDuplicate = errors.New("nar: duplicate entry")
	// ErrInvalidTarget: a symlink target is empty, contains NUL or is
	// longer than MaxTargetLen bytes.
	ErrInvalidTarget = errors.New("nar: invalid symlink target")
	// ErrPathTooLong: an object's path in the archive is longer than
	// MaxPathLen bytes, or Restore would create a path longer than that
	// below its destination (then the error also wraps ENAMETOOLONG, as
	// nix-store --restore fails with "File name too long").
	ErrPathTooLong = errors.New("nar: path too long")
	// ErrInvalidHeader: a Header is inconsistent (unknown type, negative
	// size, a path under a non-directory, an entry after a non-directory
	// root...).
	ErrInvalidHeader = errors.New("nar: invalid header")
	// ErrWriteTooLong: more bytes were written than the header's Size, or
	// Write was called for a non-regular file.
	ErrWriteTooLong = errors.New("nar: write too long")
	// ErrWriteTooShort: the next header or Close came before Size bytes of
	// contents were written.
	ErrWriteTooShort = errors.New("nar: missing file contents")
	// ErrClosed: the Writer was used after Close.
	ErrClosed = errors.New("nar: writer closed")
	// ErrFormat: the input is not a well-formed NAR (bad magic, unexpected
	// token, non-zero padding, truncated, bad executable marker...).
	ErrFormat = errors.New("nar: invalid archive")
	// ErrTrailingData: bytes follow the end of the archive.
	ErrTrailingData = errors.New("nar: trailing data after archive")
	// ErrNotEmpty: Restore's destination exists and is not an empty
	// directory.
	ErrNotEmpty = errors.New("nar: restore destination exists")
	// ErrUnsupported: DumpPath met a file that is not a regular file,
	// directory or symlink (a socket, device or FIFO), which Nix refuses too.
	ErrUnsupported = errors.New("nar: unsupported file type")
)

// ValidateName reports whether name may be a directory entry name in a NAR.
// Nix forbids the empty name, ".", "..", and names containing '/' or NUL;
// names are limited to MaxNameLen bytes, the Linux NAME_MAX. Non-UTF-8
// names are valid.
func ValidateName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
	case len(name) > MaxNameLen:
	case strings.IndexByte(name, '/') >= 0, strings.IndexByte(name, 0) >= 0:
	default:
		return nil
	}
	return ErrInvalidName
}

func validateTarget(t string) error {
	if t == "" || len(t) > MaxTargetLen || strings.IndexByte(t, 0) >= 0 {
		return ErrInvalidTarget
	}
	return nil
}

// padLen returns the number of zero bytes that pad n bytes to 8.
func padLen(n uint64) int { return int((8 - n%8) % 8) }
