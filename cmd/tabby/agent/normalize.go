package agent

import (
	"cmp"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/policy"
)

// normalizer turns the datastore's objects into normalised model objects,
// incrementally. Each batch re-normalises only the changed objects and their
// dependents, with one policy.Normalize call over them plus the context
// objects (Namespaces, ServiceAccounts, Tiers), which are few. Not safe for
// concurrent use: only the loop goroutine calls it.
//
// Dependents of context objects, from what policy.Normalize reads:
//   - a Namespace: every object in that namespace (pods and network sets
//     carry its labels as ns:*);
//   - a ServiceAccount: every object in its namespace (pods carry sa:*);
//   - a Tier: every Tabby policy (spec.tier must name an existing tier), and
//     the tier list itself.
//
// Last valid version: when an object's new version does not normalise, the
// last version of it that did is normalised in its place (against the current
// context) and its error is reported; if that one fails too, the object is
// left out. A deleted object is forgotten, valid versions included.
type normalizer struct {
	latest map[policy.Ref]policy.Object // as the datastore has them
	good   map[policy.Ref]policy.Object // last version that normalised cleanly
	byNS   map[string]map[policy.Ref]struct{}
	tabby  map[policy.Ref]struct{} // Tabby policies (depend on tiers)
	errs   map[policy.Ref][]error  // problems of the latest version
	kept   map[policy.Ref]bool     // served from the last valid version

	// The valid context objects: tiers, and Namespaces and ServiceAccounts
	// by namespace. An object is normalised with the tiers and the context
	// of its own namespace only: that is all policy.Normalize reads for it
	// (TestRandomWalkConvergence checks this against full normalisations).
	ctxTiers map[policy.Ref]policy.Object
	ctxNS    map[string]map[policy.Ref]policy.Object

	tiers     []policy.Tier
	policies  map[policy.Ref]policy.Policy
	endpoints map[policy.Ref]policy.Endpoint
	netsets   map[policy.Ref]policy.NetworkSet
}

// normChange says what a batch changed in the normalised model.
type normChange struct {
	tiers     bool
	policies  []policy.Ref // output added, changed or removed; sorted
	endpoints []policy.Ref
	netsets   []policy.Ref
}

func newNormalizer() *normalizer {
	n := &normalizer{
		latest:    map[policy.Ref]policy.Object{},
		good:      map[policy.Ref]policy.Object{},
		byNS:      map[string]map[policy.Ref]struct{}{},
		tabby:     map[policy.Ref]struct{}{},
		errs:      map[policy.Ref][]error{},
		kept:      map[policy.Ref]bool{},
		policies:  map[policy.Ref]policy.Policy{},
		endpoints: map[policy.Ref]policy.Endpoint{},
		netsets:   map[policy.Ref]policy.NetworkSet{},
		ctxTiers:  map[policy.Ref]policy.Object{},
		ctxNS:     map[string]map[policy.Ref]policy.Object{},
	}
	n.tiers = n.normalizeTiers()
	return n
}

func isContext(k policy.Kind) bool {
	return k == policy.KindNamespace || k == policy.KindServiceAccount || k == policy.KindTier
}

func isTabbyPolicy(k policy.Kind) bool {
	return k == policy.KindTabbyNetworkPolicy || k == policy.KindGlobalNetworkPolicy
}

// apply takes a batch of changes (nil: deleted) and returns what changed in
// the normalised model.
func (n *normalizer) apply(changes map[policy.Ref]*policy.Object) normChange {
	dirty := map[policy.Ref]struct{}{}
	var ctxDirty []policy.Ref
	for ref, o := range changes {
		if o == nil {
			delete(n.latest, ref)
			delete(n.good, ref)
		} else {
			n.latest[ref] = *o
		}
		if isContext(ref.Kind) {
			ctxDirty = append(ctxDirty, ref)
			continue
		}
		n.index(ref, o != nil)
		dirty[ref] = struct{}{}
	}
	var ch normChange
	if len(ctxDirty) > 0 {
		slices.SortFunc(ctxDirty, compareRefs)
		for _, ref := range ctxDirty {
			n.validateContext(ref)
			n.indexContext(ref)
			n.dependents(ref, dirty)
		}
		if tiers := n.normalizeTiers(); !reflect.DeepEqual(tiers, n.tiers) {
			n.tiers, ch.tiers = tiers, true
		}
	}
	n.renormalize(dirty, &ch)
	return ch
}

func (n *normalizer) index(ref policy.Ref, present bool) {
	if isTabbyPolicy(ref.Kind) {
		if present {
			n.tabby[ref] = struct{}{}
		} else {
			delete(n.tabby, ref)
		}
	}
	if ref.Namespace == "" {
		return
	}
	set := n.byNS[ref.Namespace]
	if present {
		if set == nil {
			set = map[policy.Ref]struct{}{}
			n.byNS[ref.Namespace] = set
		}
		set[ref] = struct{}{}
		return
	}
	delete(set, ref)
	if len(set) == 0 {
		delete(n.byNS, ref.Namespace)
	}
}

// validateContext normalises one changed context object on its own (their
// validity depends on nothing else) and keeps the last valid version.
func (n *normalizer) validateContext(ref policy.Ref) {
	o, ok := n.latest[ref]
	if !ok {
		delete(n.errs, ref)
		delete(n.kept, ref)
		return
	}
	if _, errs := policy.Normalize([]policy.Object{o}); len(errs) > 0 {
		n.errs[ref] = errs
		_, n.kept[ref] = n.good[ref]
		return
	}
	n.good[ref] = o
	delete(n.errs, ref)
	delete(n.kept, ref)
}

func (n *normalizer) dependents(ref policy.Ref, dirty map[policy.Ref]struct{}) {
	switch ref.Kind {
	case policy.KindNamespace:
		maps.Copy(dirty, n.byNS[ref.Name])
	case policy.KindServiceAccount:
		maps.Copy(dirty, n.byNS[ref.Namespace])
	case policy.KindTier:
		maps.Copy(dirty, n.tabby)
	}
}

// indexContext files the valid version of a context object, if any.
func (n *normalizer) indexContext(ref policy.Ref) {
	var m map[policy.Ref]policy.Object
	switch ref.Kind {
	case policy.KindTier:
		m = n.ctxTiers
	case policy.KindNamespace, policy.KindServiceAccount:
		ns := ref.Namespace
		if ref.Kind == policy.KindNamespace {
			ns = ref.Name
		}
		if m = n.ctxNS[ns]; m == nil {
			m = map[policy.Ref]policy.Object{}
			n.ctxNS[ns] = m
		}
		defer func() {
			if len(m) == 0 {
				delete(n.ctxNS, ns)
			}
		}()
	}
	if o, ok := n.good[ref]; ok {
		m[ref] = o
	} else {
		delete(m, ref)
	}
}

func sortedObjects(m map[policy.Ref]policy.Object) []policy.Object {
	out := make([]policy.Object, 0, len(m))
	for _, ref := range slices.SortedFunc(maps.Keys(m), compareRefs) {
		out = append(out, m[ref])
	}
	return out
}

// contextFor returns the context objects that normalising objs needs,
// followed by objs.
func (n *normalizer) contextFor(objs ...policy.Object) []policy.Object {
	out := sortedObjects(n.ctxTiers)
	seen := map[string]bool{}
	for _, o := range objs {
		if ns := o.Ref.Namespace; ns != "" && !seen[ns] {
			seen[ns] = true
			out = append(out, sortedObjects(n.ctxNS[ns])...)
		}
	}
	return append(out, objs...)
}

// normalizeTiers is the tier list of the valid context.
func (n *normalizer) normalizeTiers() []policy.Tier {
	m, _ := policy.Normalize(sortedObjects(n.ctxTiers))
	return m.Tiers
}

// result is one object's normalised output.
type result struct {
	pol  *policy.Policy
	ep   *policy.Endpoint
	ns   *policy.NetworkSet
	errs []error
}

// renormalize normalises the dirty objects and records changed outputs.
func (n *normalizer) renormalize(dirty map[policy.Ref]struct{}, ch *normChange) {
	var objs []policy.Object
	for _, ref := range slices.SortedFunc(maps.Keys(dirty), compareRefs) {
		if o, ok := n.latest[ref]; ok {
			objs = append(objs, o)
		}
	}
	res := n.normalizeObjects(objs)
	// Invalid new versions: try the last valid one, in the current context.
	var fallback []policy.Object
	for _, o := range objs {
		if r := res[o.Ref]; len(r.errs) > 0 {
			if g, ok := n.good[o.Ref]; ok && !reflect.DeepEqual(g, o) {
				fallback = append(fallback, g)
			}
		}
	}
	var res2 map[policy.Ref]result
	if len(fallback) > 0 {
		res2 = n.normalizeObjects(fallback)
	}
	for ref := range dirty {
		r, present := res[ref]
		switch {
		case !present: // deleted
			delete(n.errs, ref)
			delete(n.kept, ref)
		case len(r.errs) == 0:
			n.good[ref] = n.latest[ref]
			delete(n.errs, ref)
			delete(n.kept, ref)
		default:
			n.errs[ref] = r.errs
			r2, ok := res2[ref]
			n.kept[ref] = ok && len(r2.errs) == 0
			if n.kept[ref] {
				r = r2
			} else {
				r = result{} // left out
			}
		}
		setOutput(n.policies, ref, r.pol, &ch.policies)
		setOutput(n.endpoints, ref, r.ep, &ch.endpoints)
		setOutput(n.netsets, ref, r.ns, &ch.netsets)
	}
	slices.SortFunc(ch.policies, compareRefs)
	slices.SortFunc(ch.endpoints, compareRefs)
	slices.SortFunc(ch.netsets, compareRefs)
}

// setOutput stores or removes one output and notes the ref when it changed.
func setOutput[T any](m map[policy.Ref]T, ref policy.Ref, v *T, changed *[]policy.Ref) {
	old, had := m[ref]
	switch {
	case v == nil && had:
		delete(m, ref)
	case v == nil:
		return
	case had && reflect.DeepEqual(old, *v):
		return
	default:
		m[ref] = *v
	}
	*changed = append(*changed, ref)
}

// normalizeObjects normalises objs (distinct Refs, no context objects)
// against the valid context, in one policy.Normalize call, and splits the
// outputs and errors by object. Errors that name no object of objs (which
// Normalize never produces today) make it fall back to one call per object,
// so that no error is ever attributed to the wrong object.
func (n *normalizer) normalizeObjects(objs []policy.Object) map[policy.Ref]result {
	out := make(map[policy.Ref]result, len(objs))
	if len(objs) == 0 {
		return out
	}
	for _, o := range objs {
		out[o.Ref] = result{}
	}
	m, errs := policy.Normalize(n.contextFor(objs...))
	for _, err := range errs {
		var fe *policy.FieldError
		if !errors.As(err, &fe) || fe.Object.Name == "" {
			return n.normalizeEach(objs)
		}
		r, ok := out[fe.Object]
		if !ok {
			if isContext(fe.Object.Kind) {
				continue // cannot happen: context objects were validated alone
			}
			return n.normalizeEach(objs)
		}
		r.errs = append(r.errs, err)
		out[fe.Object] = r
	}
	collect(m, out)
	return out
}

func (n *normalizer) normalizeEach(objs []policy.Object) map[policy.Ref]result {
	out := make(map[policy.Ref]result, len(objs))
	for _, o := range objs {
		m, errs := policy.Normalize(n.contextFor(o))
		r := result{}
		for _, err := range errs {
			var fe *policy.FieldError
			if errors.As(err, &fe) && isContext(fe.Object.Kind) {
				continue
			}
			r.errs = append(r.errs, err)
		}
		out[o.Ref] = r
		if len(r.errs) == 0 {
			collect(m, out)
		}
	}
	return out
}

// collect files the model's outputs under their objects.
func collect(m *policy.Model, out map[policy.Ref]result) {
	for i := range m.Policies {
		if r, ok := out[m.Policies[i].Ref]; ok && len(r.errs) == 0 {
			r.pol = &m.Policies[i]
			out[m.Policies[i].Ref] = r
		}
	}
	for i := range m.Endpoints {
		if r, ok := out[m.Endpoints[i].Ref]; ok && len(r.errs) == 0 {
			r.ep = &m.Endpoints[i]
			out[m.Endpoints[i].Ref] = r
		}
	}
	for i := range m.NetworkSets {
		if r, ok := out[m.NetworkSets[i].Ref]; ok && len(r.errs) == 0 {
			r.ns = &m.NetworkSets[i]
			out[m.NetworkSets[i].Ref] = r
		}
	}
}

// problems lists the current normalisation problems, by Ref. kept says the
// object is still enforced in its last valid version.
func (n *normalizer) problems(yield func(ref policy.Ref, errs []error, kept bool)) {
	for _, ref := range slices.SortedFunc(maps.Keys(n.errs), compareRefs) {
		yield(ref, n.errs[ref], n.kept[ref])
	}
}

func compareRefs(a, b policy.Ref) int {
	return cmp.Or(strings.Compare(string(a.Kind), string(b.Kind)),
		strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}
