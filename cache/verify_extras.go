package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nixcache/nixcache/storepath"
)

// verifyExtras checks what a cache holds besides narinfos and NARs, as part
// of a whole-cache Verify, reporting each bad object through report:
//
//   - every realisation ("realisations/<id>.doi") must parse, be stored
//     under its own id, carry a valid signature by one of opts.TrustedKeys
//     (when any are given; Nix refuses to register an unsigned one), and its
//     output path and the outputs of its dependent realisations must be in
//     the cache (their narinfos), with the dependent realisations;
//   - every build log ("log/<name>") must be named after a derivation
//     (a valid store path name ending in .drv), as Nix names them.
//
// Only bad objects are reported: with the realisation's output path, or ""
// when unknown (the error then names the key). It returns the realisations
// it listed, each with whether it was reported (Repair signs them).
func (c *Cache) verifyExtras(ctx context.Context, dir storepath.Dir, opts VerifyOptions, report func(p storepath.Path, err error)) ([]listedRealisation, error) {
	var docs, logs []string
	err := c.Backend.List(ctx, "realisations/", func(oi ObjectInfo) error {
		docs = append(docs, oi.Key)
		return nil
	})
	if err == nil {
		err = c.Backend.List(ctx, "log/", func(oi ObjectInfo) error {
			logs = append(logs, oi.Key)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("cache: list realisations and logs: %w", err)
	}
	listed := make([]listedRealisation, len(docs))
	for i, key := range docs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		listed[i].key = key
		if p, err := c.verifyRealisation(ctx, key, dir, opts); err != nil {
			report(p, err)
			listed[i].reported = true
		}
	}
	for _, key := range logs {
		p, err := dir.Parse(string(dir) + "/" + strings.TrimPrefix(key, "log/"))
		if err == nil && !p.IsDerivation() {
			err = errors.New("not a .drv name")
		}
		if err != nil {
			report("", fmt.Errorf("%w: %s: %w", ErrBadLog, key, err))
		}
	}
	return listed, nil
}

// listedRealisation is a realisation's key as verifyExtras listed it, and
// whether it reported the realisation as bad.
type listedRealisation struct {
	key      string
	reported bool
}

// ErrBadLog is wrapped by Verify's report of a build log whose key does not
// name a derivation.
var ErrBadLog = errors.New("cache: bad build log")

// verifyRealisation checks one .doi object; see verifyExtras.
func (c *Cache) verifyRealisation(ctx context.Context, key string, dir storepath.Dir, opts VerifyOptions) (storepath.Path, error) {
	id, ok := strings.CutSuffix(strings.TrimPrefix(key, "realisations/"), ".doi")
	if !ok {
		return "", fmt.Errorf("%w: %s: not <id>.doi", ErrBadRealisation, key)
	}
	r, err := c.GetRealisation(ctx, id, dir)
	if err != nil {
		return "", err
	}
	if len(opts.TrustedKeys) > 0 {
		if err := r.Verify(opts.TrustedKeys); err != nil {
			return r.OutPath, err
		}
	}
	if ok, err := c.hasNarInfo(ctx, r.OutPath); err != nil || !ok {
		return r.OutPath, fmt.Errorf("%w: realisation %s: output %s has no narinfo (%v)", ErrReferenceMissing, r.ID, r.OutPath, err)
	}
	for depID, dep := range r.DependentRealisations {
		if _, err := c.Backend.Stat(ctx, RealisationKey(depID)); err != nil {
			return r.OutPath, fmt.Errorf("%w: realisation %s: dependent realisation %s: %w", ErrReferenceMissing, r.ID, depID, err)
		}
		if ok, err := c.hasNarInfo(ctx, dep); err != nil || !ok {
			return r.OutPath, fmt.Errorf("%w: realisation %s: dependent output %s has no narinfo (%v)", ErrReferenceMissing, r.ID, dep, err)
		}
	}
	return r.OutPath, nil
}
