package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/nixcache/nixcache/cache"
)

// MaxObjectSize is S3's largest object, 5 TiB: Put refuses larger sizes.
const MaxObjectSize = 5 << 40

// Multipart uploads (objects over the part size) are made here rather than
// by minio-go's PutObject, so that an upload interrupted by a killed process,
// a cancelled context or a lost network is resumed by the next Put of the
// same key instead of being sent again from the first byte:
//
//   - The parts are cut at fixed boundaries: partSizeFor depends only on the
//     object's size and the configured part size, so the Put after a
//     restart cuts the parts the killed one did.
//   - Put first looks for an unfinished upload of exactly that key (cache
//     keys of NARs are named by their content's hash, so it holds the same
//     bytes) begun less than half of StaleUploadAge ago, and lists its parts.
//     A stored part of the right size is kept when it is the local part:
//     its CRC32C checksum, when the server lists one (MinIO does), equals
//     the local part's, else its ETag equals the local part's MD5 (what S3
//     and every S3-compatible server return as the ETag of a part stored
//     without SSE-KMS/SSE-C). MD5 is computed only for those comparisons;
//     every other part is sent. Hashing a part costs far less than sending
//     it.
//   - A part is sent with its CRC32C checksum (x-amz-checksum-crc32c), so
//     that the server checks what it received (versitygw answers BadDigest,
//     MinIO XAmzContentChecksumMismatch on a mismatch). CRC32C costs a few
//     milliseconds per 100 MB where Content-MD5 cost about 2 s per GB of
//     CPU. A server that refuses the header gets Content-MD5 instead, for
//     that part and every later one of the Backend: Backblaze B2 answers
//     InvalidArgument "Unsupported header 'x-amz-checksum-crc32c'", and AWS
//     S3 InvalidRequest "Checksum Type mismatch occurred" for a part
//     checksum that CreateMultipartUpload did not announce. (Announcing it,
//     x-amz-checksum-algorithm, would make every part and the completion
//     carry it, and B2 refuses that header too.)
//   - CompleteMultipartUpload names every part with its ETag: the server
//     refuses the completion (InvalidPart) if a stored part is not the one
//     checked. When all part ETags are MD5s the completed object's ETag
//     must be MD5(part MD5s)-N, and the size is checked by a HEAD as before.
//   - Two Puts of the key that find no upload and begin one at the same
//     moment (a fleet of daemons) would each complete their own (the NAR
//     stored twice). After beginning one, a Put lists the key's uploads
//     again; when an older one exists (the oldest by initiation time, ties
//     broken by the smaller upload ID, so that every Put picks the same one)
//     it aborts its own and joins that one, sending only the parts it lacks.
//
// Several Puts of the same key may resume the same upload at once (a fleet
// of daemons pushing overlapping closures). They send the same bytes, so a
// part sent twice is the same part; the first to complete makes the object,
// and the others then find their upload gone (NoSuchUpload): such a Put
// succeeds when the object is stored with the expected size (another Put
// made it from the same bytes) and fails cleanly otherwise.
//
// A failed Put aborts its upload only when the data was at fault (the
// reader failed or held fewer or more bytes than announced) and the upload
// was its own: its parts cannot be trusted. On any other failure (the
// context cancelled, the network or the server failing after the retries)
// the upload and its parts are left on the server for the next Put of the
// key to resume, exactly like the upload of a killed process; AbortStale
// removes those that nobody resumes once they are StaleUploadAge old.

// partSizeFor returns the uniform part size for an object of size bytes:
// the configured size, grown to the next whole MiB when the object would
// need more than 10,000 parts (S3's limit; a 5 TiB object gets 525 MiB parts,
// 9,987 of them), never above MaxPartSize. It depends only on the object's
// size and the configured size, so that a resumed upload has the parts of
// the interrupted one.
func (b *Backend) partSizeFor(size int64) int64 { return partSize(size, b.partSize) }

func partSize(size, configured int64) int64 {
	ps := configured
	if size > ps*maxParts {
		ps = (size + maxParts - 1) / maxParts
		ps = (ps + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return min(ps, MaxPartSize)
}

// A plain reader (a NAR streamed while it is dumped) is read in order into
// part buffers, which are held until their parts are stored (a failed
// request is sent again from them). Its parts are at most streamPartSize
// (the configured part size when smaller; larger when a huge object needs
// it to fit 10,000 parts), and at most streamBuffers of them are held: one
// being read while two are sent, 24 MiB. Threads x PartSize (64 MiB by
// default, held by every streamed Put at once) bought no speed: the server,
// not the number of parts in flight, bounds an upload on loopback, and the
// dump reads a part in a fraction of the time it takes to send it.
const (
	streamPartSize = 8 << 20
	streamBuffers  = 3
)

// streamPartSizeFor returns the part size of a plain reader's multipart
// upload of size bytes. Like partSizeFor it depends only on the size and
// the configuration, so that a resumed streamed upload has the parts of
// the interrupted one.
func (b *Backend) streamPartSizeFor(size int64) int64 {
	return partSize(size, min(b.partSize, streamPartSize))
}

// buffers returns how many part buffers a plain reader's upload may hold:
// streamBuffers (at most Threads), as long as they fit in streamBuffers x
// streamPartSize; fewer (at least one) when the parts grew for a huge
// object, so that memory stays within 24 MiB or one part, whichever is
// larger.
func (b *Backend) buffers(partSize int64) int {
	return int(max(1, min(int64(b.threads), streamBuffers, streamBuffers*streamPartSize/partSize)))
}

// getBuffer returns a part buffer of n bytes, reused from an earlier
// streamed Put of the Backend when one is free (a daemon streams NAR after
// NAR); putBuffer gives it back.
func (b *Backend) getBuffer(n int64) []byte {
	if p, ok := b.bufs.Get().(*[]byte); ok && int64(cap(*p)) == n {
		return (*p)[:n]
	}
	return make([]byte, n)
}

func (b *Backend) putBuffer(buf []byte) { b.bufs.Put(&buf) }

// resumeAge is the age (since it began) up to which an unfinished upload is
// resumed: half of StaleUploadAge, so that a resumed upload has the other
// half to finish before AbortStale may remove it; no limit when stale
// uploads are never aborted.
func (b *Backend) resumeAge() time.Duration {
	switch {
	case b.staleAge < 0:
		return 0
	case b.staleAge == 0:
		return DefaultStaleUploadAge / 2
	}
	return b.staleAge / 2
}

// sourceError marks a failure of the reader being uploaded (not of the
// network or the server).
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// multipart is one multipart upload in progress.
type multipart struct {
	b        *Backend
	core     minio.Core
	key      string // cache key
	name     string // object name (prefix + key)
	size     int64
	partSize int64
	nparts   int
	opts     minio.PutObjectOptions

	id     string                   // upload ID
	ours   bool                     // begun by this Put, not resumed
	stored map[int]minio.ObjectPart // parts on the server when resumed

	mu    sync.Mutex
	etags []string // per part (index part-1): the ETag to complete with
	sent  int      // parts sent (the others were already stored)
}

// bounds returns the offset and length of part i (1-based).
func (m *multipart) bounds(i int) (int64, int64) {
	off := int64(i-1) * m.partSize
	return off, min(m.partSize, m.size-off)
}

// putMultipart uploads size bytes (more than partSize) as a multipart upload,
// resuming an unfinished upload of the key. sec is the body when the
// reader is an io.ReaderAt (its parts are read in parallel), else r is read
// in order, or written into the part buffers by its Produce when it is a
// cache.Producer. It checks the stored object's size after the completion.
func (b *Backend) putMultipart(ctx context.Context, key string, sec *io.SectionReader, r io.Reader, size, partSize int64, contentType string) error {
	if size > MaxObjectSize {
		return fmt.Errorf("s3: put %q: %d bytes is over S3's 5 TiB object size limit", key, size)
	}
	for attempt := 1; ; attempt++ {
		err := b.uploadParts(ctx, key, sec, r, size, partSize, contentType)
		if err == nil {
			// A multipart upload is only done when the object is there: a
			// CompleteMultipartUpload retried across a server restart can be
			// answered 200 although the object was never assembled (seen
			// with versitygw), and a narinfo must never point at a missing
			// NAR.
			err = b.waitStored(ctx, key, size)
			if err == nil {
				return nil
			}
			// Upload again only when the server says the object is missing
			// or short. Any other failure (the server restarting, say)
			// leaves the object's state unknown: report it, and the caller's
			// next attempt stats the key first instead of sending the whole
			// NAR again.
			gone := errors.Is(err, cache.ErrNotFound) || errors.Is(err, cache.ErrSizeMismatch)
			if attempt >= 2 || sec == nil || !gone {
				return err
			}
			continue
		}
		var se *sourceError
		if errors.As(err, &se) {
			return fmt.Errorf("s3: put %q: %w", key, se.err)
		}
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			return b.wrap("put", key, fmt.Errorf("%w (%v)", ctx.Err(), err))
		}
		return b.wrap("put", key, err)
	}
}

// waitStored checks that key is stored with size bytes after the server
// answered a CompleteMultipartUpload with success, waiting while it is not
// found yet: versitygw answers a Complete repeated while the first one is
// still assembling the object (a retry after the stall timeout) with
// success at once, and the object appears only when the first one is done
// (about a minute for 4 GiB on a loaded machine). The wait is bounded by
// 30 s plus one second per 16 MiB; an object still missing then is
// reported missing.
func (b *Backend) waitStored(ctx context.Context, key string, size int64) error {
	deadline := time.Now().Add(30*time.Second + time.Duration(size>>24)*time.Second)
	pause := 100 * time.Millisecond
	for {
		err := b.checkStored(ctx, key, size)
		if err == nil || !errors.Is(err, cache.ErrNotFound) || time.Now().Add(pause).After(deadline) {
			return err
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return err
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// uploadParts makes one multipart upload: finds or begins it, sends the
// parts the server lacks and completes it.
func (b *Backend) uploadParts(ctx context.Context, key string, sec *io.SectionReader, r io.Reader, size, partSize int64, contentType string) error {
	m := &multipart{
		b: b, core: minio.Core{Client: b.client}, key: key, name: b.prefix + key,
		size: size, partSize: partSize, nparts: int((size + partSize - 1) / partSize),
		opts: minio.PutObjectOptions{ContentType: contentType, StorageClass: b.storage},
	}
	m.etags = make([]string, m.nparts)
	if err := m.begin(ctx); err != nil {
		return err
	}
	var err error
	if sec != nil {
		err = m.sendAt(ctx, sec)
	} else {
		err = m.sendStream(ctx, r)
	}
	if err == nil {
		err = m.complete(ctx)
	}
	if err != nil {
		switch minio.ToErrorResponse(err).Code {
		case "NoSuchUpload", "InvalidPart":
			// Another Put of the key (which resumed this upload, or whose
			// upload this one resumed) completed it first, or aborted it.
			if m.storedByOther(ctx) {
				// A part this Put sent after the completion may have
				// revived the upload (versitygw does): remove it.
				m.b.abortUpload(ctx, m.name, m.id)
				return nil
			}
		}
		m.fail(ctx, err)
	}
	return err
}

// storedByOther reports whether the object is stored with the size (and,
// when both are comparable, the ETag) this upload would have given it: it
// was made from the same bytes by another Put that resumed the same upload.
func (m *multipart) storedByOther(ctx context.Context) bool {
	oi, err := m.core.StatObject(ctx, m.b.bucket, m.name, minio.StatObjectOptions{})
	if err != nil || oi.Size != m.size {
		return false
	}
	got := strings.Trim(oi.ETag, `"`)
	if want, ok := m.wholeETag(); ok && strings.HasSuffix(got, want[32:]) && !strings.EqualFold(got, want) {
		return false
	}
	return true
}

// wholeETag returns the ETag S3 gives the completed object, when every
// part's ETag is an MD5 (the server's MD5 of the part it checked): the MD5
// of the parts' MD5s, a dash and the number of parts.
func (m *multipart) wholeETag() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := md5.New()
	for _, etag := range m.etags {
		sum, ok := etagMD5(etag)
		if !ok {
			return "", false
		}
		h.Write(sum[:])
	}
	return hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(m.nparts), true
}

// begin finds the unfinished upload of the key to resume, or begins one;
// then, when another Put began one at the same moment, joins the oldest.
func (m *multipart) begin(ctx context.Context) error {
	if id, parts := m.find(ctx); id != "" {
		m.id, m.stored = id, parts
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	id, err := m.core.NewMultipartUpload(ctx, m.b.bucket, m.name, m.opts)
	if err != nil {
		return err
	}
	m.id, m.ours = id, true
	m.joinOldest(ctx)
	return nil
}

// joinOldest lists the key's uploads again after this Put began its own:
// when an older one exists (another Put began it at the same moment, and
// found none either), it aborts its own (no part of it was sent) and joins
// the oldest, which every such Put picks alike, so that one upload of the
// key completes instead of one per Put. A failed listing leaves it on its
// own upload.
func (m *multipart) joinOldest(ctx context.Context) {
	cands, err := m.uploads(ctx)
	if err != nil || len(cands) == 0 {
		return
	}
	oldest := slices.MinFunc(cands, func(a, b minio.ObjectMultipartInfo) int {
		if c := a.Initiated.Compare(b.Initiated); c != 0 {
			return c
		}
		return strings.Compare(a.UploadID, b.UploadID)
	})
	if oldest.UploadID == m.id || !slices.ContainsFunc(cands, func(u minio.ObjectMultipartInfo) bool { return u.UploadID == m.id }) {
		// Ours is the oldest; or the listing does not show ours yet, and
		// then it cannot be trusted to show the others.
		return
	}
	parts, err := m.listParts(ctx, oldest.UploadID)
	if err != nil {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = m.core.AbortMultipartUpload(actx, m.b.bucket, m.name, m.id)
	m.id, m.ours, m.stored = oldest.UploadID, false, parts
}

// uploads lists the unfinished uploads of exactly the key begun within
// resumeAge.
func (m *multipart) uploads(ctx context.Context) ([]minio.ObjectMultipartInfo, error) {
	var cands []minio.ObjectMultipartInfo
	age := m.b.resumeAge()
	keyMarker, idMarker := "", ""
	for {
		res, err := m.core.ListMultipartUploads(ctx, m.b.bucket, m.name, keyMarker, idMarker, "", 1000)
		if err != nil {
			return nil, err
		}
		for _, u := range res.Uploads {
			if u.Key == m.name && (age == 0 || time.Since(u.Initiated) < age) {
				cands = append(cands, u)
			}
		}
		if !res.IsTruncated || res.NextKeyMarker > m.name || (res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker) {
			return cands, nil
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

// find returns the unfinished upload of exactly the key, begun within
// resumeAge, with the most bytes stored in parts of the right size, and
// its parts. A server that cannot list uploads (or credentials that may
// not) gives none: the upload starts afresh.
func (m *multipart) find(ctx context.Context) (string, map[int]minio.ObjectPart) {
	cands, err := m.uploads(ctx)
	if err != nil {
		return "", nil
	}
	// Newest first; a few at most (more are leftovers for AbortStale).
	slices.SortFunc(cands, func(a, b minio.ObjectMultipartInfo) int { return b.Initiated.Compare(a.Initiated) })
	var (
		best      string
		bestParts map[int]minio.ObjectPart
		bestBytes int64 = -1
	)
	for _, u := range cands[:min(len(cands), 4)] {
		parts, err := m.listParts(ctx, u.UploadID)
		if err != nil {
			continue
		}
		var n int64
		for i, p := range parts {
			if i >= 1 && i <= m.nparts {
				if _, l := m.bounds(i); p.Size == l {
					n += l
				}
			}
		}
		if n > bestBytes {
			best, bestParts, bestBytes = u.UploadID, parts, n
		}
	}
	return best, bestParts
}

// listParts returns the parts the server holds for upload id, by number.
func (m *multipart) listParts(ctx context.Context, id string) (map[int]minio.ObjectPart, error) {
	parts := make(map[int]minio.ObjectPart)
	marker := 0
	for {
		res, err := m.core.ListObjectParts(ctx, m.b.bucket, m.name, id, marker, 1000)
		if err != nil {
			return nil, err
		}
		for _, p := range res.ObjectParts {
			parts[p.PartNumber] = p
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			return parts, nil
		}
		marker = res.NextPartNumberMarker
	}
}

// etagMD5 returns the MD5 an ETag states, if it is one (32 hex digits,
// quotes allowed).
func etagMD5(etag string) ([16]byte, bool) {
	var sum [16]byte
	s := strings.Trim(etag, `"`)
	if len(s) != 32 {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(s)); err != nil {
		return sum, false
	}
	return sum, true
}

// castagnoli is the CRC32C table (hardware-accelerated on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// hashPart returns the CRC32C (or, with md5, the MD5) of body, read from
// its start, and seeks it back to its start.
func hashPart(body io.ReadSeeker, useMD5 bool) ([]byte, error) {
	var h hash.Hash = crc32.New(castagnoli)
	if useMD5 {
		h = md5.New()
	}
	if _, err := io.Copy(h, body); err != nil {
		return nil, err
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// part sends part i, whose bytes body (seekable, for retries) holds, unless
// the server already holds it. crc is body's CRC32C when the caller has it
// (nil: computed here). A failure to read body is a sourceError.
func (m *multipart) part(ctx context.Context, i int, body io.ReadSeeker, crc []byte) error {
	_, n := m.bounds(i)
	if p, ok := m.stored[i]; ok && p.Size == n {
		same, err := storedIs(p, body, crc)
		if err != nil {
			return &sourceError{fmt.Errorf("read part %d: %w", i, err)}
		}
		if same {
			m.done(i, p.ETag, false)
			return nil
		}
	}
	for {
		useMD5 := m.b.partMD5.Load()
		sum := crc
		if useMD5 || sum == nil {
			var err error
			if sum, err = hashPart(body, useMD5); err != nil {
				return &sourceError{fmt.Errorf("read part %d: %w", i, err)}
			}
		}
		opts := minio.PutObjectPartOptions{DisableContentSha256: true}
		if useMD5 {
			opts.Md5Base64 = base64.StdEncoding.EncodeToString(sum)
		} else {
			opts.CustomHeader = http.Header{"X-Amz-Checksum-Crc32c": {base64.StdEncoding.EncodeToString(sum)}}
		}
		p, err := m.core.PutObjectPart(ctx, m.b.bucket, m.name, m.id, i, body, n, opts)
		if err != nil {
			if !useMD5 && checksumRefused(err) {
				m.b.partMD5.Store(true)
				if _, err := body.Seek(0, io.SeekStart); err != nil {
					return &sourceError{err}
				}
				continue
			}
			return err
		}
		m.done(i, p.ETag, true)
		return nil
	}
}

// storedIs reports whether the stored part p holds the bytes of body: its
// CRC32C when the server lists one, else its ETag (the MD5 of the part on
// every S3 server for objects without SSE-KMS/SSE-C), is body's. crc is
// body's CRC32C when known (nil: computed here).
func storedIs(p minio.ObjectPart, body io.ReadSeeker, crc []byte) (bool, error) {
	if p.ChecksumCRC32C != "" {
		if crc != nil {
			return p.ChecksumCRC32C == base64.StdEncoding.EncodeToString(crc), nil
		}
		sum, err := hashPart(body, false)
		return err == nil && p.ChecksumCRC32C == base64.StdEncoding.EncodeToString(sum), err
	}
	want, ok := etagMD5(p.ETag)
	if !ok {
		return false, nil
	}
	sum, err := hashPart(body, true)
	return err == nil && bytes.Equal(sum, want[:]), err
}

// checksumRefused reports whether a part request failed because the server
// does not take S3's additional checksum headers (Backblaze B2: 400
// InvalidArgument "Unsupported header 'x-amz-checksum-crc32c' received for
// this API call"; AWS S3, for an upload created without one: 400
// InvalidRequest "Checksum Type mismatch occurred, expected checksum Type:
// null, actual checksum Type: crc32c"; other servers answer NotImplemented),
// rather than because the checksum did not match (BadDigest,
// XAmzContentChecksumMismatch).
func checksumRefused(err error) bool {
	er := minio.ToErrorResponse(err)
	switch er.Code {
	case "InvalidArgument", "InvalidRequest", "NotImplemented", "UnsupportedHeader":
		return strings.Contains(strings.ToLower(er.Message), "checksum")
	}
	return false
}

func (m *multipart) done(i int, etag string, sent bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.etags[i-1] = etag
	if sent {
		m.sent++
	}
}

// sendAt sends the parts of an io.ReaderAt body, Threads at a time: each
// worker checksums its part (reading it) and sends it if needed (reading it
// again; no buffer).
func (m *multipart) sendAt(ctx context.Context, sec *io.SectionReader) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(m.b.threads, m.nparts) {
		wg.Go(func() {
			for i := range work {
				if ctx.Err() != nil {
					continue
				}
				off, n := m.bounds(i)
				if err := m.part(ctx, i, io.NewSectionReader(sec, off, n), nil); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := 1; i <= m.nparts; i++ {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return context.Cause(ctx)
}

// sendStream sends the parts of a plain reader: its bytes go in order into
// at most buffers(partSize) part buffers (read into them, or written into
// them by the reader's Produce when it is a cache.Producer), each part's
// CRC32C is computed on the bytes as they arrive (still in the CPU's
// cache), and workers send each full part the server lacks. The reader
// must end exactly after size bytes.
func (m *multipart) sendStream(ctx context.Context, r io.Reader) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	nbuf := min(m.b.buffers(m.partSize), m.nparts)
	s := &streamer{m: m, ctx: ctx, nbuf: nbuf, free: make(chan []byte, nbuf), work: make(chan streamedPart), i: 1}
	var wg sync.WaitGroup
	for range nbuf {
		wg.Go(func() {
			for j := range s.work {
				if ctx.Err() == nil {
					if err := m.part(ctx, j.i, bytes.NewReader(j.buf), j.crc); err != nil {
						cancel(err)
					}
				}
				s.free <- j.buf[:cap(j.buf)]
			}
		})
	}
	var err error
	if p, ok := r.(cache.Producer); ok {
		err = p.Produce(s)
		if err == nil && s.n < m.size {
			err = fmt.Errorf("%w: reader has fewer than %d bytes", cache.ErrSizeMismatch, m.size)
		}
	} else {
		err = s.readFrom(r)
	}
	if err != nil && context.Cause(ctx) == nil {
		// The reader failed (not a part: that cancelled ctx first).
		cancel(&sourceError{err})
	}
	close(s.work)
	wg.Wait()
	if s.buf != nil {
		m.b.putBuffer(s.buf[:cap(s.buf)])
	}
	for len(s.free) > 0 {
		m.b.putBuffer(<-s.free)
	}
	return context.Cause(ctx)
}

// streamedPart is a full part of a streamed upload and its CRC32C.
type streamedPart struct {
	i   int
	buf []byte
	crc []byte
}

// streamer cuts a stream into the parts of a multipart upload: it fills
// one part buffer at a time (the bytes written to it, or read into it by
// readFrom), keeps the part's CRC32C as it goes, and hands each full part
// to the workers.
type streamer struct {
	m         *multipart
	ctx       context.Context
	nbuf      int
	allocated int
	free      chan []byte
	work      chan streamedPart
	i         int    // number of the part being filled
	buf       []byte // its buffer, holding the part's bytes so far
	crc       uint32
	n         int64 // bytes taken
}

// errExcess reports bytes beyond the object's size.
func (s *streamer) errExcess() error {
	return fmt.Errorf("%w: reader has more than %d bytes", cache.ErrSizeMismatch, s.m.size)
}

// take makes a buffer ready for part s.i: a new one while fewer than nbuf
// were made, else the first one a worker gives back.
func (s *streamer) take() error {
	if s.allocated < s.nbuf {
		s.buf, s.allocated = s.m.b.getBuffer(s.m.partSize)[:0], s.allocated+1
		return nil
	}
	select {
	case buf := <-s.free:
		s.buf = buf[:0]
		return nil
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
}

// room returns the free part of the buffer of part s.i, taking a buffer
// first when none is held.
func (s *streamer) room() ([]byte, error) {
	if s.i > s.m.nparts {
		return nil, s.errExcess()
	}
	if s.buf == nil {
		if err := s.take(); err != nil {
			return nil, err
		}
	}
	_, n := s.m.bounds(s.i)
	return s.buf[len(s.buf):n], nil
}

// filled accounts for n bytes put in the room, and hands the part over to
// the workers once it is full.
func (s *streamer) filled(n int) error {
	room := s.buf[len(s.buf) : len(s.buf)+n]
	s.crc = crc32.Update(s.crc, castagnoli, room)
	s.buf = s.buf[:len(s.buf)+n]
	s.n += int64(n)
	if _, size := s.m.bounds(s.i); int64(len(s.buf)) < size {
		return nil
	}
	p := streamedPart{i: s.i, buf: s.buf, crc: binary.BigEndian.AppendUint32(nil, s.crc)}
	s.i, s.buf, s.crc = s.i+1, nil, 0
	select {
	case s.work <- p:
		return nil
	case <-s.ctx.Done():
		s.m.b.putBuffer(p.buf[:cap(p.buf)])
		return context.Cause(s.ctx)
	}
}

// Write takes the next bytes of the object (Produce writes here).
func (s *streamer) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		room, err := s.room()
		if err != nil {
			return total - len(p), err
		}
		n := copy(room, p)
		p = p[n:]
		if err := s.filled(n); err != nil {
			return total - len(p), err
		}
	}
	return total, nil
}

// readFrom reads the object from r straight into the part buffers and
// checks that r ends after size bytes.
func (s *streamer) readFrom(r io.Reader) error {
	for s.i <= s.m.nparts {
		room, err := s.room()
		if err != nil {
			return err
		}
		n, err := r.Read(room)
		if n > 0 {
			if err := s.filled(n); err != nil {
				return err
			}
		}
		if err == io.EOF {
			if s.n == s.m.size {
				return nil // ended right after the last byte
			}
			return fmt.Errorf("%w: reader has fewer than %d bytes", cache.ErrSizeMismatch, s.m.size)
		}
		if err != nil {
			return err
		}
	}
	// The reader must end here (an ExactReader fails a read past size).
	if n, err := r.Read(make([]byte, 1)); n > 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = s.errExcess()
		}
		return err
	}
	return nil
}

// complete completes the upload with every part's ETag and checks the
// object's ETag when all parts' ETags are their MD5s.
func (m *multipart) complete(ctx context.Context) error {
	parts := make([]minio.CompletePart, m.nparts)
	for i, etag := range m.etags {
		parts[i] = minio.CompletePart{PartNumber: i + 1, ETag: etag}
	}
	info, err := m.core.CompleteMultipartUpload(ctx, m.b.bucket, m.name, m.id, parts, m.opts)
	if err != nil {
		return err
	}
	got := strings.Trim(info.ETag, `"`)
	if want, ok := m.wholeETag(); ok && strings.HasSuffix(got, want[32:]) && !strings.EqualFold(got, want) {
		return fmt.Errorf("completed object's ETag %s is not %s, the ETag of the parts sent: the server assembled other bytes", got, want)
	}
	return nil
}

// fail aborts the upload after err when it is this Put's own and the data
// was at fault; otherwise the upload stays for the next Put to resume.
func (m *multipart) fail(ctx context.Context, err error) {
	var se *sourceError
	if !m.ours || !errors.As(err, &se) {
		return
	}
	m.b.abortUpload(ctx, m.name, m.id)
}

// abortUpload aborts upload id of the object name. A part request
// cancelled in flight can reach the server after the abort and revive the
// upload (seen with versitygw), so it looks again, twice, a moment later.
func (b *Backend) abortUpload(ctx context.Context, name, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	core := minio.Core{Client: b.client}
	for round := range 3 {
		if round > 0 {
			time.Sleep(time.Duration(round) * 150 * time.Millisecond)
			if _, err := core.ListObjectParts(ctx, b.bucket, name, id, 0, 1); err != nil {
				return // gone (NoSuchUpload), or the server is unreachable
			}
		}
		_ = core.AbortMultipartUpload(ctx, b.bucket, name, id)
	}
}
