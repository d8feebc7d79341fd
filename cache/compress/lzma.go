package compress

import (
	"encoding/binary"
	"math/bits"
)

// An LZMA2 encoder for parallel xz: each block of a NAR is held whole in
// memory and becomes one xz stream, so the match finder indexes the block
// itself (no sliding window) and its tables are reused from block to block.
// Two parsers, as liblzma's: the "fast" one (lzma_encoder_optimum_fast.c:
// longest match with repeat-distance and lazy-match heuristics) and the
// "normal" one in lzmaopt.go (prices), over a match finder with 2-, 3- and
// 4-byte hashes as liblzma's HC4, except that the 4-byte hash keeps its last
// few positions in one row instead of a chain through the block: a search
// reads one row and then the candidates' bytes all at once, where a chain
// waits on one cache miss per step. ulikunitz/xz's encoder takes
// the longest match greedily and ignores repeat distances, which cost 39%
// more bytes than liblzma's preset 6 on the Go toolchain's NAR.

const (
	lzmaMinMatch = 2
	lzmaMaxMatch = 273
	lzmaStates   = 12
	lzmaPosBits  = 2 // pb: Nix's liblzma preset default
	lzmaLitCtx   = 3 // lc
	// lzmaProps is the LZMA2 properties byte: (pb*5+lp)*9+lc.
	lzmaProps = (lzmaPosBits*5+0)*9 + lzmaLitCtx

	probInit = 1 << 10 // half of 1<<11

	lzma2MaxUnpacked = 1 << 21 // uncompressed bytes per LZMA2 chunk
	lzma2MaxPacked   = 1 << 16 // compressed bytes per LZMA2 chunk

	hash2Bits = 10
	hash3Bits = 16
)

type prob uint16

// rangeEnc is LZMA's range encoder writing into out.
type rangeEnc struct {
	low       uint64
	rng       uint32
	cache     byte
	cacheSize int
	out       []byte
}

func (r *rangeEnc) reset(out []byte) {
	*r = rangeEnc{rng: 0xFFFFFFFF, cacheSize: 1, out: out}
}

func (r *rangeEnc) shiftLow() {
	if uint32(r.low) < 0xFF000000 || r.low>>32 != 0 {
		carry := byte(r.low >> 32)
		t := r.cache
		for {
			r.out = append(r.out, t+carry)
			t = 0xFF
			r.cacheSize--
			if r.cacheSize == 0 {
				break
			}
		}
		r.cache = byte(r.low >> 24)
	}
	r.cacheSize++
	r.low = (r.low & 0x00FFFFFF) << 8
}

func (r *rangeEnc) bit(p *prob, b uint32) {
	bound := (r.rng >> 11) * uint32(*p)
	if b == 0 {
		r.rng = bound
		*p += (2048 - *p) >> 5
	} else {
		r.low += uint64(bound)
		r.rng -= bound
		*p -= *p >> 5
	}
	for r.rng < 1<<24 {
		r.rng <<= 8
		r.shiftLow()
	}
}

func (r *rangeEnc) direct(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		r.rng >>= 1
		if (v>>uint(i))&1 != 0 {
			r.low += uint64(r.rng)
		}
		for r.rng < 1<<24 {
			r.rng <<= 8
			r.shiftLow()
		}
	}
}

func (r *rangeEnc) flush() {
	for range 5 {
		r.shiftLow()
	}
}

// size is what the output will be after flush.
func (r *rangeEnc) size() int { return len(r.out) + r.cacheSize + 4 }

func (r *rangeEnc) tree(p []prob, n int, v uint32) {
	m := uint32(1)
	for i := n - 1; i >= 0; i-- {
		b := (v >> uint(i)) & 1
		r.bit(&p[m], b)
		m = m<<1 | b
	}
}

func (r *rangeEnc) reverse(p []prob, n int, v uint32) {
	m := uint32(1)
	for range n {
		b := v & 1
		v >>= 1
		r.bit(&p[m], b)
		m = m<<1 | b
	}
}

type lenCoder struct {
	choice, choice2 prob
	low, mid        [1 << lzmaPosBits][8]prob
	high            [256]prob
}

func (l *lenCoder) init() {
	l.choice, l.choice2 = probInit, probInit
	for i := range l.low {
		for j := range l.low[i] {
			l.low[i][j], l.mid[i][j] = probInit, probInit
		}
	}
	for i := range l.high {
		l.high[i] = probInit
	}
}

func (l *lenCoder) encode(r *rangeEnc, n uint32, posState uint32) {
	switch {
	case n < 8:
		r.bit(&l.choice, 0)
		r.tree(l.low[posState][:], 3, n)
	case n < 16:
		r.bit(&l.choice, 1)
		r.bit(&l.choice2, 0)
		r.tree(l.mid[posState][:], 3, n-8)
	default:
		r.bit(&l.choice, 1)
		r.bit(&l.choice2, 1)
		r.tree(l.high[:], 8, n-16)
	}
}

// lzmaProbs is the adaptive model, reset with the state at every LZMA2
// state reset.
type lzmaProbs struct {
	isMatch    [lzmaStates][1 << lzmaPosBits]prob
	isRep      [lzmaStates]prob
	isRepG0    [lzmaStates]prob
	isRepG1    [lzmaStates]prob
	isRepG2    [lzmaStates]prob
	isRep0Long [lzmaStates][1 << lzmaPosBits]prob
	literal    [1 << lzmaLitCtx][0x300]prob
	posSlot    [4][64]prob
	posSpecial [1 + 114]prob
	align      [16]prob
	length     lenCoder
	repLength  lenCoder
}

func (p *lzmaProbs) init() {
	fill := func(s []prob) {
		for i := range s {
			s[i] = probInit
		}
	}
	for i := range lzmaStates {
		fill(p.isMatch[i][:])
		fill(p.isRep0Long[i][:])
	}
	fill(p.isRep[:])
	fill(p.isRepG0[:])
	fill(p.isRepG1[:])
	fill(p.isRepG2[:])
	for i := range p.literal {
		fill(p.literal[i][:])
	}
	for i := range p.posSlot {
		fill(p.posSlot[i][:])
	}
	fill(p.posSpecial[:])
	fill(p.align[:])
	p.length.init()
	p.repLength.init()
}

// match is a match candidate: len bytes at distance dist+1 (dist is
// liblzma's zero-based form, as the LZMA stream codes it).
type match struct{ len, dist uint32 }

// lzmaEncoder compresses one block at a time into LZMA2 chunks. Its tables
// are sized for the largest block seen and reused.
type lzmaEncoder struct {
	ways    int    // positions kept per 4-byte hash: the candidates of a search
	nice    uint32 // a match this long is taken without looking further
	hash4   uint   // bits of the 4-byte hash table
	head2   []int32
	head3   []int32
	rows    []int32 // per 4-byte hash, a ring of the last ways positions +1
	newest  []uint8 // per row, the index of its newest entry
	data    []byte
	next    int // positions inserted into the match finder so far
	matches []match

	opt *optimizer // the normal parser; nil for the fast one

	probs lzmaProbs
	state uint32
	reps  [4]uint32
	rc    rangeEnc
	chunk []byte
}

// newXZEncoder returns the parallel xz encoder for an xz preset (-1 or 0
// is the default, 6, as Options.Level says). Presets 1-3 use liblzma's
// fast parser (as liblzma does for them), the others the normal one over
// rows of 8 candidates (16 at presets 7-9), with a shorter nice length than
// liblzma's. On the Go toolchain's NAR (236 MB, 4 MiB blocks) liblzma's
// preset 6 writes 41.2 MiB; the default here 50.4 MiB (1.22x) for 0.63 of
// the CPU of this encoder's first version (hash chains of 4, nice length
// 48, 2 MiB blocks: 50.1 MiB); the normal parser with 12 candidates 49.8
// MiB for about 0.8; the fast parser with 32 candidates 51.4 MiB (1.25x)
// for 0.47.
func newXZEncoder(level int) *lzmaEncoder {
	switch {
	case level <= 0: // unset (as Options.Level documents)
		return newLZMAEncoderNormal(8, 16, 16)
	case level <= 1:
		return newLZMAEncoder(4, 32, 18)
	case level <= 3:
		return newLZMAEncoder(16, 128, 16)
	case level <= 6:
		return newLZMAEncoderNormal(8, 16, 16)
	default:
		return newLZMAEncoderNormal(16, 64, 16)
	}
}

// newLZMAEncoder returns an encoder with the fast parser keeping ways
// (a power of two up to 32) positions per 4-byte hash, in 1<<hashBits
// rows.
func newLZMAEncoder(ways, nice int, hashBits uint) *lzmaEncoder {
	ways = min(1<<bits.Len(uint(max(ways, 1)-1)), 32)
	return &lzmaEncoder{
		ways: ways, nice: uint32(nice), hash4: hashBits,
		head2: make([]int32, 1<<hash2Bits), head3: make([]int32, 1<<hash3Bits),
		rows:    make([]int32, ways<<hashBits),
		newest:  make([]uint8, 1<<hashBits),
		matches: make([]match, 0, lzmaMaxMatch+2),
		chunk:   make([]byte, 0, lzma2MaxPacked+64),
	}
}

func (e *lzmaEncoder) hashes(p int) (h2, h3, h4 uint32) {
	v := binary.LittleEndian.Uint32(e.data[p:])
	h2 = (v & 0xFFFF) * 0x9E3779B1 >> (32 - hash2Bits)
	h3 = (v & 0xFFFFFF) * 0x9E3779B1 >> (32 - hash3Bits)
	h4 = v * 0x9E3779B1 >> (32 - e.hash4)
	return
}

// insert adds position e.next to the hash tables without searching.
func (e *lzmaEncoder) skip(to int) {
	for ; e.next < to; e.next++ {
		p := e.next
		if p+4 > len(e.data) {
			continue
		}
		h2, h3, h4 := e.hashes(p)
		e.head2[h2] = int32(p + 1)
		e.head3[h3] = int32(p + 1)
		e.insert(h4, p)
	}
}

// insert makes p the newest entry of row h4, over its oldest.
func (e *lzmaEncoder) insert(h4 uint32, p int) {
	i := (e.newest[h4] - 1) & uint8(e.ways-1)
	e.newest[h4] = i
	e.rows[int(h4)*e.ways+int(i)] = int32(p + 1)
}

// matchLen is the length of the common prefix of data[a:] and data[b:],
// from start, at most limit.
func matchLen(data []byte, a, b, start, limit int) int {
	n := start
	for n+8 <= limit {
		x := binary.LittleEndian.Uint64(data[a+n:]) ^ binary.LittleEndian.Uint64(data[b+n:])
		if x != 0 {
			return n + bits.TrailingZeros64(x)>>3
		}
		n += 8
	}
	for n < limit && data[a+n] == data[b+n] {
		n++
	}
	return n
}

// find inserts position p (== e.next) and returns its matches in order of
// increasing length (the longest last), as liblzma's hc4_find.
func (e *lzmaEncoder) find(p int) []match {
	e.next = p + 1
	ms := e.matches[:0]
	avail := len(e.data) - p
	if avail < 4 {
		return ms
	}
	limit := min(avail, lzmaMaxMatch)
	h2, h3, h4 := e.hashes(p)
	c2, c3 := int(e.head2[h2])-1, int(e.head3[h3])-1
	e.head2[h2] = int32(p + 1)
	e.head3[h3] = int32(p + 1)
	// The row's candidates are loaded at once (one cache line for up to 16
	// ways), so their bytes are fetched in parallel, unlike a hash chain's.
	ms = e.search(ms, p, c2, c3, limit, e.rows[int(h4)*e.ways:][:e.ways], int(e.newest[h4]))
	e.insert(h4, p)
	return ms
}

// search appends to ms the matches at p with the 2- and 3-byte hash
// candidates c2 and c3 (-1 for none) and the 4-byte hash row, whose newest
// entry is row[newest].
func (e *lzmaEncoder) search(ms []match, p, c2, c3, limit int, row []int32, newest int) []match {
	data := e.data
	best := 1
	bestPos := -1
	if c2 >= 0 && data[c2] == data[p] && data[c2+1] == data[p+1] {
		best = 2
		bestPos = c2
		ms = append(ms, match{2, uint32(p - c2 - 1)})
	}
	if c3 >= 0 && c3 != c2 && data[c3] == data[p] && data[c3+1] == data[p+1] && data[c3+2] == data[p+2] {
		best = 3
		bestPos = c3
		ms = append(ms, match{3, uint32(p - c3 - 1)})
	}
	if bestPos >= 0 {
		best = matchLen(data, p, bestPos, best, limit)
		ms[len(ms)-1].len = uint32(best)
		if best >= int(e.nice) || best == limit {
			return ms
		}
	}
	best = max(best, 3)
	for j := range row {
		cur := row[(newest+j)&(len(row)-1)]
		if cur == 0 {
			break
		}
		c := int(cur - 1)
		if data[c+best] != data[p+best] || data[c] != data[p] {
			continue
		}
		n := matchLen(data, p, c, 0, limit)
		if n > best {
			best = n
			ms = append(ms, match{uint32(n), uint32(p - c - 1)})
			if n >= int(e.nice) || n == limit {
				break
			}
		}
	}
	return ms
}

// changePair: a match whose distance is more than 128 times another's is
// worth one byte less (liblzma's heuristic).
func changePair(small, big uint32) bool { return big>>7 > small }

const lzmaLiteral = ^uint32(0)

// optimumFast chooses what to code at p, as liblzma's
// lzma_lzma_optimum_fast: it returns (back, len) with back lzmaLiteral for a
// literal, 0..3 for a repeat distance and 4+dist for a match.
func (e *lzmaEncoder) optimumFast(p int, ahead *[]match) (uint32, int) {
	var ms []match
	if e.next == p {
		ms = e.find(p)
	} else {
		ms = *ahead // found at p by the previous call's look-ahead
	}
	data := e.data
	avail := min(len(data)-p, lzmaMaxMatch)
	if avail < 2 {
		return lzmaLiteral, 1
	}
	nice := int(e.nice)
	repLen, repIndex := 0, 0
	for i, r := range e.reps {
		b := p - int(r) - 1
		if b < 0 || data[p] != data[b] || data[p+1] != data[b+1] {
			continue
		}
		n := matchLen(data, p, b, 2, avail)
		if n >= nice {
			return uint32(i), n
		}
		if n > repLen {
			repIndex, repLen = i, n
		}
	}
	lenMain, backMain := 0, uint32(0)
	if k := len(ms); k > 0 {
		lenMain = int(ms[k-1].len)
		if lenMain >= nice {
			return ms[k-1].dist + 4, lenMain
		}
		backMain = ms[k-1].dist
		for k > 1 && lenMain == int(ms[k-2].len)+1 {
			if !changePair(ms[k-2].dist, backMain) {
				break
			}
			k--
			lenMain, backMain = int(ms[k-1].len), ms[k-1].dist
		}
		if lenMain == 2 && backMain >= 0x80 {
			lenMain = 1
		}
	}
	if repLen >= 2 {
		if repLen+1 >= lenMain || (repLen+2 >= lenMain && backMain > 1<<9) || (repLen+3 >= lenMain && backMain > 1<<15) {
			return uint32(repIndex), repLen
		}
	}
	if lenMain < 2 || avail <= 2 {
		return lzmaLiteral, 1
	}
	// Look one byte ahead: a better match there makes this byte a literal.
	// Copy the matches out of e.matches, which the look-ahead reuses.
	next := e.find(p + 1)
	*ahead = append((*ahead)[:0], next...)
	if k := len(next); k > 0 {
		nl, nd := int(next[k-1].len), next[k-1].dist
		if (nl >= lenMain && nd < backMain) ||
			(nl == lenMain+1 && !changePair(backMain, nd)) ||
			nl > lenMain+1 ||
			(nl+1 >= lenMain && lenMain >= 3 && changePair(nd, backMain)) {
			return lzmaLiteral, 1
		}
	}
	limit := max(2, lenMain-1)
	for _, r := range e.reps {
		b := p + 1 - int(r) - 1
		if b >= 0 && p+1+limit <= len(data) && matchLen(data, p+1, b, 0, limit) == limit {
			return lzmaLiteral, 1
		}
	}
	return backMain + 4, lenMain
}

func (e *lzmaEncoder) resetState() {
	e.probs.init()
	e.state = 0
	e.reps = [4]uint32{}
}

func (e *lzmaEncoder) literal(p int) {
	r := &e.rc
	posState := uint32(p) & (1<<lzmaPosBits - 1)
	r.bit(&e.probs.isMatch[e.state][posState], 0)
	prev := byte(0)
	if p > 0 {
		prev = e.data[p-1]
	}
	probs := e.probs.literal[prev>>(8-lzmaLitCtx)][:]
	b := uint32(e.data[p])
	sym := uint32(1)
	if e.state < 7 {
		for i := 7; i >= 0; i-- {
			bit := (b >> uint(i)) & 1
			r.bit(&probs[sym], bit)
			sym = sym<<1 | bit
		}
	} else {
		mb := uint32(e.data[p-int(e.reps[0])-1])
		same := true
		for i := 7; i >= 0; i-- {
			bit := (b >> uint(i)) & 1
			if same {
				m := (mb >> uint(i)) & 1
				r.bit(&probs[(1+m)<<8+sym], bit)
				same = m == bit
			} else {
				r.bit(&probs[sym], bit)
			}
			sym = sym<<1 | bit
		}
	}
	switch {
	case e.state < 4:
		e.state = 0
	case e.state < 10:
		e.state -= 3
	default:
		e.state -= 6
	}
}

func posSlot(dist uint32) uint32 {
	if dist < 4 {
		return dist
	}
	n := uint32(bits.Len32(dist)) - 1
	return 2*n + (dist>>(n-1))&1
}

func (e *lzmaEncoder) match(p int, dist uint32, n int) {
	r := &e.rc
	posState := uint32(p) & (1<<lzmaPosBits - 1)
	r.bit(&e.probs.isMatch[e.state][posState], 1)
	r.bit(&e.probs.isRep[e.state], 0)
	l := uint32(n - lzmaMinMatch)
	e.probs.length.encode(r, l, posState)
	slot := posSlot(dist)
	r.tree(e.probs.posSlot[min(l, 3)][:], 6, slot)
	if slot >= 4 {
		footer := int(slot>>1) - 1
		base := (2 | slot&1) << uint(footer)
		reduced := dist - base
		if slot < 14 {
			r.reverse(e.probs.posSpecial[base-slot:], footer, reduced)
		} else {
			r.direct(reduced>>4, footer-4)
			r.reverse(e.probs.align[:], 4, reduced&15)
		}
	}
	e.reps = [4]uint32{dist, e.reps[0], e.reps[1], e.reps[2]}
	if e.state < 7 {
		e.state = 7
	} else {
		e.state = 10
	}
}

func (e *lzmaEncoder) rep(p int, i uint32, n int) {
	r := &e.rc
	posState := uint32(p) & (1<<lzmaPosBits - 1)
	r.bit(&e.probs.isMatch[e.state][posState], 1)
	r.bit(&e.probs.isRep[e.state], 1)
	if i == 0 {
		r.bit(&e.probs.isRepG0[e.state], 0)
		if n == 1 { // short rep: one byte at rep0
			r.bit(&e.probs.isRep0Long[e.state][posState], 0)
			if e.state < 7 {
				e.state = 9
			} else {
				e.state = 11
			}
			return
		}
		r.bit(&e.probs.isRep0Long[e.state][posState], 1)
	} else {
		r.bit(&e.probs.isRepG0[e.state], 1)
		if i == 1 {
			r.bit(&e.probs.isRepG1[e.state], 0)
		} else {
			r.bit(&e.probs.isRepG1[e.state], 1)
			r.bit(&e.probs.isRepG2[e.state], i-2)
		}
		d := e.reps[i]
		copy(e.reps[1:i+1], e.reps[:i])
		e.reps[0] = d
	}
	e.probs.repLength.encode(r, uint32(n-lzmaMinMatch), posState)
	if e.state < 7 {
		e.state = 8
	} else {
		e.state = 11
	}
}

// emit codes op at p: a match at one of the repeat distances as a repeat
// (the parse may have been planned before a state reset).
func (e *lzmaEncoder) emit(p int, op lzOp) {
	o := e.opt
	o.lenCount++
	if !op.lit {
		for i, r := range e.reps {
			if r == op.dist && (op.len > 1 || i == 0) && p-int(r)-1 >= 0 {
				e.rep(p, uint32(i), int(op.len))
				return
			}
		}
		if op.len > 1 {
			o.distCount++
			e.match(p, op.dist, int(op.len))
			return
		}
	}
	e.literal(p)
}

// encodeBlock appends src as LZMA2 chunks (ending with the end marker) to
// dst.
func (e *lzmaEncoder) encodeBlock(dst, src []byte) []byte {
	e.data = src
	e.next = 0
	clear(e.head2)
	clear(e.head3)
	clear(e.rows)
	clear(e.newest)
	var ahead []match
	if e.opt != nil {
		e.opt.ops, e.opt.next = e.opt.ops[:0], 0
	}
	needDict, needProps, needState := true, true, true
	for p := 0; p < len(src); {
		start := p
		reset := byte(0)
		switch {
		case needDict:
			reset = 3
		case needProps:
			reset = 2
		case needState:
			reset = 1
		}
		if reset > 0 {
			e.resetState()
			if e.opt != nil {
				e.opt.refresh(e, true)
			}
		}
		e.rc.reset(e.chunk[:0])
		for p < len(src) && p-start <= lzma2MaxUnpacked-lzmaMaxMatch && e.rc.size() <= lzma2MaxPacked-64 {
			if o := e.opt; o != nil {
				if o.next == len(o.ops) {
					e.optimumNormal(o, p)
				}
				op := o.ops[o.next]
				o.next++
				e.emit(p, op)
				p += int(op.len)
				continue
			}
			back, n := e.optimumFast(p, &ahead)
			switch {
			case back == lzmaLiteral:
				e.literal(p)
			case back < 4:
				e.rep(p, back, n)
			default:
				e.match(p, back-4, n)
			}
			p += n
			if e.next < p {
				e.skip(p)
			}
		}
		e.rc.flush()
		packed, unpacked := e.rc.out, p-start
		e.chunk = packed[:0]
		if len(packed) >= unpacked {
			// Stored: the encoder's state is reset for the next chunk.
			for q := start; q < p; {
				k := min(p-q, 1<<16)
				ctl := byte(2)
				if needDict {
					ctl = 1
				}
				needDict = false
				dst = append(dst, ctl, byte((k-1)>>8), byte(k-1))
				dst = append(dst, src[q:q+k]...)
				q += k
			}
			needState = true
			continue
		}
		u, c := unpacked-1, len(packed)-1
		dst = append(dst, 0x80|reset<<5|byte(u>>16), byte(u>>8), byte(u), byte(c>>8), byte(c))
		if reset >= 2 {
			dst = append(dst, lzmaProps)
		}
		dst = append(dst, packed...)
		needDict, needProps, needState = false, false, false
	}
	e.data = nil
	return append(dst, 0)
}
