package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/nixcache/nixcache/internal/faultproxy"
	"github.com/nixcache/nixcache/internal/testenv"
)

// Errors of the checker.
var (
	// ErrBadNarInfo is wrapped when a narinfo in the bucket lacks a field
	// Nix requires (StorePath, URL, FileSize, NarHash, NarSize) or has a
	// malformed line.
	ErrBadNarInfo = errors.New("faults: malformed narinfo")
	// ErrInvariant is wrapped when the bucket breaks the binary cache
	// invariant Nix relies on: a narinfo whose NAR file is missing or has
	// another size than FileSize, or whose reference has no narinfo.
	ErrInvariant = errors.New("faults: binary cache invariant broken")
	// ErrLost is wrapped when a path that was built (and so had to reach
	// the cache) has no narinfo, or real Nix refuses it.
	ErrLost = errors.New("faults: path lost")
)

// narInfoFields are the fields of a narinfo the checker needs. It is parsed
// here, independently of package narinfo, so that the judge does not share
// code with what it judges.
type narInfoFields struct {
	StorePath  string
	URL        string
	FileSize   int64
	References []string // base names, as Nix writes them
}

// parseNarInfoFields reads the "Key: value" lines of a narinfo. Nix's rules:
// one field per line, LF line endings, StorePath, URL, NarHash and NarSize
// are required; References is a space-separated list of base names (the
// line may be "References: " with nothing after the space).
func parseNarInfoFields(r io.Reader) (*narInfoFields, error) {
	var ni narInfoFields
	var haveNarHash, haveNarSize, haveFileSize bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	sc.Split(scanLF) // bufio.ScanLines would hide a CR, which Nix refuses
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if strings.HasSuffix(text, "\r") {
			return nil, fmt.Errorf("%w: line %d ends with CR", ErrBadNarInfo, line)
		}
		k, v, ok := strings.Cut(text, ": ")
		if !ok {
			if k, ok2 := strings.CutSuffix(text, ":"); ok2 && k == "References" {
				continue
			}
			return nil, fmt.Errorf("%w: line %d has no \": \": %q", ErrBadNarInfo, line, text)
		}
		switch k {
		case "StorePath":
			ni.StorePath = v
		case "URL":
			ni.URL = v
		case "FileSize":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%w: line %d: FileSize %q", ErrBadNarInfo, line, v)
			}
			ni.FileSize, haveFileSize = n, true
		case "NarHash":
			haveNarHash = v != ""
		case "NarSize":
			if _, err := strconv.ParseUint(v, 10, 64); err != nil {
				return nil, fmt.Errorf("%w: line %d: NarSize %q", ErrBadNarInfo, line, v)
			}
			haveNarSize = true
		case "References":
			ni.References = strings.Fields(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadNarInfo, err)
	}
	switch {
	case ni.StorePath == "":
		return nil, fmt.Errorf("%w: no StorePath", ErrBadNarInfo)
	case ni.URL == "":
		return nil, fmt.Errorf("%w: %s: no URL", ErrBadNarInfo, ni.StorePath)
	case !haveNarHash:
		return nil, fmt.Errorf("%w: %s: no NarHash", ErrBadNarInfo, ni.StorePath)
	case !haveNarSize:
		return nil, fmt.Errorf("%w: %s: no NarSize", ErrBadNarInfo, ni.StorePath)
	case !haveFileSize:
		return nil, fmt.Errorf("%w: %s: no FileSize", ErrBadNarInfo, ni.StorePath)
	}
	return &ni, nil
}

// scanLF splits at LF only, keeping any CR in the line.
func scanLF(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// hashPart is the 32-character hash part of a store path or base name.
func hashPart(p string) string {
	b := path.Base(p)
	h, _, _ := strings.Cut(b, "-")
	return h
}

// CheckResult is what the checker found in one trial's bucket.
type CheckResult struct {
	// Checked is the number of store paths that had to be in the cache.
	Checked int
	// Lost are the paths without a narinfo, or that real Nix refused.
	Lost []string
	// Broken lists violations of the invariant (narinfo without its NAR, of
	// the wrong size, or with a reference lacking its narinfo), one per line.
	Broken []string
	// NarInfos is the number of narinfos in the bucket.
	NarInfos int
}

// Err returns nil when nothing was lost or broken, else an error wrapping
// ErrLost and/or ErrInvariant and naming every problem.
func (r CheckResult) Err() error {
	var errs []error
	for _, p := range r.Lost {
		errs = append(errs, fmt.Errorf("%w: %s", ErrLost, p))
	}
	for _, b := range r.Broken {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvariant, b))
	}
	return errors.Join(errs...)
}

// check judges a bucket the way a client would: it lists the bucket directly
// on the S3 server (not through the proxy), checks the invariant for every
// narinfo, checks that every path in want has a narinfo, and has real Nix
// verify those paths (signature, NAR hash) over plain HTTP.
func check(ctx context.Context, t testenv.TB, mc *minio.Client, s3Endpoint, bucket, pubKey string, want []string) (CheckResult, error) {
	res := CheckResult{Checked: len(want)}
	sizes := map[string]int64{}
	for obj := range mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return res, fmt.Errorf("faults: list bucket %s: %w", bucket, obj.Err)
		}
		sizes[obj.Key] = obj.Size
	}
	keys := make([]string, 0, len(sizes))
	for k := range sizes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if !strings.HasSuffix(key, ".narinfo") {
			continue
		}
		res.NarInfos++
		obj, err := mc.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return res, fmt.Errorf("faults: get %s/%s: %w", bucket, key, err)
		}
		data, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			return res, fmt.Errorf("faults: read %s/%s: %w", bucket, key, err)
		}
		ni, err := parseNarInfoFields(bytes.NewReader(data))
		if err != nil {
			res.Broken = append(res.Broken, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		if hashPart(ni.StorePath)+".narinfo" != key {
			res.Broken = append(res.Broken, fmt.Sprintf("%s: names %s", key, ni.StorePath))
		}
		if size, ok := sizes[ni.URL]; !ok {
			res.Broken = append(res.Broken, fmt.Sprintf("%s: NAR %s missing", key, ni.URL))
		} else if size != ni.FileSize {
			res.Broken = append(res.Broken, fmt.Sprintf("%s: NAR %s has %d bytes, FileSize %d", key, ni.URL, size, ni.FileSize))
		}
		for _, ref := range ni.References {
			if _, ok := sizes[hashPart(ref)+".narinfo"]; !ok {
				res.Broken = append(res.Broken, fmt.Sprintf("%s: reference %s has no narinfo", key, ref))
			}
		}
	}
	var present []string
	for _, p := range want {
		if _, ok := sizes[hashPart(p)+".narinfo"]; ok {
			present = append(present, p)
		} else {
			res.Lost = append(res.Lost, p)
		}
	}
	if len(present) == 0 {
		return res, nil
	}
	storeURL := s3Endpoint + "/" + bucket
	if testenv.NixStoreVerify(t, storeURL, pubKey, present...) != 0 {
		// Find out which paths Nix refuses.
		for _, p := range present {
			if code := testenv.NixStoreVerify(t, storeURL, pubKey, p); code != 0 {
				res.Lost = append(res.Lost, fmt.Sprintf("%s (nix store verify: exit code %d, see log)", p, code))
			}
		}
	}
	return res, nil
}

// Uploads is what the proxy log says about the uploads of one bucket.
type Uploads struct {
	// Keys is the number of distinct keys stored.
	Keys int
	// Stored is the number of successful uploads (single PUTs and completed
	// multipart uploads).
	Stored int
	// Failed is the number of failed upload requests (PUT or POST of an
	// object or a part answered with an error, or abandoned by the client).
	Failed int
	// Needed is the number of repeated uploads of a key that followed a
	// failed request for that key: retries the client had to make.
	Needed int
	// Needless lists keys stored again although the previous upload of the
	// key had succeeded and nothing failed for it since, and no read had
	// found the key missing before that upload stored it (see Raced).
	Needless []string
	// Raced lists the keys stored again like Needless, but by an uploader
	// that had seen the key missing: a HEAD or GET answered 404 before the
	// key was stored, not yet matched with an upload (each store matches
	// one). Two clients that check at the same moment both find the key
	// missing and both upload it: a race between clients that do not
	// coordinate (a fleet of daemons), not a check that was skipped.
	Raced []string
	// Refreshed counts uploads of a key that the client had just read back
	// whole (a successful GET since the key was stored): a push that reuses
	// a NAR file on a server that cannot renew modification times writes
	// it again so that a concurrent garbage collector sees it young (see
	// cache's package documentation). They are deliberate, not needless.
	Refreshed int
	// Vanished lists keys whose upload the server acknowledged but which a
	// later HEAD or GET found missing (404): the server lost the object
	// (or never stored it), so the re-upload that follows is needed.
	Vanished []string
}

// AnalyzeLog counts the uploads of the objects of bucket in a proxy log.
// A request stores an object when it is a PUT without uploadId (a single
// upload) or a POST with uploadId (completing a multipart upload) and is
// answered 2xx. A re-upload of a key is needed only after a failed upload
// request for that key (the client could not know whether the object was
// stored) or after the server answered 404 for the stored key (it lost
// the object); otherwise it is needless, or raced when its uploader had
// found the key missing before it was stored. Server-side copies (Request.Copy)
// upload nothing and are not counted. Requests are taken in log order.
func AnalyzeLog(log []faultproxy.Request, bucket string) Uploads {
	type state struct {
		stored, failedSince, readBack bool
		missing                       int // reads answered 404 before it was stored, not matched with a store
	}
	var u Uploads
	st := map[string]*state{}
	prefix := "/" + bucket + "/"
	for _, r := range log {
		key, ok := strings.CutPrefix(r.Path, prefix)
		if !ok || key == "" {
			continue
		}
		if r.Method == "HEAD" || r.Method == "GET" {
			if s := st[key]; (s == nil || !s.stored) && r.Status == 404 {
				if s == nil {
					s = &state{}
					st[key] = s
				}
				s.missing++
			}
			if s := st[key]; s != nil && s.stored && r.Method == "GET" && !r.Failed() {
				s.readBack = true
			}
			if s := st[key]; s != nil && s.stored && !s.failedSince && r.Status == 404 {
				// The server said it stored the object, and now says
				// it has none: uploading it again is needed.
				u.Vanished = append(u.Vanished, key)
				s.failedSince = true
			}
			continue
		}
		if (r.Method != "PUT" && r.Method != "POST") || r.Copy {
			// A server-side copy (a push touching a narinfo it reuses, so
			// that a garbage collector keeps it) uploads nothing.
			continue
		}
		var multipart, initiate bool
		if r.Query != "" {
			q, _ := url.ParseQuery(r.Query)
			_, multipart = q["uploadId"]
			_, initiate = q["uploads"]
		}
		s := st[key]
		if s == nil {
			s = &state{}
			st[key] = s
		}
		if r.Failed() {
			u.Failed++
			s.failedSince = true
			continue
		}
		completes := (r.Method == "PUT" && !multipart && !initiate) || (r.Method == "POST" && multipart)
		if !completes {
			continue
		}
		u.Stored++
		switch {
		case !s.stored:
			u.Keys++
		case s.failedSince:
			u.Needed++
		case s.readBack:
			u.Refreshed++
		case s.missing > 0:
			u.Raced = append(u.Raced, key)
		default:
			u.Needless = append(u.Needless, key)
		}
		if s.missing > 0 {
			s.missing--
		}
		s.stored, s.failedSince, s.readBack = true, false, false
	}
	return u
}
