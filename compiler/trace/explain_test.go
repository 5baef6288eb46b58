package trace

import (
	"testing"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

// The layout package compiler produces (see doc.go), built by hand.
const (
	bitAllow uint32 = 0x10000
	bitPass  uint32 = 0x20000
)

var (
	refAllowX   = policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "y", Name: "allow-x"}
	refDenyAll  = policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "y", Name: "deny-all"}
	refAdmin    = policy.Ref{Kind: policy.KindClusterNetworkPolicy, Name: "admin-pass"}
	refDenyEgr  = policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "x", Name: "no-egress"}
	bitsSet     = ir.MatchMark{Mask: bitAllow | bitPass, Value: 0, Negate: true}
	allowBitSet = ir.MatchMark{Mask: bitAllow, Value: bitAllow}
)

func origin(k ir.OriginKind, tier string, d policy.Direction, ref policy.Ref, idx int, a policy.Action) *ir.Origin {
	return &ir.Origin{Kind: k, Tier: tier, Direction: d, Policy: ref, RuleIndex: idx, Action: a}
}

// enter is the jump from a tier chain into a policy chain.
func enter(chain, tier string, d policy.Direction, ref policy.Ref) *ir.Rule {
	return &ir.Rule{Verdict: jump(chain), Origin: origin(ir.OriginPolicyRule, tier, d, ref, -1, 0)}
}

func withOrigin(r *ir.Rule, o *ir.Origin) *ir.Rule { r.Origin = o; return r }

func tcpPort(p uint16) ir.Match {
	return ir.MatchPort{Field: ir.FieldTHDport, Proto: 6, Ranges: []policy.PortRange{{First: p, Last: p}}}
}

// profile is an endpoint's chain for one direction: clear the bits, run
// the tiers, the final allow.
func profile(name string, d policy.Direction, tiers ...string) *ir.Chain {
	c := regular(name, setMark(^(bitAllow|bitPass), 0, ir.Verdict{}))
	for _, t := range tiers {
		c.Rules = append(c.Rules,
			setMark(^bitPass, 0, ir.Verdict{}),
			rl(jump(name+"/"+t)),
			rl(ret, allowBitSet))
	}
	c.Rules = append(c.Rules, withOrigin(setMark(0xffffffff, bitAllow, ret), origin(ir.OriginNoTier, "", d, policy.Ref{}, 0, policy.ActionAllow)))
	return c
}

// tierChain jumps the policies in order and ends with the tier default.
func tierChain(name, tier string, d policy.Direction, def policy.Action, pols ...policy.Ref) *ir.Chain {
	c := regular(name)
	for _, p := range pols {
		c.Rules = append(c.Rules, enter(policyChain(p, d), tier, d, p), rl(ret, bitsSet))
	}
	o := origin(ir.OriginTierDefault, tier, d, policy.Ref{}, 0, def)
	if def == policy.ActionPass {
		c.Rules = append(c.Rules, withOrigin(setMark(0xffffffff, bitPass, ret), o))
	} else {
		c.Rules = append(c.Rules, withOrigin(rl(drop), o))
	}
	return c
}

func policyChain(r policy.Ref, d policy.Direction) string { return r.Name + "/" + d.String() }

func explainTable() *ir.Table {
	ct := func(s ir.CtState, v ir.Verdict, a policy.Action) *ir.Rule {
		return withOrigin(rl(v, ir.MatchCtState{States: s}), origin(ir.OriginConntrack, "", 0, policy.Ref{}, 0, a))
	}
	ifn := func(s string) ir.Key { return ir.Key{{Str: s}} }
	allowRule := func(idx int, m ir.Match, ref policy.Ref, tier string, d policy.Direction) *ir.Rule {
		return withOrigin(setMark(0xffffffff, bitAllow, ret, m), origin(ir.OriginPolicyRule, tier, d, ref, idx, policy.ActionAllow))
	}
	ing, eg := policy.Ingress, policy.Egress
	return &ir.Table{
		Name: "tabby",
		Maps: []*ir.Map{
			{Name: "from-endpoint", Type: []ir.KeyType{ir.TypeIfname}, Entries: []ir.MapEntry{
				{Key: ifn("tab-d"), Verdict: jump("eg-d")}}},
			{Name: "to-endpoint", Type: []ir.KeyType{ir.TypeIfname}, Entries: []ir.MapEntry{
				{Key: ifn("tab-b"), Verdict: jump("in-b")}, {Key: ifn("tab-c"), Verdict: jump("in-c")}}},
		},
		Chains: []*ir.Chain{
			base("forward", ir.HookForward, 0, ir.VerdictAccept,
				ct(ir.CtEstablished|ir.CtRelated, accept, policy.ActionAllow),
				ct(ir.CtInvalid, drop, policy.ActionDeny),
				rl(ir.Verdict{Kind: ir.VerdictMap, Map: "from-endpoint", MapKey: ir.FieldIIFName}),
				rl(ir.Verdict{Kind: ir.VerdictMap, Map: "to-endpoint", MapKey: ir.FieldOIFName}),
			),
			regular(policyChain(refAdmin, ing),
				withOrigin(setMark(0xffffffff, bitPass, ret, tcpPort(22)), origin(ir.OriginPolicyRule, policy.TierAdmin, ing, refAdmin, 0, policy.ActionPass)),
				withOrigin(rl(drop, tcpPort(23)), &ir.Origin{Kind: ir.OriginPolicyRule, Tier: policy.TierAdmin, Direction: ing,
					Policy: refAdmin, RuleIndex: 1, RuleName: "no-telnet", Action: policy.ActionDeny}),
			),
			regular(policyChain(refAllowX, ing), allowRule(0, tcpPort(80), refAllowX, policy.TierKubernetes, ing)),
			regular(policyChain(refDenyAll, ing)),
			regular(policyChain(refDenyEgr, eg)),
			profile("eg-d", eg, policy.TierKubernetes),
			tierChain("eg-d/kubernetes", policy.TierKubernetes, eg, policy.ActionDeny, refDenyEgr),
			profile("in-b", ing, policy.TierAdmin, policy.TierKubernetes),
			tierChain("in-b/cnp-admin", policy.TierAdmin, ing, policy.ActionPass, refAdmin),
			tierChain("in-b/kubernetes", policy.TierKubernetes, ing, policy.ActionDeny, refAllowX, refDenyAll),
			profile("in-c", ing, policy.TierAdmin),
			tierChain("in-c/cnp-admin", policy.TierAdmin, ing, policy.ActionPass, refAdmin),
		},
	}
}

func TestExplain(t *testing.T) {
	tr := mustNew(t, explainTable())
	pkt := func(iif, oif string, port uint16, ct ir.CtState) Packet {
		p := tcp4(port)
		p.IIF, p.OIF, p.Ct = iif, oif, ct
		return p
	}
	tests := []struct {
		name            string
		p               Packet
		src, dst        string
		allowed         bool
		egReason        Reason
		egress, ingress string
	}{
		{"allowed by rule after a tier pass", pkt("tab-a", "tab-b", 80, 0), "x/a", "y/b", true, ReasonNotSelected,
			"allowed: no policy selects x/a for egress",
			"allowed by NetworkPolicy y/allow-x rule ingress[0] (tier kubernetes); passed on by tier cnp-admin default-pass"},
		{"tier default deny names the governing policies", pkt("tab-a", "tab-b", 81, 0), "x/a", "y/b", false, ReasonNotSelected,
			"allowed: no policy selects x/a for egress",
			"denied: tier kubernetes default-deny; y/b is selected by NetworkPolicy y/allow-x and NetworkPolicy y/deny-all but no rule allows this traffic; passed on by tier cnp-admin default-pass"},
		{"denied by an admin rule", pkt("tab-a", "tab-b", 23, 0), "x/a", "y/b", false, ReasonNotSelected,
			"allowed: no policy selects x/a for egress",
			`denied by ClusterNetworkPolicy admin-pass rule ingress[1] "no-telnet" (tier cnp-admin)`},
		{"pass rule then default deny", pkt("tab-a", "tab-b", 22, 0), "x/a", "y/b", false, ReasonNotSelected,
			"allowed: no policy selects x/a for egress",
			"denied: tier kubernetes default-deny; y/b is selected by NetworkPolicy y/allow-x and NetworkPolicy y/deny-all but no rule allows this traffic; passed on by ClusterNetworkPolicy admin-pass rule ingress[0] (tier cnp-admin)"},
		{"no tier decided", pkt("tab-a", "tab-c", 80, 0), "x/a", "y/c", true, ReasonNotSelected,
			"allowed: no policy selects x/a for egress",
			"allowed: no tier decided for y/c ingress; passed on by tier cnp-admin default-pass"},
		{"conntrack", pkt("tab-d", "tab-b", 81, ir.CtEstablished), "x/d", "y/b", true, ReasonConntrack,
			"allowed: part of an established connection (conntrack)",
			"allowed: part of an established connection (conntrack)"},
		{"egress denied, ingress never ran", pkt("tab-d", "tab-b", 80, 0), "x/d", "y/b", false, ReasonTierDefault,
			"denied: tier kubernetes default-deny; x/d is selected by NetworkPolicy x/no-egress but no rule allows this traffic",
			"not evaluated for y/b: the packet was dropped on the other side"},
	}
	for _, tc := range tests {
		r := mustTrace(t, tr, tc.p)
		ex := Explain(r, tc.src, tc.dst)
		if ex.Allowed != tc.allowed || ex.Egress.Reason != tc.egReason {
			t.Errorf("%s: allowed %v egress reason %v, want %v %v", tc.name, ex.Allowed, ex.Egress.Reason, tc.allowed, tc.egReason)
		}
		if got := ex.Egress.Words(); got != tc.egress {
			t.Errorf("%s: egress\n got %s\nwant %s", tc.name, got, tc.egress)
		}
		if got := ex.Ingress.Words(); got != tc.ingress {
			t.Errorf("%s: ingress\n got %s\nwant %s", tc.name, got, tc.ingress)
		}
	}
}

func TestExplainStructuredFields(t *testing.T) {
	tr := mustNew(t, explainTable())
	p := tcp4(81)
	p.OIF = "tab-b"
	ex := Explain(mustTrace(t, tr, p), "x/a", "y/b")
	in := ex.Ingress
	if in.Reason != ReasonTierDefault || in.Allowed || in.Origin.Tier != policy.TierKubernetes || in.Origin.Action != policy.ActionDeny {
		t.Fatalf("ingress %+v", in)
	}
	if len(in.Governing) != 2 || in.Governing[0] != refAllowX || in.Governing[1] != refDenyAll {
		t.Errorf("governing %v", in.Governing)
	}
	if len(in.Passes) != 1 || in.Passes[0].Kind != ir.OriginTierDefault || in.Passes[0].Tier != policy.TierAdmin {
		t.Errorf("passes %+v", in.Passes)
	}
}

func TestExplainUnexplainedDrop(t *testing.T) {
	tr := mustNew(t, table(base("forward", ir.HookForward, 0, ir.VerdictAccept, rl(drop, ir.MatchMark{Mask: 1, Value: 0}))))
	ex := Explain(mustTrace(t, tr, tcp4(80)), "x/a", "y/b")
	if ex.Allowed || ex.Egress.Reason != ReasonUnexplained || ex.Ingress.Chain != "forward" || ex.Ingress.RuleIndex != 0 {
		t.Errorf("explanation %+v", ex)
	}
	if got, want := ex.Ingress.Words(), "denied by rule 0 of chain forward (no policy origin)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Without origins on the jumps, the policies whose rules ran still show.
func TestExplainGoverningFromRulesThatRan(t *testing.T) {
	tab := explainTable()
	for _, c := range tab.Chains {
		if c.Name == "in-b/kubernetes" {
			for _, r := range c.Rules {
				if r.Verdict.Kind == ir.VerdictJump {
					r.Origin = nil
				}
			}
		}
		if c.Name == policyChain(refDenyAll, policy.Ingress) {
			c.Rules = []*ir.Rule{withOrigin(logRule("deny-all "), origin(ir.OriginPolicyRule, policy.TierKubernetes,
				policy.Ingress, refDenyAll, 0, policy.ActionLog))}
		}
	}
	p := tcp4(81)
	p.OIF = "tab-b"
	r := mustTrace(t, mustNew(t, tab), p)
	in := Explain(r, "x/a", "y/b").Ingress
	if len(in.Governing) != 1 || in.Governing[0] != refDenyAll {
		t.Errorf("governing %v, want only %v (allow-x left no trace)", in.Governing, refDenyAll)
	}
	if len(r.Logs) != 1 {
		t.Errorf("logs %v", r.Logs)
	}
}
