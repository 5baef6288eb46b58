package compiler

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/compiler/ir"
)

// Element bookkeeping shared by the set kinds: the net change of one flush,
// and the named-port sets' count-based membership.

// elemID identifies an element of any set kind the compiler emits.
type elemID struct {
	a, b   netip.Addr
	n1, n2 uint32
}

func idOf(e ir.Element) elemID {
	id := elemID{a: e.Key[0].Addr}
	if len(e.End) > 0 {
		id.b = e.End[0].Addr
	}
	if len(e.Key) > 2 {
		id.n1, id.n2 = e.Key[1].Num, e.Key[2].Num
	}
	return id
}

// netter accumulates element additions and removals of one flush, cancelling
// an element removed and added back (or added and removed again).
type netter struct{ added, removed map[elemID]ir.Element }

func newNetter() *netter {
	return &netter{added: map[elemID]ir.Element{}, removed: map[elemID]ir.Element{}}
}

func (n *netter) add(e ir.Element) {
	id := idOf(e)
	if _, ok := n.removed[id]; ok {
		delete(n.removed, id)
		return
	}
	n.added[id] = e
}

func (n *netter) remove(e ir.Element) {
	id := idOf(e)
	if _, ok := n.added[id]; ok {
		delete(n.added, id)
		return
	}
	n.removed[id] = e
}

func (n *netter) result() (added, removed []ir.Element) {
	return sortedElems(n.added), sortedElems(n.removed)
}

func sortedElems(m map[elemID]ir.Element) []ir.Element {
	if len(m) == 0 {
		return nil
	}
	out := make([]ir.Element, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	slices.SortFunc(out, CompareElements)
	return out
}

// CompareElements orders set elements as the table keeps them: by key, field
// by field, then by range end.
func CompareElements(a, b ir.Element) int {
	if c := compareKeys(a.Key, b.Key); c != 0 {
		return c
	}
	return compareKeys(a.End, b.End)
}

func compareKeys(a, b ir.Key) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := compareValues(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

func compareValues(a, b ir.Value) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if a.Num != b.Num {
		if a.Num < b.Num {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Str, b.Str)
}

func npElement(k npKey) ir.Element {
	v := make([]ir.Value, 3)
	v[0] = ir.Value{Addr: k.addr}
	v[1] = ir.Value{Num: uint32(k.proto)}
	v[2] = ir.Value{Num: uint32(k.port)}
	return ir.Element{Key: v}
}

func npKeyOf(e ir.Element) npKey {
	return npKey{e.Key[0].Addr, uint8(e.Key[1].Num), uint16(e.Key[2].Num)}
}

// flushNP applies pending changes to the counts and to a copy of the
// elements. Only keys whose presence flipped over the whole batch change.
func (s *setState) flushNP() (elems, added, removed []ir.Element) {
	initial := make(map[npKey]bool, len(s.pending))
	for _, o := range s.pending {
		before := s.npCount[o.k]
		if _, seen := initial[o.k]; !seen {
			initial[o.k] = before > 0
		}
		if after := before + o.delta; after > 0 {
			s.npCount[o.k] = after
		} else {
			delete(s.npCount, o.k)
		}
	}
	var ups, downs []npKey
	for k, was := range initial {
		if now := s.npCount[k] > 0; now != was {
			if now {
				ups = append(ups, k)
			} else {
				downs = append(downs, k)
			}
		}
	}
	slices.SortFunc(ups, cmpNPKey)
	slices.SortFunc(downs, cmpNPKey)
	old := s.curElems()
	if s.cur == nil {
		keys := make([]npKey, 0, len(s.npCount))
		for k := range s.npCount {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, cmpNPKey)
		elems = make([]ir.Element, len(keys))
		vals := make([]ir.Value, 3*len(keys))
		for i, k := range keys {
			v := vals[3*i : 3*i+3 : 3*i+3]
			v[0], v[1], v[2] = ir.Value{Addr: k.addr}, ir.Value{Num: uint32(k.proto)}, ir.Value{Num: uint32(k.port)}
			elems[i] = ir.Element{Key: v}
		}
		return elems, nil, nil
	}
	if len(ups) == 0 && len(downs) == 0 {
		return old, nil, nil
	}
	if len(ups)+len(downs) > bulkOps {
		return mergeNP(old, ups, downs)
	}
	elems = slices.Clone(old)
	cmp := func(e ir.Element, k npKey) int { return cmpNPKey(npKeyOf(e), k) }
	for _, k := range downs {
		if i, ok := slices.BinarySearchFunc(elems, k, cmp); ok {
			removed = append(removed, elems[i])
			elems = slices.Delete(elems, i, i+1)
		}
	}
	for _, k := range ups {
		i, ok := slices.BinarySearchFunc(elems, k, cmp)
		if ok {
			continue
		}
		e := npElement(k)
		elems = slices.Insert(elems, i, e)
		added = append(added, e)
	}
	return elems, added, removed
}

// mergeNP rebuilds the elements in one pass: old minus downs plus ups (both
// sorted, ups absent from old, downs present in it).
func mergeNP(old []ir.Element, ups, downs []npKey) (elems, added, removed []ir.Element) {
	elems = make([]ir.Element, 0, len(old)+len(ups)-len(downs))
	u, d := 0, 0
	for _, e := range old {
		k := npKeyOf(e)
		for u < len(ups) && cmpNPKey(ups[u], k) < 0 {
			n := npElement(ups[u])
			elems = append(elems, n)
			added = append(added, n)
			u++
		}
		for d < len(downs) && cmpNPKey(downs[d], k) < 0 {
			d++ // not present: nothing to remove
		}
		if d < len(downs) && downs[d] == k {
			removed = append(removed, e)
			d++
			continue
		}
		elems = append(elems, e)
	}
	for ; u < len(ups); u++ {
		n := npElement(ups[u])
		elems = append(elems, n)
		added = append(added, n)
	}
	return elems, added, removed
}
