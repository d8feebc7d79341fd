package compress_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/nixcache/nixcache/cache/compress"
	"github.com/nixcache/nixcache/internal/testenv"
)

// xzWithDict returns an xz stream of data whose block header asks for a
// dictionary of dictCode (the LZMA2 property byte: 39 is 3 GiB, 40 is 4 GiB),
// with the header's CRC32 fixed up, as an attacker would write it.
func xzWithDict(t testing.TB, data []byte, dictCode byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.WriterConfig{DictCap: 4096}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	hdr := b[12 : 12+(int(b[12])+1)*4]
	i := bytes.Index(hdr, []byte{0x21, 0x01})
	if i < 0 {
		t.Fatalf("no LZMA2 filter in block header % x", hdr)
	}
	hdr[i+2] = dictCode
	binary.LittleEndian.PutUint32(hdr[len(hdr)-4:], crc32.ChecksumIEEE(hdr[:len(hdr)-4]))
	return b
}

// TestXZDictionaryLimit: an .xz whose block header asks for a 3 GiB (or
// 4 GiB) dictionary is refused before the decoder allocates it, with an
// error naming the dictionary and the limit, also when the header comes in
// a later stream of a multi-stream file; dictionaries up to the limit (and
// xz -9's 64 MiB) decode.
func TestXZDictionaryLimit(t *testing.T) {
	data := bytes.Repeat([]byte("nix-archive-1 "), 1000)
	var good bytes.Buffer
	w, _ := compress.NewWriter(&good, compress.Options{Method: compress.XZ, Level: 0})
	w.Write(data)
	w.Close()
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"3 GiB", xzWithDict(t, data, 39)},
		{"4 GiB", xzWithDict(t, data, 40)},
		{"second stream", append(slicesClone(good.Bytes()), xzWithDict(t, data, 39)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := compress.NewReader(bytes.NewReader(tc.in), compress.XZ)
			if err == nil {
				_, err = io.Copy(io.Discard, r)
			}
			if !errors.Is(err, compress.ErrMemoryLimit) {
				t.Fatalf("err = %v, want ErrMemoryLimit", err)
			}
			if want := "limit 128 MiB"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
				t.Errorf("error %q does not say %q", err, want)
			}
		})
	}
	// At the limit: a 128 MiB dictionary (code 30) is accepted.
	r, err := compress.NewReaderLimit(bytes.NewReader(xzWithDict(t, data, 30)), compress.XZ, 128<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("128 MiB dictionary: %d bytes, %v", len(got), err)
	}
	// Over a lower limit: refused.
	if _, err := compress.NewReaderLimit(bytes.NewReader(xzWithDict(t, data, 30)), compress.XZ, 64<<20); !errors.Is(err, compress.ErrMemoryLimit) {
		t.Fatalf("128 MiB dictionary, 64 MiB limit: %v", err)
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

// TestXZLimitReadsRealXZ: following the container format must not refuse
// anything the real xz tool writes: every check type, multi-block files
// (xz -T2 with sizes in the block headers), uncompressed LZMA2 chunks, xz
// -9's 64 MiB dictionary, stream padding between concatenated streams.
func TestXZLimitReadsRealXZ(t *testing.T) {
	testenv.RequireTool(t, "xz")
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*7/3 ^ i>>9)
	}
	xzc := func(args ...string) []byte {
		cmd := exec.Command("xz", append([]string{"-c"}, args...)...)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("xz %v: %v", args, err)
		}
		return out
	}
	cases := map[string][]byte{
		"crc32":        xzc("-0", "--check=crc32"),
		"crc64":        xzc("-0", "--check=crc64"),
		"sha256":       xzc("-0", "--check=sha256"),
		"none":         xzc("-0", "--check=none"),
		"blocks":       xzc("-1", "-T2", "--block-size=500000"),
		"preset 9":     xzc("-9"),
		"small blocks": xzc("--lzma2=preset=0", "--block-size=100000"),
	}
	s1 := xzc("-0")
	cases["padded streams"] = append(append(slicesClone(s1), 0, 0, 0, 0), s1...)
	for name, in := range cases {
		want := data
		if name == "padded streams" {
			want = append(slicesClone(data), data...)
		}
		r, err := compress.NewReader(bytes.NewReader(in), compress.XZ)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
	}
}

// TestZstdWindowLimit: a zstd frame whose window is over the limit fails
// with ErrMemoryLimit; one within it decodes.
func TestZstdWindowLimit(t *testing.T) {
	data := bytes.Repeat([]byte("nix-archive-1 "), 100000)
	enc, _ := zstd.NewWriter(nil, zstd.WithWindowSize(8<<20))
	frame := enc.EncodeAll(data, nil)
	r, err := compress.NewReaderLimit(bytes.NewReader(frame), compress.Zstd, 1<<20)
	if err == nil {
		_, err = io.Copy(io.Discard, r)
	}
	if !errors.Is(err, compress.ErrMemoryLimit) {
		t.Errorf("8 MiB window, 1 MiB limit: %v", err)
	}
	r, err = compress.NewReader(bytes.NewReader(frame), compress.Zstd)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
		t.Errorf("8 MiB window: %d bytes, %v", len(got), err)
	}
}

// BenchmarkDecompressHugeXZDictionary decodes the hostile file of issue 8:
// an .xz whose header asks for a 3 GiB dictionary, with 64 MiB of zeros
// behind it. Before the limit the decoder allocated the dictionary and
// filled it with the output (1.7 GiB RSS for 1.7 GB of output); now it
// refuses at the header: see B/op.
func BenchmarkDecompressHugeXZDictionary(b *testing.B) {
	in := xzWithDict(b, make([]byte, 64<<20), 39)
	b.ReportAllocs()
	for b.Loop() {
		r, err := compress.NewReader(bytes.NewReader(in), compress.XZ)
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		if !errors.Is(err, compress.ErrMemoryLimit) {
			b.Fatal(err)
		}
	}
}

// TestXZErrorsPrefixedOnce: errors of the memory guard name the package
// once.
func TestXZErrorsPrefixedOnce(t *testing.T) {
	bad := xzWithDict(t, []byte("x"), 39)
	bad[12+1] ^= 0xff // block flags: the header's CRC32 no longer matches
	for _, in := range [][]byte{xzWithDict(t, []byte("x"), 39), bad} {
		_, err := compress.NewReader(bytes.NewReader(in), compress.XZ)
		if err == nil || strings.Count(err.Error(), "compress:") != 1 {
			t.Errorf("error %q: want exactly one \"compress:\"", err)
		}
	}
}
