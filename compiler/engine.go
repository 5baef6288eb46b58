package compiler

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selectors"
)

// Options configure a compilation.
type Options struct {
	// Node is the node whose endpoints are local: only local endpoints get
	// verdict map entries (and so profile, tier and policy chains).
	Node string
	// AllLocal makes every endpoint local (the simulator and the matrix).
	AllLocal bool
	// TableName defaults to "tabby".
	TableName string
}

// Engine compiles incrementally. Upserts and deletes record what changed;
// Flush does the work and reports the difference since the previous Flush.
// Table is always equal to Compile of the current objects as of the last
// Flush. An Engine is not safe for concurrent use.
//
// The engine keeps the maps and slices of the objects it is given: callers
// must not modify them after the call (replace the object instead).
type Engine struct {
	opts Options

	tiers   []policy.Tier
	tierPos map[string]int

	policies  map[policy.Ref]*polState
	endpoints map[policy.Ref]*subject
	netsets   map[policy.Ref]*subject

	// subjIdx evaluates policy subjects against local endpoints only: that is
	// all governance needs. peerIdx evaluates the selectors of existing sets
	// against every endpoint and network set. Both are keyed by pointers,
	// which hash far faster than Refs and need no lookup in event handlers.
	subjIdx  *selectors.Index[*subjSel, *subject]
	subjSels map[string]*subjSel // by selector ID
	peerIdx  *selectors.Index[*peerSel, *subject]
	peerSels map[string]*peerSel // by selector ID

	chains   map[string]*chainState
	sets     map[string]*setState
	profiles map[policy.Ref][2]string // by direction: profile chain of a local endpoint
	ifaces   map[policy.Ref]string    // interface a local endpoint's map entries are published under
	entries  [2]map[string]string     // by direction: ifname -> profile chain
	gen      uint64                   // flush generation

	dirtyEps      map[policy.Ref]struct{}
	dirtyPolicies map[policy.Ref]struct{}
	dirtySets     []*setState         // sets with pending changes (setState.dirty)
	goneSets      map[string]struct{} // sets released since the last Flush
	touchedChains map[string]struct{}
	touchedIfaces [2]map[string]struct{}

	pub      published
	problems map[policy.Ref][]error
}

type polState struct {
	p      policy.Policy
	subjID string    // "" without a subject
	chains [2]string // PolicyChainName by direction
}

// subject is an endpoint or a network set as the indexes see it. ep and ns
// are replaced, never modified, so a set can always subtract exactly what it
// added.
type subject struct {
	ref   policy.Ref
	ep    *policy.Endpoint   // endpoints
	ns    *policy.NetworkSet // network sets
	local bool
}

type subjSel struct {
	id   string
	sel  *selectors.Selector
	pols map[policy.Ref]*polState
}

type peerSel struct {
	id   string
	sel  *selectors.Selector
	sets []*setState
}

// NewEngine returns an engine with no objects.
func NewEngine(o Options) *Engine {
	if o.TableName == "" {
		o.TableName = DefaultTableName
	}
	e := &Engine{
		opts:          o,
		tierPos:       map[string]int{},
		policies:      map[policy.Ref]*polState{},
		endpoints:     map[policy.Ref]*subject{},
		netsets:       map[policy.Ref]*subject{},
		subjSels:      map[string]*subjSel{},
		peerSels:      map[string]*peerSel{},
		chains:        map[string]*chainState{},
		sets:          map[string]*setState{},
		profiles:      map[policy.Ref][2]string{},
		ifaces:        map[policy.Ref]string{},
		entries:       [2]map[string]string{{}, {}},
		dirtyEps:      map[policy.Ref]struct{}{},
		dirtyPolicies: map[policy.Ref]struct{}{},
		goneSets:      map[string]struct{}{},
		touchedChains: map[string]struct{}{},
		touchedIfaces: [2]map[string]struct{}{{}, {}},
		pub:           newPublished(),
		problems:      map[policy.Ref][]error{},
	}
	e.subjIdx = selectors.NewIndex(func(ev selectors.Event[*subjSel, *subject]) {
		e.dirtyEps[ev.Subject.ref] = struct{}{}
	})
	e.peerIdx = selectors.NewIndex(e.onPeerEvent)
	return e
}

// SetTiers replaces the tiers, in evaluation order.
func (e *Engine) SetTiers(tiers []policy.Tier) {
	if e.tiers != nil && slices.Equal(e.tiers, tiers) {
		return
	}
	e.tiers = slices.Clone(tiers)
	clear(e.tierPos)
	maps.DeleteFunc(e.problems, func(ref policy.Ref, _ []error) bool { return ref.Kind == policy.KindTier })
	for i, t := range e.tiers {
		ref := t.Ref
		if ref.Name == "" {
			ref = policy.Ref{Kind: policy.KindTier, Name: t.Name}
		}
		if _, dup := e.tierPos[t.Name]; dup {
			e.problems[ref] = append(e.problems[ref], fmt.Errorf("%w: tier %q", ErrDuplicate, t.Name))
			continue
		}
		if t.DefaultAction != policy.ActionDeny && t.DefaultAction != policy.ActionPass {
			e.problems[ref] = append(e.problems[ref], fmt.Errorf("%w, not %v", ErrInvalidDefault, t.DefaultAction))
		}
		e.tierPos[t.Name] = i
	}
	for ref, ps := range e.policies {
		e.validatePolicy(ref, &ps.p)
	}
	// Tier order or defaults may have changed for every governed endpoint.
	for ref, sub := range e.endpoints {
		if sub.local {
			e.dirtyEps[ref] = struct{}{}
		}
	}
}

func (e *Engine) validatePolicy(ref policy.Ref, p *policy.Policy) {
	delete(e.problems, ref)
	if p == nil {
		return
	}
	var errs []error
	if p.Subject == nil {
		errs = append(errs, ErrNoSubject)
	}
	if _, ok := e.tierPos[p.Tier]; !ok {
		errs = append(errs, fmt.Errorf("%w: %q", ErrUnknownTier, p.Tier))
	}
	for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
		for _, r := range p.Rules(d) {
			if _, _, _, err := actionTail(r.Action); err != nil {
				errs = append(errs, fmt.Errorf("%s rule %d: %w", d, r.Index, err))
			}
		}
	}
	if len(errs) > 0 {
		e.problems[ref] = errs
	}
}

// UpsertPolicy adds or replaces a policy.
func (e *Engine) UpsertPolicy(p policy.Policy) {
	old := e.policies[p.Ref]
	ps := &polState{p: p, chains: [2]string{PolicyChainName(p.Ref, policy.Ingress), PolicyChainName(p.Ref, policy.Egress)}}
	if p.Subject != nil {
		ps.subjID = p.Subject.ID()
	}
	e.validatePolicy(p.Ref, &p)
	if old == nil || governanceChanged(&old.p, &p) {
		if old != nil {
			e.markSubjects(old.subjID)
		}
		e.markSubjects(ps.subjID)
	}
	if old != nil {
		e.dropSubject(old)
	}
	e.policies[p.Ref] = ps
	e.addSubject(ps)
	e.dirtyPolicies[p.Ref] = struct{}{}
}

// DeletePolicy removes a policy.
func (e *Engine) DeletePolicy(ref policy.Ref) {
	old := e.policies[ref]
	if old == nil {
		return
	}
	e.markSubjects(old.subjID)
	e.dropSubject(old)
	delete(e.policies, ref)
	delete(e.problems, ref)
	e.dirtyPolicies[ref] = struct{}{}
}

func governanceChanged(a, b *policy.Policy) bool {
	id := func(s *selectors.Selector) string {
		if s == nil {
			return ""
		}
		return s.ID()
	}
	return id(a.Subject) != id(b.Subject) || a.Tier != b.Tier || a.Order != b.Order ||
		a.Ingress != b.Ingress || a.Egress != b.Egress
}

// markSubjects marks the local endpoints a subject selector matches.
func (e *Engine) markSubjects(id string) {
	ss := e.subjSels[id]
	if ss == nil {
		return
	}
	e.subjIdx.Matching(ss, func(sub *subject) { e.dirtyEps[sub.ref] = struct{}{} })
}

func (e *Engine) addSubject(ps *polState) {
	if ps.subjID == "" {
		return
	}
	ss := e.subjSels[ps.subjID]
	if ss == nil {
		ss = &subjSel{id: ps.subjID, sel: ps.p.Subject, pols: map[policy.Ref]*polState{}}
		e.subjSels[ps.subjID] = ss
		ss.pols[ps.p.Ref] = ps
		e.subjIdx.UpdateSelector(ss, ps.p.Subject)
		return
	}
	ss.pols[ps.p.Ref] = ps
}

func (e *Engine) dropSubject(ps *polState) {
	ss := e.subjSels[ps.subjID]
	if ss == nil {
		return
	}
	delete(ss.pols, ps.p.Ref)
	if len(ss.pols) == 0 {
		delete(e.subjSels, ps.subjID)
		e.subjIdx.DeleteSelector(ss)
	}
}

func (e *Engine) isLocal(ep *policy.Endpoint) bool {
	return e.opts.AllLocal || (e.opts.Node != "" && ep.Node == e.opts.Node)
}

// UpsertEndpoint adds or replaces an endpoint.
func (e *Engine) UpsertEndpoint(ep policy.Endpoint) {
	cp := &ep
	sub := e.endpoints[ep.Ref]
	labelsSame, wasLocal := false, false
	if sub == nil {
		sub = &subject{ref: ep.Ref, ep: cp}
		e.endpoints[ep.Ref] = sub
	} else {
		labelsSame = maps.Equal(sub.ep.Labels, ep.Labels)
		wasLocal = sub.local
		if sub.ep.Interface != ep.Interface {
			e.dirtyEps[ep.Ref] = struct{}{}
		}
		if !slices.Equal(sub.ep.IPs, ep.IPs) || !slices.Equal(sub.ep.Ports, ep.Ports) {
			// Swap this endpoint's contribution to every set it is in.
			old := sub.ep
			e.peerIdx.SelectorsOf(sub, func(ps *peerSel) {
				for _, s := range ps.sets {
					s.contributeEndpoint(old, -1)
					s.contributeEndpoint(cp, +1)
					e.markDirty(s)
				}
			})
		}
		sub.ep = cp
	}
	sub.local = e.isLocal(cp)
	if !labelsSame {
		e.peerIdx.UpdateLabels(sub, ep.Labels)
	}
	switch {
	case sub.local && (!wasLocal || !labelsSame):
		e.subjIdx.UpdateLabels(sub, ep.Labels)
		e.dirtyEps[ep.Ref] = struct{}{}
	case !sub.local && wasLocal:
		e.subjIdx.DeleteLabels(sub)
		e.dirtyEps[ep.Ref] = struct{}{}
	}
}

// DeleteEndpoint removes an endpoint.
func (e *Engine) DeleteEndpoint(ref policy.Ref) {
	sub := e.endpoints[ref]
	if sub == nil {
		return
	}
	e.peerIdx.DeleteLabels(sub)
	if sub.local {
		e.subjIdx.DeleteLabels(sub)
	}
	delete(e.endpoints, ref)
	e.dirtyEps[ref] = struct{}{}
}

// UpsertNetworkSet adds or replaces a network set.
func (e *Engine) UpsertNetworkSet(ns policy.NetworkSet) {
	cp := &ns
	sub := e.netsets[ns.Ref]
	labelsSame := false
	if sub == nil {
		sub = &subject{ref: ns.Ref, ns: cp}
		e.netsets[ns.Ref] = sub
	} else {
		labelsSame = maps.Equal(sub.ns.Labels, ns.Labels)
		if !slices.Equal(sub.ns.Nets, ns.Nets) {
			old := sub.ns
			e.peerIdx.SelectorsOf(sub, func(ps *peerSel) {
				for _, s := range ps.sets {
					s.contributeNetworkSet(old, -1)
					s.contributeNetworkSet(cp, +1)
					e.markDirty(s)
				}
			})
		}
		sub.ns = cp
	}
	if !labelsSame {
		e.peerIdx.UpdateLabels(sub, ns.Labels)
	}
}

// DeleteNetworkSet removes a network set.
func (e *Engine) DeleteNetworkSet(ref policy.Ref) {
	sub := e.netsets[ref]
	if sub == nil {
		return
	}
	e.peerIdx.DeleteLabels(sub)
	delete(e.netsets, ref)
}

// onPeerEvent applies a selector's match change to the sets it backs.
func (e *Engine) onPeerEvent(ev selectors.Event[*peerSel, *subject]) {
	sign := int32(-1)
	if ev.Started {
		sign = 1
	}
	for _, s := range ev.Selector.sets {
		e.contribute(s, ev.Subject, sign)
	}
}

func (e *Engine) contribute(s *setState, sub *subject, sign int32) {
	if sub.ep != nil {
		s.contributeEndpoint(sub.ep, sign)
	} else {
		s.contributeNetworkSet(sub.ns, sign)
	}
	e.markDirty(s)
}

func (e *Engine) markDirty(s *setState) {
	if !s.dirty {
		s.dirty = true
		e.dirtySets = append(e.dirtySets, s)
	}
}

// acquireSet takes a reference on the set of spec, creating it (and
// registering its selector) on first use.
func (e *Engine) acquireSet(spec setSpec) {
	if s := e.sets[spec.name]; s != nil {
		s.refs++
		return
	}
	s := newSetState(spec)
	s.refs = 1
	e.sets[spec.name] = s
	e.markDirty(s)
	if spec.sel == nil {
		return
	}
	id := spec.sel.ID()
	if ps := e.peerSels[id]; ps != nil {
		ps.sets = append(ps.sets, s)
		e.peerIdx.Matching(ps, func(sub *subject) { e.contribute(s, sub, 1) })
		return
	}
	ps := &peerSel{id: id, sel: spec.sel, sets: []*setState{s}}
	e.peerSels[id] = ps
	e.peerIdx.UpdateSelector(ps, spec.sel) // started events fill s
}

// releaseSet drops a reference; the last one removes the set.
func (e *Engine) releaseSet(name string) {
	s := e.sets[name]
	if s == nil {
		return
	}
	if s.refs--; s.refs > 0 {
		return
	}
	delete(e.sets, name)
	e.goneSets[name] = struct{}{}
	if s.spec.sel == nil {
		return
	}
	id := s.spec.sel.ID()
	ps := e.peerSels[id]
	if ps == nil {
		return
	}
	ps.sets = slices.DeleteFunc(ps.sets, func(x *setState) bool { return x == s })
	if len(ps.sets) == 0 {
		delete(e.peerSels, id)
		e.peerIdx.DeleteSelector(ps)
	}
}

// Problems lists the current problems with the objects, sorted. They are
// *ObjectError values.
func (e *Engine) Problems() []error {
	refs := slices.SortedFunc(maps.Keys(e.problems), compareRefs)
	var out []error
	for _, ref := range refs {
		for _, err := range e.problems[ref] {
			out = append(out, &ObjectError{Object: ref, Err: err})
		}
	}
	return out
}

func compareRefs(a, b policy.Ref) int {
	if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
		return c
	}
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}
