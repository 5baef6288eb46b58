package selectors

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
// TODO(selectors helper): replace the full scans with candidate evaluation
// (only selectors reading a changed key), keeping this API.
type Index[S comparable, E comparable] struct {
	onEvent   func(Event[S, E])
	selectors map[S]*Selector
	subjects  map[E]Map
	matches   map[S]map[E]struct{}
	bySubject map[E]map[S]struct{}
}

// NewIndex returns an empty index that calls onEvent for every change.
func NewIndex[S comparable, E comparable](onEvent func(Event[S, E])) *Index[S, E] {
	return &Index[S, E]{
		onEvent:   onEvent,
		selectors: map[S]*Selector{},
		subjects:  map[E]Map{},
		matches:   map[S]map[E]struct{}{},
		bySubject: map[E]map[S]struct{}{},
	}
}

func (ix *Index[S, E]) set(s S, e E, match bool) {
	_, had := ix.matches[s][e]
	if had == match {
		return
	}
	if match {
		if ix.matches[s] == nil {
			ix.matches[s] = map[E]struct{}{}
		}
		if ix.bySubject[e] == nil {
			ix.bySubject[e] = map[S]struct{}{}
		}
		ix.matches[s][e] = struct{}{}
		ix.bySubject[e][s] = struct{}{}
	} else {
		delete(ix.matches[s], e)
		delete(ix.bySubject[e], s)
	}
	if ix.onEvent != nil {
		ix.onEvent(Event[S, E]{Selector: s, Subject: e, Started: match})
	}
}

// UpdateSelector adds or replaces a selector.
func (ix *Index[S, E]) UpdateSelector(id S, sel *Selector) {
	ix.selectors[id] = sel
	for e, l := range ix.subjects {
		ix.set(id, e, sel.Matches(l))
	}
}

// DeleteSelector removes a selector, emitting stopped events for its matches.
func (ix *Index[S, E]) DeleteSelector(id S) {
	for e := range ix.matches[id] {
		ix.set(id, e, false)
	}
	delete(ix.selectors, id)
	delete(ix.matches, id)
}

// UpdateLabels adds or replaces a subject's labels. The map is not retained
// past the call's copy.
func (ix *Index[S, E]) UpdateLabels(id E, labels Map) {
	cp := make(Map, len(labels))
	for k, v := range labels {
		cp[k] = v
	}
	ix.subjects[id] = cp
	for s, sel := range ix.selectors {
		ix.set(s, id, sel.Matches(cp))
	}
}

// DeleteLabels removes a subject, emitting stopped events for its matches.
func (ix *Index[S, E]) DeleteLabels(id E) {
	for s := range ix.bySubject[id] {
		ix.set(s, id, false)
	}
	delete(ix.subjects, id)
	delete(ix.bySubject, id)
}

// Matching calls f for each subject the selector matches (unordered).
func (ix *Index[S, E]) Matching(id S, f func(E)) {
	for e := range ix.matches[id] {
		f(e)
	}
}

// SelectorsOf calls f for each selector matching the subject (unordered).
func (ix *Index[S, E]) SelectorsOf(id E, f func(S)) {
	for s := range ix.bySubject[id] {
		f(s)
	}
}
