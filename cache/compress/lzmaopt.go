package compress

import "math"

// The "normal" parser: liblzma's lzma_encoder_optimum_normal.c in outline.
// From a position it looks ahead through the matches found at each
// following position and picks, by dynamic programming over estimated
// prices (bits, from the encoder's current probabilities), the cheapest
// sequence of literals, matches and repeat matches to the end of the
// longest match seen; a match of nice bytes or more ends the look-ahead.

const (
	priceShift = 4 // prices are in 1/16 bits
	optMax     = 1 << 11
	infPrice   = math.MaxUint32 / 2
)

// probPrices[p>>4] is the price of coding a 0 with probability p.
var probPrices = func() (t [2048 >> 4]uint32) {
	for i := range t {
		p := float64(i<<4+8) / 2048
		t[i] = uint32(math.Round(-math.Log2(p) * (1 << priceShift)))
	}
	return t
}()

func price0(p prob) uint32 { return probPrices[p>>4] }
func price1(p prob) uint32 { return probPrices[(2048-p)>>4] }
func priceBit(p prob, b uint32) uint32 {
	if b == 0 {
		return price0(p)
	}
	return price1(p)
}

func reversePrice(p []prob, n int, v uint32) uint32 {
	var s uint32
	m := uint32(1)
	for range n {
		b := v & 1
		v >>= 1
		s += priceBit(p[m], b)
		m = m<<1 | b
	}
	return s
}

func (l *lenCoder) prices(posState uint32, dst []uint32) {
	a0, a1 := price0(l.choice), price1(l.choice)
	b0, b1 := a1+price0(l.choice2), a1+price1(l.choice2)
	treePrices(l.low[posState][:], 3, a0, dst[:min(len(dst), 8)])
	if len(dst) > 8 {
		treePrices(l.mid[posState][:], 3, b0, dst[8:min(len(dst), 16)])
	}
	if len(dst) > 16 {
		treePrices(l.high[:], 8, b1, dst[16:])
	}
}

// treePrices sets dst[v] to base plus the price of coding v (v <
// len(dst) <= 1<<n) in the n-bit tree p, as treePrice, walking each node
// once.
func treePrices(p []prob, n int, base uint32, dst []uint32) {
	var node [256]uint32 // price of reaching each inner node
	node[1] = base
	for d := range n {
		lo := 1 << d
		for m := lo; m < 2*lo && (m-lo)<<(n-d) < len(dst); m++ {
			c0, c1 := node[m]+price0(p[m]), node[m]+price1(p[m])
			if d < n-1 {
				node[2*m], node[2*m+1] = c0, c1
				continue
			}
			v := 2 * (m - lo)
			dst[v] = c0
			if v+1 < len(dst) {
				dst[v+1] = c1
			}
		}
	}
}

type optNode struct {
	price uint32
	prev  int32  // position this step starts from
	back  uint32 // lzmaLiteral, rep index 0..3, or 4+dist
	len   uint32
	state uint32
	reps  [4]uint32
}

// optimizer holds the price tables and the look-ahead of the normal parser.
type optimizer struct {
	nice       int
	opt        [optMax + lzmaMaxMatch + 2]optNode
	lenPrice   [1 << lzmaPosBits][lzmaMaxMatch - 1]uint32
	repPrice   [1 << lzmaPosBits][lzmaMaxMatch - 1]uint32
	slotPrice  [4][64]uint32
	distPrice  [4][128]uint32
	alignPrice [16]uint32
	lenCount   int // symbols since the length prices were computed
	distCount  int // matches since the distance prices were computed
	ops        []lzOp
	next       int // first op of ops not coded yet
}

// lzOp is one step of a parse: a literal, or len bytes at distance dist+1
// (coded as a repeat when dist is one of the repeat distances then).
type lzOp struct {
	len, dist uint32
	lit       bool
}

func (o *optimizer) refresh(e *lzmaEncoder, force bool) {
	p := &e.probs
	if force || o.lenCount >= 64 {
		o.lenCount = 0
		n := min(o.nice, lzmaMaxMatch) - 1
		for ps := range uint32(1 << lzmaPosBits) {
			p.length.prices(ps, o.lenPrice[ps][:n])
			p.repLength.prices(ps, o.repPrice[ps][:n])
		}
	}
	if force || o.distCount >= 128 {
		o.distCount = 0
		for ls := range 4 {
			treePrices(p.posSlot[ls][:], 6, 0, o.slotPrice[ls][:])
			for slot := uint32(14); slot < 64; slot++ {
				o.slotPrice[ls][slot] += (slot>>1 - 1 - 4) << priceShift
			}
			for d := range uint32(128) {
				slot := posSlot(d)
				s := o.slotPrice[ls][slot]
				if slot >= 4 {
					footer := int(slot>>1) - 1
					base := (2 | slot&1) << uint(footer)
					s += reversePrice(p.posSpecial[base-slot:], footer, d-base)
				}
				o.distPrice[ls][d] = s
			}
		}
		for i := range uint32(16) {
			o.alignPrice[i] = reversePrice(p.align[:], 4, i)
		}
	}
}

func (o *optimizer) matchDistPrice(dist uint32, l int) uint32 {
	ls := min(l-lzmaMinMatch, 3)
	if dist < 128 {
		return o.distPrice[ls][dist]
	}
	return o.slotPrice[ls][posSlot(dist)] + o.alignPrice[dist&15]
}

func (e *lzmaEncoder) literalPrice(q int, state uint32, rep0 uint32) uint32 {
	prev := byte(0)
	if q > 0 {
		prev = e.data[q-1]
	}
	probs := e.probs.literal[prev>>(8-lzmaLitCtx)][:]
	b := uint32(e.data[q])
	var s uint32
	sym := uint32(1)
	if state < 7 {
		for i := 7; i >= 0; i-- {
			bit := (b >> uint(i)) & 1
			s += priceBit(probs[sym], bit)
			sym = sym<<1 | bit
		}
		return s
	}
	mb := uint32(e.data[q-int(rep0)-1])
	same := true
	for i := 7; i >= 0; i-- {
		bit := (b >> uint(i)) & 1
		if same {
			m := (mb >> uint(i)) & 1
			s += priceBit(probs[(1+m)<<8+sym], bit)
			same = m == bit
		} else {
			s += priceBit(probs[sym], bit)
		}
		sym = sym<<1 | bit
	}
	return s
}

// repPrice is the price of choosing repeat distance i (not its length).
func (e *lzmaEncoder) repIndexPrice(i int, state, posState uint32) uint32 {
	p := &e.probs
	if i == 0 {
		return price0(p.isRepG0[state]) + price1(p.isRep0Long[state][posState])
	}
	s := price1(p.isRepG0[state])
	if i == 1 {
		return s + price0(p.isRepG1[state])
	}
	return s + price1(p.isRepG1[state]) + priceBit(p.isRepG2[state], uint32(i-2))
}

func nextState(s, back, n uint32) uint32 {
	switch {
	case back == lzmaLiteral:
		switch {
		case s < 4:
			return 0
		case s < 10:
			return s - 3
		default:
			return s - 6
		}
	case back < 4:
		if n == 1 {
			if s < 7 {
				return 9
			}
			return 11
		}
		if s < 7 {
			return 8
		}
		return 11
	default:
		if s < 7 {
			return 7
		}
		return 10
	}
}

func nextReps(r [4]uint32, back uint32) [4]uint32 {
	switch back {
	case lzmaLiteral, 0:
		return r
	case 1:
		return [4]uint32{r[1], r[0], r[2], r[3]}
	case 2:
		return [4]uint32{r[2], r[0], r[1], r[3]}
	case 3:
		return [4]uint32{r[3], r[0], r[1], r[2]}
	default:
		return [4]uint32{back - 4, r[0], r[1], r[2]}
	}
}

// optimumNormal sets o.ops to the steps chosen from p (in order) and
// returns the number of bytes they cover. Every position up to the
// returned end has been found or skipped in the match finder.
func (e *lzmaEncoder) optimumNormal(o *optimizer, p int) int {
	data := e.data
	avail := min(len(data)-p, lzmaMaxMatch)
	o.ops, o.next = o.ops[:0], 0
	o.refresh(e, false)
	ms := e.find(p) // e.next == p: every call ends with a skip to its end
	if avail < 2 {
		o.ops = append(o.ops, lzOp{len: 1, lit: true})
		return 1
	}
	nice := o.nice
	// Immediate choice: a long repeat or match.
	repLens := [4]int{}
	bestRep := 0
	for i, r := range e.reps {
		b := p - int(r) - 1
		if b < 0 || data[p] != data[b] || data[p+1] != data[b+1] {
			continue
		}
		repLens[i] = matchLen(data, p, b, 2, avail)
		if repLens[i] > repLens[bestRep] {
			bestRep = i
		}
	}
	if repLens[bestRep] >= nice {
		n := repLens[bestRep]
		o.ops = append(o.ops, lzOp{len: uint32(n), dist: e.reps[bestRep]})
		e.skip(p + n)
		return n
	}
	if k := len(ms); k > 0 && int(ms[k-1].len) >= nice {
		n := int(ms[k-1].len)
		o.ops = append(o.ops, lzOp{len: uint32(n), dist: ms[k-1].dist})
		e.skip(p + n)
		return n
	}
	o.opt[0] = optNode{state: e.state, reps: e.reps}
	end := 1
	o.opt[1].price = infPrice
	for cur := 0; cur < end; cur++ {
		q := p + cur
		if cur > 0 {
			if cur >= optMax {
				end = cur
				break
			}
			n := &o.opt[cur]
			from := &o.opt[n.prev]
			n.state = nextState(from.state, n.back, n.len)
			n.reps = nextReps(from.reps, n.back)
			ms = e.find(q)
			if k := len(ms); k > 0 && int(ms[k-1].len) >= nice {
				// Take it: end the look-ahead here.
				l := int(ms[k-1].len)
				o.opt[cur+l] = optNode{prev: int32(cur), back: ms[k-1].dist + 4, len: uint32(l)}
				end = cur + l
				break
			}
		}
		n := &o.opt[cur]
		state, reps := n.state, n.reps
		base := n.price
		qavail := min(len(data)-q, lzmaMaxMatch)
		if qavail < 1 {
			continue
		}
		posState := uint32(q) & (1<<lzmaPosBits - 1)
		isMatch := &e.probs.isMatch[state][posState]
		grow := func(to int) {
			for end < to {
				end++
				o.opt[end].price = infPrice
			}
		}
		// Literal, or a one-byte repeat of rep0.
		grow(cur + 1)
		lit := base + price0(*isMatch) + e.literalPrice(q, state, reps[0])
		if nx := &o.opt[cur+1]; lit < nx.price {
			nx.price, nx.prev, nx.back, nx.len = lit, int32(cur), lzmaLiteral, 1
		}
		r0 := q - int(reps[0]) - 1
		if r0 >= 0 && data[r0] == data[q] {
			sr := base + price1(*isMatch) + price1(e.probs.isRep[state]) + price0(e.probs.isRepG0[state]) + price0(e.probs.isRep0Long[state][posState])
			if nx := &o.opt[cur+1]; sr < nx.price {
				nx.price, nx.prev, nx.back, nx.len = sr, int32(cur), 0, 1
			}
		}
		if qavail < 2 {
			continue
		}
		matchBase := base + price1(*isMatch)
		repBase := matchBase + price1(e.probs.isRep[state])
		maxRep := 0
		for i, r := range reps {
			b := q - int(r) - 1
			if b < 0 || data[q] != data[b] || data[q+1] != data[b+1] {
				continue
			}
			l := matchLen(data, q, b, 2, min(qavail, nice-1))
			maxRep = max(maxRep, l)
			rp := repBase + e.repIndexPrice(i, state, posState)
			grow(cur + l)
			nodes, rps := o.opt[cur+2:cur+l+1], o.repPrice[posState][:l-1]
			rps = rps[:len(nodes)]
			for j := range nodes {
				if pr := rp + rps[j]; pr < nodes[j].price {
					nodes[j].price, nodes[j].prev, nodes[j].back, nodes[j].len = pr, int32(cur), uint32(i), uint32(j+2)
				}
			}
		}
		if len(ms) == 0 {
			continue
		}
		normal := matchBase + price0(e.probs.isRep[state])
		l := 2
		grow(cur + int(ms[len(ms)-1].len))
		lp := &o.lenPrice[posState]
		for _, m := range ms {
			ml := int(m.len)
			for ; l <= ml && l < 5; l++ { // lengths 2-4 have their own distance prices
				pr := normal + o.matchDistPrice(m.dist, l) + lp[l-2]
				if nx := &o.opt[cur+l]; pr < nx.price {
					nx.price, nx.prev, nx.back, nx.len = pr, int32(cur), m.dist+4, uint32(l)
				}
			}
			if l > ml {
				continue
			}
			dp := normal + o.matchDistPrice(m.dist, 5)
			nodes, lps := o.opt[cur+l:cur+ml+1], lp[l-2:ml-1]
			lps = lps[:len(nodes)]
			for i := range nodes {
				if pr := dp + lps[i]; pr < nodes[i].price {
					nodes[i].price, nodes[i].prev, nodes[i].back, nodes[i].len = pr, int32(cur), m.dist+4, uint32(l+i)
				}
			}
			l = ml + 1
		}
	}
	// Walk back from the end.
	for i := end; i > 0; i = int(o.opt[i].prev) {
		n := &o.opt[i]
		op := lzOp{len: n.len, dist: n.back - 4, lit: n.back == lzmaLiteral}
		if n.back < 4 {
			op.dist = o.opt[n.prev].reps[n.back]
		}
		o.ops = append(o.ops, op)
	}
	for i, j := 0, len(o.ops)-1; i < j; i, j = i+1, j-1 {
		o.ops[i], o.ops[j] = o.ops[j], o.ops[i]
	}
	e.skip(p + end)
	return end
}

// newLZMAEncoderNormal is an encoder with the normal parser.
func newLZMAEncoderNormal(depth, nice int, hashBits uint) *lzmaEncoder {
	e := newLZMAEncoder(depth, nice, hashBits)
	e.opt = &optimizer{nice: nice}
	return e
}
