package nar

import (
	"fmt"
	"io"
	"slices"
	"strconv"
)

// Listing is the contents of a binary cache's <hash>.ls file, which Nix
// writes when write-nar-listing=true: {"version":1,"root":NODE}.
type Listing struct {
	// Root is the archive's root object.
	Root *Node
}

// Node is one object of a Listing. Nix 2.8 writes a regular file as
// {"type":"regular","size":N,"executable":true,"narOffset":N} with
// "executable" only when true, a directory as
// {"type":"directory","entries":{NAME:NODE,...}} with entries in NAR order,
// and a symlink as {"type":"symlink","target":"..."}.
type Node struct {
	// Type is the object's type.
	Type Type
	// Size is a regular file's length in bytes.
	Size int64
	// Executable reports whether a regular file is executable.
	Executable bool
	// NarOffset is the offset of a regular file's contents in the NAR.
	NarOffset int64
	// Target is a symlink's target.
	Target string
	// Entries are a directory's entries by name.
	Entries map[string]*Node
}

// MarshalJSON encodes the listing exactly as Nix 2.8 does: no spaces, keys
// in the order above, no trailing newline, and strings escaped as Nix's own
// JSON writer does (only '"', '\\' and control characters are escaped; other
// bytes, including invalid UTF-8, are copied verbatim).
func (l *Listing) MarshalJSON() ([]byte, error) {
	if l.Root == nil {
		return nil, fmt.Errorf("%w: listing has no root", ErrInvalidHeader)
	}
	b := []byte(`{"version":1,"root":`)
	b, err := l.Root.appendJSON(b)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func (n *Node) appendJSON(b []byte) ([]byte, error) {
	switch n.Type {
	case TypeRegular:
		b = append(b, `{"type":"regular","size":`...)
		b = strconv.AppendInt(b, n.Size, 10)
		if n.Executable {
			b = append(b, `,"executable":true`...)
		}
		b = append(b, `,"narOffset":`...)
		b = strconv.AppendInt(b, n.NarOffset, 10)
	case TypeSymlink:
		b = append(b, `{"type":"symlink","target":`...)
		b = appendJSONString(b, n.Target)
	case TypeDirectory:
		b = append(b, `{"type":"directory","entries":{`...)
		names := make([]string, 0, len(n.Entries))
		for name := range n.Entries {
			names = append(names, name)
		}
		slices.Sort(names)
		for i, name := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, name)
			b = append(b, ':')
			var err error
			if b, err = n.Entries[name].appendJSON(b); err != nil {
				return nil, err
			}
		}
		b = append(b, '}')
	default:
		return nil, fmt.Errorf("%w: listing node of type %d", ErrInvalidHeader, n.Type)
	}
	return append(b, '}'), nil
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// List reads a whole NAR from r, as strictly as NewReader, and returns its
// listing with the narOffset of every regular file.
func List(r io.Reader) (*Listing, error) {
	nr := NewReader(r)
	l := &Listing{}
	var stack []*Node // open directories, by depth
	for {
		h, err := nr.Next()
		if err == io.EOF {
			return l, nil
		}
		if err != nil {
			return nil, err
		}
		n := &Node{Type: h.Type}
		switch h.Type {
		case TypeRegular:
			n.Size, n.Executable, n.NarOffset = h.Size, h.Executable, h.Offset
		case TypeSymlink:
			n.Target = h.LinkTarget
		case TypeDirectory:
			n.Entries = map[string]*Node{}
		}
		if h.Path == "" {
			l.Root = n
		} else {
			d := nr.depth() // depth of h (1 for an entry of the root)
			stack = stack[:d]
			stack[d-1].Entries[nr.name()] = n
		}
		if h.Type == TypeDirectory {
			stack = append(stack, n)
		}
	}
}
