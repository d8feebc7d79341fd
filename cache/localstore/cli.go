package localstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// cliBatch bounds the paths per `nix path-info` call.
const cliBatch = 1000

// cliSource asks `nix path-info --json`, and `nix-store --check-validity`
// which paths are invalid when it fails.
type cliSource struct {
	nix      string
	nixStore string // "" when not found
	dir      storepath.Dir
}

func openCLI(_ context.Context, nix string, dir storepath.Dir) (*cliSource, error) {
	bin, err := exec.LookPath(nix)
	if err != nil {
		return nil, fmt.Errorf("localstore: %w: nix command: %w", ErrNoStore, err)
	}
	// nix-store comes with nix, next to it; else from PATH.
	nixStore := filepath.Join(filepath.Dir(bin), "nix-store")
	if _, err := exec.LookPath(nixStore); err != nil {
		nixStore, _ = exec.LookPath("nix-store")
	}
	return &cliSource{nix: bin, nixStore: nixStore, dir: dir}, nil
}

func (s *cliSource) close() error { return nil }

// run runs `nix path-info --json [extra...] paths...`. Nix 2.8 reads a
// bare .drv argument as "all outputs of it"; --derivation makes it the .drv
// itself there and in newer Nix, so .drv paths go in their own call.
func (s *cliSource) run(ctx context.Context, extra []string, paths []storepath.Path) ([]*PathInfo, []storepath.Path, error) {
	args := []string{"--extra-experimental-features", "nix-command", "path-info", "--json", "--option", "substituters", ""}
	args = append(args, extra...)
	for _, p := range paths {
		args = append(args, string(p))
	}
	cmd := exec.CommandContext(ctx, s.nix, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		// Which paths were invalid, Nix says only in the text of its message,
		// which differs between versions (2.8 answers "valid": false in the
		// JSON, newer Nix fails the whole call): ask nix-store, whose
		// --print-invalid output is the same in every version.
		if invalid, verr := s.invalidPaths(ctx, paths); verr == nil && len(invalid) > 0 {
			return nil, invalid, fmt.Errorf("localstore: %s: %w", invalid[0], ErrNotValid)
		}
		msg := strings.TrimSpace(stderr.String())
		return nil, nil, fmt.Errorf("localstore: nix path-info %s: %w: %s", strings.Join(extra, " "), err, msg)
	}
	infos, invalid, err := DecodePathInfoJSON(stdout.Bytes(), s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("localstore: nix path-info: %w", err)
	}
	return infos, invalid, nil
}

// invalidPaths returns the paths that are not valid in the store, from
// `nix-store --check-validity --print-invalid`.
func (s *cliSource) invalidPaths(ctx context.Context, paths []storepath.Path) ([]storepath.Path, error) {
	if s.nixStore == "" {
		return nil, fmt.Errorf("localstore: nix-store command not found")
	}
	args := []string{"--check-validity", "--print-invalid"}
	for _, p := range paths {
		args = append(args, string(p))
	}
	cmd := exec.CommandContext(ctx, s.nixStore, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("localstore: nix-store --check-validity: %w", err)
	}
	var invalid []storepath.Path
	for line := range strings.Lines(string(out)) {
		p, err := s.dir.Parse(strings.TrimSpace(line))
		if err != nil {
			return nil, fmt.Errorf("localstore: nix-store --check-validity: %w", err)
		}
		invalid = append(invalid, p)
	}
	return invalid, nil
}

func splitDrvs(paths []storepath.Path) (plain, drvs []storepath.Path) {
	for _, p := range paths {
		if p.IsDerivation() {
			drvs = append(drvs, p)
		} else {
			plain = append(plain, p)
		}
	}
	return plain, drvs
}

func (s *cliSource) query(ctx context.Context, paths []storepath.Path, recursive bool) (map[storepath.Path]*PathInfo, error) {
	out := make(map[storepath.Path]*PathInfo, len(paths))
	plain, drvs := splitDrvs(paths)
	for _, group := range []struct {
		paths []storepath.Path
		flags []string
	}{{plain, nil}, {drvs, []string{"--derivation"}}} {
		if len(group.paths) == 0 {
			continue
		}
		flags := group.flags
		if recursive {
			flags = append(flags, "--recursive")
		}
		if !recursive && len(group.paths) > cliBatch {
			// Keep command lines short: split and merge.
			for rest := group.paths; len(rest) > 0; {
				n := min(len(rest), cliBatch)
				m, err := s.query(ctx, rest[:n], false)
				if err != nil {
					return nil, err
				}
				maps.Copy(out, m)
				rest = rest[n:]
			}
			continue
		}
		infos, invalid, err := s.run(ctx, flags, group.paths)
		if err != nil && !recursive && len(invalid) > 0 && len(invalid) < len(group.paths) {
			// Newer Nix fails the whole call for an invalid path: ask
			// again for the valid ones.
			bad := map[storepath.Path]bool{}
			for _, p := range invalid {
				bad[p] = true
			}
			var valid []storepath.Path
			for _, p := range group.paths {
				if !bad[p] {
					valid = append(valid, p)
				}
			}
			infos, _, err = s.run(ctx, flags, valid)
		} else if err != nil && !recursive && len(invalid) > 0 {
			continue // none of them is valid
		}
		if err != nil {
			return nil, err
		}
		if recursive && len(invalid) > 0 {
			return nil, fmt.Errorf("localstore: %s: %w", invalid[0], ErrNotValid)
		}
		for _, pi := range infos {
			out[pi.Path] = pi
		}
	}
	return out, nil
}

func (s *cliSource) pathInfos(ctx context.Context, paths []storepath.Path) (map[storepath.Path]*PathInfo, error) {
	return s.query(ctx, paths, false)
}

func (s *cliSource) closureInfos(ctx context.Context, roots []storepath.Path) (map[storepath.Path]*PathInfo, error) {
	m, err := s.query(ctx, roots, true)
	if err != nil {
		return nil, err
	}
	for _, r := range roots {
		if _, ok := m[r]; !ok {
			return nil, fmt.Errorf("localstore: %s: %w", r, ErrNotValid)
		}
	}
	return m, nil
}

func (s *cliSource) drvOutputs(ctx context.Context, drv storepath.Path) (map[string]storepath.Path, bool, error) {
	m, err := s.pathInfos(ctx, []storepath.Path{drv})
	if err != nil {
		return nil, false, err
	}
	if _, ok := m[drv]; !ok {
		return nil, false, fmt.Errorf("localstore: %s: %w", drv, ErrNotValid)
	}
	return nil, false, nil // the caller parses the .drv file
}

// jsonInfo is one entry of `nix path-info --json`, any version.
type jsonInfo struct {
	Path             *string           `json:"path"`
	Valid            *bool             `json:"valid"`
	NarHash          json.RawMessage   `json:"narHash"`
	NarSize          *uint64           `json:"narSize"`
	References       []string          `json:"references"`
	Deriver          *string           `json:"deriver"`
	RegistrationTime *int64            `json:"registrationTime"`
	Ultimate         bool              `json:"ultimate"`
	Signatures       []json.RawMessage `json:"signatures"`
	CA               json.RawMessage   `json:"ca"`
	StoreDir         string            `json:"storeDir"`
}

// jsonHash is a hash as newer Nix prints it.
type jsonHash struct {
	Algorithm string `json:"algorithm"`
	Format    string `json:"format"`
	Hash      string `json:"hash"`
}

// DecodePathInfoJSON parses the output of `nix path-info --json` in the
// shapes Nix has printed over time:
//   - Nix 2.8 to 2.18: an array of objects with "path"; an invalid path is
//     {"path":..., "valid": false}; narHash is SRI "sha256-<base64>" (or
//     "sha256:<nix32>"); references and deriver are absolute paths; ca is a
//     string such as "text:sha256:<nix32>".
//   - Newer Nix: an object keyed by store path whose value is the info or
//     null for an invalid path; store paths may be base names (JSON v2);
//     hashes may be {"algorithm","format","hash"} objects; ca may be
//     {"method","hash"}; signatures may be {"keyName","sig"} (JSON v3).
//
// It returns the valid infos in input order and the invalid paths; CA is
// rendered in Nix's string form ("fixed:r:sha256:<nix32>", ...).
func DecodePathInfoJSON(data []byte, dir storepath.Dir) (infos []*PathInfo, invalid []storepath.Path, err error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("localstore: %w: empty input", ErrBadJSON)
	}
	add := func(key string, raw json.RawMessage) error {
		if string(bytes.TrimSpace(raw)) == "null" {
			p, err := parseJSONPath(dir, key)
			if err != nil {
				return err
			}
			invalid = append(invalid, p)
			return nil
		}
		var ji jsonInfo
		if err := json.Unmarshal(raw, &ji); err != nil {
			return fmt.Errorf("localstore: %w: entry %q: %w", ErrBadJSON, key, err)
		}
		pi, ok, err := ji.toPathInfo(dir, key)
		if err != nil {
			return err
		}
		if !ok {
			invalid = append(invalid, pi.Path)
			return nil
		}
		infos = append(infos, pi)
		return nil
	}
	switch data[0] {
	case '[':
		var list []json.RawMessage
		if err := json.Unmarshal(data, &list); err != nil {
			return nil, nil, fmt.Errorf("localstore: %w: %w", ErrBadJSON, err)
		}
		for i, raw := range list {
			if string(bytes.TrimSpace(raw)) == "null" {
				return nil, nil, fmt.Errorf("localstore: %w: entry %d is null", ErrBadJSON, i)
			}
			if err := add("", raw); err != nil {
				return nil, nil, err
			}
		}
	case '{':
		// Keep the input order: decode the keys with a token stream.
		dec := json.NewDecoder(bytes.NewReader(data))
		if _, err := dec.Token(); err != nil {
			return nil, nil, fmt.Errorf("localstore: %w: %w", ErrBadJSON, err)
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, nil, fmt.Errorf("localstore: %w: %w", ErrBadJSON, err)
			}
			key, _ := tok.(string)
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, nil, fmt.Errorf("localstore: %w: entry %q: %w", ErrBadJSON, key, err)
			}
			if err := add(key, raw); err != nil {
				return nil, nil, err
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, nil, fmt.Errorf("localstore: %w: %w", ErrBadJSON, err)
		}
		if dec.More() {
			return nil, nil, fmt.Errorf("localstore: %w: data after the object", ErrBadJSON)
		}
	default:
		return nil, nil, fmt.Errorf("localstore: %w: want an array or an object, got %q", ErrBadJSON, data[0])
	}
	return infos, invalid, nil
}

// parseJSONPath accepts an absolute store path in dir or a base name.
func parseJSONPath(dir storepath.Dir, s string) (storepath.Path, error) {
	var p storepath.Path
	var err error
	if strings.HasPrefix(s, "/") {
		p, err = dir.Parse(s)
	} else {
		p, err = dir.FromBase(s)
	}
	if err != nil {
		return "", fmt.Errorf("localstore: %w: store path %q: %w", ErrBadJSON, s, err)
	}
	return p, nil
}

func (ji *jsonInfo) toPathInfo(dir storepath.Dir, key string) (*PathInfo, bool, error) {
	if ji.StoreDir != "" && storepath.Dir(ji.StoreDir) != dir {
		return nil, false, fmt.Errorf("localstore: %w: entry %q: storeDir %q, want %q", ErrBadJSON, key, ji.StoreDir, dir)
	}
	name := key
	if ji.Path != nil {
		name = *ji.Path
	}
	if name == "" {
		return nil, false, fmt.Errorf("localstore: %w: entry without a path", ErrBadJSON)
	}
	p, err := parseJSONPath(dir, name)
	if err != nil {
		return nil, false, err
	}
	if key != "" && ji.Path != nil && key != *ji.Path {
		kp, err := parseJSONPath(dir, key)
		if err != nil {
			return nil, false, err
		}
		if kp != p {
			return nil, false, fmt.Errorf("localstore: %w: entry %q has path %q", ErrBadJSON, key, *ji.Path)
		}
	}
	pi := &PathInfo{PathInfo: cache.PathInfo{Path: p}, Ultimate: ji.Ultimate}
	if ji.Valid != nil && !*ji.Valid {
		return pi, false, nil
	}
	if len(ji.NarHash) == 0 || ji.NarSize == nil {
		return nil, false, fmt.Errorf("localstore: %w: %s: missing narHash or narSize", ErrBadJSON, p)
	}
	if pi.NarHash, err = parseJSONHash(ji.NarHash); err != nil {
		return nil, false, fmt.Errorf("localstore: %w: %s: narHash: %w", ErrBadJSON, p, err)
	}
	pi.NarSize = *ji.NarSize
	for _, r := range ji.References {
		rp, err := parseJSONPath(dir, r)
		if err != nil {
			return nil, false, fmt.Errorf("localstore: %s: reference: %w", p, err)
		}
		pi.References = append(pi.References, rp)
	}
	pi.References = sortRefs(pi.References)
	if ji.Deriver != nil && *ji.Deriver != "" {
		if pi.Deriver, err = parseJSONPath(dir, *ji.Deriver); err != nil {
			return nil, false, fmt.Errorf("localstore: %s: deriver: %w", p, err)
		}
	}
	if ji.RegistrationTime != nil {
		pi.RegistrationTime = time.Unix(*ji.RegistrationTime, 0)
	}
	var sigs []string
	for _, raw := range ji.Signatures {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			var o struct {
				KeyName string `json:"keyName"`
				Sig     string `json:"sig"`
			}
			if err := json.Unmarshal(raw, &o); err != nil {
				return nil, false, fmt.Errorf("localstore: %w: %s: signature %s", ErrBadJSON, p, raw)
			}
			s = o.KeyName + ":" + o.Sig
		}
		sigs = append(sigs, s)
	}
	if pi.Sigs, err = parseSigs(sigs); err != nil {
		return nil, false, fmt.Errorf("localstore: %w: %s: %w", ErrBadJSON, p, err)
	}
	if pi.CA, err = parseJSONCA(ji.CA); err != nil {
		return nil, false, fmt.Errorf("localstore: %w: %s: ca: %w", ErrBadJSON, p, err)
	}
	return pi, true, nil
}

// parseJSONHash accepts "sha256-<b64>", "sha256:<nix32|hex|b64>" or
// {"algorithm":"sha256","format":"base16|nix32|base32|base64|sri","hash":"..."}.
func parseJSONHash(raw json.RawMessage) (nixhash.Hash, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return nixhash.Parse(s)
	}
	var o jsonHash
	if err := json.Unmarshal(raw, &o); err != nil {
		return nixhash.Hash{}, fmt.Errorf("want a string or a hash object, got %s", raw)
	}
	a, err := nixhash.ParseAlgorithm(o.Algorithm)
	if err != nil {
		return nixhash.Hash{}, err
	}
	switch o.Format {
	case "sri":
		h, err := nixhash.Parse(o.Hash)
		if err != nil {
			return nixhash.Hash{}, err
		}
		if h.Algorithm() != a {
			return nixhash.Hash{}, fmt.Errorf("hash %q is not %s", o.Hash, a)
		}
		return h, nil
	case "base16", "nix32", "base32", "base64", "":
		return nixhash.ParseAs(a, o.Hash)
	}
	return nixhash.Hash{}, fmt.Errorf("unknown hash format %q", o.Format)
}

// parseJSONCA renders a content address in Nix's legacy string form: a
// string is kept; {"method":"nar|flat|text|git","hash":H} becomes
// "fixed:r:<H>", "fixed:<H>", "text:<H>" or "fixed:git:<H>" with H as
// "algo:<nix32>".
func parseJSONCA(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var o struct {
		Method string          `json:"method"`
		Hash   json.RawMessage `json:"hash"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", fmt.Errorf("want a string or a content-address object, got %s", raw)
	}
	if len(o.Hash) == 0 {
		return "", fmt.Errorf("content address without hash")
	}
	h, err := parseJSONHash(o.Hash)
	if err != nil {
		return "", err
	}
	switch o.Method {
	case "nar":
		return "fixed:r:" + h.String(), nil
	case "flat":
		return "fixed:" + h.String(), nil
	case "text":
		return "text:" + h.String(), nil
	case "git":
		return "fixed:git:" + h.String(), nil
	}
	return "", fmt.Errorf("unknown content-address method %q", o.Method)
}
