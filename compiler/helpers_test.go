package compiler

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selectors"
)

// Test helpers: model builders, a Delta applier that checks every step the
// kernel would check, and a referential-integrity check of a table.

// nsLabels are the labels of the namespaces test models use.
var nsLabels = map[string]map[string]string{
	"x":          {"team": "shop", "env": "prod"},
	"y":          {"team": "search", "env": "prod"},
	"z":          {"team": "shop", "env": "dev"},
	"monitoring": {"team": "infra"},
}

// pod builds an endpoint with the reserved labels policy/ adds.
func pod(ns, name, node string, labels map[string]string, ips ...string) policy.Endpoint {
	l := selectors.Map{
		selectors.KeyKind:           "pod",
		selectors.KeyNamespace:      ns,
		selectors.KeyServiceAccount: "default",
		selectors.NamespaceLabelPrefix + "kubernetes.io/metadata.name": ns,
	}
	for k, v := range nsLabels[ns] {
		l[selectors.NamespaceLabelPrefix+k] = v
	}
	for k, v := range labels {
		l[k] = v
	}
	ep := policy.Endpoint{Ref: policy.Ref{Kind: policy.KindPod, Namespace: ns, Name: name}, Labels: l, Node: node}
	for _, ip := range ips {
		ep.IPs = append(ep.IPs, netip.MustParseAddr(ip))
	}
	return ep
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func sel(s string) *selectors.Selector { return selectors.MustParse(s) }

func builtinTiers() []policy.Tier {
	return []policy.Tier{
		{Name: policy.TierAdmin, DefaultAction: policy.ActionPass},
		{Name: policy.TierKubernetes, DefaultAction: policy.ActionDeny},
		{Name: policy.TierBaseline, DefaultAction: policy.ActionPass},
	}
}

// applyDelta applies d to prev as the kernel would, failing t on anything
// the kernel would reject (adding what exists, removing what does not,
// overlapping interval elements), and returns the resulting table.
func applyDelta(t *testing.T, prev *ir.Table, d Delta) *ir.Table {
	t.Helper()
	sets := map[string]*ir.Set{}
	for _, s := range prev.Sets {
		sets[s.Name] = s
	}
	mps := map[string]*ir.Map{}
	for _, m := range prev.Maps {
		mps[m.Name] = m
	}
	chains := map[string]*ir.Chain{}
	for _, c := range prev.Chains {
		chains[c.Name] = c
	}
	for _, s := range d.SetsAdded {
		if sets[s.Name] != nil {
			t.Errorf("delta adds existing set %s", s.Name)
		}
		sets[s.Name] = s
	}
	for _, sd := range d.SetsChanged {
		old := sets[sd.Set.Name]
		if old == nil {
			t.Errorf("delta changes missing set %s", sd.Set.Name)
			continue
		}
		elems := slices.Clone(old.Elements)
		for _, r := range sd.Removed {
			i := slices.IndexFunc(elems, func(e ir.Element) bool { return CompareElements(e, r) == 0 })
			if i < 0 {
				t.Errorf("set %s: delta removes absent element %v", sd.Set.Name, r)
				continue
			}
			elems = slices.Delete(elems, i, i+1)
		}
		for _, a := range sd.Added {
			for _, e := range elems {
				if elementsOverlap(old, e, a) {
					t.Errorf("set %s: delta adds %v overlapping %v", sd.Set.Name, a, e)
				}
			}
			elems = append(elems, a)
		}
		slices.SortFunc(elems, CompareElements)
		if got, want := fmt.Sprint(elems), fmt.Sprint(sd.Set.Elements); got != want {
			t.Errorf("set %s: elements after delta\n%s\nwant (delta's full list)\n%s", sd.Set.Name, got, want)
		}
		cp := *sd.Set
		cp.Elements = elems
		sets[cp.Name] = &cp
	}
	for _, name := range d.SetsRemoved {
		if sets[name] == nil {
			t.Errorf("delta removes missing set %s", name)
		}
		delete(sets, name)
	}
	for _, m := range d.MapsAdded {
		if mps[m.Name] != nil {
			t.Errorf("delta adds existing map %s", m.Name)
		}
		mps[m.Name] = m
	}
	for _, md := range d.MapsChanged {
		old := mps[md.Map.Name]
		if old == nil {
			t.Errorf("delta changes missing map %s", md.Map.Name)
			continue
		}
		entries := slices.Clone(old.Entries)
		for _, r := range md.Removed {
			i := slices.IndexFunc(entries, func(e ir.MapEntry) bool { return e.Key[0].Str == r.Key[0].Str })
			if i < 0 || entries[i].Verdict != r.Verdict {
				t.Errorf("map %s: delta removes absent entry %v", md.Map.Name, r)
				continue
			}
			entries = slices.Delete(entries, i, i+1)
		}
		for _, a := range md.Added {
			if slices.ContainsFunc(entries, func(e ir.MapEntry) bool { return e.Key[0].Str == a.Key[0].Str }) {
				t.Errorf("map %s: delta adds existing key %v", md.Map.Name, a.Key)
			}
			entries = append(entries, a)
		}
		slices.SortFunc(entries, func(a, b ir.MapEntry) int { return strings.Compare(a.Key[0].Str, b.Key[0].Str) })
		cp := *md.Map
		cp.Entries = entries
		mps[cp.Name] = &cp
	}
	for _, c := range d.ChainsAdded {
		if chains[c.Name] != nil {
			t.Errorf("delta adds existing chain %s", c.Name)
		}
		chains[c.Name] = c
	}
	for _, c := range d.ChainsChanged {
		if chains[c.Name] == nil {
			t.Errorf("delta changes missing chain %s", c.Name)
		}
		chains[c.Name] = c
	}
	for _, name := range d.ChainsRemoved {
		if chains[name] == nil {
			t.Errorf("delta removes missing chain %s", name)
		}
		delete(chains, name)
	}
	out := &ir.Table{Name: prev.Name}
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		out.Sets = append(out.Sets, sets[name])
	}
	for _, name := range slices.Sorted(maps.Keys(mps)) {
		out.Maps = append(out.Maps, mps[name])
	}
	if c := chains[ForwardChain]; c != nil {
		out.Chains = append(out.Chains, c)
	}
	for _, name := range slices.Sorted(maps.Keys(chains)) {
		if name != ForwardChain {
			out.Chains = append(out.Chains, chains[name])
		}
	}
	return out
}

// elementsOverlap reports whether two elements of an interval set overlap or
// (for any set) are equal.
func elementsOverlap(s *ir.Set, a, b ir.Element) bool {
	if !s.Interval {
		return CompareElements(a, b) == 0
	}
	ra, rb := elemRange(a), elemRange(b)
	return ra.lo.Compare(rb.hi) <= 0 && rb.lo.Compare(ra.hi) <= 0
}

// checkTable verifies referential integrity and the invariants of a table:
// every jump, map verdict and set reference resolves; every regular chain,
// set and map is referenced (nothing leaks); names are sorted; interval
// elements are sorted, disjoint and not adjacent.
func checkTable(t *testing.T, tab *ir.Table) {
	t.Helper()
	chains := map[string]bool{}
	sets := map[string]bool{}
	usedChains := map[string]bool{}
	usedSets := map[string]bool{}
	for _, c := range tab.Chains {
		chains[c.Name] = true
	}
	for i, s := range tab.Sets {
		sets[s.Name] = true
		if i > 0 && tab.Sets[i-1].Name >= s.Name {
			t.Errorf("sets not sorted: %s before %s", tab.Sets[i-1].Name, s.Name)
		}
		for j := 1; j < len(s.Elements); j++ {
			a, b := s.Elements[j-1], s.Elements[j]
			if CompareElements(a, b) >= 0 {
				t.Errorf("set %s: elements not sorted: %v, %v", s.Name, a, b)
			}
			if s.Interval && touches(elemRange(a).hi, elemRange(b).lo) {
				t.Errorf("set %s: elements overlap or touch: %v, %v", s.Name, a, b)
			}
		}
	}
	for _, m := range tab.Maps {
		for _, e := range m.Entries {
			if !chains[e.Verdict.Chain] {
				t.Errorf("map %s: entry jumps to missing chain %s", m.Name, e.Verdict.Chain)
			}
			usedChains[e.Verdict.Chain] = true
		}
	}
	for i, c := range tab.Chains {
		if i > 1 && tab.Chains[i-1].Name >= c.Name {
			t.Errorf("chains not sorted: %s before %s", tab.Chains[i-1].Name, c.Name)
		}
		for _, r := range c.Rules {
			if v := r.Verdict; v.Kind == ir.VerdictJump || v.Kind == ir.VerdictGoto {
				if !chains[v.Chain] {
					t.Errorf("chain %s jumps to missing chain %s", c.Name, v.Chain)
				}
				usedChains[v.Chain] = true
			}
			for _, m := range r.Matches {
				var name string
				switch m := m.(type) {
				case ir.MatchAddr:
					name = m.Set
				case ir.MatchConcat:
					name = m.Set
				}
				if name == "" {
					continue
				}
				if !sets[name] {
					t.Errorf("chain %s references missing set %s", c.Name, name)
				}
				usedSets[name] = true
			}
		}
	}
	for _, c := range tab.Chains {
		if c.Base == nil && !usedChains[c.Name] {
			t.Errorf("chain %s is not referenced", c.Name)
		}
	}
	for name := range sets {
		if !usedSets[name] {
			t.Errorf("set %s is not referenced", name)
		}
	}
}
