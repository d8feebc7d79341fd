package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
)

// ErrBadRealisation is wrapped by errors about a realisation that cannot be
// parsed or whose id is not a derivation output id.
var ErrBadRealisation = errors.New("cache: bad realisation")

// maxRealisationSize bounds what is read of a ".doi" object: Nix's are a
// few hundred bytes (more with many dependent realisations).
const maxRealisationSize = 1 << 20

// realisationMIMEType is the Content-Type realisations are stored with.
const realisationMIMEType = "application/json"

// Realisation says which store path an output of a content-addressed
// derivation (Nix's experimental ca-derivations) was built into: Nix's
// Realisation, stored in a binary cache as "realisations/<id>.doi". A
// machine with ca-derivations that evaluates the same derivation asks the
// cache for it before building, and substitutes OutPath instead.
type Realisation struct {
	// ID is the derivation output id "sha256:<base16 hash modulo of the
	// .drv>!<output name>" (Nix's DrvOutput).
	ID string
	// OutPath is the output path the derivation was realised to.
	OutPath storepath.Path
	// Signatures over Fingerprint; Nix substitutes the realisation only
	// when one is by a trusted public key.
	Signatures []signature.Signature
	// DependentRealisations are the realisations of the input derivations'
	// outputs this one was built with (id to output path).
	DependentRealisations map[string]storepath.Path
}

// RealisationKey is the cache key of a realisation: "realisations/<id>.doi".
func RealisationKey(id string) string { return "realisations/" + id + ".doi" }

// RealisationSource is implemented by a Source that knows the realisations
// of content-addressed derivations (*localstore.Store reads them from the
// store database's Realisations table). Push publishes them when Source
// implements it.
type RealisationSource interface {
	// Realisations returns every realisation whose output is p, with its
	// dependent realisations; none for input-addressed and fixed-output
	// paths.
	Realisations(ctx context.Context, p storepath.Path) ([]Realisation, error)
}

// ValidateRealisationID checks the form of a derivation output id:
// "<algo>:<hash>!<output name>" as Nix's DrvOutput::parse accepts it, with a
// base16 hash.
func ValidateRealisationID(id string) error {
	h, out, ok := strings.Cut(id, "!")
	algo, hex, ok2 := strings.Cut(h, ":")
	switch {
	case !ok || !ok2:
		return fmt.Errorf("%w: id %q is not <algo>:<hash>!<output>", ErrBadRealisation, id)
	case algo != "sha256" && algo != "sha512" && algo != "sha1" && algo != "md5":
		return fmt.Errorf("%w: id %q: unknown hash algorithm", ErrBadRealisation, id)
	case strings.Trim(hex, "0123456789abcdef") != "" || len(hex) == 0:
		return fmt.Errorf("%w: id %q: hash is not base16", ErrBadRealisation, id)
	case out == "" || strings.Trim(out, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._?=") != "":
		return fmt.Errorf("%w: id %q: bad output name", ErrBadRealisation, id)
	}
	return nil
}

// appendJSON writes r as Nix 2.8's Realisation::toJSON().dump() does:
// compact, keys in byte order; store paths as base names. With sigs false it
// is the fingerprint (the same object without "signatures").
func (r *Realisation) appendJSON(b []byte, sigs bool) []byte {
	str := func(b []byte, s string) []byte {
		// The strings are ids, store path names and signatures: ASCII
		// without quotes or backslashes, which json.Marshal writes as Nix.
		q, _ := json.Marshal(s)
		return append(b, q...)
	}
	b = append(b, `{"dependentRealisations":{`...)
	ids := make([]string, 0, len(r.DependentRealisations))
	for id := range r.DependentRealisations {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = str(b, id)
		b = append(b, ':')
		b = str(b, r.DependentRealisations[id].Base())
	}
	b = append(b, `},"id":`...)
	b = str(b, r.ID)
	b = append(b, `,"outPath":`...)
	b = str(b, r.OutPath.Base())
	if sigs {
		b = append(b, `,"signatures":[`...)
		ss := make([]string, len(r.Signatures))
		for i, s := range r.Signatures {
			ss[i] = s.String()
		}
		slices.Sort(ss) // a std::set in Nix
		ss = slices.Compact(ss)
		for i, s := range ss {
			if i > 0 {
				b = append(b, ',')
			}
			b = str(b, s)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// Fingerprint is what a realisation's signatures sign (Nix's
// Realisation::fingerprint): its JSON without the "signatures" field.
func (r *Realisation) Fingerprint() string { return string(r.appendJSON(nil, false)) }

// MarshalJSON returns the ".doi" file content, byte for byte as Nix 2.8
// writes it.
func (r *Realisation) MarshalJSON() ([]byte, error) {
	if err := ValidateRealisationID(r.ID); err != nil {
		return nil, err
	}
	return r.appendJSON(nil, true), nil
}

// Sign adds k's signature over the fingerprint (replacing an older one by
// the same key name).
func (r *Realisation) Sign(k signature.SecretKey) {
	s := k.Sign(r.Fingerprint())
	r.Signatures = slices.DeleteFunc(r.Signatures, func(o signature.Signature) bool { return o.Name() == k.Name() })
	r.Signatures = append(r.Signatures, s)
}

// Verify returns nil when one of the signatures is valid under one of
// keys, else an error wrapping signature.ErrUntrusted (Nix's
// Realisation::checkSignatures: such a realisation is not used).
func (r *Realisation) Verify(keys []signature.PublicKey) error {
	fp := r.Fingerprint()
	for _, s := range r.Signatures {
		for _, k := range keys {
			if k.Name() == s.Name() && k.Verify(fp, s) == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: realisation %s has no valid signature by a trusted key", signature.ErrUntrusted, r.ID)
}

// ParseRealisation reads a ".doi" file as Nix does; outPath and the
// dependent paths are base names in store directory dir.
func ParseRealisation(data []byte, dir storepath.Dir) (*Realisation, error) {
	var j struct {
		ID         *string           `json:"id"`
		OutPath    *string           `json:"outPath"`
		Signatures []string          `json:"signatures"`
		Deps       map[string]string `json:"dependentRealisations"`
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRealisation, err)
	}
	if j.ID == nil || j.OutPath == nil {
		return nil, fmt.Errorf("%w: missing id or outPath", ErrBadRealisation)
	}
	if err := ValidateRealisationID(*j.ID); err != nil {
		return nil, err
	}
	r := &Realisation{ID: *j.ID, DependentRealisations: map[string]storepath.Path{}}
	var err error
	if r.OutPath, err = dir.Parse(string(dir) + "/" + *j.OutPath); err != nil {
		return nil, fmt.Errorf("%w: %s: outPath: %w", ErrBadRealisation, r.ID, err)
	}
	for _, s := range j.Signatures {
		sig, err := signature.ParseSignature(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadRealisation, r.ID, err)
		}
		r.Signatures = append(r.Signatures, sig)
	}
	for id, base := range j.Deps {
		if err := ValidateRealisationID(id); err != nil {
			return nil, err
		}
		p, err := dir.Parse(string(dir) + "/" + base)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: dependent realisation %s: %w", ErrBadRealisation, r.ID, id, err)
		}
		r.DependentRealisations[id] = p
	}
	return r, nil
}

// publishRealisations stores, for every path of paths that is in the cache
// after this push, the realisations src records for it that the cache
// lacks, signed with the cache's keys. paths are in closure order
// (references first), so a realisation's dependent realisations, whose
// outputs are among the references, are stored before it.
func (c *Cache) publishRealisations(ctx context.Context, rs RealisationSource, paths []storepath.Path) (int, error) {
	n := 0
	var errs []error
	for _, p := range paths {
		list, err := rs.Realisations(ctx, p)
		if err != nil {
			errs = append(errs, &PathError{p, fmt.Errorf("realisations: %w", err)})
			continue
		}
		for i := range list {
			r := &list[i]
			key := RealisationKey(r.ID)
			if _, err := c.Backend.Stat(ctx, key); err == nil {
				continue
			} else if !errors.Is(err, ErrNotFound) {
				errs = append(errs, &PathError{p, fmt.Errorf("stat %s: %w", key, err)})
				continue
			}
			for _, k := range c.opts.SecretKeys {
				r.Sign(k)
			}
			data, err := r.MarshalJSON()
			if err != nil {
				errs = append(errs, &PathError{p, err})
				continue
			}
			if err := c.Backend.Put(ctx, key, bytes.NewReader(data), int64(len(data)), realisationMIMEType); err != nil {
				errs = append(errs, &PathError{p, fmt.Errorf("upload %s: %w", key, err)})
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

// GetRealisation reads and parses "realisations/<id>.doi"; the error wraps
// ErrNotFound when the cache has none.
func (c *Cache) GetRealisation(ctx context.Context, id string, dir storepath.Dir) (*Realisation, error) {
	key := RealisationKey(id)
	data, err := c.readLimited(ctx, key, maxRealisationSize, ErrBadRealisation)
	if errors.Is(err, ErrBadRealisation) {
		return nil, err // says "cache:" already
	} else if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	r, err := ParseRealisation(data, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if r.ID != id {
		return nil, fmt.Errorf("%w: %s holds id %s", ErrBadRealisation, key, r.ID)
	}
	return r, nil
}
