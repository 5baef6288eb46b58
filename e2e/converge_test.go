package e2e

import (
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/e2e/scenario"
	"github.com/tabbynet/tabby/policy"
)

// event is one incremental update to a compiler.Engine.
type event func(e *compiler.Engine)

// diffModels returns the events that turn an engine holding prev into one
// holding next: upserts of what is new or changed, deletes of what is gone.
func diffModels(prev, next *policy.Model) []event {
	var evs []event
	if prev == nil || !reflect.DeepEqual(prev.Tiers, next.Tiers) {
		tiers := next.Tiers
		evs = append(evs, func(e *compiler.Engine) { e.SetTiers(tiers) })
	}
	if prev == nil {
		prev = &policy.Model{}
	}
	evs = append(evs, diffBy(prev.Policies, next.Policies, func(p policy.Policy) policy.Ref { return p.Ref },
		func(p policy.Policy) event { return func(e *compiler.Engine) { e.UpsertPolicy(p) } },
		func(r policy.Ref) event { return func(e *compiler.Engine) { e.DeletePolicy(r) } })...)
	evs = append(evs, diffBy(prev.Endpoints, next.Endpoints, func(ep policy.Endpoint) policy.Ref { return ep.Ref },
		func(ep policy.Endpoint) event { return func(e *compiler.Engine) { e.UpsertEndpoint(ep) } },
		func(r policy.Ref) event { return func(e *compiler.Engine) { e.DeleteEndpoint(r) } })...)
	evs = append(evs, diffBy(prev.NetworkSets, next.NetworkSets, func(ns policy.NetworkSet) policy.Ref { return ns.Ref },
		func(ns policy.NetworkSet) event { return func(e *compiler.Engine) { e.UpsertNetworkSet(ns) } },
		func(r policy.Ref) event { return func(e *compiler.Engine) { e.DeleteNetworkSet(r) } })...)
	return evs
}

// diffBy compares two lists of objects keyed by Ref: upserts for new or
// changed objects (in next's order), deletes for vanished ones (sorted).
func diffBy[T any](prev, next []T, ref func(T) policy.Ref, upsert func(T) event, del func(policy.Ref) event) []event {
	old := map[policy.Ref]T{}
	for _, o := range prev {
		old[ref(o)] = o
	}
	var evs []event
	for _, o := range next {
		if was, ok := old[ref(o)]; !ok || !reflect.DeepEqual(was, o) {
			evs = append(evs, upsert(o))
		}
		delete(old, ref(o))
	}
	gone := make([]policy.Ref, 0, len(old))
	for r := range old {
		gone = append(gone, r)
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].String() < gone[j].String() })
	for _, r := range gone {
		evs = append(evs, del(r))
	}
	return evs
}

// TestCorpusConvergence drives one Engine through every scenario's steps
// (the upstream tests' own sequences of policy, pod and namespace changes)
// and checks after each step that the incremental table equals a
// from-scratch compile, and that a second Flush changes nothing. It also
// rebuilds each final state in forward, reversed and shuffled event orders.
func TestCorpusConvergence(t *testing.T) {
	opts := compiler.Options{AllLocal: true}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range corpusFiles(t) {
		sc, err := scenario.Load(f)
		if err != nil {
			t.Fatalf("load %s: %v", f, err)
		}
		eng := compiler.NewEngine(opts)
		var prev *policy.Model
		for _, step := range sc.Steps {
			m, errs := policy.Normalize(step.Objects)
			if len(errs) > 0 {
				t.Fatalf("%s: %v", f, errs)
			}
			want, err := compiler.Compile(m, opts)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, ev := range diffModels(prev, m) {
				ev(eng)
			}
			eng.Flush()
			if got := eng.Table().String(); got != want.String() {
				t.Fatalf("%s %s: incremental table differs from a full compile:\n--- incremental\n%s\n--- full\n%s", f, step.Name, got, want.String())
			}
			if d := eng.Flush(); !d.Empty() {
				t.Fatalf("%s %s: second Flush is not empty: %+v", f, step.Name, d)
			}
			prev = m
		}
		// The final state from scratch, in three event orders.
		evs := diffModels(nil, prev)
		want, _ := compiler.Compile(prev, opts)
		orders := map[string][]event{"forward": evs, "reversed": reversed(evs), "shuffled": shuffled(rng, evs)}
		for name, order := range orders {
			e := compiler.NewEngine(opts)
			for _, ev := range order {
				ev(e)
			}
			e.Flush()
			if got := e.Table().String(); got != want.String() {
				t.Fatalf("%s: %s event order reaches a different table", f, name)
			}
		}
	}
}

func reversed(evs []event) []event {
	out := make([]event, len(evs))
	for i, ev := range evs {
		out[len(evs)-1-i] = ev
	}
	return out
}

func shuffled(rng *rand.Rand, evs []event) []event {
	out := append([]event(nil), evs...)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
