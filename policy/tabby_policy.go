package policy

// Normalisation of tabby.dev NetworkPolicy and GlobalNetworkPolicy.

import (
	"fmt"
	"math"

	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
	"github.com/tabbynet/tabby/selectors"
)

// tabbyPolicyView is what the two policy kinds have in common; namespace is
// "" for a GlobalNetworkPolicy, and so is namespaceSelector for a
// NetworkPolicy (its type has no such field, so strict decoding rejects it).
type tabbyPolicyView struct {
	namespace   string
	tier        string
	order       *float64
	selector    string
	nsSelector  string
	saSelector  string
	types       []tabbyv1.PolicyType
	ingress     []tabbyv1.Rule
	egress      []tabbyv1.Rule
	logIdentity string // "<ns>/<name>" or "<name>", for log prefixes
}

// normalizeTabbyPolicy validates and normalises a tabby.dev NetworkPolicy or
// GlobalNetworkPolicy. Errors are *FieldError (errors.Join of several).
//
//   - Subject: spec.selector (default all()) && tabby:kind == "pod"; a
//     NetworkPolicy adds tabby:namespace == <its namespace>, a
//     GlobalNetworkPolicy its namespaceSelector over ns: keys; a
//     serviceAccountSelector reads sa: keys.
//   - Tier: spec.tier, "default" when unset; it must be in c.Tiers.
//   - Order: spec.order; +Inf when absent, so an unordered policy sorts after
//     every ordered one of its tier (ties broken by Ref, as for any order).
//   - Directions: spec.types when given; otherwise Ingress, plus Egress when
//     egress rules are present (Calico's default). Rules of a direction that
//     explicit types leave out are an error rather than silently dropped.
func normalizeTabbyPolicy(o Object, c *Cluster) (Policy, error) {
	e := &tabbyErrs{src: o.Source, ref: o.Ref}
	var v tabbyPolicyView
	switch {
	case o.TabbyNetworkPolicy != nil:
		p := o.TabbyNetworkPolicy
		s := &p.Spec
		v = tabbyPolicyView{namespace: p.Namespace, tier: s.Tier, order: s.Order, selector: s.Selector,
			saSelector: s.ServiceAccountSelector, types: s.Types, ingress: s.Ingress, egress: s.Egress,
			logIdentity: p.Namespace + "/" + p.Name}
		if p.Namespace == "" {
			// decodeTabby rejects this; an Object built in code might not.
			e.add("metadata.namespace", "is required")
		}
	case o.GlobalNetworkPolicy != nil:
		p := o.GlobalNetworkPolicy
		s := &p.Spec
		v = tabbyPolicyView{tier: s.Tier, order: s.Order, selector: s.Selector, nsSelector: s.NamespaceSelector,
			saSelector: s.ServiceAccountSelector, types: s.Types, ingress: s.Ingress, egress: s.Egress,
			logIdentity: p.Name}
	default:
		e.add("", "object is not a tabby.dev NetworkPolicy or GlobalNetworkPolicy")
		return Policy{}, e.err()
	}

	out := Policy{Ref: o.Ref, Tier: v.tier, Order: math.Inf(1)}
	out.Subject = tabbySubject(e, &v)

	if out.Tier == "" {
		out.Tier = tabbyDefaultTierName
	}
	if !tabbyTierExists(c, out.Tier) {
		e.addf("spec.tier", "tier %q does not exist", out.Tier)
	}
	if v.order != nil {
		if math.IsNaN(*v.order) || math.IsInf(*v.order, 0) {
			e.add("spec.order", "must be a finite number")
		} else {
			out.Order = *v.order
		}
	}

	out.Ingress, out.Egress = tabbyPolicyTypes(e, &v)

	r := tabbyRuleCtx{errs: e, namespace: v.namespace, logIdentity: v.logIdentity}
	for i := range v.ingress {
		if rule, ok := r.rule(fmt.Sprintf("spec.ingress[%d]", i), Ingress, i, &v.ingress[i]); ok {
			out.IngressRules = append(out.IngressRules, rule)
		}
	}
	for i := range v.egress {
		if rule, ok := r.rule(fmt.Sprintf("spec.egress[%d]", i), Egress, i, &v.egress[i]); ok {
			out.EgressRules = append(out.EgressRules, rule)
		}
	}
	if err := e.err(); err != nil {
		return Policy{}, err
	}
	return out, nil
}

func tabbyTierExists(c *Cluster, name string) bool {
	if name == tabbyDefaultTierName {
		return true // implicit, whether or not c lists it
	}
	return c != nil && c.Tiers[name]
}

// tabbySubject builds the policy's Subject selector; only pods are subjects.
func tabbySubject(e *tabbyErrs, v *tabbyPolicyView) *selectors.Selector {
	parts := []*selectors.Selector{selectors.Eq(selectors.KeyKind, "pod")}
	if v.namespace != "" {
		parts = append(parts, selectors.Eq(selectors.KeyNamespace, v.namespace))
	}
	if s, ok := tabbyParseSelector(e, "spec.selector", v.selector); ok && s != nil {
		parts = append(parts, s)
	}
	if s, ok := tabbyParseSelector(e, "spec.namespaceSelector", v.nsSelector); ok && s != nil {
		// Pods always have a namespace, so unlike a rule's namespaceSelector
		// no extra has(tabby:namespace) is needed (and global() matches none).
		parts = append(parts, selectors.WithKeyPrefix(s, selectors.NamespaceLabelPrefix))
	}
	if s, ok := tabbyParseSelector(e, "spec.serviceAccountSelector", v.saSelector); ok && s != nil {
		parts = append(parts, selectors.WithKeyPrefix(s, selectors.ServiceAccountLabelPrefix))
	}
	return selectors.And(parts...)
}

// tabbyParseSelector parses a selector field; "" gives (nil, true). A parse
// error is reported with the parser's column and wrapped for errors.As.
func tabbyParseSelector(e *tabbyErrs, field, s string) (*selectors.Selector, bool) {
	if s == "" {
		return nil, true
	}
	sel, err := selectors.Parse(s)
	if err != nil {
		// A *selectors.ParseError reads `selector "…": column N: expected …,
		// found …`; it stays reachable through errors.As on the FieldError.
		e.wrap(field, "invalid "+err.Error(), err)
		return nil, false
	}
	return sel, true
}

// tabbyPolicyTypes resolves spec.types into the governed directions.
func tabbyPolicyTypes(e *tabbyErrs, v *tabbyPolicyView) (ingress, egress bool) {
	if len(v.types) == 0 {
		return true, len(v.egress) > 0
	}
	for i, t := range v.types {
		var dup bool
		switch t {
		case tabbyv1.PolicyTypeIngress:
			dup, ingress = ingress, true
		case tabbyv1.PolicyTypeEgress:
			dup, egress = egress, true
		default:
			e.addf(fmt.Sprintf("spec.types[%d]", i), "%q is not Ingress or Egress", t)
			continue
		}
		if dup {
			e.addf(fmt.Sprintf("spec.types[%d]", i), "duplicate type %q", t)
		}
	}
	if !ingress && len(v.ingress) > 0 {
		e.add("spec.ingress", "has rules but spec.types does not include Ingress")
	}
	if !egress && len(v.egress) > 0 {
		e.add("spec.egress", "has rules but spec.types does not include Egress")
	}
	return ingress, egress
}
