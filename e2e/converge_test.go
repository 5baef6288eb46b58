package e2e

import (
	"math/rand/v2"
	"reflect"
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
	oldPol := map[policy.Ref]policy.Policy{}
	for _, p := range prev.Policies {
		oldPol[p.Ref] = p
	}
	for _, p := range next.Policies {
		if old, ok := oldPol[p.Ref]; !ok || !reflect.DeepEqual(old, p) {
			evs = append(evs, func(e *compiler.Engine) { e.UpsertPolicy(p) })
		}
		delete(oldPol, p.Ref)
	}
	for ref := range oldPol {
		evs = append(evs, func(e *compiler.Engine) { e.DeletePolicy(ref) })
	}
	oldEp := map[policy.Ref]policy.Endpoint{}
	for _, ep := range prev.Endpoints {
		oldEp[ep.Ref] = ep
	}
	for _, ep := range next.Endpoints {
		if old, ok := oldEp[ep.Ref]; !ok || !reflect.DeepEqual(old, ep) {
			evs = append(evs, func(e *compiler.Engine) { e.UpsertEndpoint(ep) })
		}
		delete(oldEp, ep.Ref)
	}
	for ref := range oldEp {
		evs = append(evs, func(e *compiler.Engine) { e.DeleteEndpoint(ref) })
	}
	oldNs := map[policy.Ref]policy.NetworkSet{}
	for _, ns := range prev.NetworkSets {
		oldNs[ns.Ref] = ns
	}
	for _, ns := range next.NetworkSets {
		if old, ok := oldNs[ns.Ref]; !ok || !reflect.DeepEqual(old, ns) {
			evs = append(evs, func(e *compiler.Engine) { e.UpsertNetworkSet(ns) })
		}
		delete(oldNs, ns.Ref)
	}
	for ref := range oldNs {
		evs = append(evs, func(e *compiler.Engine) { e.DeleteNetworkSet(ref) })
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
