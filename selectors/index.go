package selectors

import (
	"cmp"
	"slices"
)

// Event reports that a selector started or stopped matching a subject.
type Event[S comparable, E comparable] struct {
	Selector S
	Subject  E
	Started  bool // false: stopped
}

// Index maps selectors to the subjects (endpoints, network sets) they match
// and reports changes as events, delivered synchronously from the mutating
// call. S and E are the caller's identifiers.
//
// Events are exactly the transitions: one Started when a pair begins to match,
// one stopped when it ends, never a repeat. A call applies all its changes
// before it emits any event, so onEvent may read the index (Matching,
// SelectorsOf) and sees the final state; it must not mutate it. Within one
// call events come in a deterministic order: by the order in which the other
// side was first added to the index (stopped events before started ones on a
// selector update). An Index is not safe for concurrent use.
//
// Work done per call, with L the subject's labels (old and new), C the keys
// whose value changed, and "eval" one Selector.Matches:
//
//   - UpdateLabels: O(|L|·(1+|C|)) map lookups find the candidate selectors,
//     then one eval per candidate and a sort of the resulting events. A
//     candidate reads a key in C and, when anchored (below), carries an
//     anchor, and when paired a second anchor, that the old or new labels
//     carry. Changing a pod's app from b to c thus evaluates, of all the
//     selectors like tabby:namespace == "n" && app == "x", only those of
//     (its namespace, b) and (its namespace, c). A new subject evaluates the
//     selectors anchored on any of its labels, the unanchored ones reading
//     any of its keys, and those matching empty labels (all(), !has(k)).
//     Unchanged labels evaluate nothing.
//   - UpdateSelector: nothing if the canonical string is unchanged. Otherwise
//     one eval per subject carrying one of the selector's anchors (found via
//     a key=value / key index of subjects), or per subject if it has none,
//     plus O(old matches) to emit only the difference.
//   - DeleteSelector, DeleteLabels: O(m log m) in the matches they end.
//
// An anchor is a condition every match satisfies, taken from the selector's
// top level: k == "v" and k in {...} give key=value anchors; has(k), contains,
// starts with and ends with give key-present anchors; a conjunction uses its
// cheapest conjunct (fewest subjects when the selector is added), a
// disjunction the union of its children's when each has some. Negations, !=,
// not in, !has and global() give none. A conjunction also keeps the cheapest
// conjunct on another single key as its second anchor (the pair).
type Index[S comparable, E comparable] struct {
	onEvent func(Event[S, E])
	seq     uint64 // insertion order of selectors and subjects
	epoch   uint64 // stamps entries to deduplicate candidates without a set

	// The match relation lives in the entries (selEntry.matched,
	// subjEntry.matched): apply then touches two small maps it already holds
	// instead of looking the entries up again.
	selectors map[S]*selEntry[S, E]
	subjects  map[E]*subjEntry[S, E]

	// Selector side: unanchored selectors by every key they read, and those
	// matching empty labels; anchored ones by anchor (index_anchor.go).
	readers    map[string]map[S]*selEntry[S, E]
	matchEmpty map[S]*selEntry[S, E]
	anchored   map[anchor]*anchorSet[S, E]

	// Subject side: subjects by key=value and by key present.
	subjIdx map[anchor]map[E]*subjEntry[S, E]
}

type selEntry[S comparable, E comparable] struct {
	id      S
	sel     *Selector
	seq     uint64
	stamp   uint64
	matched map[E]*subjEntry[S, E]
	plan    selPlan
}

type subjEntry[S comparable, E comparable] struct {
	id      E
	labels  Map
	seq     uint64
	stamp   uint64
	matched map[S]*selEntry[S, E]
}

// NewIndex returns an empty index that calls onEvent for every change.
func NewIndex[S comparable, E comparable](onEvent func(Event[S, E])) *Index[S, E] {
	return &Index[S, E]{
		onEvent:    onEvent,
		selectors:  map[S]*selEntry[S, E]{},
		subjects:   map[E]*subjEntry[S, E]{},
		readers:    map[string]map[S]*selEntry[S, E]{},
		matchEmpty: map[S]*selEntry[S, E]{},
		anchored:   map[anchor]*anchorSet[S, E]{},
		subjIdx:    map[anchor]map[E]*subjEntry[S, E]{},
	}
}

func addTo[K, V comparable, T any](m map[K]map[V]T, k K, v V, t T) {
	s := m[k]
	if s == nil {
		s = map[V]T{}
		m[k] = s
	}
	s[v] = t
}

func delFrom[K, V comparable, T any](m map[K]map[V]T, k K, v V) {
	if s, ok := m[k]; ok {
		delete(s, v)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

// apply records that s does or does not match e and reports whether that is a
// change.
func (ix *Index[S, E]) apply(s *selEntry[S, E], e *subjEntry[S, E], match bool) bool {
	_, had := e.matched[s.id]
	if had == match {
		return false
	}
	if match {
		if s.matched == nil {
			s.matched = map[E]*subjEntry[S, E]{}
		}
		if e.matched == nil {
			e.matched = map[S]*selEntry[S, E]{}
		}
		s.matched[e.id] = e
		e.matched[s.id] = s
	} else {
		delete(s.matched, e.id)
		delete(e.matched, s.id)
	}
	return true
}

func (ix *Index[S, E]) emit(evs []Event[S, E]) {
	if ix.onEvent == nil {
		return
	}
	for _, ev := range evs {
		ix.onEvent(ev)
	}
}

func bySelSeq[S, E comparable](a, b *selEntry[S, E]) int   { return cmp.Compare(a.seq, b.seq) }
func bySubjSeq[S, E comparable](a, b *subjEntry[S, E]) int { return cmp.Compare(a.seq, b.seq) }

// UpdateSelector adds or replaces a selector. Replacing it with one of the same
// canonical form emits nothing; otherwise only the difference is emitted. A nil
// sel deletes.
func (ix *Index[S, E]) UpdateSelector(id S, sel *Selector) {
	if sel == nil {
		ix.DeleteSelector(id)
		return
	}
	ent, existed := ix.selectors[id]
	if existed {
		if ent.sel.String() == sel.String() {
			ent.sel = sel
			return
		}
		ix.unregister(ent)
	} else {
		ix.seq++
		ent = &selEntry[S, E]{id: id, seq: ix.seq}
		ix.selectors[id] = ent
	}
	ent.sel = sel
	ent.plan = ix.planSelector(sel)
	ix.register(ent)

	// Candidates: subjects carrying an anchor, else all of them. Two fresh
	// stamps: seen deduplicates candidates, mark flags the new matches so the
	// old set can be diffed without building the new one as a map.
	ix.epoch += 2
	seen, mark := ix.epoch-1, ix.epoch
	old := ent.matched
	var starts []*subjEntry[S, E]
	consider := func(e *subjEntry[S, E]) {
		if e.stamp == seen || e.stamp == mark {
			return
		}
		e.stamp = seen
		if sel.Matches(e.labels) {
			e.stamp = mark
			if _, had := old[e.id]; !had {
				starts = append(starts, e)
			}
		}
	}
	if ent.plan.anchored {
		for _, a := range ent.plan.anchors {
			for _, e := range ix.subjIdx[a] {
				consider(e)
			}
		}
	} else {
		for _, e := range ix.subjects {
			consider(e)
		}
	}
	var stops []*subjEntry[S, E]
	for _, e := range old {
		if e.stamp != mark {
			stops = append(stops, e)
		}
	}
	slices.SortFunc(stops, bySubjSeq)
	slices.SortFunc(starts, bySubjSeq)
	evs := make([]Event[S, E], 0, len(stops)+len(starts))
	for _, e := range stops {
		ix.apply(ent, e, false)
		evs = append(evs, Event[S, E]{Selector: id, Subject: e.id})
	}
	for _, e := range starts {
		ix.apply(ent, e, true)
		evs = append(evs, Event[S, E]{Selector: id, Subject: e.id, Started: true})
	}
	ix.emit(evs)
}

// DeleteSelector removes a selector, emitting stopped events for its matches.
func (ix *Index[S, E]) DeleteSelector(id S) {
	ent, ok := ix.selectors[id]
	if !ok {
		return
	}
	ends := make([]*subjEntry[S, E], 0, len(ent.matched))
	for _, e := range ent.matched {
		ends = append(ends, e)
	}
	slices.SortFunc(ends, bySubjSeq)
	evs := make([]Event[S, E], 0, len(ends))
	for _, e := range ends {
		ix.apply(ent, e, false)
		evs = append(evs, Event[S, E]{Selector: id, Subject: e.id})
	}
	ix.unregister(ent)
	delete(ix.selectors, id)
	ix.emit(evs)
}

// UpdateLabels adds or replaces a subject's labels. The map is copied, not
// retained.
func (ix *Index[S, E]) UpdateLabels(id E, labels Map) {
	nw := make(Map, len(labels))
	for k, v := range labels {
		nw[k] = v
	}
	ent, existed := ix.subjects[id]
	if !existed {
		ix.seq++
		ent = &subjEntry[S, E]{id: id, seq: ix.seq}
		ix.subjects[id] = ent
	}
	old := ent.labels
	var changed []string
	for k, v := range nw {
		if ov, ok := old[k]; !ok || ov != v {
			changed = append(changed, k)
		}
	}
	for k := range old {
		if _, ok := nw[k]; !ok {
			changed = append(changed, k)
		}
	}
	for _, k := range changed {
		if ov, ok := old[k]; ok {
			delFrom(ix.subjIdx, anchor{key: k, value: ov}, id)
			delFrom(ix.subjIdx, anchor{key: k, any: true}, id)
		}
		if nv, ok := nw[k]; ok {
			addTo(ix.subjIdx, anchor{key: k, value: nv}, id, ent)
			addTo(ix.subjIdx, anchor{key: k, any: true}, id, ent)
		}
	}
	ent.labels = nw
	if existed && len(changed) == 0 {
		return
	}

	// Candidates come in map order; sorting the (few) transitions rather
	// than the candidates keeps the event order deterministic for less.
	var flips []*selEntry[S, E]
	for _, s := range ix.labelCandidates(old, nw, changed, !existed) {
		if ix.apply(s, ent, s.sel.Matches(nw)) {
			flips = append(flips, s)
		}
	}
	slices.SortFunc(flips, bySelSeq)
	evs := make([]Event[S, E], len(flips))
	for i, s := range flips {
		_, now := ent.matched[s.id]
		evs[i] = Event[S, E]{Selector: s.id, Subject: id, Started: now}
	}
	ix.emit(evs)
}

// DeleteLabels removes a subject, emitting stopped events for its matches.
func (ix *Index[S, E]) DeleteLabels(id E) {
	ent, ok := ix.subjects[id]
	if !ok {
		return
	}
	ends := make([]*selEntry[S, E], 0, len(ent.matched))
	for _, s := range ent.matched {
		ends = append(ends, s)
	}
	slices.SortFunc(ends, bySelSeq)
	evs := make([]Event[S, E], 0, len(ends))
	for _, s := range ends {
		ix.apply(s, ent, false)
		evs = append(evs, Event[S, E]{Selector: s.id, Subject: id})
	}
	for k, v := range ent.labels {
		delFrom(ix.subjIdx, anchor{key: k, value: v}, id)
		delFrom(ix.subjIdx, anchor{key: k, any: true}, id)
	}
	delete(ix.subjects, id)
	ix.emit(evs)
}

// Matching calls f for each subject the selector matches (unordered).
func (ix *Index[S, E]) Matching(id S, f func(E)) {
	if s, ok := ix.selectors[id]; ok {
		for e := range s.matched {
			f(e)
		}
	}
}

// SelectorsOf calls f for each selector matching the subject (unordered).
func (ix *Index[S, E]) SelectorsOf(id E, f func(S)) {
	if e, ok := ix.subjects[id]; ok {
		for s := range e.matched {
			f(s)
		}
	}
}

// NumSelectors is the number of selectors in the index.
func (ix *Index[S, E]) NumSelectors() int { return len(ix.selectors) }

// NumSubjects is the number of subjects in the index.
func (ix *Index[S, E]) NumSubjects() int { return len(ix.subjects) }

// NumMatching is the number of subjects selector id matches.
func (ix *Index[S, E]) NumMatching(id S) int {
	if s, ok := ix.selectors[id]; ok {
		return len(s.matched)
	}
	return 0
}

// Selector returns the selector stored under id.
func (ix *Index[S, E]) Selector(id S) (*Selector, bool) {
	s, ok := ix.selectors[id]
	if !ok {
		return nil, false
	}
	return s.sel, true
}
