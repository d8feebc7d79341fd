// Package s3 is a cache.Backend on an S3 bucket (AWS or any S3-compatible
// server), through minio-go. It is what an s3://bucket[/prefix] store URL
// opens, with Nix's parameters: region, endpoint, profile, addressing-style.
//
// Uploads are made so that any S3 server serves them back byte for byte to
// Nix over plain HTTP: the payload is never sent in aws-chunked streaming
// form (which some servers store and serve with Content-Encoding:
// aws-chunked, and Nix then fails with "input compression not recognized"),
// and no trailing headers are sent. Objects up to the part size go up in a
// single PUT with Content-MD5; larger ones as a multipart upload of uniform
// parts (Cloudflare R2 needs that; up to 10,000 of them, so up to S3's 5 TiB
// object limit), in parallel, each with its CRC32C checksum
// (x-amz-checksum-crc32c, which the server checks; a server that refuses
// the header, as Backblaze B2 does, gets Content-MD5 instead). A multipart
// upload that a killed process, a cancelled context or a lost server left
// unfinished is resumed by the next Put of the same key: only the parts the
// server lacks (or holds with other bytes) are sent; two Puts that begin an
// upload of the key at the same moment share one. A multipart upload whose
// reader failed is aborted. A request that makes no progress for the stall timeout
// (a server that stops reading an upload or never answers) is abandoned and
// retried like a network error.
//
// Importing the package registers the "s3" store URL scheme with
// cache.Register.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nixcache/nixcache/cache"
)

// Defaults of the S3 backend.
const (
	// DefaultRegion is Nix's default region for s3:// stores.
	DefaultRegion = "us-east-1"
	// DefaultProfile is the shared credentials file profile used when
	// neither the profile parameter nor AWS_PROFILE is set.
	DefaultProfile = "default"
	// DefaultPartSize is the multipart part size: objects up to this size go
	// up in one PUT, larger ones in parts of exactly this size (the last one
	// smaller), or of at most 8 MiB when read from a plain reader (held in
	// memory until stored). It grows for objects over 10,000 parts.
	DefaultPartSize = 16 << 20
	// MinPartSize is S3's minimum part size (but for the last part).
	MinPartSize = 5 << 20
	// MaxPartSize is S3's maximum part size.
	MaxPartSize = 5 << 30
	// DefaultThreads is how many parts of one object upload at once.
	DefaultThreads = 4
	// DefaultRetries is how many times a request is tried on a network
	// error, HTTP 408, 429, 5xx or an S3 SlowDown/InternalError code, with
	// exponential backoff (200 ms doubling, capped at 1 s) and full jitter.
	DefaultRetries = 5
	// DefaultStallTimeout is how long a request may go without progress (no
	// byte of the upload taken by the server, no answer, no byte of the
	// answer's body) before it is abandoned and retried.
	DefaultStallTimeout = 30 * time.Second
	// DefaultStaleUploadAge is the age (since it began) from which New
	// aborts an unfinished multipart upload as the leftover of a killed
	// writer. It must exceed the longest upload: a live upload that old
	// would be aborted and fail.
	DefaultStaleUploadAge = 24 * time.Hour
	maxParts              = 10000
)

// Errors, for errors.Is.
var (
	// ErrBucketNotFound means the bucket does not exist on the server.
	ErrBucketNotFound = errors.New("s3: bucket does not exist")
	// ErrAccessDenied means the server refused the credentials (unknown
	// key, bad secret, or no permission).
	ErrAccessDenied = errors.New("s3: access denied")
	// ErrUnreachable means the server could not be reached.
	ErrUnreachable = errors.New("s3: server unreachable")
	// ErrBadParam is wrapped when an s3:// URL parameter is invalid.
	ErrBadParam = errors.New("s3: invalid store URL parameter")
)

func init() { cache.Register("s3", ParseLocation) }

// Options configure a Backend.
type Options struct {
	// Bucket is the bucket name (required).
	Bucket string
	// Prefix is prepended, with a "/", to every key; "" for the bucket root.
	Prefix string
	// Region defaults to DefaultRegion.
	Region string
	// Endpoint is the server's base URL, e.g. "http://127.0.0.1:9000"; its
	// scheme decides TLS. Empty means AWS (s3.amazonaws.com).
	Endpoint string
	// Profile selects the shared credentials file section; empty means
	// AWS_PROFILE, then DefaultProfile.
	Profile string
	// AddressingStyle is "auto" (the default: virtual-host style for AWS,
	// path style for custom endpoints and dotted bucket names), "path" or
	// "virtual".
	AddressingStyle string
	// StorageClass is sent with every upload when set (e.g. "STANDARD_IA").
	StorageClass string
	// PartSize is the multipart part size, MinPartSize..MaxPartSize;
	// 0 means DefaultPartSize.
	PartSize int64
	// Threads is the number of parts uploaded at once; 0 means DefaultThreads.
	Threads int
	// Retries is the number of attempts per request; 0 means DefaultRetries,
	// 1 disables retries.
	Retries int
	// StallTimeout is how long a request may go without progress before
	// it is abandoned (with an error wrapping ErrStalled) and retried; 0
	// means DefaultStallTimeout. It also bounds the wait for an answer, so
	// it must exceed the time the server needs to answer the slowest
	// request (CompleteMultipartUpload of the largest object).
	StallTimeout time.Duration
	// StaleUploadAge is the age from which New aborts unfinished multipart
	// uploads under the prefix (see AbortStale); 0 means
	// DefaultStaleUploadAge, a negative value never aborts.
	StaleUploadAge time.Duration
	// Creds overrides the credential chain (environment, shared credentials
	// file, instance role).
	Creds *credentials.Credentials
	// Transport overrides the HTTP transport (tests inject failures here).
	Transport http.RoundTripper
	// MaxRequests bounds the requests in flight at once (parts, HEADs and
	// retries each count), under an adaptive limit that halves on each
	// throttling answer (503 SlowDown, 429) and grows back on successes,
	// honouring Retry-After (see LimitStats); 0 means DefaultMaxRequests,
	// a negative value turns the limiter off.
	MaxRequests int
	// SkipBucketCheck skips the BucketExists request New makes to report a
	// missing bucket or wrong credentials early.
	SkipBucketCheck bool
}

// ParseLocation reads the backend part of an s3:// store URL into Options:
// the bucket and key prefix ("bucket/prefix", percent-escapes allowed in the
// prefix) and the parameters region, endpoint (a full URL; a bare host
// takes its scheme from the deprecated scheme parameter, default https),
// profile, addressing-style (auto|path|virtual), storage-class,
// multipart-chunk-size (alias buffer-size; bytes, 5 MiB..5 GiB),
// retry-attempts, stall-timeout (a duration such as 30s or 2m, or whole
// seconds; at most 24h) and max-requests (the most requests in flight under
// the adaptive limit, 1..4096, or 0 for no limiter; see Options.MaxRequests). Errors name the parameter (wrapping ErrBadParam)
// or part, never its value; credentials in the URL (s3://user:pw@bucket,
// endpoint=http://user:pw@host) are refused.
func ParseLocation(location string, params map[string]string) (cache.Location, error) {
	var o Options
	bad := func(name, format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrBadParam, name, fmt.Sprintf(format, args...))
	}
	for name, v := range params {
		switch name {
		case "region":
			if v == "" {
				return nil, bad(name, "empty region")
			}
			o.Region = v
		case "profile":
			o.Profile = v
		case "endpoint", "scheme":
			// handled below
		case "addressing-style":
			switch v {
			case "auto", "path", "virtual":
				o.AddressingStyle = v
			default:
				return nil, bad(name, "not auto, path or virtual")
			}
		case "storage-class":
			o.StorageClass = v
		case "multipart-chunk-size", "buffer-size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < MinPartSize || n > MaxPartSize {
				return nil, bad(name, "not a byte count from %d (5 MiB) to %d (5 GiB)", MinPartSize, int64(MaxPartSize))
			}
			o.PartSize = n
		case "retry-attempts":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100 {
				return nil, bad(name, "not a count from 1 to 100")
			}
			o.Retries = n
		case "max-requests":
			n, err := parseMaxRequests(v)
			if err != nil {
				return nil, err
			}
			o.MaxRequests = n
		case "stall-timeout":
			d, err := cache.ParseTimeout(v)
			if err != nil {
				return nil, bad(name, "%v", err)
			}
			o.StallTimeout = d
		default:
			return nil, bad(name, "unknown parameter")
		}
	}
	if ep, ok := params["endpoint"]; ok {
		if ep == "" {
			return nil, bad("endpoint", "empty endpoint")
		}
		if !strings.Contains(ep, "://") {
			scheme := params["scheme"]
			if scheme == "" {
				scheme = "https"
			}
			ep = scheme + "://" + ep
		} else if _, ok := params["scheme"]; ok {
			return nil, bad("scheme", "deprecated; give the scheme in endpoint (e.g. endpoint=http://host:9000)")
		}
		if _, _, err := parseEndpoint(ep); err != nil {
			return nil, err
		}
		o.Endpoint = ep
	} else if _, ok := params["scheme"]; ok {
		return nil, bad("scheme", "only meaningful with a bare endpoint host")
	}
	bucket, prefix, _ := strings.Cut(location, "/")
	if strings.Contains(bucket, "@") {
		return nil, errors.New("s3: credentials in the store URL are not supported (use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)")
	}
	if err := validateBucket(bucket); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	p, err := url.PathUnescape(prefix)
	if err != nil {
		return nil, errors.New("s3: prefix: bad percent-escape")
	}
	if p = strings.Trim(p, "/"); p != "" {
		if err := cache.ValidateKey(p); err != nil {
			return nil, fmt.Errorf("s3: prefix: %w", err)
		}
	}
	o.Bucket, o.Prefix = bucket, p
	return o, nil
}

// parseEndpoint checks an endpoint URL (scheme://host[:port], scheme http
// or https, no credentials) and returns its host and whether it uses TLS.
// Errors never repeat the endpoint: it might hold credentials.
func parseEndpoint(endpoint string) (host string, secure bool, err error) {
	bad := func(what string) error { return fmt.Errorf("%w \"endpoint\": %s", ErrBadParam, what) }
	ep, err := url.Parse(endpoint)
	if err != nil {
		return "", false, bad("not a URL")
	}
	if ep.User != nil {
		return "", false, bad("credentials in the endpoint URL are not supported (use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)")
	}
	switch ep.Scheme {
	case "http":
	case "https":
		secure = true
	default:
		return "", false, bad("scheme must be http or https")
	}
	if ep.Host == "" || (ep.Path != "" && ep.Path != "/") || ep.RawQuery != "" || ep.Fragment != "" {
		return "", false, bad("want scheme://host[:port] only")
	}
	return ep.Host, secure, nil
}

// validateBucket checks an S3 bucket name loosely: 3 to 63 characters of
// letters, digits, '.', '-' and '_', starting and ending with a letter or
// digit (the strict AWS rules forbid upper case and '_', other S3 servers
// allow them).
func validateBucket(b string) error {
	if b == "" {
		return errors.New("missing bucket name (want s3://bucket)")
	}
	if len(b) < 3 || len(b) > 63 {
		return errors.New("bucket name must be 3 to 63 characters")
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !alnum(c) && c != '.' && c != '-' && c != '_' {
			return fmt.Errorf("bucket name: invalid character %q", c)
		}
	}
	if !alnum(b[0]) || !alnum(b[len(b)-1]) {
		return errors.New("bucket name must start and end with a letter or digit")
	}
	if strings.Contains(b, "..") {
		return errors.New("bucket name must not contain \"..\"")
	}
	return nil
}

// Open connects to the bucket: New(ctx, o). It makes Options the
// cache.Location of an s3:// store URL.
func (o Options) Open(ctx context.Context) (cache.Backend, error) { return New(ctx, o) }

// String renders the options a store URL can hold as an s3:// URL that
// ParseLocation reads back: bucket, prefix, and the parameters that are
// set, sorted by name.
func (o Options) String() string {
	s := "s3://" + o.Bucket
	if o.Prefix != "" {
		s += "/" + cache.EscapePath(o.Prefix)
	}
	var params []string
	add := func(k, v string) {
		if v != "" {
			params = append(params, k+"="+cache.EscapeParam(v))
		}
	}
	add("addressing-style", o.AddressingStyle)
	add("endpoint", o.Endpoint)
	if o.MaxRequests != 0 {
		add("max-requests", strconv.Itoa(max(o.MaxRequests, 0)))
	}
	if o.PartSize != 0 {
		add("multipart-chunk-size", strconv.FormatInt(o.PartSize, 10))
	}
	add("profile", o.Profile)
	add("region", o.Region)
	if o.Retries != 0 {
		add("retry-attempts", strconv.Itoa(o.Retries))
	}
	if o.StallTimeout != 0 {
		add("stall-timeout", o.StallTimeout.String())
	}
	add("storage-class", o.StorageClass)
	if len(params) > 0 {
		s += "?" + strings.Join(params, "&")
	}
	return s
}

// Backend stores objects in an S3 bucket under an optional key prefix.
type Backend struct {
	client   *minio.Client
	bucket   string
	prefix   string // "" or ending in "/"
	partSize int64
	threads  int
	storage  string
	endpoint string
	profile  string
	limiter  *limiter      // nil: no limit
	staleAge time.Duration // Options.StaleUploadAge
	partMD5  atomic.Bool   // the server refused a part's CRC32C header: use Content-MD5
	bufs     sync.Pool     // *[]byte: streamed parts' buffers (multipart.go)
}

var (
	_ cache.Backend = (*Backend)(nil)
	_ cache.Toucher = (*Backend)(nil)
	_ cache.Mover   = (*Backend)(nil)
)

// New connects to the bucket. Unless opts.SkipBucketCheck is set it checks
// that the bucket exists, so that a wrong bucket name, wrong credentials or
// an unreachable server are reported here, once and clearly, and then
// aborts the multipart uploads that writers killed mid-upload left
// (AbortStale with opts.StaleUploadAge), ignoring a failure to do so (such
// as credentials that may not list or abort uploads).
func New(ctx context.Context, opts Options) (*Backend, error) {
	if opts.Bucket == "" {
		return nil, errors.New("s3: no bucket given")
	}
	region := opts.Region
	if region == "" {
		region = DefaultRegion
	}
	host, secure := "s3.amazonaws.com", true
	if opts.Endpoint != "" {
		var err error
		if host, secure, err = parseEndpoint(opts.Endpoint); err != nil {
			return nil, err
		}
	}
	lookup := minio.BucketLookupAuto
	switch opts.AddressingStyle {
	case "", "auto":
	case "path":
		lookup = minio.BucketLookupPath
	case "virtual":
		lookup = minio.BucketLookupDNS
	default:
		return nil, fmt.Errorf("%w \"addressing-style\": not auto, path or virtual", ErrBadParam)
	}
	profile := opts.Profile
	if profile == "" {
		profile = os.Getenv("AWS_PROFILE")
	}
	if profile == "" {
		profile = DefaultProfile
	}
	creds := opts.Creds
	if creds == nil {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{Profile: profile},
			&credentials.IAM{},
		})
	}
	retries := opts.Retries
	if retries == 0 {
		retries = DefaultRetries
	}
	partSize := opts.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	if partSize < MinPartSize || partSize > MaxPartSize {
		return nil, fmt.Errorf("%w: part size %d outside %d..%d", ErrBadParam, partSize, MinPartSize, int64(MaxPartSize))
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = DefaultThreads
	}
	stall := opts.StallTimeout
	if stall == 0 {
		stall = DefaultStallTimeout
	}
	if stall < 0 {
		return nil, fmt.Errorf("%w \"stall-timeout\": negative %v", ErrBadParam, stall)
	}
	transport := opts.Transport
	if transport == nil {
		tr, err := minio.DefaultTransport(secure)
		if err != nil {
			return nil, fmt.Errorf("s3: %w", err)
		}
		tr.ResponseHeaderTimeout = 0 // the stall timeout bounds that wait
		transport = tr
	}
	lim := newLimiterFor(opts.MaxRequests)
	client, err := minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Region:       region,
		BucketLookup: lookup,
		MaxRetries:   retries,
		Transport:    lim.wrap(&stallTransport{next: transport, timeout: stall}),
	})
	if err != nil {
		return nil, fmt.Errorf("s3: endpoint %q: %w", host, err)
	}
	prefix := strings.Trim(opts.Prefix, "/")
	if prefix != "" {
		if err := cache.ValidateKey(prefix); err != nil {
			return nil, fmt.Errorf("s3: prefix: %w", err)
		}
		prefix += "/"
	}
	b := &Backend{
		client: client, bucket: opts.Bucket, prefix: prefix, partSize: partSize,
		threads: threads, storage: opts.StorageClass, endpoint: client.EndpointURL().String(), profile: profile,
		limiter:  lim,
		staleAge: opts.StaleUploadAge,
	}
	if !opts.SkipBucketCheck {
		ok, err := client.BucketExists(ctx, b.bucket)
		if err != nil {
			return nil, b.wrap("open bucket", "", err)
		}
		if !ok {
			// Some servers answer HEAD bucket with a bare 404 for unknown
			// credentials too; a listing request returns the real error code.
			lctx, cancel := context.WithCancel(ctx)
			oi, ok := <-client.ListObjects(lctx, b.bucket, minio.ListObjectsOptions{MaxKeys: 1})
			cancel()
			if ok && oi.Err != nil {
				err = b.wrap("open bucket", "", oi.Err)
			}
			if err != nil && !errors.Is(err, ErrBucketNotFound) {
				return nil, err
			}
			return nil, fmt.Errorf("s3: bucket %q at %s: %w", b.bucket, b.endpoint, ErrBucketNotFound)
		}
		age := opts.StaleUploadAge
		if age == 0 {
			age = DefaultStaleUploadAge
		}
		if age > 0 {
			_, _ = b.AbortStale(ctx, age)
		}
	}
	return b, nil
}

// Bucket returns the bucket name.
func (b *Backend) Bucket() string { return b.bucket }

// ObjectName returns the S3 object name of a cache key (the prefix plus key).
func (b *Backend) ObjectName(key string) string { return b.prefix + key }

// wrap turns a minio error into one that names the operation, bucket and
// key and wraps the matching sentinel.
func (b *Backend) wrap(op, key string, err error) error {
	where := fmt.Sprintf("s3: %s s3://%s/%s", op, b.bucket, b.prefix+key)
	if key == "" {
		where = fmt.Sprintf("s3: %s s3://%s", op, b.bucket)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", where, err)
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%s: %w", where, cache.ErrNotFound)
		case "NoSuchBucket":
			return fmt.Errorf("s3: %s: bucket %q at %s: %w", op, b.bucket, b.endpoint, ErrBucketNotFound)
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "Forbidden", "XAdminUserNotFound":
			return fmt.Errorf("%s: %w (%s: %s); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile %q in the shared credentials file, or the instance role",
				where, ErrAccessDenied, er.Code, er.Message, b.profile)
		}
		if er.StatusCode == http.StatusForbidden {
			return fmt.Errorf("%s: %w (%s)", where, ErrAccessDenied, er.Error())
		}
		return fmt.Errorf("%s: %s (HTTP %d): %w", where, er.Code, er.StatusCode, err)
	}
	var se *stallError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %s: %w", where, b.endpoint, se)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w: %s: %w", where, ErrUnreachable, b.endpoint, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// Stat returns the object's size and modification time.
func (b *Backend) Stat(ctx context.Context, key string) (cache.ObjectInfo, error) {
	if err := cache.ValidateKey(key); err != nil {
		return cache.ObjectInfo{}, fmt.Errorf("s3: %w", err)
	}
	oi, err := b.client.StatObject(ctx, b.bucket, b.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return cache.ObjectInfo{}, b.wrap("stat", key, err)
	}
	return cache.ObjectInfo{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Get opens the object for reading. The GET request is made before Get
// returns, so a missing object is reported here (wrapping cache.ErrNotFound).
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := cache.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	obj, err := b.client.GetObject(ctx, b.bucket, b.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, b.wrap("get", key, err)
	}
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, b.wrap("get", key, err)
	}
	return &object{obj: obj, b: b, key: key}, nil
}

type object struct {
	obj *minio.Object
	b   *Backend
	key string
}

func (o *object) Read(p []byte) (int, error) {
	n, err := o.obj.Read(p)
	if err != nil && err != io.EOF {
		err = o.b.wrap("get", o.key, err)
	}
	return n, err
}

func (o *object) Close() error { return o.obj.Close() }

// Put uploads exactly size bytes of r under key with the given Content-Type.
// Objects up to the part size go up in one PUT with Content-MD5 (from memory
// for a plain reader, so that the request can be retried). Larger ones (up
// to MaxObjectSize) go up as a multipart upload of uniform parts, each with
// its CRC32C checksum: in parallel (Threads parts at a time) when r is an
// io.ReaderAt, whose section [offset, offset+size) is read (offset is r's
// current position if it is also an io.Seeker, else 0); otherwise read in
// parts of at most 8 MiB into at most 3 buffers (24 MiB; fewer than Threads
// when it is smaller) that upload in parallel, or written into them by
// r's Produce when r is a cache.Producer (a NAR dumped during the upload;
// the upload is completed only when Produce returned nil). A multipart
// upload resumes the unfinished upload of the same key that a killed or
// failed Put left, sending only the parts the server lacks (see
// multipart.go). A reader with fewer or more than size bytes fails with
// cache.ErrSizeMismatch (and the upload it began is aborted): nothing is
// stored.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	if err := cache.ValidateKey(key); err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	if size < 0 {
		return fmt.Errorf("s3: put %q: negative size %d", key, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: put %q: %w", key, err)
	}
	partSize := b.partSizeFor(size)
	var sec *io.SectionReader
	if ra, ok := r.(io.ReaderAt); ok {
		var off int64
		if sk, ok := r.(io.Seeker); ok {
			o, err := sk.Seek(0, io.SeekCurrent)
			if err != nil {
				return fmt.Errorf("s3: put %q: %w", key, err)
			}
			off = o
		}
		if err := checkReaderAtSize(ra, off, size); err != nil {
			return fmt.Errorf("s3: put %q: %w", key, err)
		}
		sec = io.NewSectionReader(ra, off, size)
	}
	if size > partSize {
		if sec == nil {
			if _, ok := r.(cache.Producer); !ok {
				r = cache.ExactReader(r, size)
			}
			partSize = b.streamPartSizeFor(size)
		}
		return b.putMultipart(ctx, key, sec, r, size, partSize, contentType)
	}
	opts := minio.PutObjectOptions{
		ContentType:  contentType,
		StorageClass: b.storage,
		PartSize:     uint64(partSize), // one PUT: size <= partSize
		// Never aws-chunked: sign with UNSIGNED-PAYLOAD so the bytes on the
		// wire (and on disk at the server) are exactly the object.
		DisableContentSha256: true,
		SendContentMd5:       true,
	}
	var body io.Reader = sec
	if sec == nil {
		// Buffer small objects: the PUT then carries Content-MD5 and can
		// be retried (a plain reader cannot be rewound).
		exact := cache.ExactReader(r, size)
		buf := make([]byte, size)
		// ExactReader reports a short reader as ErrSizeMismatch; a long
		// one fails the read after the last byte, which ReadFull does
		// not make, hence the one-byte read for the EOF.
		if _, err := io.ReadFull(exact, buf); err != nil {
			return fmt.Errorf("s3: put %q: %w", key, err)
		}
		if _, err := exact.Read(make([]byte, 1)); err != io.EOF {
			return fmt.Errorf("s3: put %q: %w", key, err)
		}
		body = bytes.NewReader(buf)
	}
	if _, err := b.client.PutObject(ctx, b.bucket, b.prefix+key, body, size, opts); err != nil {
		if ctx.Err() != nil {
			return b.wrap("put", key, fmt.Errorf("%w (%v)", ctx.Err(), err))
		}
		return b.wrap("put", key, err)
	}
	return nil
}

// checkStored checks that key exists with size bytes.
func (b *Backend) checkStored(ctx context.Context, key string, size int64) error {
	oi, err := b.client.StatObject(ctx, b.bucket, b.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return b.wrap("put (check after upload)", key, err)
	}
	if oi.Size != size {
		return fmt.Errorf("s3: put %q: %w: server stored %d bytes, sent %d", key, cache.ErrSizeMismatch, oi.Size, size)
	}
	return nil
}

// checkReaderAtSize checks that ra holds exactly size bytes from off: the
// last expected byte reads, the one after it does not.
func checkReaderAtSize(ra io.ReaderAt, off, size int64) error {
	var b [1]byte
	if size > 0 {
		if n, err := ra.ReadAt(b[:], off+size-1); n != 1 {
			if err == nil || err == io.EOF {
				return fmt.Errorf("%w: reader has fewer than %d bytes", cache.ErrSizeMismatch, size)
			}
			return err
		}
	}
	n, err := ra.ReadAt(b[:], off+size)
	if n > 0 {
		return fmt.Errorf("%w: reader has more than %d bytes", cache.ErrSizeMismatch, size)
	}
	if err != nil && err != io.EOF {
		return err
	}
	return nil
}

// Delete removes the object; a missing object is reported as
// cache.ErrNotFound (S3's DELETE itself succeeds on missing keys).
func (b *Backend) Delete(ctx context.Context, key string) error {
	if _, err := b.Stat(ctx, key); err != nil {
		return err
	}
	if err := b.client.RemoveObject(ctx, b.bucket, b.prefix+key, minio.RemoveObjectOptions{}); err != nil {
		return b.wrap("delete", key, err)
	}
	return nil
}

// Touch renews the object's LastModified with a server-side copy onto
// itself (same bytes, same Content-Type), as AWS S3 does for a copy in
// place; a missing object is cache.ErrNotFound, never created. A server
// that keeps the old LastModified (versitygw 1.8 does) makes Touch return
// an error wrapping cache.ErrTouchUnsupported.
func (b *Backend) Touch(ctx context.Context, key string) error {
	if err := cache.ValidateKey(key); err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	oi, err := b.client.StatObject(ctx, b.bucket, b.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return b.wrap("touch", key, err)
	}
	start := time.Now()
	dst := minio.CopyDestOptions{Bucket: b.bucket, Object: b.prefix + key, ReplaceMetadata: true, ContentType: oi.ContentType}
	src := minio.CopySrcOptions{Bucket: b.bucket, Object: b.prefix + key}
	if err := b.copyObject(ctx, dst, src, oi); err != nil {
		return b.wrap("touch", key, err)
	}
	after, err := b.client.StatObject(ctx, b.bucket, b.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return b.wrap("touch", key, err)
	}
	if !after.LastModified.After(oi.LastModified) && after.LastModified.Before(start.Add(-2*time.Second)) {
		return fmt.Errorf("s3: touch %q: %w", key, cache.ErrTouchUnsupported)
	}
	return nil
}

// copyObject copies src (described by oi) to dst on the server: one
// CopyObject up to maxCopySize, a multipart copy (UploadPartCopy, pinned to
// oi's ETag) beyond, since S3 copies at most 5 GiB in one request.
func (b *Backend) copyObject(ctx context.Context, dst minio.CopyDestOptions, src minio.CopySrcOptions, oi minio.ObjectInfo) error {
	if oi.Size > maxCopySize {
		src.MatchETag = oi.ETag
		_, err := b.client.ComposeObject(ctx, dst, src)
		return err
	}
	_, err := b.client.CopyObject(ctx, dst, src)
	return err
}

// maxCopySize is the largest object one CopyObject request copies (S3's
// limit); a variable so that tests can lower it.
var maxCopySize int64 = 5 << 30

// Move copies the object to to on the server, then deletes from.
func (b *Backend) Move(ctx context.Context, from, to string) error {
	if err := cache.ValidateKey(to); err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	oi, err := b.client.StatObject(ctx, b.bucket, b.prefix+from, minio.StatObjectOptions{})
	if err != nil {
		return b.wrap("move", from, err)
	}
	dst := minio.CopyDestOptions{Bucket: b.bucket, Object: b.prefix + to}
	src := minio.CopySrcOptions{Bucket: b.bucket, Object: b.prefix + from}
	if err := b.copyObject(ctx, dst, src, oi); err != nil {
		return b.wrap("move", from, err)
	}
	if err := b.client.RemoveObject(ctx, b.bucket, b.prefix+from, minio.RemoveObjectOptions{}); err != nil {
		return b.wrap("move", from, err)
	}
	return nil
}

// List calls fn for every object whose key starts with prefix.
func (b *Backend) List(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	return b.list(ctx, prefix, true, fn)
}

// AbortIncomplete aborts every unfinished multipart upload under the prefix
// (left behind when the server or the network failed mid-upload, so that
// the abort itself could not be sent) and returns how many it aborted. It
// also aborts the uploads of writers at work, which then fail: use
// AbortStale while others may be writing.
func (b *Backend) AbortIncomplete(ctx context.Context) (int, error) {
	return b.abortUploads(ctx, time.Now().Add(time.Hour))
}

// AbortStale aborts the unfinished multipart uploads under the prefix that
// began at least age ago (by the server's clock): a writer killed
// mid-upload leaves its upload, and its parts stay stored (and billed)
// until it is aborted. It returns how many it aborted.
func (b *Backend) AbortStale(ctx context.Context, age time.Duration) (int, error) {
	return b.abortUploads(ctx, time.Now().Add(-age))
}

// abortUploads aborts, by ID, the unfinished uploads under the prefix that
// began before cutoff.
func (b *Backend) abortUploads(ctx context.Context, cutoff time.Time) (int, error) {
	type upload struct{ key, id string }
	var stale []upload
	for u := range b.client.ListIncompleteUploads(ctx, b.bucket, b.prefix, true) {
		if u.Err != nil {
			return 0, b.wrap("list incomplete uploads", "", u.Err)
		}
		if u.Initiated.Before(cutoff) {
			stale = append(stale, upload{u.Key, u.UploadID})
		}
	}
	core := minio.Core{Client: b.client}
	n := 0
	for _, u := range stale {
		err := core.AbortMultipartUpload(ctx, b.bucket, u.key, u.id)
		if minio.ToErrorResponse(err).Code == "NoSuchUpload" {
			continue // finished or aborted meanwhile
		}
		if err != nil {
			return n, b.wrap("abort upload", strings.TrimPrefix(u.key, b.prefix), err)
		}
		n++
	}
	return n, nil
}
