package compiler

import (
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selectors"
)

// Sets and their membership. A set exists while an active policy chain
// references it (refs > 0). Selector-backed sets (sel-*, np-*) keep the
// multiset of what each matched subject contributes, so that a membership
// event patches only the region of the element list it touches.

type setKind uint8

const (
	setSel       setKind = iota + 1 // sel-*: addresses of matched endpoints and network sets
	setNet                          // net-*: literal networks
	setNamedPort                    // np-*: (address, proto, port) of matched endpoints' named ports
)

// setSpec is what a policy chain asks for; equal names mean equal specs.
type setSpec struct {
	name   string
	kind   setKind
	fam    int
	sel    *selectors.Selector // setSel, setNamedPort
	ports  []policy.NamedPort  // setNamedPort: sorted, deduplicated
	ranges []addrRange         // setNet: merged
}

// contrib is one contributed range and how many subjects contribute it.
type contrib struct {
	r addrRange
	n int32
}

// npKey is one element of a named-port set.
type npKey struct {
	addr  netip.Addr
	proto uint8
	port  uint16
}

func cmpNPKey(a, b npKey) int {
	if c := a.addr.Compare(b.addr); c != 0 {
		return c
	}
	if a.proto != b.proto {
		return int(a.proto) - int(b.proto)
	}
	return int(a.port) - int(b.port)
}

// op is one pending membership change.
type op struct {
	r     addrRange // setSel
	k     npKey     // setNamedPort
	delta int32
}

type setState struct {
	spec setSpec
	refs int
	cur  *ir.Set // nil until first flushed

	contribs []contrib       // setSel: sorted by range
	npCount  map[npKey]int32 // setNamedPort
	pending  []op
	dirty    bool // queued in Engine.dirtySets
}

// bulkOps is the number of pending changes above which a set is rebuilt by one
// merge pass instead of patched change by change.
const bulkOps = 4

func newSetState(spec setSpec) *setState {
	s := &setState{spec: spec}
	if spec.kind == setNamedPort {
		s.npCount = map[npKey]int32{}
	}
	return s
}

func (s *setState) irSet(elems []ir.Element) *ir.Set {
	set := &ir.Set{Name: s.spec.name, Elements: elems}
	addrType := ir.TypeIPv4Addr
	if s.spec.fam == 6 {
		addrType = ir.TypeIPv6Addr
	}
	switch s.spec.kind {
	case setSel:
		set.Type = []ir.KeyType{addrType}
		set.Interval = true
		set.Comment = comment(s.spec.sel.String())
	case setNet:
		set.Type = []ir.KeyType{addrType}
		set.Interval = true
	case setNamedPort:
		set.Type = []ir.KeyType{addrType, ir.TypeInetProto, ir.TypeInetService}
		set.Comment = comment("named ports " + namedPortsString(s.spec.ports) + " of " + s.spec.sel.String())
	}
	return set
}

// maxComment is nft's limit on comment length (NFT_USERDATA_MAXLEN is larger,
// but the nft tool rejects comments over 128 bytes).
const maxComment = 128

func comment(s string) string {
	// Selectors quote values; nft comments are double-quoted strings.
	s = strings.ReplaceAll(s, `"`, "'")
	if len(s) <= maxComment {
		return s
	}
	cut := maxComment - 3
	for cut > 0 && s[cut]&0xc0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "..."
}

// contributeEndpoint queues the changes ep makes to s (sign +1 or -1).
func (s *setState) contributeEndpoint(ep *policy.Endpoint, sign int32) {
	for _, ip := range ep.IPs {
		ip = unmap(ip)
		if !ip.IsValid() || famOf(ip) != s.spec.fam {
			continue
		}
		switch s.spec.kind {
		case setSel:
			s.pending = append(s.pending, op{r: addrRange{ip, ip}, delta: sign})
		case setNamedPort:
			for _, cp := range ep.Ports {
				if namedPortMatches(s.spec.ports, cp) {
					s.pending = append(s.pending, op{k: npKey{ip, uint8(cp.Protocol), cp.Port}, delta: sign})
				}
			}
		}
	}
}

// contributeNetworkSet queues the changes ns makes to s.
func (s *setState) contributeNetworkSet(ns *policy.NetworkSet, sign int32) {
	if s.spec.kind != setSel {
		return
	}
	for _, p := range ns.Nets {
		if !p.IsValid() {
			continue
		}
		r := prefixRange(p)
		if famOf(r.lo) == s.spec.fam {
			s.pending = append(s.pending, op{r: r, delta: sign})
		}
	}
}

func namedPortMatches(ports []policy.NamedPort, cp policy.ContainerPort) bool {
	if cp.Name == "" {
		return false
	}
	for _, np := range ports {
		if np.Name == cp.Name && (np.Protocol == policy.ProtoAny || np.Protocol == cp.Protocol) {
			return true
		}
	}
	return false
}

func famOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// setChange is the outcome of flushing one set.
type setChange struct {
	set              *ir.Set
	added, removed   []ir.Element
	elementsComputed bool // added/removed are exact (false for a new set)
}

// flush applies pending changes and returns the new ir.Set when its elements
// changed (nil otherwise). The previous ir.Set is never modified.
func (s *setState) flush() *setChange {
	if s.cur == nil {
		s.cur = s.build()
		return &setChange{set: s.cur}
	}
	if len(s.pending) == 0 {
		return nil
	}
	var elems, added, removed []ir.Element
	switch s.spec.kind {
	case setSel:
		elems, added, removed = s.flushSel()
	case setNamedPort:
		elems, added, removed = s.flushNP()
	default:
		s.pending = s.pending[:0]
		return nil
	}
	s.pending = s.pending[:0]
	if len(added) == 0 && len(removed) == 0 {
		return nil
	}
	s.cur = s.irSet(elems)
	return &setChange{set: s.cur, added: added, removed: removed, elementsComputed: true}
}

// build computes a new set's elements from scratch.
func (s *setState) build() *ir.Set {
	switch s.spec.kind {
	case setNet:
		return s.irSet(rangeElements(s.spec.ranges))
	case setSel:
		elems, _, _ := s.flushSel()
		s.pending = s.pending[:0]
		return s.irSet(elems)
	case setNamedPort:
		elems, _, _ := s.flushNP()
		s.pending = s.pending[:0]
		return s.irSet(elems)
	}
	return s.irSet(nil)
}

func (s *setState) curElems() []ir.Element {
	if s.cur == nil {
		return nil
	}
	return s.cur.Elements
}

// flushSel applies pending range changes to contribs and to a copy of the
// elements.
func (s *setState) flushSel() (elems, added, removed []ir.Element) {
	old := s.curElems()
	if s.cur == nil || len(s.pending) > bulkOps {
		s.contribs = applyBulk(s.contribs, s.pending)
		merged := make([]addrRange, 0, len(s.contribs))
		for _, c := range s.contribs {
			merged = mergeOne(merged, c.r)
		}
		return diffRanges(old, merged)
	}
	elems = slices.Clone(old)
	net := newNetter()
	for _, o := range s.pending {
		i, found := slices.BinarySearchFunc(s.contribs, o.r, func(c contrib, r addrRange) int { return cmpRange(c.r, r) })
		switch {
		case found:
			s.contribs[i].n += o.delta
			if s.contribs[i].n > 0 {
				continue // still covered: elements unchanged
			}
			s.contribs = slices.Delete(s.contribs, i, i+1)
		case o.delta > 0:
			s.contribs = slices.Insert(s.contribs, i, contrib{o.r, o.delta})
		default:
			continue // removing what was never added: nothing to undo
		}
		elems = s.patch(elems, o.r, net)
	}
	added, removed = net.result()
	return elems, added, removed
}

// applyBulk merges sorted contribs with unsorted ops, summing counts and
// dropping ranges no subject contributes any more.
func applyBulk(cs []contrib, ops []op) []contrib {
	add := make([]contrib, len(ops))
	for i, o := range ops {
		add[i] = contrib{o.r, o.delta}
	}
	slices.SortFunc(add, func(a, b contrib) int { return cmpRange(a.r, b.r) })
	out := make([]contrib, 0, len(cs)+len(add))
	i, j := 0, 0
	for i < len(cs) || j < len(add) {
		var c contrib
		if j == len(add) || (i < len(cs) && cmpRange(cs[i].r, add[j].r) <= 0) {
			c = cs[i]
			i++
		} else {
			c = add[j]
			j++
		}
		if n := len(out); n > 0 && out[n-1].r == c.r {
			out[n-1].n += c.n
			continue
		}
		if n := len(out); n > 0 && out[n-1].n <= 0 {
			out = out[:n-1]
		}
		out = append(out, c)
	}
	if n := len(out); n > 0 && out[n-1].n <= 0 {
		out = out[:n-1]
	}
	return out
}

// patch recomputes the elements around r (just added to or removed from
// contribs). Every contribution overlapping the region spanned by r and the
// elements touching it lies inside that region, so re-merging the
// contributions that start inside it is exact.
func (s *setState) patch(elems []ir.Element, r addrRange, net *netter) []ir.Element {
	i := sort.Search(len(elems), func(k int) bool { return touches(elemRange(elems[k]).hi, r.lo) })
	lo, hi := r.lo, r.hi
	j := i
	for j < len(elems) {
		e := elemRange(elems[j])
		if !touches(hi, e.lo) {
			break
		}
		if e.lo.Compare(lo) < 0 {
			lo = e.lo
		}
		if e.hi.Compare(hi) > 0 {
			hi = e.hi
		}
		j++
	}
	k, _ := slices.BinarySearchFunc(s.contribs, lo, func(c contrib, a netip.Addr) int { return c.r.lo.Compare(a) })
	var merged []addrRange
	for ; k < len(s.contribs) && s.contribs[k].r.lo.Compare(hi) <= 0; k++ {
		merged = mergeOne(merged, s.contribs[k].r)
	}
	repl := rangeElements(merged)
	for _, e := range elems[i:j] {
		net.remove(e)
	}
	for _, e := range repl {
		net.add(e)
	}
	return slices.Replace(elems, i, j, repl...)
}

// diffRanges builds the element list of merged, reusing old elements that are
// unchanged, and reports what was added and removed.
func diffRanges(old []ir.Element, merged []addrRange) (elems, added, removed []ir.Element) {
	elems = make([]ir.Element, 0, len(merged))
	var vals []ir.Value
	i, j := 0, 0
	for i < len(old) || j < len(merged) {
		var c int
		switch {
		case j == len(merged):
			c = -1
		case i == len(old):
			c = 1
		default:
			c = cmpRange(elemRange(old[i]), merged[j])
		}
		switch {
		case c < 0:
			removed = append(removed, old[i])
			i++
		case c > 0:
			if len(vals) < 2 {
				vals = make([]ir.Value, 2*min(len(merged)-j, 256))
			}
			e := rangeElement(merged[j], vals[:2])
			vals = vals[2:]
			elems = append(elems, e)
			added = append(added, e)
			j++
		default:
			elems = append(elems, old[i])
			i++
			j++
		}
	}
	return elems, added, removed
}
