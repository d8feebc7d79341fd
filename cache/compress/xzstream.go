package compress

import (
	"encoding/binary"
	"hash/crc32"
	"hash/crc64"
)

var crc64Table = crc64.MakeTable(crc64.ECMA)

// xzDictByte is the LZMA2 dictionary size property for at least n bytes:
// sizes are 2^k or 3*2^(k-1), from 4 KiB.
func xzDictByte(n int) byte {
	for b := byte(0); b < 40; b++ {
		if (2|int64(b&1))<<(b/2+11) >= int64(n) {
			return b
		}
	}
	return 40 // 4 GiB - 1
}

func appendVLI(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendXZStream appends src as one complete .xz stream (stream header, one
// block of LZMA2 with a CRC64 check, index, footer) to dst, as xz(1) writes
// it; an empty src gives a stream with no block. Concatenated streams are
// one file to xz and to Nix.
func appendXZStream(dst, src []byte, e *lzmaEncoder) []byte {
	// Stream header: magic, flags (check CRC64 = 0x04), CRC32 of the flags.
	flags := []byte{0, 0x04}
	dst = append(dst, xzMagic...)
	dst = append(dst, flags...)
	dst = binary.LittleEndian.AppendUint32(dst, crc32.ChecksumIEEE(flags))

	var index []byte
	index = append(index, 0) // index indicator
	if len(src) == 0 {
		index = appendVLI(index, 0)
	} else {
		// Block header: size/4-1, flags (one filter, no sizes), LZMA2
		// filter (0x21) with one property byte, padding, CRC32.
		hdr := []byte{0, 0, 0x21, 1, xzDictByte(len(src)), 0, 0, 0}
		hdr[0] = byte((len(hdr)+4)/4 - 1)
		dst = append(dst, hdr...)
		dst = binary.LittleEndian.AppendUint32(dst, crc32.ChecksumIEEE(hdr))
		start := len(dst)
		dst = e.encodeBlock(dst, src)
		packed := len(dst) - start
		for len(dst)%4 != 0 {
			dst = append(dst, 0)
		}
		dst = binary.LittleEndian.AppendUint64(dst, crc64.Checksum(src, crc64Table))
		index = appendVLI(index, 1)
		index = appendVLI(index, uint64(len(hdr)+4+packed+8)) // unpadded size
		index = appendVLI(index, uint64(len(src)))
	}
	for len(index)%4 != 0 {
		index = append(index, 0)
	}
	index = binary.LittleEndian.AppendUint32(index, crc32.ChecksumIEEE(index))
	dst = append(dst, index...)

	// Footer: CRC32 of (backward size, flags), backward size, flags, "YZ".
	var foot [6]byte
	binary.LittleEndian.PutUint32(foot[:], uint32(len(index)/4-1))
	copy(foot[4:], flags)
	dst = binary.LittleEndian.AppendUint32(dst, crc32.ChecksumIEEE(foot[:]))
	dst = append(dst, foot[:]...)
	return append(dst, 'Y', 'Z')
}
