package compiler

import (
	"math/bits"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/compiler/ir"
)

// Interval arithmetic for address sets. The kernel aborts a whole transaction
// on an overlapping interval element, so every interval set the compiler emits
// is a list of disjoint, non-adjacent, sorted ranges: merged here, once.

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ lo, hi netip.Addr }

func cmpRange(a, b addrRange) int {
	if c := a.lo.Compare(b.lo); c != 0 {
		return c
	}
	return a.hi.Compare(b.hi)
}

// u128 is an address as a 128-bit integer (IPv4 in the low 32 bits).
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	b := a.As16()
	var u u128
	for i := 0; i < 8; i++ {
		u.hi = u.hi<<8 | uint64(b[i])
		u.lo = u.lo<<8 | uint64(b[8+i])
	}
	if a.Is4() {
		u.hi = 0
		u.lo &= 0xffffffff
	}
	return u
}

func fromU128(u u128, v4 bool) netip.Addr {
	if v4 {
		x := uint32(u.lo)
		return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[7-i] = byte(u.hi >> (8 * i))
		b[15-i] = byte(u.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

// ones returns a u128 with the low n bits set (0 <= n <= 128).
func ones(n int) u128 {
	switch {
	case n <= 0:
		return u128{}
	case n < 64:
		return u128{lo: 1<<uint(n) - 1}
	case n == 64:
		return u128{lo: ^uint64(0)}
	case n < 128:
		return u128{hi: 1<<uint(n-64) - 1, lo: ^uint64(0)}
	}
	return u128{hi: ^uint64(0), lo: ^uint64(0)}
}

func (u u128) or(v u128) u128   { return u128{u.hi | v.hi, u.lo | v.lo} }
func (u u128) less(v u128) bool { return u.hi < v.hi || (u.hi == v.hi && u.lo < v.lo) }
func (u u128) trailingZeros() int { // 128 for zero
	if u.lo != 0 {
		return bits.TrailingZeros64(u.lo)
	}
	if u.hi != 0 {
		return 64 + bits.TrailingZeros64(u.hi)
	}
	return 128
}

func (u u128) add1() u128 {
	lo := u.lo + 1
	hi := u.hi
	if lo == 0 {
		hi++
	}
	return u128{hi, lo}
}

// unmap canonicalises an address: IPv4-mapped IPv6 becomes IPv4, zones go.
func unmap(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// prefixRange is the range a prefix covers.
func prefixRange(p netip.Prefix) addrRange {
	a, n := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() && n >= 96 {
		a, n = a.Unmap(), n-96
	}
	lo := netip.PrefixFrom(a, n).Masked().Addr()
	width := 128
	if lo.Is4() {
		width = 32
	}
	hi := fromU128(toU128(lo).or(ones(width-n)), lo.Is4())
	return addrRange{lo, hi}
}

// touches reports whether a ends at or after b.lo - 1, i.e. a and b (a sorted
// before b) overlap or are adjacent.
func touches(aHi, bLo netip.Addr) bool {
	if aHi.Compare(bLo) >= 0 {
		return true
	}
	n := aHi.Next()
	return n.IsValid() && n == bLo
}

// mergeSorted appends to out the merge of rs, which must be sorted by lo.
func mergeSorted(out []addrRange, rs []addrRange) []addrRange {
	for _, r := range rs {
		out = mergeOne(out, r)
	}
	return out
}

// mergeOne appends r to the merged ranges out; r must not start before the
// last range of out.
func mergeOne(out []addrRange, r addrRange) []addrRange {
	if n := len(out); n > 0 && touches(out[n-1].hi, r.lo) {
		if r.hi.Compare(out[n-1].hi) > 0 {
			out[n-1].hi = r.hi
		}
		return out
	}
	return append(out, r)
}

// mergeRanges sorts and merges ranges into disjoint, non-adjacent ranges. It
// sorts rs in place.
func mergeRanges(rs []addrRange) []addrRange {
	slices.SortFunc(rs, cmpRange)
	return mergeSorted(make([]addrRange, 0, len(rs)), rs)
}

// mergePrefixes splits prefixes by family and merges each family's ranges.
func mergePrefixes(ps []netip.Prefix) (v4, v6 []addrRange) {
	for _, p := range ps {
		r := prefixRange(p)
		if r.lo.Is4() {
			v4 = append(v4, r)
		} else {
			v6 = append(v6, r)
		}
	}
	return mergeRanges(v4), mergeRanges(v6)
}

// rangePrefixes appends the minimal list of prefixes covering r exactly.
func rangePrefixes(out []netip.Prefix, r addrRange) []netip.Prefix {
	v4 := r.lo.Is4()
	width := 128
	if v4 {
		width = 32
	}
	lo, hi := toU128(r.lo), toU128(r.hi)
	for {
		// The largest aligned block starting at lo that stays within hi.
		size := lo.trailingZeros()
		if size > width {
			size = width
		}
		for size > 0 && hi.less(lo.or(ones(size))) {
			size--
		}
		out = append(out, netip.PrefixFrom(fromU128(lo, v4), width-size))
		last := lo.or(ones(size))
		if !last.less(hi) {
			return out
		}
		lo = last.add1()
	}
}

// canonicalPrefixes returns the minimal sorted prefix list covering exactly
// the union of ps in one family (4 or 6).
func canonicalPrefixes(rs []addrRange) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range rs {
		out = rangePrefixes(out, r)
	}
	return out
}

// rangeElement is the interval set element of r; vals provides the storage
// (two Values) so that building many elements allocates once.
func rangeElement(r addrRange, vals []ir.Value) ir.Element {
	vals[0] = ir.Value{Addr: r.lo}
	if r.lo == r.hi {
		return ir.Element{Key: vals[0:1:1]}
	}
	vals[1] = ir.Value{Addr: r.hi}
	return ir.Element{Key: vals[0:1:1], End: vals[1:2:2]}
}

// elemRange is the inverse of rangeElement.
func elemRange(e ir.Element) addrRange {
	lo := e.Key[0].Addr
	if len(e.End) == 0 {
		return addrRange{lo, lo}
	}
	return addrRange{lo, e.End[0].Addr}
}

// rangeElements builds the elements of merged ranges.
func rangeElements(rs []addrRange) []ir.Element {
	vals := make([]ir.Value, 2*len(rs))
	out := make([]ir.Element, len(rs))
	for i, r := range rs {
		out[i] = rangeElement(r, vals[2*i:2*i+2])
	}
	return out
}
