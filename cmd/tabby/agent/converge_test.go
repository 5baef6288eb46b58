package agent

import (
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/e2e/scenario"
	"github.com/tabbynet/tabby/policy"
)

// change is one datastore event: an upsert (obj) or a delete (ref only).
type change struct {
	ref policy.Ref
	obj *policy.Object
}

// state is the datastore's content after some changes.
type state map[policy.Ref]policy.Object

func (s state) apply(c change) {
	if c.obj == nil {
		delete(s, c.ref)
	} else {
		s[c.ref] = *c.obj
	}
}

func (s state) objects() []policy.Object {
	return slices.SortedFunc(maps.Values(s), func(a, b policy.Object) int { return compareRefs(a.Ref, b.Ref) })
}

// feed records changes the way the datastore would.
func feed(a *Agent, cs []change) {
	for _, c := range cs {
		if c.obj == nil {
			a.rec.Delete(c.ref)
		} else {
			a.rec.Upsert(*c.obj)
		}
	}
}

// checkBatch runs one batch and checks: at most one Sync, exactly one when
// the table changed, and the table equals a full compile of st. The changes
// fed must never make an object invalid while an older valid version of it
// exists (the agent would keep that one; a full compile cannot know it).
func checkBatch(t *testing.T, a *Agent, app *fakeApplier, st state, f InterfaceFinder, what string) {
	t.Helper()
	before, prev := app.syncs(), app.last()
	a.batch()
	got := app.last()
	if n := app.syncs() - before; n > 1 {
		t.Fatalf("%s: one batch made %d Syncs", what, n)
	}
	want := expectedTable(t, st.objects(), f)
	if got == nil || got.String() != want {
		t.Fatalf("%s: agent table differs from a full compile:\n--- agent\n%v\n--- full compile\n%s", what, got, want)
	}
	changed := prev == nil || prev.String() != got.String()
	if synced := app.syncs() - before; changed != (synced == 1) {
		t.Fatalf("%s: table changed=%v but Syncs=%d", what, changed, synced)
	}
}

// localize puts about half of the pods on the test node.
func localize(o policy.Object) policy.Object {
	if o.Pod == nil {
		return o
	}
	h := fnv.New32a()
	h.Write([]byte(o.Ref.Namespace + "/" + o.Ref.Name))
	o.Pod = o.Pod.DeepCopy()
	o.Pod.Spec.NodeName = "n2"
	if h.Sum32()%2 == 0 {
		o.Pod.Spec.NodeName = testNode
	}
	return o
}

func corpusChanges(t *testing.T, file string) (steps [][]change) {
	sc, err := scenario.Load(file)
	if err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	for i, step := range sc.Steps {
		var cs []change
		if i == 0 {
			// Included objects (the topology) are not among the changes:
			// the first step is its whole state.
			for _, o := range step.Objects {
				o = localize(o)
				cs = append(cs, change{ref: o.Ref, obj: &o})
			}
			steps = append(steps, cs)
			continue
		}
		for _, c := range step.Changes {
			if c.Delete != nil {
				cs = append(cs, change{ref: *c.Delete})
				continue
			}
			o := localize(*c.Upsert)
			cs = append(cs, change{ref: o.Ref, obj: &o})
		}
		steps = append(steps, cs)
	}
	return steps
}

func corpus(t *testing.T) []string {
	var files []string
	for _, suite := range []string{"k8s", "cnp", "tabby"} {
		fs, err := filepath.Glob(filepath.Join("..", "..", "..", "e2e", "testdata", "conformance", suite, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if !strings.HasPrefix(filepath.Base(f), "_") {
				files = append(files, f)
			}
		}
	}
	if len(files) == 0 {
		t.Fatal("no conformance corpus found")
	}
	return files
}

// TestCorpusConvergence drives the agent through the conformance corpus's
// change sequences, batched per step, at random cut points and all at once,
// and checks each batch against a full compile of the state at that point.
func TestCorpusConvergence(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	f := &fakeFinder{all: true}
	files := corpus(t)
	if testing.Short() {
		files = files[:len(files)/8]
	}
	mapEntries := 0
	defer func() {
		if !t.Failed() && mapEntries == 0 {
			t.Error("no local pod got a verdict map entry: the corpus run does not exercise interfaces")
		}
	}()
	for _, file := range files {
		steps := corpusChanges(t, file)
		name := filepath.Base(file)

		// One batch per scenario step.
		app := newFakeApplier()
		a := syncAgent(t, app, f)
		a.rec.Synced()
		st := state{}
		for i, cs := range steps {
			for _, c := range cs {
				st.apply(c)
			}
			feed(a, cs)
			checkBatch(t, a, app, st, f, fmt.Sprintf("%s step %d", name, i))
		}
		final := app.last().String()
		for _, m := range app.last().Maps {
			mapEntries += len(m.Entries)
		}

		// Random cut points through the flattened sequence.
		var all []change
		for _, cs := range steps {
			all = append(all, cs...)
		}
		app2 := newFakeApplier()
		a2 := syncAgent(t, app2, f)
		a2.rec.Synced()
		st2 := state{}
		for i := 0; i < len(all); {
			n := 1 + rng.IntN(4)
			cs := all[i:min(i+n, len(all))]
			for _, c := range cs {
				st2.apply(c)
			}
			feed(a2, cs)
			checkBatch(t, a2, app2, st2, f, fmt.Sprintf("%s events %d..%d", name, i, i+len(cs)))
			i += len(cs)
		}
		if got := app2.last().String(); got != final {
			t.Fatalf("%s: random batching reached a different table", name)
		}

		// The final state from scratch: one batch, and one object per batch
		// in shuffled order.
		objs := st.objects()
		app3 := newFakeApplier()
		a3 := syncAgent(t, app3, f)
		a3.rec.Synced()
		for _, o := range objs {
			a3.rec.Upsert(o)
		}
		a3.batch()
		if got := app3.last().String(); got != final {
			t.Fatalf("%s: one-batch start reached a different table", name)
		}
		app4 := newFakeApplier()
		a4 := syncAgent(t, app4, f)
		a4.rec.Synced()
		a4.batch() // the initial sync, of an empty datastore
		rng.Shuffle(len(objs), func(i, j int) { objs[i], objs[j] = objs[j], objs[i] })
		for _, o := range objs {
			a4.rec.Upsert(o)
			a4.batch()
		}
		if app4.last() == nil {
			t.Fatalf("%s: no sync: %v (%d objects)", name, app4.Calls(), len(objs))
		}
		if got := app4.last().String(); got != final {
			t.Fatalf("%s: shuffled one-object batches reached a different table", name)
		}
	}
}
