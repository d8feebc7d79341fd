package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

// TestPartSize checks the part size at S3's limits: 10,000 parts at most,
// parts of 5 MiB to 5 GiB, and a 5 TiB object fitting.
func TestPartSize(t *testing.T) {
	const mib, gib, tib = 1 << 20, 1 << 30, 1 << 40
	for _, tc := range []struct {
		size, configured, want int64
	}{
		{0, DefaultPartSize, DefaultPartSize},
		{1, DefaultPartSize, DefaultPartSize},
		{DefaultPartSize + 1, DefaultPartSize, DefaultPartSize},
		{maxParts * DefaultPartSize, DefaultPartSize, DefaultPartSize},         // exactly 10,000 parts
		{maxParts*DefaultPartSize + 1, DefaultPartSize, DefaultPartSize + mib}, // one byte more: grows by a MiB
		{5 * tib, DefaultPartSize, 525 * mib},                                  // 9,987 parts
		{MaxObjectSize, MinPartSize, 525 * mib},
		{maxParts * MinPartSize, MinPartSize, MinPartSize},
		{maxParts*MinPartSize + 1, MinPartSize, MinPartSize + mib},
		{6 * mib, MinPartSize, MinPartSize},
		{5 * tib, MaxPartSize, MaxPartSize}, // 1,024 parts of 5 GiB
		{maxParts * 5 * gib, DefaultPartSize, MaxPartSize},
		{maxParts*5*gib + 1, DefaultPartSize, MaxPartSize}, // over 5 TiB: Put refuses it
	} {
		got := partSize(tc.size, tc.configured)
		if got != tc.want {
			t.Errorf("partSize(%d, %d) = %d, want %d", tc.size, tc.configured, got, tc.want)
		}
		if got < MinPartSize || got > MaxPartSize {
			t.Errorf("partSize(%d, %d) = %d, outside 5 MiB..5 GiB", tc.size, tc.configured, got)
		}
		if parts := (tc.size + got - 1) / got; tc.size <= MaxObjectSize && parts > maxParts {
			t.Errorf("partSize(%d, %d) = %d: %d parts, over 10,000", tc.size, tc.configured, got, parts)
		}
	}
	// Every size up to 5 TiB fits in 10,000 parts, with parts in whole MiB
	// once grown and never below the configured size.
	for _, configured := range []int64{MinPartSize, DefaultPartSize, 100 * mib, MaxPartSize} {
		for size := int64(1); size <= MaxObjectSize; size = size*3/2 + 7 {
			for _, s := range []int64{size - 1, size, size + 1, min(size*maxParts, MaxObjectSize)} {
				ps := partSize(s, configured)
				if (s+ps-1)/ps > maxParts || ps < configured || ps > MaxPartSize || (ps != configured && ps%mib != 0) {
					t.Fatalf("partSize(%d, %d) = %d (%d parts)", s, configured, ps, (s+ps-1)/ps)
				}
			}
		}
	}
}

// TestBuffers checks the memory bound of a plain reader's upload: parts of
// at most 8 MiB (unless an object needs larger ones to fit 10,000 parts), at
// most 3 of them and at most Threads, within 24 MiB unless one part is
// larger. Before, a streamed Put held Threads x PartSize (64 MiB).
func TestBuffers(t *testing.T) {
	const mib = 1 << 20
	for _, threads := range []int{1, 2, 4, 16} {
		for _, configured := range []int64{MinPartSize, DefaultPartSize, MaxPartSize} {
			b := &Backend{threads: threads, partSize: configured}
			for _, size := range []int64{configured + 1, maxParts * configured, maxParts*configured + 1, 1 << 40, MaxObjectSize} {
				ps := b.streamPartSizeFor(size)
				n := b.buffers(ps)
				if n < 1 || n > min(threads, 3) {
					t.Fatalf("threads %d, part size %d: %d buffers", threads, ps, n)
				}
				if ps != partSize(size, min(configured, 8*mib)) || (size+ps-1)/ps > maxParts && size <= MaxObjectSize {
					t.Errorf("configured %d, size %d: streamed part size %d", configured, size, ps)
				}
				if mem := int64(n) * ps; mem > max(24*mib, ps) {
					t.Errorf("threads %d, configured %d, size %d: %d buffers of %d bytes = %d, over the bound %d",
						threads, configured, size, n, ps, mem, max(24*mib, ps))
				}
			}
		}
	}
	b := &Backend{threads: DefaultThreads, partSize: DefaultPartSize}
	if ps, n := b.streamPartSizeFor(1<<30), b.buffers(b.streamPartSizeFor(1<<30)); ps != 8*mib || n != 3 {
		t.Errorf("default, 1 GiB: %d buffers of %d bytes, want 3 of 8 MiB", n, ps)
	}
	if n := b.buffers(b.streamPartSizeFor(MaxObjectSize)); n != 1 {
		t.Errorf("5 TiB: %d buffers of 525 MiB, want 1", n)
	}
}

// TestPutOverMaxObjectSize: an object over 5 TiB is refused before any
// request (the backend's endpoint does not exist).
func TestPutOverMaxObjectSize(t *testing.T) {
	b, err := New(context.Background(), Options{Bucket: "bucket", Endpoint: "http://127.0.0.1:1", SkipBucketCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Put(context.Background(), "nar/huge.nar", struct{ io.Reader }{strings.NewReader("")}, MaxObjectSize+1, "application/x-nix-nar")
	if err == nil || !strings.Contains(err.Error(), "5 TiB") {
		t.Fatalf("Put of 5 TiB + 1 byte: %v, want the 5 TiB limit", err)
	}
}

// FuzzETagMD5: an ETag is read as an MD5 exactly when it is 32 hex digits,
// quoted or not, and the digest read is those digits.
func FuzzETagMD5(f *testing.F) {
	for _, s := range []string{`"9e107d9d372bb6826bd81d3542a419d6"`, "9E107D9D372BB6826BD81D3542A419D6",
		`"8ea800b13f838c3f5a5d4ea8843ad7cf-257"`, `""`, "", `"zz107d9d372bb6826bd81d3542a419d6"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, etag string) {
		sum, ok := etagMD5(etag)
		s := strings.Trim(etag, `"`)
		_, err := hex.DecodeString(s)
		if want := len(s) == 32 && err == nil; ok != want {
			t.Fatalf("etagMD5(%q) ok = %v, want %v", etag, ok, want)
		}
		if ok && hex.EncodeToString(sum[:]) != strings.ToLower(s) {
			t.Fatalf("etagMD5(%q) = %x", etag, sum)
		}
	})
}

// TestStoredIs: a stored part is compared by its CRC32C when the server
// lists one (MinIO), by its ETag as an MD5 otherwise (versitygw), and never
// taken for the local part when neither matches; alike whether the local
// part's CRC32C is computed there or known already.
func TestStoredIs(t *testing.T) {
	data := []byte("the bytes of one part")
	crc := crc32.Checksum(data, castagnoli)
	crcB64 := base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc))
	otherB64 := base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc+1))
	sum := md5.Sum(data)
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	for _, tc := range []struct {
		name string
		part minio.ObjectPart
		want bool
	}{
		{"crc", minio.ObjectPart{ChecksumCRC32C: crcB64, ETag: `"00000000000000000000000000000000"`}, true},
		{"other crc, same etag", minio.ObjectPart{ChecksumCRC32C: otherB64, ETag: etag}, false},
		{"etag", minio.ObjectPart{ETag: etag}, true},
		{"other etag", minio.ObjectPart{ETag: `"00000000000000000000000000000000"`}, false},
		{"etag not an md5", minio.ObjectPart{ETag: `"abc-2"`}, false},
	} {
		// The part's CRC32C computed here, or known already (a streamed
		// part's, computed as its bytes came).
		for _, known := range [][]byte{nil, binary.BigEndian.AppendUint32(nil, crc)} {
			body := bytes.NewReader(data)
			got, err := storedIs(tc.part, body, known)
			if err != nil || got != tc.want {
				t.Errorf("%s (crc known %v): storedIs = %v, %v; want %v", tc.name, known != nil, got, err, tc.want)
			}
			if pos, _ := body.Seek(0, io.SeekCurrent); pos != 0 {
				t.Errorf("%s: body left at %d, want 0 (it is sent next)", tc.name, pos)
			}
		}
	}
}
