package compiler

import (
	"cmp"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

// Governance and the shared chains. Each local endpoint, per direction, is
// governed by an ordered list of (tier, policies). That list determines its
// profile chain, named by a hash of the list, so endpoints with the same list
// share one profile chain and every tier chain in it. Chains are reference
// counted: endpoints hold profile chains, profile chains hold tier chains, tier
// chains hold policy chains, policy chains hold sets.

type chainState struct {
	chain *ir.Chain
	refs  int
	deps  []string // chains this one jumps to (one reference each)
	sets  []string // sets this one references (one reference each)
	gen   uint64   // policy chains: flush generation of the last render
}

// govTier is one governing tier of an endpoint in one direction.
type govTier struct {
	tier *policy.Tier
	pols []policy.Ref // in evaluation order
	name string       // tier chain name
}

var dirs = [2]policy.Direction{policy.Ingress, policy.Egress}

// govern computes the profile chain name of a local endpoint in direction d
// ("" when no tier governs it there) and the tiers behind it.
func (e *Engine) govern(ref policy.Ref, d policy.Direction) (string, []govTier) {
	type keyed struct {
		pos int
		ps  *polState
	}
	var pols []keyed
	sub := e.endpoints[ref]
	if sub == nil {
		return "", nil
	}
	e.subjIdx.SelectorsOf(sub, func(ss *subjSel) {
		for _, ps := range ss.pols {
			if pos, ok := e.tierPos[ps.p.Tier]; ok && ps.p.Governs(d) {
				pols = append(pols, keyed{pos, ps})
			}
		}
	})
	if len(pols) == 0 {
		return "", nil
	}
	slices.SortFunc(pols, func(a, b keyed) int {
		if c := cmp.Compare(a.pos, b.pos); c != 0 {
			return c
		}
		if c := cmp.Compare(a.ps.p.Order, b.ps.p.Order); c != 0 {
			return c
		}
		return compareRefs(a.ps.p.Ref, b.ps.p.Ref)
	})
	var tiers []govTier
	var pkey strings.Builder
	pkey.WriteString(d.String())
	for i := 0; i < len(pols); {
		j := i
		for j < len(pols) && pols[j].pos == pols[i].pos {
			j++
		}
		t := &e.tiers[pols[i].pos]
		g := govTier{tier: t}
		var key strings.Builder
		key.WriteString(t.Name)
		key.WriteByte(0)
		key.WriteString(d.String())
		key.WriteByte(0)
		key.WriteString(defaultAction(t).String())
		for _, k := range pols[i:j] {
			g.pols = append(g.pols, k.ps.p.Ref)
			key.WriteByte(0)
			key.WriteString(k.ps.chains[d])
		}
		g.name = TierChainName(key.String())
		tiers = append(tiers, g)
		pkey.WriteByte(0)
		pkey.WriteString(g.name)
		i = j
	}
	return ProfileChainName(d, pkey.String()), tiers
}

// defaultAction is a tier's default; anything but Pass denies (fail closed).
func defaultAction(t *policy.Tier) policy.Action {
	if t.DefaultAction == policy.ActionPass {
		return policy.ActionPass
	}
	return policy.ActionDeny
}

// regovern recomputes the profile chains of one endpoint.
func (e *Engine) regovern(ref policy.Ref) {
	old, oldIf := e.profiles[ref], e.ifaces[ref]
	var now [2]string
	var tiers [2][]govTier
	newIf := ""
	if sub := e.endpoints[ref]; sub != nil && sub.local {
		newIf = EndpointInterface(sub.ep)
		for _, d := range dirs {
			now[d], tiers[d] = e.govern(ref, d)
		}
	}
	if now == [2]string{} {
		newIf = ""
	}
	if now == old && newIf == oldIf {
		return
	}
	for _, d := range dirs {
		// Entries published under an interface name that is no longer the
		// endpoint's (discovered interface changed) move to the new name.
		if old[d] != "" && oldIf != newIf {
			delete(e.entries[d], oldIf)
			e.touchedIfaces[d][oldIf] = struct{}{}
		}
		if now[d] == old[d] {
			if now[d] != "" && oldIf != newIf {
				e.entries[d][newIf] = now[d]
				e.touchedIfaces[d][newIf] = struct{}{}
			}
			continue
		}
		// Acquire before releasing, so shared chains never drop to zero.
		if now[d] != "" {
			e.acquireProfile(now[d], d, tiers[d])
			e.entries[d][newIf] = now[d]
			e.touchedIfaces[d][newIf] = struct{}{}
		} else if oldIf == newIf {
			delete(e.entries[d], oldIf)
			e.touchedIfaces[d][oldIf] = struct{}{}
		}
		if old[d] != "" {
			e.releaseChain(old[d])
		}
	}
	if now == [2]string{} {
		delete(e.profiles, ref)
		delete(e.ifaces, ref)
	} else {
		e.profiles[ref] = now
		e.ifaces[ref] = newIf
	}
}

func (e *Engine) addChain(name string, cs *chainState) {
	e.chains[name] = cs
	e.touchedChains[name] = struct{}{}
}

// acquireProfile takes a reference on a profile chain, building it (and
// acquiring its tier chains) on first use.
func (e *Engine) acquireProfile(name string, d policy.Direction, tiers []govTier) {
	if cs := e.chains[name]; cs != nil {
		cs.refs++
		return
	}
	ch := &ir.Chain{Name: name, Comment: d.String() + " profile"}
	clearBoth := ir.StmtSetMark{And: ^markBoth}
	ch.Rules = append(ch.Rules, &ir.Rule{Stmts: []ir.Stmt{clearBoth}})
	cs := &chainState{chain: ch, refs: 1}
	for _, t := range tiers {
		e.acquireTier(t, d)
		cs.deps = append(cs.deps, t.name)
		ch.Rules = append(ch.Rules,
			&ir.Rule{Verdict: ir.Verdict{Kind: ir.VerdictJump, Chain: t.name}},
			&ir.Rule{Matches: []ir.Match{ir.MatchMark{Mask: markAllow, Value: markAllow}}, Verdict: ir.Verdict{Kind: ir.VerdictReturn}},
			&ir.Rule{Stmts: []ir.Stmt{ir.StmtSetMark{And: ^markPass}}},
		)
	}
	ch.Rules = append(ch.Rules, &ir.Rule{
		Counter: true, Verdict: ir.Verdict{Kind: ir.VerdictReturn},
		Origin: &ir.Origin{Kind: ir.OriginNoTier, Direction: d, Action: policy.ActionAllow},
	})
	e.addChain(name, cs)
}

// acquireTier takes a reference on a tier chain, building it (and acquiring
// its policy chains) on first use.
func (e *Engine) acquireTier(t govTier, d policy.Direction) {
	if cs := e.chains[t.name]; cs != nil {
		cs.refs++
		return
	}
	ch := &ir.Chain{Name: t.name, Comment: comment("tier " + t.tier.Name + " " + d.String())}
	cs := &chainState{chain: ch, refs: 1}
	decided := ir.MatchMark{Mask: markBoth, Value: 0, Negate: true}
	for _, ref := range t.pols {
		pname := e.acquirePolicyChain(ref, d)
		cs.deps = append(cs.deps, pname)
		// The jump names the policy (RuleIndex -1, no Action), so that explain
		// can list a governing policy even when none of its rules ran.
		jo := &ir.Origin{Kind: ir.OriginPolicyRule, Tier: t.tier.Name, Direction: d, Policy: ref, RuleIndex: -1}
		ch.Rules = append(ch.Rules,
			&ir.Rule{Verdict: ir.Verdict{Kind: ir.VerdictJump, Chain: pname}, Origin: jo},
			&ir.Rule{Matches: []ir.Match{decided}, Verdict: ir.Verdict{Kind: ir.VerdictReturn}},
		)
	}
	act := defaultAction(t.tier)
	o := &ir.Origin{Kind: ir.OriginTierDefault, Tier: t.tier.Name, Direction: d, Action: act}
	if act == policy.ActionPass {
		ch.Rules = append(ch.Rules, &ir.Rule{Counter: true, Stmts: []ir.Stmt{ir.StmtSetMark{And: ^uint32(0), Or: markPass}},
			Verdict: ir.Verdict{Kind: ir.VerdictReturn}, Origin: o})
	} else {
		ch.Rules = append(ch.Rules, &ir.Rule{Counter: true, Verdict: ir.Verdict{Kind: ir.VerdictDrop}, Origin: o})
	}
	e.addChain(t.name, cs)
}

// acquirePolicyChain takes a reference on a policy chain, rendering it on
// first use.
func (e *Engine) acquirePolicyChain(ref policy.Ref, d policy.Direction) string {
	name := PolicyChainName(ref, d)
	if cs := e.chains[name]; cs != nil {
		cs.refs++
		return name
	}
	cs := &chainState{refs: 1}
	e.renderPolicy(cs, name, ref, d)
	e.addChain(name, cs)
	return name
}

// renderPolicy (re)renders a policy chain, moving its set references from
// the old sets to the new ones.
func (e *Engine) renderPolicy(cs *chainState, name string, ref policy.Ref, d policy.Direction) {
	var specs []setSpec
	if ps := e.policies[ref]; ps != nil {
		cs.chain, specs, _ = renderPolicyChain(&ps.p, d) // problems were recorded on upsert
	} else {
		// Deleted while still referenced: only until the referrers are
		// regoverned in this same flush.
		cs.chain = &ir.Chain{Name: name}
	}
	cs.gen = e.gen
	old := cs.sets
	cs.sets = make([]string, len(specs))
	for i, s := range specs {
		e.acquireSet(s)
		cs.sets[i] = s.name
	}
	for _, s := range old {
		e.releaseSet(s)
	}
}

// releaseChain drops a reference; the last one removes the chain and releases
// what it holds.
func (e *Engine) releaseChain(name string) {
	cs := e.chains[name]
	if cs == nil {
		return
	}
	if cs.refs--; cs.refs > 0 {
		return
	}
	delete(e.chains, name)
	e.touchedChains[name] = struct{}{}
	for _, dep := range cs.deps {
		e.releaseChain(dep)
	}
	for _, s := range cs.sets {
		e.releaseSet(s)
	}
}
