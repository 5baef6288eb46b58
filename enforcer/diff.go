package enforcer

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/tabbynet/tabby/compiler/ir"
)

// record is what the enforcer last wrote to the kernel: the table, and per
// object its kernel encoding (set elements by elemID, map entries by key
// bytes), so that the next Sync writes exactly the difference.
//
// Objects of the table are assumed immutable once passed to Sync (the
// compiler never modifies a published object): an object whose pointer did
// not change is not compared again.
type record struct {
	src    *ir.Table
	sets   map[string]*setRec
	maps   map[string]*mapRec
	chains map[string]*chainRec
}

type setRec struct {
	src   *ir.Set
	def   setDef
	elems map[string]struct{}
}

type mapRec struct {
	src     *ir.Map
	def     setDef
	entries map[string]ir.Verdict
}

type chainRec struct {
	src  *ir.Chain
	head string // what cannot change in place: base chain and comment
	text string // the rendered chain (equal text, equal encoding); lazy
}

func (c *chainRec) rendered() string {
	if c.text == "" {
		c.text = c.src.String()
	}
	return c.text
}

// delta is one transaction's work, grouped in the order the kernel accepts
// within a single batch (see program).
type delta struct {
	full bool

	newSets   []*setRec
	newMaps   []*mapRec
	newChains []*ir.Chain
	elemDels  []elemChange
	elemAdds  []elemChange
	refill    []*ir.Chain // changed chains: flushed, then filled
	fill      []*ir.Chain // new chains
	entryDels []elemChange
	entryAdds []elemChange
	gone      []string // chains
	goneSets  []string // sets and maps

	// counts for logs and stats
	rules, elems int
}

type elemChange struct {
	def   *setDef
	elems []elem
}

func (d *delta) empty() bool {
	return !d.full && len(d.newSets)+len(d.newMaps)+len(d.newChains)+len(d.elemDels)+len(d.elemAdds)+
		len(d.refill)+len(d.entryDels)+len(d.entryAdds)+len(d.gone)+len(d.goneSets) == 0
}

// diff compares the desired table with the record of what was written. It
// returns the work and the record to keep once that work is committed. With
// full (or when something changed that the kernel cannot change in place:
// a set's type, flags or comment, a chain's hook, policy or comment) the
// delta rewrites the whole table.
func diff(old *record, t *ir.Table, full bool) (*delta, *record, error) {
	if old == nil {
		old, full = &record{}, true
	}
	next := &record{src: t, sets: make(map[string]*setRec, len(t.Sets)),
		maps: make(map[string]*mapRec, len(t.Maps)), chains: make(map[string]*chainRec, len(t.Chains))}
	d := &delta{full: full}
	for _, s := range t.Sets {
		if err := d.diffSet(old, next, s); err != nil {
			return nil, nil, err
		}
	}
	for _, m := range t.Maps {
		if err := d.diffMap(old, next, t, m); err != nil {
			return nil, nil, err
		}
	}
	for _, c := range t.Chains {
		if _, dup := next.chains[c.Name]; dup {
			return nil, nil, invalidf("duplicate chain %s", c.Name)
		}
		prev := old.chains[c.Name]
		if prev != nil && prev.src == c {
			next.chains[c.Name] = prev
			continue
		}
		rec := &chainRec{src: c, head: chainHead(c)}
		next.chains[c.Name] = rec
		switch {
		case prev == nil:
			d.newChains = append(d.newChains, c)
			d.fill = append(d.fill, c)
		case prev.head != rec.head:
			d.full = true
		case prev.rendered() != rec.rendered():
			d.refill = append(d.refill, c)
		}
	}
	for name := range old.chains {
		if next.chains[name] == nil {
			d.gone = append(d.gone, name)
		}
	}
	for name := range old.sets {
		if next.sets[name] == nil {
			d.goneSets = append(d.goneSets, name)
		}
	}
	for name := range old.maps {
		if next.maps[name] == nil {
			d.goneSets = append(d.goneSets, name)
		}
	}
	slices.Sort(d.gone)
	slices.Sort(d.goneSets)
	if d.full {
		d = fullDelta(next)
	} else if len(d.gone)+len(d.goneSets) > 0 {
		if err := checkRemoved(t, d.gone, d.goneSets); err != nil {
			return nil, nil, err
		}
	}
	for _, c := range append(slices.Clone(d.fill), d.refill...) {
		d.rules += len(c.Rules)
	}
	return d, next, nil
}

func (d *delta) diffSet(old, next *record, s *ir.Set) error {
	if next.sets[s.Name] != nil || next.maps[s.Name] != nil {
		return invalidf("duplicate set %s", s.Name)
	}
	prev := old.sets[s.Name]
	if prev != nil && prev.src == s {
		next.sets[s.Name] = prev
		return nil
	}
	def, err := namedSetDef(s)
	if err != nil {
		return err
	}
	elems, err := setElements(&def, s)
	if err != nil {
		return err
	}
	rec := &setRec{src: s, def: def, elems: elems}
	next.sets[s.Name] = rec
	switch {
	case old.maps[s.Name] != nil: // a map became a set
		d.full = true
	case prev == nil:
		d.newSets = append(d.newSets, rec)
	case !sameDef(&prev.def, &def):
		d.full = true
	default:
		if dels := missing(prev.elems, elems); len(dels) > 0 {
			d.elemDels = append(d.elemDels, elemChange{&rec.def, idElems(&rec.def, dels)})
			d.elems += len(dels)
		}
		if adds := missing(elems, prev.elems); len(adds) > 0 {
			d.elemAdds = append(d.elemAdds, elemChange{&rec.def, idElems(&rec.def, adds)})
			d.elems += len(adds)
		}
	}
	return nil
}

func (d *delta) diffMap(old, next *record, t *ir.Table, m *ir.Map) error {
	if next.sets[m.Name] != nil || next.maps[m.Name] != nil {
		return invalidf("duplicate map %s", m.Name)
	}
	prev := old.maps[m.Name]
	if prev != nil && prev.src == m {
		next.maps[m.Name] = prev
		return nil
	}
	def, err := mapDef(m)
	if err != nil {
		return err
	}
	entries, err := mapEntries(m)
	if err != nil {
		return err
	}
	rec := &mapRec{src: m, def: def, entries: entries}
	next.maps[m.Name] = rec
	switch {
	case old.sets[m.Name] != nil:
		d.full = true
	case prev == nil:
		d.newMaps = append(d.newMaps, rec)
		if len(entries) > 0 {
			d.entryAdds = append(d.entryAdds, elemChange{&rec.def, entryElems(entries, slices.Sorted(maps.Keys(entries)))})
		}
	case !sameDef(&prev.def, &def):
		d.full = true
	default:
		// A changed verdict is a delete and an add: the kernel does not
		// replace an element's data in place.
		var dels, adds []string
		for k, v := range prev.entries {
			if nv, ok := entries[k]; !ok || nv != v {
				dels = append(dels, k)
			}
		}
		for k, v := range entries {
			if ov, ok := prev.entries[k]; !ok || ov != v {
				if v.Kind == ir.VerdictJump || v.Kind == ir.VerdictGoto {
					if err := checkTarget(t, v.Chain); err != nil {
						return fmt.Errorf("map %s: %w", m.Name, err)
					}
				}
				adds = append(adds, k)
			}
		}
		slices.Sort(dels)
		slices.Sort(adds)
		if len(dels) > 0 {
			// A deletion names the key only.
			es := make([]elem, len(dels))
			for i, k := range dels {
				es[i] = elem{key: []byte(k)}
			}
			d.entryDels = append(d.entryDels, elemChange{&rec.def, es})
		}
		if len(adds) > 0 {
			d.entryAdds = append(d.entryAdds, elemChange{&rec.def, entryElems(entries, adds)})
		}
		d.elems += len(dels) + len(adds)
	}
	return nil
}

// fullDelta writes all of r into a replaced table.
func fullDelta(r *record) *delta {
	d := &delta{full: true}
	for _, s := range r.src.Sets {
		d.newSets = append(d.newSets, r.sets[s.Name])
		d.elems += len(r.sets[s.Name].elems)
	}
	for _, m := range r.src.Maps {
		rec := r.maps[m.Name]
		d.newMaps = append(d.newMaps, rec)
		if len(rec.entries) > 0 {
			d.entryAdds = append(d.entryAdds, elemChange{&rec.def, entryElems(rec.entries, slices.Sorted(maps.Keys(rec.entries)))})
			d.elems += len(rec.entries)
		}
	}
	d.newChains = r.src.Chains
	d.fill = r.src.Chains
	return d
}

// missing returns the IDs of a that are not in b, sorted (big-endian keys
// sort numerically).
func missing(a, b map[string]struct{}) []string {
	var out []string
	for id := range a {
		if _, ok := b[id]; !ok {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func idElems(d *setDef, ids []string) []elem {
	out := make([]elem, 0, len(ids)*2)
	for _, id := range ids {
		out = append(out, elemsOfID(d, id)...)
	}
	return out
}

func entryElems(entries map[string]ir.Verdict, keys []string) []elem {
	out := make([]elem, len(keys))
	for i, k := range keys {
		v, _ := verdictOf(entries[k]) // validated by mapEntries
		out[i] = elem{key: []byte(k), verdict: v}
	}
	return out
}

func sameDef(a, b *setDef) bool {
	return a.keyType == b.keyType && a.keyLen == b.keyLen && slices.Equal(a.fieldLens, b.fieldLens) &&
		a.interval == b.interval && a.isMap == b.isMap && a.comment == b.comment && a.byteorder == b.byteorder
}

func chainHead(c *ir.Chain) string {
	var b strings.Builder
	b.WriteString(c.Name)
	if c.Base != nil {
		b.WriteString(" " + c.Base.String() + " " + strconv.Itoa(c.Base.Priority))
	}
	b.WriteString(" comment=" + sanitize(c.Comment, ir.MaxCommentLen))
	return b.String()
}

// program appends the delta to the batch in an order the kernel accepts in
// one transaction: objects are created before anything refers to them, and
// references are dropped before what they refer to is deleted.
//
//  1. (full) add table, delete table, add table: replaces any previous
//     table atomically, so its rules stay in force until the commit;
//  2. new sets with their elements, new maps (empty), new chains (empty);
//  3. element deletions, then additions, of changed sets (deletions first:
//     an interval may be replaced by an overlapping one);
//  4. flush every changed chain, then add the rules of changed and new
//     chains (no transient jump loop through a not yet flushed chain);
//  5. map entry deletions, then additions (entries jump to chains of 2);
//  6. flush the removed chains (rules referring to removed objects are now
//     all gone: the others went in 4);
//  7. delete the removed sets and maps (a map's entries go with it);
//  8. delete the removed chains (entries jumping to them went in 5 or 7).
func program(b *batch, d *delta, t *ir.Table) error {
	if d.full {
		b.addTable()
		b.delTable()
		b.addTable()
	}
	ids := map[string]uint32{}
	for _, s := range d.newSets {
		id := b.addSet(&s.def)
		ids[s.def.name] = id
		b.elements(&s.def, id, true, idElems(&s.def, slices.Sorted(maps.Keys(s.elems))))
	}
	for _, m := range d.newMaps {
		ids[m.def.name] = b.addSet(&m.def)
	}
	for _, c := range d.newChains {
		b.addChain(c)
	}
	for _, ch := range d.elemDels {
		b.elements(ch.def, 0, false, ch.elems)
	}
	for _, ch := range d.elemAdds {
		b.elements(ch.def, 0, true, ch.elems)
	}
	for _, c := range d.refill {
		b.flushChain(c.Name)
	}
	for _, c := range append(slices.Clone(d.refill), d.fill...) {
		for i, r := range c.Rules {
			enc, err := encodeRule(t, r)
			if err != nil {
				return fmt.Errorf("chain %s rule %d: %w", c.Name, i, err)
			}
			b.addRule(c.Name, enc)
		}
	}
	for _, ch := range d.entryDels {
		b.elements(ch.def, 0, false, ch.elems)
	}
	for _, ch := range d.entryAdds {
		b.elements(ch.def, ids[ch.def.name], true, ch.elems)
	}
	for _, name := range d.gone {
		b.flushChain(name)
	}
	for _, name := range d.goneSets {
		b.delSet(name)
	}
	for _, name := range d.gone {
		b.delChain(name)
	}
	return b.err
}

// checkRemoved makes sure no rule or map entry of t still refers to a chain,
// set or map that a delta deletes (new and changed chains are checked as
// they are encoded; this covers the unchanged ones).
func checkRemoved(t *ir.Table, chains, sets []string) error {
	goneChain := make(map[string]bool, len(chains))
	for _, n := range chains {
		goneChain[n] = true
	}
	goneSet := make(map[string]bool, len(sets))
	for _, n := range sets {
		goneSet[n] = true
	}
	jumps := func(v ir.Verdict) bool {
		return (v.Kind == ir.VerdictJump || v.Kind == ir.VerdictGoto) && goneChain[v.Chain]
	}
	for _, m := range t.Maps {
		for _, me := range m.Entries {
			if jumps(me.Verdict) {
				return invalidf("map %s refers to chain %s, which is not in the table", m.Name, me.Verdict.Chain)
			}
		}
	}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			for _, m := range r.Matches {
				var set string
				switch m := m.(type) {
				case ir.MatchAddr:
					set = m.Set
				case ir.MatchConcat:
					set = m.Set
				}
				if set != "" && goneSet[set] {
					return invalidf("chain %s refers to set %s, which is not in the table", c.Name, set)
				}
			}
			if v := r.Verdict; jumps(v) || (v.Kind == ir.VerdictMap && goneSet[v.Map]) {
				return invalidf("chain %s refers to %s, which is not in the table", c.Name, v.String())
			}
		}
	}
	return nil
}

// validate checks what the kernel would otherwise refuse half-way through a
// transaction: every name a rule or map entry refers to exists, with a
// usable type, and chains are well formed. Types of values are checked by
// the encoders.
func validate(t *ir.Table) error {
	for _, m := range t.Maps {
		for _, me := range m.Entries {
			if me.Verdict.Kind == ir.VerdictJump || me.Verdict.Kind == ir.VerdictGoto {
				if err := checkTarget(t, me.Verdict.Chain); err != nil {
					return fmt.Errorf("map %s: %w", m.Name, err)
				}
			}
		}
	}
	for _, c := range t.Chains {
		if c.Name == "" || len(c.Name) > 255 {
			return invalidf("bad chain name %q", c.Name)
		}
		if c.Base != nil {
			if _, err := hookNum(c.Base.Hook); err != nil {
				return fmt.Errorf("chain %s: %w", c.Name, err)
			}
			if _, err := chainPolicy(c.Base.Policy); err != nil {
				return fmt.Errorf("chain %s: %w", c.Name, err)
			}
		}
		for i, r := range c.Rules {
			if err := validateRefs(t, r); err != nil {
				return fmt.Errorf("chain %s rule %d: %w", c.Name, i, err)
			}
		}
	}
	return nil
}

func validateRefs(t *ir.Table, r *ir.Rule) error {
	for _, m := range r.Matches {
		var set string
		switch m := m.(type) {
		case ir.MatchAddr:
			set = m.Set
		case ir.MatchConcat:
			set = m.Set
		}
		if set != "" && t.Set(set) == nil {
			return invalidf("no set %s", set)
		}
	}
	switch v := r.Verdict; v.Kind {
	case ir.VerdictMap:
		if t.Map(v.Map) == nil {
			return invalidf("no map %s", v.Map)
		}
	case ir.VerdictJump, ir.VerdictGoto:
		return checkTarget(t, v.Chain)
	}
	return nil
}
