package compiler

import (
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

// Delta is what changed in the table between two Flushes: what the enforcer
// turns into one nftables transaction. Every list is sorted by name (elements
// and entries by key). The objects are shared with the engine's table and must
// not be modified.
//
// One order that the kernel accepts: add SetsAdded and MapsAdded; add
// ChainsAdded (empty); apply SetsChanged (Removed, then Added); fill
// ChainsAdded and replace the rules of ChainsChanged; apply MapsChanged
// (Removed, then Added); flush, then delete, ChainsRemoved; delete
// SetsRemoved. Removed chains are referenced only by other removed chains or
// changed chains and removed map entries.
type Delta struct {
	SetsAdded     []*ir.Set
	SetsChanged   []SetDelta
	SetsRemoved   []string
	MapsAdded     []*ir.Map
	MapsChanged   []MapDelta
	ChainsAdded   []*ir.Chain
	ChainsChanged []*ir.Chain
	ChainsRemoved []string
}

// SetDelta is a set whose elements changed: Set holds the new full element
// list; Added and Removed are the element changes from the previous one.
type SetDelta struct {
	Set            *ir.Set
	Added, Removed []ir.Element
}

// MapDelta is a map whose entries changed. A changed verdict is a removed
// entry plus an added one.
type MapDelta struct {
	Map            *ir.Map
	Added, Removed []ir.MapEntry
}

// Empty reports whether nothing changed.
func (d *Delta) Empty() bool {
	return len(d.SetsAdded)+len(d.SetsChanged)+len(d.SetsRemoved)+len(d.MapsAdded)+len(d.MapsChanged)+
		len(d.ChainsAdded)+len(d.ChainsChanged)+len(d.ChainsRemoved) == 0
}

// published is the table as of the last Flush.
type published struct {
	flushed bool
	chains  map[string]*ir.Chain
	sets    map[string]*ir.Set
	maps    [2]*ir.Map // by direction: to-endpoint (ingress), from-endpoint (egress)
	table   *ir.Table  // cache; nil when stale
}

func newPublished() published {
	return published{chains: map[string]*ir.Chain{}, sets: map[string]*ir.Set{}}
}

// mapName is the verdict map of a direction: traffic to an endpoint is its
// ingress, traffic from it its egress.
func mapName(d policy.Direction) string {
	if d == policy.Egress {
		return FromEndpointMap
	}
	return ToEndpointMap
}

// Flush does the pending work and returns what changed since the last Flush.
func (e *Engine) Flush() Delta {
	e.gen++
	var delta Delta
	if !e.pub.flushed {
		e.pub.flushed = true
		fwd := forwardChain()
		e.pub.chains[fwd.Name] = fwd
		delta.ChainsAdded = append(delta.ChainsAdded, fwd)
		for _, d := range dirs {
			m := &ir.Map{Name: mapName(d), Type: []ir.KeyType{ir.TypeIfname}}
			e.pub.maps[d] = m
			delta.MapsAdded = append(delta.MapsAdded, m)
		}
	}
	for _, ref := range slices.SortedFunc(maps.Keys(e.dirtyEps), compareRefs) {
		e.regovern(ref)
	}
	clear(e.dirtyEps)
	for _, ref := range slices.SortedFunc(maps.Keys(e.dirtyPolicies), compareRefs) {
		for _, d := range dirs {
			name := PolicyChainName(ref, d)
			if cs := e.chains[name]; cs != nil && cs.gen != e.gen {
				e.renderPolicy(cs, name, ref, d)
				e.touchedChains[name] = struct{}{}
			}
		}
	}
	clear(e.dirtyPolicies)

	e.flushSets(&delta)
	e.flushChains(&delta)
	e.flushMaps(&delta)
	if !delta.Empty() {
		e.pub.table = nil
	}
	sortDelta(&delta)
	return delta
}

func (e *Engine) flushSets(delta *Delta) {
	names := make([]string, 0, len(e.dirtySets)+len(e.goneSets))
	for _, s := range e.dirtySets {
		s.dirty = false
		if e.sets[s.spec.name] == s { // not released since
			names = append(names, s.spec.name)
		}
	}
	for name := range e.goneSets {
		names = append(names, name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	e.dirtySets = e.dirtySets[:0]
	clear(e.goneSets)
	for _, name := range names {
		s, pub := e.sets[name], e.pub.sets[name]
		if s == nil {
			if pub != nil {
				delta.SetsRemoved = append(delta.SetsRemoved, name)
				delete(e.pub.sets, name)
			}
			continue
		}
		ch := s.flush()
		switch {
		case pub == nil:
			delta.SetsAdded = append(delta.SetsAdded, s.cur)
		case s.cur == pub:
		case ch != nil && ch.elementsComputed:
			delta.SetsChanged = append(delta.SetsChanged, SetDelta{Set: s.cur, Added: ch.added, Removed: ch.removed})
		default:
			// Re-created within this flush: compare with what was published.
			added, removed := diffElements(pub.Elements, s.cur.Elements)
			if len(added)+len(removed) > 0 || pub.Comment != s.cur.Comment {
				delta.SetsChanged = append(delta.SetsChanged, SetDelta{Set: s.cur, Added: added, Removed: removed})
			}
		}
		e.pub.sets[name] = s.cur
	}
}

func (e *Engine) flushChains(delta *Delta) {
	for _, name := range slices.Sorted(maps.Keys(e.touchedChains)) {
		cs, pub := e.chains[name], e.pub.chains[name]
		switch {
		case cs == nil && pub != nil:
			delta.ChainsRemoved = append(delta.ChainsRemoved, name)
			delete(e.pub.chains, name)
		case cs == nil:
		case pub == nil:
			delta.ChainsAdded = append(delta.ChainsAdded, cs.chain)
			e.pub.chains[name] = cs.chain
		case cs.chain != pub:
			if !reflect.DeepEqual(cs.chain, pub) {
				delta.ChainsChanged = append(delta.ChainsChanged, cs.chain)
				e.pub.chains[name] = cs.chain
			} else {
				cs.chain = pub // keep the published object: equal content
			}
		}
	}
	clear(e.touchedChains)
}

func (e *Engine) flushMaps(delta *Delta) {
	for _, d := range dirs {
		touched := e.touchedIfaces[d]
		if len(touched) == 0 {
			continue
		}
		old := e.pub.maps[d]
		entries := slices.Clone(old.Entries)
		var md MapDelta
		for _, ifname := range slices.Sorted(maps.Keys(touched)) {
			i, found := slices.BinarySearchFunc(entries, ifname, func(me ir.MapEntry, k string) int {
				return strings.Compare(me.Key[0].Str, k)
			})
			chain, want := e.entries[d][ifname]
			if found {
				if want && entries[i].Verdict.Chain == chain {
					continue
				}
				md.Removed = append(md.Removed, entries[i])
				entries = slices.Delete(entries, i, i+1)
			}
			if want {
				me := ir.MapEntry{Key: ir.Key{{Str: ifname}}, Verdict: ir.Verdict{Kind: ir.VerdictJump, Chain: chain}}
				entries = slices.Insert(entries, i, me)
				md.Added = append(md.Added, me)
			}
		}
		clear(touched)
		if len(md.Added)+len(md.Removed) == 0 {
			continue
		}
		m := &ir.Map{Name: old.Name, Type: old.Type, Comment: old.Comment, Entries: entries}
		e.pub.maps[d] = m
		md.Map = m
		if i := slices.IndexFunc(delta.MapsAdded, func(x *ir.Map) bool { return x.Name == m.Name }); i >= 0 {
			delta.MapsAdded[i] = m // created in this flush: the full map is enough
			continue
		}
		delta.MapsChanged = append(delta.MapsChanged, md)
	}
}

func sortDelta(d *Delta) {
	byName := func(a, b *ir.Chain) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(d.ChainsAdded, byName)
	slices.SortFunc(d.MapsAdded, func(a, b *ir.Map) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(d.MapsChanged, func(a, b MapDelta) int { return strings.Compare(a.Map.Name, b.Map.Name) })
}

// diffElements compares two sorted element lists.
func diffElements(old, cur []ir.Element) (added, removed []ir.Element) {
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		var c int
		switch {
		case j == len(cur):
			c = -1
		case i == len(old):
			c = 1
		default:
			c = CompareElements(old[i], cur[j])
		}
		switch {
		case c < 0:
			removed = append(removed, old[i])
			i++
		case c > 0:
			added = append(added, cur[j])
			j++
		default:
			i++
			j++
		}
	}
	return added, removed
}

// forwardChain is the one base chain.
func forwardChain() *ir.Chain {
	return &ir.Chain{
		Name: ForwardChain,
		Base: &ir.BaseChain{Hook: ir.HookForward, Priority: 0, Policy: ir.VerdictAccept},
		Rules: []*ir.Rule{
			{Matches: []ir.Match{ir.MatchCtState{States: ir.CtEstablished | ir.CtRelated}}, Counter: true,
				Verdict: ir.Verdict{Kind: ir.VerdictAccept}, Origin: &ir.Origin{Kind: ir.OriginConntrack, Action: policy.ActionAllow}},
			{Matches: []ir.Match{ir.MatchCtState{States: ir.CtInvalid}}, Counter: true,
				Verdict: ir.Verdict{Kind: ir.VerdictDrop}, Origin: &ir.Origin{Kind: ir.OriginConntrack, Action: policy.ActionDeny}},
			{Verdict: ir.Verdict{Kind: ir.VerdictMap, Map: FromEndpointMap, MapKey: ir.FieldIIFName}},
			{Verdict: ir.Verdict{Kind: ir.VerdictMap, Map: ToEndpointMap, MapKey: ir.FieldOIFName}},
		},
	}
}

// Table returns the table as of the last Flush (empty before the first). It
// is shared, immutable state: callers must not modify it.
func (e *Engine) Table() *ir.Table {
	if e.pub.table != nil {
		return e.pub.table
	}
	t := &ir.Table{Name: e.opts.TableName}
	if e.pub.flushed {
		for _, name := range slices.Sorted(maps.Keys(e.pub.sets)) {
			t.Sets = append(t.Sets, e.pub.sets[name])
		}
		t.Maps = []*ir.Map{e.pub.maps[policy.Egress], e.pub.maps[policy.Ingress]} // from-, to-: by name
		t.Chains = append(t.Chains, e.pub.chains[ForwardChain])
		for _, name := range slices.Sorted(maps.Keys(e.pub.chains)) {
			if name != ForwardChain {
				t.Chains = append(t.Chains, e.pub.chains[name])
			}
		}
	}
	e.pub.table = t
	return t
}
