package selectors

import "slices"

// anchor is key=value, or key present with any value.
type anchor struct {
	key, value string
	any        bool
}

// selPlan is how the index finds the subjects and label changes that can
// concern a selector.
type selPlan struct {
	// anchored: every subject the selector matches carries one of anchors
	// (none at all: the selector matches nothing).
	anchored bool
	anchors  []anchor
	// paired: every match also carries one of second, all on secondKey, a
	// key no primary anchor is on. Label changes then find the selector by
	// the pair (anchor, second anchor), which is far more selective than
	// either alone (namespace and app of a pod selector).
	paired    bool
	second    []anchor
	secondKey string
}

// anchorSet holds the selectors anchored on one anchor a.
type anchorSet[S, E comparable] struct {
	all  map[S]*selEntry[S, E] // all of them: a new subject needs every one
	solo map[S]*selEntry[S, E] // those not paired
	// reads: by each key the selector reads other than a.key and its
	// secondKey.
	reads map[string]map[S]*selEntry[S, E]
	pairs map[anchor]map[S]*selEntry[S, E] // paired ones, by second anchor
}

// planSelector picks the anchors of sel from the current subject counts.
// Counts only steer performance, never results, so a plan is not revisited
// when they change.
func (ix *Index[S, E]) planSelector(sel *Selector) selPlan {
	root := sel.Root()
	as, _, ok := ix.plan(root)
	p := selPlan{anchored: ok, anchors: as}
	and, isAnd := root.(*AndExpr)
	if !ok || !isAnd || len(as) == 0 {
		return p
	}
	var best [2]int
	for _, ch := range and.Children {
		cas, ccost, cok := ix.plan(ch)
		if !cok || len(cas) == 0 {
			continue
		}
		k := cas[0].key
		if slices.ContainsFunc(cas, func(a anchor) bool { return a.key != k }) ||
			slices.ContainsFunc(as, func(a anchor) bool { return a.key == k }) {
			continue
		}
		if !p.paired || lessCost(ccost, best) {
			p.paired, p.second, p.secondKey, best = true, cas, k, ccost
		}
	}
	return p
}

func lessCost(a, b [2]int) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

// plan returns anchors whose union of subjects contains every subject n can
// match, with a cost (subjects now carrying them, then a static tie-break
// preferring key=value anchors), or ok false when n has none. A leaf gives
// anchors when it is false on an absent key and names one key: ==, in, has,
// contains, starts with, ends with. A conjunction takes its cheapest
// conjunct's, a disjunction the union of its children's if each has some.
func (ix *Index[S, E]) plan(n Node) (as []anchor, cost [2]int, ok bool) {
	switch c := n.(type) {
	case *Leaf:
		switch c.Op {
		case OpEq:
			a := anchor{key: c.Key, value: c.Value}
			return []anchor{a}, [2]int{len(ix.subjIdx[a]), 1}, true
		case OpIn:
			as = make([]anchor, len(c.Values))
			for i, v := range c.Values {
				as[i] = anchor{key: c.Key, value: v}
				cost[0] += len(ix.subjIdx[as[i]])
				cost[1]++
			}
			return as, cost, true
		case OpHas, OpContains, OpStartsWith, OpEndsWith:
			a := anchor{key: c.Key, any: true}
			return []anchor{a}, [2]int{len(ix.subjIdx[a]), 4}, true
		}
	case *AndExpr:
		for _, ch := range c.Children {
			cas, ccost, cok := ix.plan(ch)
			if cok && (!ok || lessCost(ccost, cost)) {
				as, cost, ok = cas, ccost, true
			}
		}
		return as, cost, ok
	case *OrExpr:
		for _, ch := range c.Children {
			cas, ccost, cok := ix.plan(ch)
			if !cok {
				return nil, [2]int{}, false
			}
			as = append(as, cas...)
			cost[0] += ccost[0]
			cost[1] += ccost[1]
		}
		return as, cost, true
	}
	return nil, [2]int{}, false
}

func (ix *Index[S, E]) register(s *selEntry[S, E]) {
	keys := s.sel.Keys()
	p := &s.plan
	if !p.anchored {
		for _, k := range keys {
			addTo(ix.readers, k, s.id, s)
		}
		if s.sel.MatchesEmpty() {
			ix.matchEmpty[s.id] = s
		}
		return
	}
	for _, a := range p.anchors {
		set := ix.anchored[a]
		if set == nil {
			set = &anchorSet[S, E]{
				all:   map[S]*selEntry[S, E]{},
				solo:  map[S]*selEntry[S, E]{},
				reads: map[string]map[S]*selEntry[S, E]{},
				pairs: map[anchor]map[S]*selEntry[S, E]{},
			}
			ix.anchored[a] = set
		}
		set.all[s.id] = s
		if p.paired {
			for _, b := range p.second {
				addTo(set.pairs, b, s.id, s)
			}
		} else {
			set.solo[s.id] = s
		}
		for _, k := range keys {
			if k != a.key && !(p.paired && k == p.secondKey) {
				addTo(set.reads, k, s.id, s)
			}
		}
	}
}

func (ix *Index[S, E]) unregister(s *selEntry[S, E]) {
	keys := s.sel.Keys()
	p := &s.plan
	if !p.anchored {
		for _, k := range keys {
			delFrom(ix.readers, k, s.id)
		}
		delete(ix.matchEmpty, s.id)
		return
	}
	for _, a := range p.anchors {
		set := ix.anchored[a]
		if set == nil {
			continue // a repeated anchor (from a disjunction), already done
		}
		delete(set.all, s.id)
		delete(set.solo, s.id)
		for _, b := range p.second {
			delFrom(set.pairs, b, s.id)
		}
		for _, k := range keys {
			delFrom(set.reads, k, s.id)
		}
		if len(set.all) == 0 {
			delete(ix.anchored, a)
		}
	}
}

// labelCandidates returns, once each, the selectors whose result on a subject
// can differ between labels old and nw, changed being the keys whose value
// differs. Such a selector reads a changed key and matches old or nw; if it
// is anchored, old or nw carries one of its anchors (and, if paired, one of
// its second anchors too).
func (ix *Index[S, E]) labelCandidates(old, nw Map, changed []string, isNew bool) []*selEntry[S, E] {
	ix.epoch++
	var out []*selEntry[S, E]
	add := func(set map[S]*selEntry[S, E]) {
		for _, s := range set {
			if s.stamp != ix.epoch {
				s.stamp = ix.epoch
				out = append(out, s)
			}
		}
	}
	if isNew {
		add(ix.matchEmpty)
	}
	for _, k := range changed {
		add(ix.readers[k])
	}
	if len(ix.anchored) == 0 {
		return out
	}
	if isNew { // every key changed: all selectors on the subject's anchors
		for r, v := range nw {
			for _, a := range [2]anchor{{key: r, any: true}, {key: r, value: v}} {
				if set := ix.anchored[a]; set != nil {
					add(set.all)
				}
			}
		}
		return out
	}

	var changedSet map[string]bool
	if len(changed) > 8 {
		changedSet = make(map[string]bool, len(changed))
		for _, k := range changed {
			changedSet[k] = true
		}
	}
	isChanged := func(k string) bool {
		if changedSet != nil {
			return changedSet[k]
		}
		return slices.Contains(changed, k)
	}
	// anchorsAt lists the anchors on key r that old or nw carries.
	anchorsAt := func(r string, buf *[3]anchor) []anchor {
		ov, oOK := old[r]
		nv, nOK := nw[r]
		if !oOK && !nOK {
			return nil
		}
		buf[0] = anchor{key: r, any: true}
		n := 1
		if oOK {
			buf[n] = anchor{key: r, value: ov}
			n++
		}
		if nOK && (!oOK || nv != ov) {
			buf[n] = anchor{key: r, value: nv}
			n++
		}
		return buf[:n]
	}
	carries := func(b anchor) bool {
		ov, oOK := old[b.key]
		nv, nOK := nw[b.key]
		if b.any {
			return oOK || nOK
		}
		return oOK && ov == b.value || nOK && nv == b.value
	}
	nKeys := len(old) + len(nw)
	var bufA, bufB [3]anchor
	visit := func(r string) {
		rChanged := isChanged(r)
		for _, a := range anchorsAt(r, &bufA) {
			set := ix.anchored[a]
			if set == nil {
				continue
			}
			if !rChanged {
				// The selector must read another changed key k: one it
				// merely reads, or its second key.
				for _, k := range changed {
					add(set.reads[k])
					if len(set.pairs) > 0 {
						for _, b := range anchorsAt(k, &bufB) {
							add(set.pairs[b])
						}
					}
				}
				continue
			}
			add(set.solo)
			// Paired selectors: those whose second anchor old or nw
			// carries, found from whichever side is smaller.
			if len(set.pairs) <= 2*nKeys {
				for b, sels := range set.pairs {
					if carries(b) {
						add(sels)
					}
				}
				continue
			}
			for k2 := range old {
				for _, b := range anchorsAt(k2, &bufB) {
					add(set.pairs[b])
				}
			}
			for k2 := range nw {
				if _, ok := old[k2]; !ok {
					for _, b := range anchorsAt(k2, &bufB) {
						add(set.pairs[b])
					}
				}
			}
		}
	}
	for r := range old {
		visit(r)
	}
	for r := range nw {
		if _, ok := old[r]; !ok {
			visit(r)
		}
	}
	return out
}
