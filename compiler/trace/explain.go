package trace

import (
	"fmt"
	"strings"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

// Reason says what decided one direction of a packet.
type Reason uint8

// Reasons.
const (
	// ReasonNotSelected: no policy selects the endpoint in this direction
	// (its verdict map has no entry, or nothing in the direction ran): allowed.
	ReasonNotSelected Reason = iota + 1
	// ReasonRule: a policy rule allowed or denied.
	ReasonRule
	// ReasonTierDefault: a tier governs the endpoint, none of its rules
	// decided, and its default action denied.
	ReasonTierDefault
	// ReasonNoTier: every tier that governs the endpoint passed; the final allow.
	ReasonNoTier
	// ReasonConntrack: the conntrack fast path decided before any policy.
	ReasonConntrack
	// ReasonNotEvaluated: the packet was dropped before this direction ran.
	ReasonNotEvaluated
	// ReasonUnexplained: dropped by a rule without an origin or by a base
	// chain's policy (a plumbing rule; see Chain and RuleIndex).
	ReasonUnexplained
)

func (r Reason) String() string {
	switch r {
	case ReasonNotSelected:
		return "not selected"
	case ReasonRule:
		return "rule"
	case ReasonTierDefault:
		return "tier default"
	case ReasonNoTier:
		return "no tier decided"
	case ReasonConntrack:
		return "conntrack"
	case ReasonNotEvaluated:
		return "not evaluated"
	case ReasonUnexplained:
		return "unexplained"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// DirectionDecision explains one side of a packet: the source endpoint's
// egress or the destination endpoint's ingress.
type DirectionDecision struct {
	Direction policy.Direction
	Endpoint  string // as the caller named it
	Allowed   bool
	Reason    Reason
	// Origin is the deciding rule's origin (ReasonRule, ReasonTierDefault,
	// ReasonNoTier, ReasonConntrack).
	Origin *ir.Origin
	// Governing lists, for ReasonTierDefault, the policies of that tier that
	// select the endpoint, in evaluation order.
	Governing []policy.Ref
	// Passes are the Pass decisions met before the deciding one, in order.
	Passes []*ir.Origin
	// Chain and RuleIndex locate the dropping rule for ReasonUnexplained
	// (RuleIndex -1: the base chain's policy).
	Chain     string
	RuleIndex int
}

// Explanation explains a traced packet in both directions.
type Explanation struct {
	Allowed         bool
	Egress, Ingress DirectionDecision
}

// Words renders both directions, egress first.
func (e Explanation) Words() string {
	return "egress: " + e.Egress.Words() + "\ningress: " + e.Ingress.Words()
}

// Explain summarises r per direction. src and dst name the source and
// destination endpoints for the sentences. It relies on the origins the
// compiler puts on rules (see doc.go); a drop without origin shows as
// ReasonUnexplained.
func Explain(r Result, src, dst string) Explanation {
	ex := Explanation{Allowed: r.Verdict == ir.VerdictAccept}
	eg, egStep := explainDirection(r, policy.Egress, src)
	in, inStep := explainDirection(r, policy.Ingress, dst)
	settle(r, &eg, &in, inStep)
	settle(r, &in, &eg, egStep)
	ex.Egress, ex.Ingress = eg, in
	return ex
}

// explainDirection finds the decision of direction d and the index of its
// step (-1 when nothing in the direction decided; Reason is then zero).
func explainDirection(r Result, d policy.Direction, endpoint string) (DirectionDecision, int) {
	out := DirectionDecision{Direction: d, Endpoint: endpoint, RuleIndex: -1}
	for i, dec := range r.Decisions {
		o := dec.Origin
		if o.Kind == ir.OriginConntrack {
			if dec.Verdict.Kind == ir.VerdictAccept || dec.Verdict.Kind == ir.VerdictDrop {
				out.Allowed, out.Reason, out.Origin = dec.Verdict.Kind == ir.VerdictAccept, ReasonConntrack, o
				out.Passes = nil
				return out, dec.Step
			}
			continue
		}
		if o.Direction != d {
			continue
		}
		switch o.Action {
		case policy.ActionPass:
			out.Passes = append(out.Passes, o)
		case policy.ActionAllow, policy.ActionDeny:
			out.Allowed, out.Origin = o.Action == policy.ActionAllow, o
			switch o.Kind {
			case ir.OriginPolicyRule:
				out.Reason = ReasonRule
			case ir.OriginTierDefault:
				out.Reason = ReasonTierDefault
				out.Governing = governing(r, i)
			case ir.OriginNoTier:
				out.Reason = ReasonNoTier
			}
			if out.Reason != 0 {
				return out, dec.Step
			}
		}
	}
	return out, -1
}

// settle explains an undecided direction x given the other one.
func settle(r Result, x, other *DirectionDecision, otherStep int) {
	if x.Reason != 0 {
		return
	}
	if r.Verdict == ir.VerdictAccept {
		x.Allowed, x.Reason = true, ReasonNotSelected
		return
	}
	if otherStep >= 0 && !other.Allowed {
		// The other side dropped the packet. If x's verdict map was
		// consulted before that, x ran and selected nothing; otherwise x
		// never ran (the documented layout runs egress first).
		key := ir.FieldOIFName
		if x.Direction == policy.Egress {
			key = ir.FieldIIFName
		}
		x.Reason = ReasonNotEvaluated
		for _, s := range r.Steps[:otherStep] {
			if s.Rule != nil && s.Rule.Verdict.Kind == ir.VerdictMap && s.Rule.Verdict.MapKey == key {
				x.Allowed, x.Reason = true, ReasonNotSelected
			}
		}
		return
	}
	// Dropped without a decision of either side: name what dropped it.
	x.Reason = ReasonUnexplained
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if s := r.Steps[i]; s.Verdict.Kind == ir.VerdictDrop {
			x.Chain, x.RuleIndex = s.Chain, s.RuleIndex
			break
		}
	}
}

// governing finds the policies that govern the endpoint in the tier whose
// default is decision di: those whose rules ran in this invocation of the
// tier chain, including the jumps into their chains when those carry an
// origin (the only trace an empty policy leaves), in order, without
// duplicates.
func governing(r Result, di int) []policy.Ref {
	def := r.Decisions[di]
	// Walk back from the default to where the tier chain was entered.
	start := 0
	for i := def.Step - 1; i >= 0; i-- {
		s := r.Steps[i]
		if s.Chain != def.Chain && (s.Verdict.Kind == ir.VerdictJump || s.Verdict.Kind == ir.VerdictGoto) && s.Verdict.Chain == def.Chain {
			start = i + 1
			break
		}
	}
	var refs []policy.Ref
	seen := map[policy.Ref]bool{}
	for _, d := range r.Decisions[:di] {
		o := d.Origin
		if d.Step < start || o.Kind != ir.OriginPolicyRule || o.Tier != def.Origin.Tier || o.Direction != def.Origin.Direction {
			continue
		}
		if o.Policy != (policy.Ref{}) && !seen[o.Policy] {
			seen[o.Policy] = true
			refs = append(refs, o.Policy)
		}
	}
	return refs
}

// Words renders the decision as one or two human sentences.
func (d DirectionDecision) Words() string {
	var s string
	switch d.Reason {
	case ReasonRule:
		verb := "denied by "
		if d.Allowed {
			verb = "allowed by "
		}
		s = verb + ruleWords(d.Origin)
	case ReasonTierDefault:
		if d.Allowed {
			s = fmt.Sprintf("allowed: tier %s default-allow", d.Origin.Tier)
			break
		}
		s = fmt.Sprintf("denied: tier %s default-deny; ", d.Origin.Tier)
		if len(d.Governing) == 0 {
			s += fmt.Sprintf("%s is governed by tier %s for %s but no rule allows this traffic", d.Endpoint, d.Origin.Tier, d.Direction)
		} else {
			names := make([]string, len(d.Governing))
			for i, r := range d.Governing {
				names[i] = r.String()
			}
			s += fmt.Sprintf("%s is selected by %s but no rule allows this traffic", d.Endpoint, andList(names))
		}
	case ReasonNoTier:
		s = fmt.Sprintf("allowed: no tier decided for %s %s", d.Endpoint, d.Direction)
	case ReasonNotSelected:
		s = fmt.Sprintf("allowed: no policy selects %s for %s", d.Endpoint, d.Direction)
	case ReasonConntrack:
		if d.Allowed {
			s = "allowed: part of an established connection (conntrack)"
		} else {
			s = "denied: conntrack state invalid"
		}
	case ReasonNotEvaluated:
		s = fmt.Sprintf("not evaluated for %s: the packet was dropped on the other side", d.Endpoint)
	case ReasonUnexplained:
		if d.RuleIndex < 0 {
			s = fmt.Sprintf("denied by the end of chain %s (no policy origin)", d.Chain)
		} else {
			s = fmt.Sprintf("denied by rule %d of chain %s (no policy origin)", d.RuleIndex, d.Chain)
		}
	default:
		s = "unknown"
	}
	if len(d.Passes) > 0 {
		ps := make([]string, len(d.Passes))
		for i, p := range d.Passes {
			if p.Kind == ir.OriginTierDefault {
				ps[i] = fmt.Sprintf("tier %s default-pass", p.Tier)
			} else {
				ps[i] = ruleWords(p)
			}
		}
		s += "; passed on by " + andList(ps)
	}
	return s
}

// ruleWords is e.g. `NetworkPolicy y/allow-x rule ingress[0] (tier kubernetes)`.
func ruleWords(o *ir.Origin) string {
	s := fmt.Sprintf("%s rule %s[%d]", o.Policy, o.Direction, o.RuleIndex)
	if o.RuleName != "" {
		s += fmt.Sprintf(" %q", o.RuleName)
	}
	return s + fmt.Sprintf(" (tier %s)", o.Tier)
}

func andList(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
