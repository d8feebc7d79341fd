// Package narinfo reads and writes Nix's .narinfo files, computes the
// fingerprint Nix signs, and reads and writes nix-cache-info.
//
// A narinfo is a list of "Key: value\n" lines describing one store path in a
// binary cache. The writer reproduces Nix 2.8's NarInfo::to_string byte for
// byte; the parser accepts what Nix accepts (unknown keys are ignored, a
// missing Compression means bzip2, "Deriver: unknown-deriver" means no
// deriver, hashes may be nix32, base16, base64 or SRI) and refuses what Nix
// refuses or misreads (missing StorePath, URL, NarHash or NarSize, NarSize 0,
// CRLF line ends, a missing final newline, blank lines) as well as
// duplicated keys. Errors carry the line number: "narinfo: line 7: ...".
package narinfo

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// MIME types Nix uses when uploading to a binary cache.
const (
	// MIMEType is the Content-Type of a .narinfo file.
	MIMEType = "text/x-nix-narinfo"
	// CacheInfoMIMEType is the Content-Type of nix-cache-info.
	CacheInfoMIMEType = "text/x-nix-cache-info"
	// Extension is the suffix of a narinfo's key: <hash part>.narinfo.
	Extension = ".narinfo"
	// CacheInfoFile is the name of the cache description at the cache root.
	CacheInfoFile = "nix-cache-info"
	// UnknownDeriver is the Deriver value meaning "no deriver" (written by
	// some caches, e.g. Cachix).
	UnknownDeriver = "unknown-deriver"
	// ImpliedCompression is what Nix reads a missing or empty Compression
	// line as (nar-info.cc: "if (compression == "") compression =
	// "bzip2""). It is not what a cache should write: see
	// compress.Default in package cache/compress for that.
	ImpliedCompression = "bzip2"
)

// MaxSize is the largest narinfo [Parse] reads (a narinfo of a path with
// tens of thousands of references is still far below it).
const MaxSize = 16 << 20

// Sentinel errors, for use with [errors.Is].
var (
	// ErrSyntax is wrapped by every error about a malformed line.
	ErrSyntax = errors.New("syntax error")
	// ErrDuplicate is wrapped when a key other than Sig appears twice.
	ErrDuplicate = errors.New("duplicate key")
	// ErrMissing is wrapped when StorePath, URL, NarHash or NarSize is
	// missing (or NarSize is 0), which makes Nix call the file corrupt.
	ErrMissing = errors.New("missing required field")
	// ErrInvalid is wrapped when a NarInfo cannot be written, fingerprinted
	// or signed because a field breaks a Nix rule.
	ErrInvalid = errors.New("invalid narinfo")
)

// NarInfo describes one store path in a binary cache.
type NarInfo struct {
	// StorePath is the absolute store path described (required). Its
	// directory is the store directory References and Deriver live in.
	StorePath storepath.Path
	// URL locates the (compressed) NAR, relative to the cache root (e.g.
	// "nar/<FileHash nix32>.nar.zst") or absolute. Required.
	URL string
	// Compression names the compression of the file at URL: "none",
	// "xz", "bzip2", "zstd", "br", "lzip", "lz4", "gzip". When the line is
	// missing or empty Nix assumes "bzip2", and so does Parse. Always written.
	Compression string
	// FileHash is the sha256 of the file at URL. Written as sha256:nix32
	// when set; the zero Hash means unknown and is omitted.
	FileHash nixhash.Hash
	// FileSize is the size in bytes of the file at URL; 0 is omitted.
	FileSize uint64
	// NarHash is the sha256 of the uncompressed NAR (required; written
	// as sha256:nix32, whatever encoding was parsed).
	NarHash nixhash.Hash
	// NarSize is the size of the uncompressed NAR (required, not 0).
	NarSize uint64
	// References are the store paths this path refers to, absolute and in
	// StorePath's directory; a self-reference is included. Written as
	// sorted, deduplicated base names on one line, which is always
	// present ("References: " with a trailing space when empty).
	References []storepath.Path
	// Deriver is the .drv that built the path, or "" when unknown.
	Deriver storepath.Path
	// System is the deprecated system line; written only when non-empty
	// (Nix 2.8 still writes it when set).
	System string
	// Sigs are the signatures over the fingerprint. Nix keeps them as a
	// set: written sorted and deduplicated, one "Sig:" line each.
	Sigs []signature.Signature
	// CA is the content address ("fixed:r:sha256:...", "text:sha256:..."),
	// or "" for an input-addressed path. Never invent one: Nix aborts on
	// a false CA claim.
	CA string
}

// ParseError reports a problem in a narinfo (or nix-cache-info) text, with
// the 1-based line number when there is one.
type ParseError struct {
	File string // "narinfo" or "nix-cache-info"
	Line int    // 0 when the problem is not on one line
	Key  string // the key of the line, if known
	Err  error
}

// Error formats the error as "narinfo: line N: Key: problem".
func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	b.WriteString(": ")
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying error (a sentinel of this package or of
// storepath, nixhash or signature).
func (e *ParseError) Unwrap() error { return e.Err }

// Parse reads a narinfo from r (at most [MaxSize] bytes) and parses it with
// [Unmarshal].
func Parse(r io.Reader) (*NarInfo, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("narinfo: read: %w", err)
	}
	if len(data) > MaxSize {
		return nil, &ParseError{File: "narinfo", Err: fmt.Errorf("%w: larger than %d bytes", ErrSyntax, MaxSize)}
	}
	return Unmarshal(data)
}

// Unmarshal parses a narinfo. See [NarInfo] and the package documentation
// for the rules. The strings of the result share one copy of data.
func Unmarshal(data []byte) (*NarInfo, error) {
	ni := new(NarInfo)
	if err := ni.UnmarshalText(data); err != nil {
		return nil, err
	}
	return ni, nil
}

const (
	seenStorePath = 1 << iota
	seenURL
	seenCompression
	seenFileHash
	seenFileSize
	seenNarHash
	seenNarSize
	seenReferences
	seenDeriver
	seenSystem
	seenCA
)

// keyBit returns the seen bit of a key that may appear once, 0 for Sig and
// unknown keys.
func keyBit(key string) int {
	switch key {
	case "StorePath":
		return seenStorePath
	case "URL":
		return seenURL
	case "Compression":
		return seenCompression
	case "FileHash":
		return seenFileHash
	case "FileSize":
		return seenFileSize
	case "NarHash":
		return seenNarHash
	case "NarSize":
		return seenNarSize
	case "References":
		return seenReferences
	case "Deriver":
		return seenDeriver
	case "System":
		return seenSystem
	case "CA":
		return seenCA
	}
	return 0
}

// UnmarshalText implements [encoding.TextUnmarshaler]; it replaces all of
// ni's fields.
func (ni *NarInfo) UnmarshalText(data []byte) error {
	return ni.unmarshal(string(data))
}

// unmarshal parses the narinfo text s. The string fields of ni are
// substrings of s (one copy of the text, no per-line allocation); the
// References and the Deriver share one new string.
func (ni *NarInfo) unmarshal(s string) error {
	*ni = NarInfo{}
	var (
		seen     int
		refs     string // raw References value
		refsLine int
		deriver  string
		drvLine  int
	)
	lineErr := func(line int, key string, err error) error {
		return &ParseError{File: "narinfo", Line: line, Key: key, Err: err}
	}
	// A CR is refused wherever it is; look for one per line only when the
	// text has one.
	hasCR := strings.IndexByte(s, '\r') >= 0
	line := 0
	for pos := 0; pos < len(s); {
		line++
		nl := strings.IndexByte(s[pos:], '\n')
		if nl < 0 {
			return lineErr(line, "", fmt.Errorf("%w: missing final newline", ErrSyntax))
		}
		l := s[pos : pos+nl]
		pos += nl + 1
		if len(l) == 0 {
			return lineErr(line, "", fmt.Errorf("%w: blank line", ErrSyntax))
		}
		if hasCR {
			if l[len(l)-1] == '\r' {
				return lineErr(line, "", fmt.Errorf("%w: CRLF line ending", ErrSyntax))
			}
			if strings.IndexByte(l, '\r') >= 0 {
				// Nix would keep it in the value; no value we write may hold a
				// line break, so we refuse it here too.
				return lineErr(line, "", fmt.Errorf("%w: carriage return inside a line", ErrSyntax))
			}
		}
		colon := strings.IndexByte(l, ':')
		if colon <= 0 {
			return lineErr(line, "", fmt.Errorf("%w: expected \"Key: value\"", ErrSyntax))
		}
		key := l[:colon]
		if colon+1 >= len(l) || l[colon+1] != ' ' {
			return lineErr(line, key, fmt.Errorf("%w: expected \": \" after the key", ErrSyntax))
		}
		val := l[colon+2:]
		bit := keyBit(key)
		if bit != 0 {
			if seen&bit != 0 {
				return lineErr(line, key, ErrDuplicate)
			}
			seen |= bit
		}
		var err error
		switch bit {
		case seenStorePath:
			ni.StorePath, err = storepath.Parse(val)
		case seenURL:
			ni.URL = val
			if ni.URL == "" {
				err = fmt.Errorf("%w: empty", ErrMissing)
			}
		case seenCompression:
			ni.Compression = val
		case seenFileHash:
			ni.FileHash, err = nixhash.Parse(val)
		case seenFileSize:
			ni.FileSize, err = parseSize(val)
		case seenNarHash:
			ni.NarHash, err = nixhash.Parse(val)
		case seenNarSize:
			ni.NarSize, err = parseSize(val)
			if err == nil && ni.NarSize == 0 {
				err = fmt.Errorf("%w: NarSize is 0", ErrMissing)
			}
		case seenReferences:
			refs, refsLine = val, line
		case seenDeriver:
			deriver, drvLine = val, line
		case seenSystem:
			ni.System = val
		case seenCA:
			ni.CA = val
			err = checkCA(ni.CA)
		case 0:
			if key == "Sig" {
				var sig signature.Signature
				sig, err = signature.ParseSignature(val)
				if err == nil {
					if ni.Sigs == nil {
						// Room for this and every later Sig line.
						ni.Sigs = make([]signature.Signature, 0, 1+strings.Count(s[pos-1:], "\nSig: "))
					}
					ni.Sigs = append(ni.Sigs, sig)
				}
			}
			// Other keys are ignored, as Nix does (e.g. newer Nix's Provenance).
		}
		if err != nil {
			return lineErr(line, key, err)
		}
	}
	switch {
	case seen&seenStorePath == 0:
		return &ParseError{File: "narinfo", Err: fmt.Errorf("%w: StorePath", ErrMissing)}
	case seen&seenURL == 0:
		return &ParseError{File: "narinfo", Err: fmt.Errorf("%w: URL", ErrMissing)}
	case seen&seenNarHash == 0:
		return &ParseError{File: "narinfo", Err: fmt.Errorf("%w: NarHash", ErrMissing)}
	case seen&seenNarSize == 0:
		return &ParseError{File: "narinfo", Err: fmt.Errorf("%w: NarSize", ErrMissing)}
	}
	if ni.Compression == "" {
		ni.Compression = ImpliedCompression
	}
	if deriver == UnknownDeriver {
		deriver = ""
	}
	if refs == "" && deriver == "" {
		return nil
	}
	// The store directory of a valid StorePath is all before its last '/'.
	sp := string(ni.StorePath)
	dir := sp[:strings.LastIndexByte(sp, '/')]
	// First check every base name (Nix's tokenizeString skips empty
	// tokens) and measure, then build all the paths in one string.
	n, size := 0, len(deriver)
	if deriver != "" {
		size += len(dir) + 1
	}
	for f := range strings.SplitSeq(refs, " ") {
		if f == "" {
			continue
		}
		if err := storepath.ValidateBase(f); err != nil {
			return lineErr(refsLine, "References", err)
		}
		n++
		size += len(dir) + 1 + len(f)
	}
	if deriver != "" {
		if err := storepath.ValidateBase(deriver); err != nil {
			return lineErr(drvLine, "Deriver", err)
		}
	}
	var b strings.Builder
	b.Grow(size)
	for f := range strings.SplitSeq(refs, " ") {
		if f != "" {
			b.WriteString(dir)
			b.WriteByte('/')
			b.WriteString(f)
		}
	}
	if deriver != "" {
		b.WriteString(dir)
		b.WriteByte('/')
		b.WriteString(deriver)
	}
	all := b.String()
	if refs != "" {
		ni.References = make([]storepath.Path, 0, n)
		off := 0
		for f := range strings.SplitSeq(refs, " ") {
			if f != "" {
				end := off + len(dir) + 1 + len(f)
				ni.References = append(ni.References, storepath.Path(all[off:end]))
				off = end
			}
		}
	}
	if deriver != "" {
		ni.Deriver = storepath.Path(all[len(all)-len(dir)-1-len(deriver):])
	}
	return nil
}

func parseSize(v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a size in bytes", ErrSyntax, v)
	}
	return n, nil
}

// checkCA checks the shape of a content address as Nix 2.8 renders it:
// "text:<algo>:<hash>", "fixed:r:<algo>:<hash>" or "fixed:<algo>:<hash>".
func checkCA(ca string) error {
	rest, ok := strings.CutPrefix(ca, "text:")
	if !ok {
		rest, ok = strings.CutPrefix(ca, "fixed:")
		if !ok {
			return fmt.Errorf("%w: content address %q does not start with \"text:\" or \"fixed:\"", ErrSyntax, ca)
		}
		rest = strings.TrimPrefix(rest, "r:")
	}
	if _, err := nixhash.Parse(rest); err != nil {
		return fmt.Errorf("%w: content address %q: %w", ErrSyntax, ca, err)
	}
	return nil
}

// CompressionExtension returns the file extension Nix gives a NAR
// compressed with c: ".xz", ".bz2", ".zst", ".lzip", ".lz4", ".br", and ""
// for "none" and anything else (including gzip), as binary-cache-store.cc.
func CompressionExtension(c string) string {
	switch c {
	case "xz":
		return ".xz"
	case "bzip2":
		return ".bz2"
	case "zstd":
		return ".zst"
	case "lzip":
		return ".lzip"
	case "lz4":
		return ".lz4"
	case "br":
		return ".br"
	}
	return ""
}

// invalid returns an error wrapping ErrInvalid.
func invalid(format string, args ...any) error {
	return fmt.Errorf("narinfo: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// inDir reports whether p is a valid store path directly in dir, without
// allocating.
func inDir(dir storepath.Dir, p storepath.Path) bool {
	n := len(dir)
	return len(p) > n+1 && string(p[:n]) == string(dir) && p[n] == '/' &&
		storepath.ValidateBase(string(p[n+1:])) == nil
}

// sortedRefs returns the references sorted and deduplicated, checking that
// all lie in dir. It copies only when refs is not already sorted and unique.
func sortedRefs(dir storepath.Dir, refs []storepath.Path) ([]storepath.Path, error) {
	sorted := true
	for i, r := range refs {
		if !inDir(dir, r) {
			return nil, invalid("reference %q is not a valid store path in %s", r, dir)
		}
		if i > 0 && refs[i-1] >= r {
			sorted = false
		}
	}
	if sorted {
		return refs, nil
	}
	s := slices.Clone(refs)
	slices.Sort(s)
	return slices.Compact(s), nil
}

// AppendText appends the narinfo text to b, byte-identical to Nix 2.8's
// NarInfo::to_string: StorePath, URL, Compression, FileHash (sha256 nix32,
// if set), FileSize (if not 0), NarHash (sha256 nix32), NarSize,
// References (always; sorted base names), Deriver (base name, if set),
// System (if set), Sig lines (sorted, deduplicated), CA (if set). It fails
// for a NarInfo Nix would refuse to read back: no StorePath (or one whose
// store directory is invalid, see [storepath.ValidateDir]), empty URL or
// Compression, NarHash or FileHash not sha256, NarSize 0, references or
// deriver outside the store directory, or a line break in any value
// (including a signature's key name), which would forge lines.
func (ni *NarInfo) AppendText(b []byte) ([]byte, error) {
	if err := ni.StorePath.Validate(); err != nil {
		return b, invalid("StorePath: %v", err)
	}
	dir := ni.StorePath.Dir()
	switch {
	case ni.URL == "":
		return b, invalid("URL is empty")
	case ni.Compression == "":
		return b, invalid("Compression is empty, which Nix would read as bzip2")
	case !ni.FileHash.IsZero() && ni.FileHash.Algorithm() != nixhash.SHA256:
		return b, invalid("FileHash is %s, Nix requires sha256", ni.FileHash.Algorithm())
	case ni.NarHash.Algorithm() != nixhash.SHA256:
		return b, invalid("NarHash is %q, Nix requires sha256", ni.NarHash.Algorithm())
	case ni.NarSize == 0:
		return b, invalid("NarSize is 0")
	}
	for _, f := range [...]struct{ key, val string }{{"URL", ni.URL}, {"Compression", ni.Compression}, {"System", ni.System}, {"CA", ni.CA}} {
		if strings.ContainsAny(f.val, "\r\n") {
			return b, invalid("%s %q contains a line break", f.key, f.val)
		}
	}
	refs, err := sortedRefs(dir, ni.References)
	if err != nil {
		return b, err
	}
	if ni.Deriver != "" && !inDir(dir, ni.Deriver) {
		return b, invalid("Deriver %q is not a valid store path in %s", ni.Deriver, dir)
	}

	b = append(b, "StorePath: "...)
	b = append(b, ni.StorePath...)
	b = append(b, "\nURL: "...)
	b = append(b, ni.URL...)
	b = append(b, "\nCompression: "...)
	b = append(b, ni.Compression...)
	b = append(b, '\n')
	if !ni.FileHash.IsZero() {
		b = append(b, "FileHash: sha256:"...)
		b = append(b, ni.FileHash.RawBase32()...)
		b = append(b, '\n')
	}
	if ni.FileSize != 0 {
		b = append(b, "FileSize: "...)
		b = strconv.AppendUint(b, ni.FileSize, 10)
		b = append(b, '\n')
	}
	b = append(b, "NarHash: sha256:"...)
	b = append(b, ni.NarHash.RawBase32()...)
	b = append(b, "\nNarSize: "...)
	b = strconv.AppendUint(b, ni.NarSize, 10)
	b = append(b, "\nReferences: "...)
	for i, r := range refs {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, r[len(dir)+1:]...)
	}
	b = append(b, '\n')
	if ni.Deriver != "" {
		b = append(b, "Deriver: "...)
		b = append(b, ni.Deriver[len(dir)+1:]...)
		b = append(b, '\n')
	}
	if ni.System != "" {
		b = append(b, "System: "...)
		b = append(b, ni.System...)
		b = append(b, '\n')
	}
	if len(ni.Sigs) > 0 {
		sigs := make([]string, 0, len(ni.Sigs))
		for _, s := range ni.Sigs {
			if s.IsZero() {
				return b, invalid("zero Signature in Sigs")
			}
			if strings.ContainsAny(s.Name(), "\r\n") {
				return b, invalid("Sig key name %q contains a line break", s.Name())
			}
			sigs = append(sigs, s.String())
		}
		slices.Sort(sigs)
		for _, s := range slices.Compact(sigs) {
			b = append(b, "Sig: "...)
			b = append(b, s...)
			b = append(b, '\n')
		}
	}
	if ni.CA != "" {
		b = append(b, "CA: "...)
		b = append(b, ni.CA...)
		b = append(b, '\n')
	}
	return b, nil
}

// MarshalText returns the narinfo text; see [NarInfo.AppendText].
func (ni *NarInfo) MarshalText() ([]byte, error) {
	n := 256 + len(ni.URL) + len(ni.CA) + len(ni.StorePath) + len(ni.Deriver) + 100*len(ni.Sigs)
	for _, r := range ni.References {
		n += len(r.Base()) + 1
	}
	b, err := ni.AppendText(make([]byte, 0, n))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// WriteTo writes the narinfo text to w.
func (ni *NarInfo) WriteTo(w io.Writer) (int64, error) {
	b, err := ni.MarshalText()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

// String returns the narinfo text, or a description of why it cannot be
// written.
func (ni *NarInfo) String() string {
	b, err := ni.MarshalText()
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// Key returns the narinfo's object name in a cache: "<hash part>.narinfo".
func (ni *NarInfo) Key() string { return ni.StorePath.HashPart() + Extension }

// Fingerprint returns the string Nix signs for a path (ValidPathInfo::
// fingerprint): "1;<path>;<narHash as sha256:nix32>;<narSize>;<refs>",
// where refs are the absolute reference paths sorted, deduplicated and
// joined with ",". It fails when narSize is 0 (Nix: "cannot calculate
// fingerprint ... because its size is not known"), narHash is not sha256,
// or a reference is not a store path in p's directory.
func Fingerprint(p storepath.Path, narHash nixhash.Hash, narSize uint64, refs []storepath.Path) (string, error) {
	if err := p.Validate(); err != nil {
		return "", invalid("fingerprint: %v", err)
	}
	if narSize == 0 {
		return "", invalid("fingerprint of %s: NarSize is 0", p)
	}
	if narHash.Algorithm() != nixhash.SHA256 {
		return "", invalid("fingerprint of %s: NarHash is %q, want sha256", p, narHash.Algorithm())
	}
	sorted, err := sortedRefs(p.Dir(), refs)
	if err != nil {
		return "", fmt.Errorf("fingerprint of %s: %w", p, err)
	}
	n := 2 + len(p) + 1 + 59 + 21 + 1
	for _, r := range sorted {
		n += len(r) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, "1;"...)
	b = append(b, p...)
	b = append(b, ";sha256:"...)
	b = append(b, narHash.RawBase32()...)
	b = append(b, ';')
	b = strconv.AppendUint(b, narSize, 10)
	b = append(b, ';')
	for i, r := range sorted {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	return string(b), nil
}

// Fingerprint returns the fingerprint of ni (see [Fingerprint]).
func (ni *NarInfo) Fingerprint() (string, error) {
	return Fingerprint(ni.StorePath, ni.NarHash, ni.NarSize, ni.References)
}

// Sign signs ni's fingerprint with sk and adds the signature to Sigs.
// Any older signature by a key of the same name is removed first (it is
// either identical, ed25519 being deterministic, or stale); Nix keeps a set
// and would keep both.
func (ni *NarInfo) Sign(sk signature.SecretKey) error {
	if sk.IsZero() {
		return invalid("sign %s: zero secret key", ni.StorePath)
	}
	fp, err := ni.Fingerprint()
	if err != nil {
		return err
	}
	sig := sk.Sign(fp)
	ni.Sigs = slices.DeleteFunc(ni.Sigs, func(s signature.Signature) bool { return s.Name() == sig.Name() })
	ni.Sigs = append(ni.Sigs, sig)
	return nil
}

// Verify checks that at least one of ni's signatures is valid and made by
// a trusted key, as Nix does before substituting (see [signature.Verify]
// for the errors).
func (ni *NarInfo) Verify(trusted []signature.PublicKey) error {
	fp, err := ni.Fingerprint()
	if err != nil {
		return err
	}
	if err := signature.Verify(fp, ni.Sigs, trusted); err != nil {
		return fmt.Errorf("narinfo: %s: %w", ni.StorePath, err)
	}
	return nil
}
