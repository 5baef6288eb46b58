package trace

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/compiler/ir"
)

// Every key field (address, protocol, port, interface name) is held as a
// 128-bit big-endian number, so one comparison serves all key types and an
// interval of addresses is an interval of numbers.

type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func maxU(a, b u128) u128 {
	if a.cmp(b) < 0 {
		return b
	}
	return a
}

func addrKey(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var k u128
	for i := 0; i < 8; i++ {
		k.hi = k.hi<<8 | uint64(b[i])
		k.lo = k.lo<<8 | uint64(b[8+i])
	}
	return k
}

// ifnameSize is the kernel's ifname key: IFNAMSIZ bytes, NUL padded.
const ifnameSize = 16

func ifnameKey(s string) u128 {
	var b [ifnameSize]byte
	copy(b[:], s)
	var k u128
	for i := 0; i < 8; i++ {
		k.hi = k.hi<<8 | uint64(b[i])
		k.lo = k.lo<<8 | uint64(b[8+i])
	}
	return k
}

// rng is an inclusive range of one key field.
type rng struct{ lo, hi u128 }

// set is a named set (or an anonymous prefix list) ready for lookups.
// Elements are stored flat, k ranges per element, sorted by the first field's
// start, with an implicit balanced interval tree over them: maxHi[m] is the
// largest first-field end in the subtree whose root is element m. A lookup
// finds every element whose first field contains the key in O(log n + hits)
// and checks the other fields of those only. Single-field sets never overlap,
// so that is a binary search; concatenations may share a first field.
type set struct {
	name  string
	types []ir.KeyType
	k     int
	r     []rng
	maxHi []u128
}

func (s *set) n() int { return len(s.maxHi) }

// newSet indexes elements given as per-field ranges (k per element).
func newSet(name string, types []ir.KeyType, flat []rng) *set {
	k := len(types)
	n := len(flat) / k
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return flat[a*k].lo.cmp(flat[b*k].lo) })
	s := &set{name: name, types: types, k: k, r: make([]rng, 0, len(flat)), maxHi: make([]u128, n)}
	for _, i := range idx {
		s.r = append(s.r, flat[i*k:i*k+k]...)
	}
	s.build(0, n)
	return s
}

func (s *set) build(l, r int) u128 {
	if l >= r {
		return u128{}
	}
	m := int(uint(l+r) >> 1)
	mx := s.r[m*s.k].hi
	mx = maxU(mx, s.build(l, m))
	mx = maxU(mx, s.build(m+1, r))
	s.maxHi[m] = mx
	return mx
}

// contains reports whether some element holds key (len(key) == k).
func (s *set) contains(key []u128) bool { return s.stab(0, s.n(), key) }

func (s *set) stab(l, r int, key []u128) bool {
	for l < r {
		m := int(uint(l+r) >> 1)
		if s.maxHi[m].cmp(key[0]) < 0 {
			return false // nothing in this subtree reaches the key
		}
		if l < m && s.stab(l, m, key) {
			return true
		}
		e := s.r[m*s.k : m*s.k+s.k]
		if key[0].cmp(e[0].lo) < 0 {
			return false // this and every later element start after the key
		}
		if key[0].cmp(e[0].hi) <= 0 && restHolds(e, key) {
			return true
		}
		l = m + 1
	}
	return false
}

func restHolds(e []rng, key []u128) bool {
	for i := 1; i < len(e); i++ {
		if key[i].cmp(e[i].lo) < 0 || key[i].cmp(e[i].hi) > 0 {
			return false
		}
	}
	return true
}

// overlap returns the first two overlapping elements of a single-field set.
func (s *set) overlap() (a, b int, ok bool) {
	if s.k != 1 {
		return 0, 0, false
	}
	for i := 1; i < s.n(); i++ {
		if s.r[i].lo.cmp(s.r[i-1].hi) <= 0 {
			return i - 1, i, true
		}
	}
	return 0, 0, false
}

// valueKey converts one element value of type t, checking it fits the type.
func valueKey(v ir.Value, t ir.KeyType) (u128, error) {
	switch t {
	case ir.TypeIPv4Addr:
		if !v.Addr.Is4() {
			return u128{}, fmt.Errorf("%v is not an IPv4 address", v)
		}
		return addrKey(v.Addr), nil
	case ir.TypeIPv6Addr:
		if !v.Addr.Is6() {
			return u128{}, fmt.Errorf("%v is not an IPv6 address", v)
		}
		return addrKey(v.Addr), nil
	case ir.TypeInetProto:
		if v.Num > 255 {
			return u128{}, fmt.Errorf("protocol %d out of range", v.Num)
		}
		return u128{lo: uint64(v.Num)}, nil
	case ir.TypeInetService:
		if v.Num > 65535 {
			return u128{}, fmt.Errorf("port %d out of range", v.Num)
		}
		return u128{lo: uint64(v.Num)}, nil
	case ir.TypeIfname:
		if v.Str == "" || len(v.Str) >= ifnameSize {
			return u128{}, fmt.Errorf("interface name %q is empty or longer than %d bytes", v.Str, ifnameSize-1)
		}
		return ifnameKey(v.Str), nil
	}
	return u128{}, fmt.Errorf("unknown key type %d", t)
}

// compileSet validates an ir.Set and indexes it.
func compileSet(s *ir.Set) (*set, error) {
	if len(s.Type) == 0 {
		return nil, fmt.Errorf("no key type")
	}
	for _, t := range s.Type {
		if t < ir.TypeIPv4Addr || t > ir.TypeIfname {
			return nil, fmt.Errorf("unknown key type %d", t)
		}
	}
	k := len(s.Type)
	flat := make([]rng, 0, k*len(s.Elements))
	for i, e := range s.Elements {
		if len(e.Key) != k || (e.End != nil && len(e.End) != k) {
			return nil, fmt.Errorf("element %d: key has %d fields, type has %d", i, len(e.Key), k)
		}
		if e.End != nil && !s.Interval {
			return nil, fmt.Errorf("element %d: a range in a set without flags interval", i)
		}
		for f, t := range s.Type {
			lo, err := valueKey(e.Key[f], t)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			hi := lo
			if e.End != nil {
				if hi, err = valueKey(e.End[f], t); err != nil {
					return nil, fmt.Errorf("element %d end: %w", i, err)
				}
				if hi.cmp(lo) < 0 {
					return nil, fmt.Errorf("element %d: range end before its start", i)
				}
			}
			flat = append(flat, rng{lo, hi})
		}
	}
	out := newSet(s.Name, s.Type, flat)
	if a, b, ok := out.overlap(); ok && s.Interval {
		// The kernel refuses overlapping intervals (EEXIST) and would abort
		// the whole transaction.
		return nil, fmt.Errorf("elements overlap: %s and %s", out.describe(a), out.describe(b))
	}
	return out, nil
}

func (s *set) describe(i int) string {
	r := s.r[i*s.k]
	lo, hi := keyString(r.lo, s.types[0]), keyString(r.hi, s.types[0])
	if lo == hi {
		return lo
	}
	return lo + "-" + hi
}

// keyString renders a key field back in nft notation, for error messages.
func keyString(k u128, t ir.KeyType) string {
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(k.hi >> (56 - 8*i))
		b[8+i] = byte(k.lo >> (56 - 8*i))
	}
	switch t {
	case ir.TypeIPv4Addr:
		return netip.AddrFrom4([4]byte(b[12:])).String()
	case ir.TypeIPv6Addr:
		return netip.AddrFrom16(b).String()
	case ir.TypeIfname:
		n := 0
		for n < len(b) && b[n] != 0 {
			n++
		}
		return fmt.Sprintf("%q", b[:n])
	}
	return fmt.Sprint(k.lo)
}

// prefixSet indexes an anonymous list of prefixes of one family.
func prefixSet(ps []netip.Prefix, fam ir.Family) (*set, error) {
	t := ir.TypeIPv4Addr
	if fam == ir.IPv6 {
		t = ir.TypeIPv6Addr
	}
	flat := make([]rng, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() || (fam == ir.IPv4) != p.Addr().Is4() {
			return nil, fmt.Errorf("prefix %v is not %s", p, fam)
		}
		p = p.Masked()
		flat = append(flat, rng{addrKey(p.Addr()), addrKey(lastAddr(p))})
	}
	return newSet("", []ir.KeyType{t}, flat), nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
