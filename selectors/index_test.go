package selectors

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"testing"
)

// Random selectors and labels over a small alphabet, so that keys and values
// collide often. KeyNamespace is among the keys so global() is exercised.
var (
	genKeys = []string{"a", "b", "c", KeyNamespace}
	genVals = []string{"1", "2", "x1", ""}
)

func randLabelMap(rng *rand.Rand) Map {
	m := Map{}
	for _, k := range genKeys {
		if rng.Intn(2) == 0 {
			m[k] = genVals[rng.Intn(len(genVals))]
		}
	}
	return m
}

func randLeaf(rng *rand.Rand) Node {
	op := Op(rng.Intn(int(OpEndsWith) + 1))
	key := genKeys[rng.Intn(len(genKeys))]
	var vs []string
	for n := rng.Intn(3); n > 0; n-- {
		vs = append(vs, genVals[rng.Intn(len(genVals))])
	}
	return LeafNode(op, key, genVals[rng.Intn(len(genVals))], vs...)
}

func randNode(rng *rand.Rand, depth int) Node {
	if depth == 0 || rng.Intn(3) == 0 {
		return randLeaf(rng)
	}
	switch rng.Intn(3) {
	case 0:
		return NotNode(randNode(rng, depth-1))
	case 1:
		n := make([]Node, 2+rng.Intn(2))
		for i := range n {
			n[i] = randNode(rng, depth-1)
		}
		return AndNode(n...)
	}
	n := make([]Node, 2+rng.Intn(2))
	for i := range n {
		n[i] = randNode(rng, depth-1)
	}
	return OrNode(n...)
}

func randSelector(rng *rand.Rand, depth int) *Selector { return New(randNode(rng, depth)) }

type pair struct{ s, e int }

type op struct {
	kind   int // 0 update selector, 1 delete selector, 2 update labels, 3 delete labels
	id     int
	sel    *Selector
	labels Map
}

// randOps generates a sequence biased towards label mutations of existing
// subjects (one key changed, added or removed), the path the anchors serve.
func randOps(rng *rand.Rand, n int) []op {
	var ops []op
	current := map[int]Map{}
	sels := map[int]*Selector{}
	for len(ops) < n {
		switch r := rng.Intn(20); {
		case r < 5:
			id := rng.Intn(25)
			sel := randSelector(rng, 3)
			if old, ok := sels[id]; ok && rng.Intn(4) == 0 {
				sel = MustParse(old.String()) // same canonical form: no events
			}
			sels[id] = sel
			ops = append(ops, op{kind: 0, id: id, sel: sel})
		case r < 6:
			id := rng.Intn(25)
			delete(sels, id)
			ops = append(ops, op{kind: 1, id: id})
		case r < 18:
			id := rng.Intn(50)
			l := randLabelMap(rng)
			if old, ok := current[id]; ok && rng.Intn(3) > 0 {
				l = Map{}
				for k, v := range old {
					l[k] = v
				}
				k := genKeys[rng.Intn(len(genKeys))]
				if rng.Intn(3) == 0 {
					delete(l, k)
				} else {
					l[k] = genVals[rng.Intn(len(genVals))]
				}
			}
			current[id] = l
			ops = append(ops, op{kind: 2, id: id, labels: l})
		default:
			id := rng.Intn(50)
			delete(current, id)
			ops = append(ops, op{kind: 3, id: id})
		}
	}
	return ops
}

func (o op) applyTo(ix *Index[int, int]) {
	switch o.kind {
	case 0:
		ix.UpdateSelector(o.id, o.sel)
	case 1:
		ix.DeleteSelector(o.id)
	case 2:
		ix.UpdateLabels(o.id, o.labels)
	case 3:
		ix.DeleteLabels(o.id)
	}
}

func (o op) String() string {
	return fmt.Sprintf("{kind %d id %d sel %v labels %v}", o.kind, o.id, o.sel, o.labels)
}

// TestIndexDifferential runs random operations against the index and, after
// every step, checks the match relation and the events emitted against a
// brute-force evaluation of every selector on every subject.
func TestIndexDifferential(t *testing.T) {
	for seed := int64(1); seed <= 4; seed++ {
		rng := rand.New(rand.NewSource(seed))
		ops := randOps(rng, 3000)
		var got []Event[int, int]
		ix := NewIndex(func(e Event[int, int]) { got = append(got, e) })
		sels := map[int]*Selector{}
		subs := map[int]Map{}
		prev := map[pair]bool{}
		var log [][]Event[int, int]
		for step, o := range ops {
			got = nil
			o.applyTo(ix)
			switch o.kind {
			case 0:
				sels[o.id] = o.sel
			case 1:
				delete(sels, o.id)
			case 2:
				subs[o.id] = o.labels
			case 3:
				delete(subs, o.id)
			}
			cur := map[pair]bool{}
			for s, sel := range sels {
				for e, l := range subs {
					if sel.Matches(l) {
						cur[pair{s, e}] = true
					}
				}
			}
			want := map[Event[int, int]]bool{}
			for p := range prev {
				if !cur[p] {
					want[Event[int, int]{Selector: p.s, Subject: p.e}] = true
				}
			}
			for p := range cur {
				if !prev[p] {
					want[Event[int, int]{Selector: p.s, Subject: p.e, Started: true}] = true
				}
			}
			seen := map[Event[int, int]]bool{}
			for _, e := range got {
				if seen[e] {
					t.Fatalf("seed %d step %d %v: duplicate event %+v", seed, step, o, e)
				}
				seen[e] = true
				if !want[e] {
					t.Fatalf("seed %d step %d %v: unexpected event %+v", seed, step, o, e)
				}
			}
			if len(seen) != len(want) {
				t.Fatalf("seed %d step %d %v: got events %v, want %v", seed, step, o, got, want)
			}
			checkRelation(t, ix, sels, subs, cur)
			prev = cur
			log = append(log, got)
		}
		// Replaying the same operations yields the same events in the same
		// order: event order is deterministic.
		var replay []Event[int, int]
		ix2 := NewIndex(func(e Event[int, int]) { replay = append(replay, e) })
		for step, o := range ops {
			replay = nil
			o.applyTo(ix2)
			if !reflect.DeepEqual(replay, log[step]) {
				t.Fatalf("seed %d step %d: replay emitted %v, first run %v", seed, step, replay, log[step])
			}
		}
	}
}

func checkRelation(t *testing.T, ix *Index[int, int], sels map[int]*Selector, subs map[int]Map, cur map[pair]bool) {
	t.Helper()
	if ix.NumSelectors() != len(sels) || ix.NumSubjects() != len(subs) {
		t.Fatalf("index holds %d selectors, %d subjects; want %d, %d", ix.NumSelectors(), ix.NumSubjects(), len(sels), len(subs))
	}
	n := 0
	for s := range sels {
		ix.Matching(s, func(e int) {
			n++
			if !cur[pair{s, e}] {
				t.Fatalf("Matching(%d) reports %d, which it does not match", s, e)
			}
		})
	}
	if n != len(cur) {
		t.Fatalf("Matching reports %d pairs, want %d", n, len(cur))
	}
	n = 0
	for e := range subs {
		ix.SelectorsOf(e, func(s int) {
			n++
			if !cur[pair{s, e}] {
				t.Fatalf("SelectorsOf(%d) reports %d, which does not match it", e, s)
			}
		})
	}
	if n != len(cur) {
		t.Fatalf("SelectorsOf reports %d pairs, want %d", n, len(cur))
	}
}

// TestIndexTransitions walks a script and checks the exact event sequence.
func TestIndexTransitions(t *testing.T) {
	type ev = Event[string, string]
	var got []ev
	ix := NewIndex(func(e ev) { got = append(got, e) })
	step := func(name string, f func(), want ...ev) {
		t.Helper()
		got = nil
		f()
		if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	step("selector before subjects", func() { ix.UpdateSelector("web", MustParse(`app == "web"`)) })
	step("new matching subject", func() { ix.UpdateLabels("p1", Map{"app": "web"}) },
		ev{"web", "p1", true})
	step("unrelated key changes", func() { ix.UpdateLabels("p1", Map{"app": "web", "x": "1"}) })
	step("identical labels", func() { ix.UpdateLabels("p1", Map{"app": "web", "x": "1"}) })
	step("stops matching", func() { ix.UpdateLabels("p1", Map{"app": "db"}) },
		ev{"web", "p1", false})
	step("all() added", func() { ix.UpdateSelector("all", All()) },
		ev{"all", "p1", true})
	step("all() re-added as empty string", func() { ix.UpdateSelector("all", MustParse(" ")) })
	step("subject without labels", func() { ix.UpdateLabels("p2", nil) },
		ev{"all", "p2", true})
	step("replace keeps p1, drops p2", func() { ix.UpdateSelector("all", MustParse(`app == "db"`)) },
		ev{"all", "p2", false})
	step("new subjects", func() {
		ix.UpdateLabels("p3", Map{"app": "web"})
		ix.UpdateLabels("p4", Map{"app": "web"})
	}, ev{"web", "p3", true}, ev{"web", "p4", true})
	// Stopped events first, then started, each in subject insertion order.
	step("replace swaps sets", func() { ix.UpdateSelector("all", MustParse(`app in {"web"}`)) },
		ev{"all", "p1", false}, ev{"all", "p3", true}, ev{"all", "p4", true})
	// Per subject, events follow selector insertion order.
	step("delete subject", func() { ix.DeleteLabels("p4") },
		ev{"web", "p4", false}, ev{"all", "p4", false})
	step("delete absent subject", func() { ix.DeleteLabels("p4") })
	step("delete selector", func() { ix.DeleteSelector("web") }, ev{"web", "p3", false})
	step("delete absent selector", func() { ix.DeleteSelector("web") })
	step("nil selector deletes", func() { ix.UpdateSelector("all", nil) }, ev{"all", "p3", false})
	if ix.NumSelectors() != 0 || ix.NumSubjects() != 3 {
		t.Errorf("left %d selectors, %d subjects", ix.NumSelectors(), ix.NumSubjects())
	}
}

// TestIndexCallbackSeesFinalState checks that events are emitted after the
// call's changes are applied.
func TestIndexCallbackSeesFinalState(t *testing.T) {
	var ix *Index[string, string]
	ix = NewIndex(func(e Event[string, string]) {
		var sels []string
		ix.SelectorsOf(e.Subject, func(s string) { sels = append(sels, s) })
		slices.Sort(sels)
		if !reflect.DeepEqual(sels, []string{"a", "b"}) {
			t.Errorf("during %+v the subject matches %v", e, sels)
		}
	})
	ix.UpdateSelector("a", MustParse(`has(x)`))
	ix.UpdateSelector("b", MustParse(`x == "1"`))
	ix.UpdateLabels("p", Map{"x": "1"})
}

// TestIndexCandidates checks that a label change evaluates only the selectors
// it can affect, for selectors shaped like real policy selectors.
func TestIndexCandidates(t *testing.T) {
	ix := NewIndex[int, string](nil)
	// Subjects first, so anchors are chosen on real counts: a namespace holds
	// 15 pods, an app value 60, tabby:kind == "pod" all 300.
	for ns := 0; ns < 20; ns++ {
		for app := 0; app < 5; app++ {
			for i := 0; i < 3; i++ {
				ix.UpdateLabels(fmt.Sprintf("pod-%d-%d-%d", ns, app, i),
					Map{KeyKind: "pod", KeyNamespace: fmt.Sprintf("ns-%d", ns), "app": fmt.Sprintf("web-%d", app)})
			}
		}
	}
	id := 0
	for ns := 0; ns < 20; ns++ {
		for app := 0; app < 5; app++ {
			ix.UpdateSelector(id, MustParse(fmt.Sprintf(`tabby:kind == "pod" && tabby:namespace == "ns-%d" && app == "web-%d"`, ns, app)))
			id++
		}
		ix.UpdateSelector(id, MustParse(fmt.Sprintf(`tabby:namespace == "ns-%d"`, ns)))
		id++
	}
	for _, s := range []string{`all()`, `!has(quarantine)`, `app != "web-0"`} {
		ix.UpdateSelector(id, MustParse(s))
		id++
	}
	names := func(ss []*selEntry[int, string]) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.sel.String())
		}
		slices.Sort(out)
		return out
	}
	pod := func(app string) Map { return Map{KeyKind: "pod", KeyNamespace: "ns-3", "app": app, "version": "1"} }
	podSel := func(app int) string {
		return fmt.Sprintf(`app == "web-%d" && tabby:kind == "pod" && tabby:namespace == "ns-3"`, app)
	}
	// Pod selectors are anchored on the namespace (15 subjects) and paired
	// with the app (60): an app change reaches exactly the old and new app's
	// selectors, plus the unanchored reader of app.
	want := []string{`app != "web-0"`, podSel(1), podSel(2)}
	got := names(ix.labelCandidates(pod("web-1"), pod("web-2"), []string{"app"}, false))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("app change: candidates %q, want %q", got, want)
	}
	// Changing the anchor key itself: selectors anchored on the old or new
	// namespace, pod selectors only for the app the subject has.
	moved := pod("web-1")
	moved[KeyNamespace] = "ns-4"
	got = names(ix.labelCandidates(pod("web-1"), moved, []string{KeyNamespace}, false))
	want = []string{podSel(1), `app == "web-1" && tabby:kind == "pod" && tabby:namespace == "ns-4"`,
		`tabby:namespace == "ns-3"`, `tabby:namespace == "ns-4"`}
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("namespace change: candidates %q, want %q", got, want)
	}
	if got := ix.labelCandidates(pod("web-1"), pod("web-1"), nil, false); len(got) != 0 {
		t.Errorf("no change: %d candidates", len(got))
	}
	v2 := pod("web-1")
	v2["version"] = "2"
	if got := names(ix.labelCandidates(pod("web-1"), v2, []string{"version"}, false)); len(got) != 0 {
		t.Errorf("change of a key no selector reads: candidates %q", got)
	}
	// A new subject in ns-3 gets every selector anchored on ns-3, and those
	// matching empty labels.
	got = names(ix.labelCandidates(nil, pod("web-2"), []string{KeyKind, KeyNamespace, "app", "version"}, true))
	want = []string{`!has(quarantine)`, `all()`, `app != "web-0"`, `tabby:namespace == "ns-3"`}
	for app := 0; app < 5; app++ {
		want = append(want, podSel(app))
	}
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("new subject: candidates %q, want %q", got, want)
	}
}

// TestIndexSelectorNarrowing checks that UpdateSelector evaluates only
// subjects carrying the selector's anchor when it has one.
func TestIndexSelectorNarrowing(t *testing.T) {
	ix := NewIndex[string, int](nil)
	for i := 0; i < 1000; i++ {
		ix.UpdateLabels(i, Map{"app": fmt.Sprintf("web-%d", i%100), "tier": fmt.Sprintf("t%d", i%2)})
	}
	cases := []struct {
		sel     string
		anchors int // subjects carrying them
		ok      bool
	}{
		{`app == "web-7" && tier == "t1"`, 10, true},
		{`app in {"web-1", "web-2"}`, 20, true},
		{`app == "web-1" || tier == "t0"`, 510, true},
		{`has(app)`, 1000, true},
		{`app != "web-1"`, 0, false},
		{`!has(app) || app == "web-1"`, 0, false},
		{`app == "nope"`, 0, true},
		{`app in {}`, 0, true},
	}
	for _, c := range cases {
		as, cost, ok := ix.plan(MustParse(c.sel).Root())
		if ok != c.ok || cost[0] != c.anchors {
			t.Errorf("%s: anchors %v cost %v ok %v, want %d subjects ok %v", c.sel, as, cost, ok, c.anchors, c.ok)
		}
	}
}
