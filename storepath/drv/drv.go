// Package drv reads the outputs of Nix store derivations (.drv files)
// without the local store database, so that small programs such as a
// post-build hook can learn what a derivation built from DRV_PATH alone
// (Nix 2.8 runs the hook with OUT_PATHS empty, NixOS/nix#6446).
//
// A .drv file is an ATerm written by Nix: Derive([outputs],[input
// derivations],[input sources],"system","builder",[args],[env]). Only the
// outputs list is read. The package imports nothing but the standard
// library and storepath.
package drv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nixcache/nixcache/storepath"
)

// ErrMalformed is wrapped by every error about the contents of a
// derivation: not Nix's ATerm form, no outputs, a repeated or invalid
// output name, or an output path that is not a store path.
var ErrMalformed = errors.New("malformed derivation")

// maxATermString bounds one string of the outputs list (names, paths,
// hashes are all short), so garbage input cannot make us buffer a file.
const maxATermString = 64 << 10

// ReadOutputs reads the outputs of the store derivation file at
// path (a .drv), without reading past its outputs list. See
// ParseOutputs.
func ReadOutputs(path string) (map[string]storepath.Path, error) {
	f, err := openDrv(path)
	if err != nil {
		return nil, fmt.Errorf("drv: read derivation: %w", err)
	}
	defer f.Close()
	outs, err := parse(bufio.NewReaderSize(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("drv: %s: %w", path, err)
	}
	return outs, nil
}

// ParseOutputs parses the outputs list at the start of a store
// derivation in Nix's ATerm form,
//
//	Derive([("out","/nix/store/<hash>-x","",""),("dev",...)],[...],...)
//
// (or DrvWithVersion("<version>",[...],...) as newer Nix writes for
// experimental features). Each output is a tuple of four strings: name,
// path, hash algorithm and hash; the last two are empty unless the output is
// fixed-output. The path is empty for floating content-addressed and
// deferred outputs: those are left out of the result. Strings use Nix's
// escapes (\" \\ \n \r \t). The parser stops after the outputs list; it
// fails, wrapping ErrMalformed, on any deviation, an empty list, a
// repeated or invalid output name, or a path that is not a store path.
func ParseOutputs(r io.Reader) (map[string]storepath.Path, error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = bufio.NewReader(r)
	}
	outs, err := parse(br)
	if err != nil {
		return nil, fmt.Errorf("drv: %w", err)
	}
	return outs, nil
}

// parse runs the parser; its error names the byte offset.
func parse(r io.ByteReader) (map[string]storepath.Path, error) {
	p := &atermParser{r: r}
	outs, err := p.outputs()
	if err != nil {
		return nil, fmt.Errorf("%w: offset %d: %w", ErrMalformed, p.off, err)
	}
	return outs, nil
}

type atermParser struct {
	r   io.ByteReader
	off int64
}

func (p *atermParser) next() (byte, error) {
	c, err := p.r.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, err
	}
	p.off++
	return c, nil
}

func (p *atermParser) expect(s string) error {
	for i := 0; i < len(s); i++ {
		c, err := p.next()
		if err != nil {
			return err
		}
		if c != s[i] {
			return fmt.Errorf("expected %q, got %q", s[i], c)
		}
	}
	return nil
}

func (p *atermParser) str() (string, error) {
	if err := p.expect(`"`); err != nil {
		return "", err
	}
	var b strings.Builder
	for {
		c, err := p.next()
		if err != nil {
			return "", err
		}
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			c, err = p.next()
			if err != nil {
				return "", err
			}
			switch c {
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			}
		}
		if b.Len() >= maxATermString {
			return "", fmt.Errorf("string longer than %d bytes", maxATermString)
		}
		b.WriteByte(c)
	}
}

func (p *atermParser) outputs() (map[string]storepath.Path, error) {
	c, err := p.next()
	if err != nil {
		return nil, err
	}
	switch c {
	case 'D':
		// "Derive(" or "DrvWithVersion(" differ at the second byte.
		c2, err := p.next()
		if err != nil {
			return nil, err
		}
		switch c2 {
		case 'e':
			if err := p.expect("rive(["); err != nil {
				return nil, err
			}
		case 'r':
			if err := p.expect("vWithVersion("); err != nil {
				return nil, err
			}
			if _, err := p.str(); err != nil {
				return nil, err
			}
			if err := p.expect(",["); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("not a derivation: starts with %q", []byte{c, c2})
		}
	default:
		return nil, fmt.Errorf("not a derivation: starts with %q", c)
	}
	outs := make(map[string]storepath.Path)
	seen := make(map[string]bool)
	for first := true; ; first = false {
		c, err := p.next()
		if err != nil {
			return nil, err
		}
		if c == ']' {
			if first {
				return nil, fmt.Errorf("derivation has no outputs")
			}
			break
		}
		if !first {
			if c != ',' {
				return nil, fmt.Errorf("expected ',' or ']' in outputs, got %q", c)
			}
			if c, err = p.next(); err != nil {
				return nil, err
			}
		}
		if c != '(' {
			return nil, fmt.Errorf("expected '(' of an output, got %q", c)
		}
		var f [4]string
		for i := range f {
			if i > 0 {
				if err := p.expect(","); err != nil {
					return nil, err
				}
			}
			if f[i], err = p.str(); err != nil {
				return nil, err
			}
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		name, path := f[0], f[1]
		if err := storepath.ValidateName(name); err != nil {
			return nil, fmt.Errorf("output name %q: %w", name, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("output %q appears twice", name)
		}
		seen[name] = true
		if path == "" {
			continue
		}
		sp, err := storepath.Parse(path)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", name, err)
		}
		if sp.IsDerivation() {
			return nil, fmt.Errorf("output %q: path %s is a .drv", name, sp)
		}
		outs[name] = sp
	}
	// The outputs list is followed by the input derivations list.
	if err := p.expect(","); err != nil {
		return nil, err
	}
	return outs, nil
}
