package policy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// builtinTiers are the tiers Tabby defines; no Tier object may take their names.
var builtinTiers = map[string]bool{TierAdmin: true, TierKubernetes: true, TierBaseline: true}

// Normalize validates objs and builds the Model. A later object with the same
// Ref replaces an earlier one before anything is validated (the last one
// applied wins, as with kubectl apply of several files). Every invalid object
// is reported, as one *FieldError per problem, and left out; it never affects
// the others, except that a policy or pod in a namespace whose Namespace
// object is invalid sees that namespace as undeclared. The Model is
// deterministic: tiers in evaluation order, policies by tier, order and Ref,
// endpoints and network sets by Ref. Errors are in file and document order.
func Normalize(objs []Object) (*Model, []error) {
	fileRank := map[string]int{}
	for _, o := range objs {
		if _, ok := fileRank[o.Source.File]; !ok {
			fileRank[o.Source.File] = len(fileRank)
		}
	}
	objs = latestByRef(objs)
	var errs []error
	report := func(o Object, err error) { errs = flattenErrors(o, err, errs) }

	// Pass 1: what normalising policies and endpoints needs to know.
	c := &Cluster{Namespaces: map[string]map[string]string{}, Tiers: map[string]bool{tabbyDefaultTierName: true}}
	serviceAccounts := map[string]map[string]string{}
	tabbyTiers := map[string]Tier{tabbyDefaultTierName: {Name: tabbyDefaultTierName, Order: tabbyDefaultTierOrder, DefaultAction: ActionDeny}}
	for _, o := range objs {
		switch {
		case o.Namespace != nil:
			labels, err := normalizeNamespace(o)
			if err != nil {
				report(o, err)
				continue
			}
			c.Namespaces[o.Ref.Name] = labels
		case o.ServiceAccount != nil:
			labels, err := normalizeServiceAccount(o)
			if err != nil {
				report(o, err)
				continue
			}
			serviceAccounts[o.Ref.Namespace+"/"+o.Ref.Name] = labels
		case o.Tier != nil:
			t, err := normalizeTier(o)
			if err == nil && builtinTiers[t.Name] {
				err = &FieldError{Source: o.Source, Object: o.Ref, Field: "metadata.name",
					Reason: fmt.Sprintf("tier name %q is reserved for a built-in tier", t.Name)}
			}
			if err != nil {
				report(o, err)
				continue
			}
			tabbyTiers[t.Name] = t
			c.Tiers[t.Name] = true
		}
	}
	// Namespaces that objects live in but no valid Namespace object declares
	// still carry the label the API server would give them.
	for _, o := range objs {
		if ns := o.Ref.Namespace; ns != "" && c.Namespaces[ns] == nil {
			c.Namespaces[ns] = impliedNamespaceLabels(ns)
		}
	}

	// Pass 2: endpoints, network sets, policies.
	m := &Model{Tiers: tierOrder(tabbyTiers)}
	tierIndex := map[string]int{}
	for i, t := range m.Tiers {
		tierIndex[t.Name] = i
	}
	for _, o := range objs {
		var (
			pol    Policy
			isPol  bool
			err    error
			tabby  = o.TabbyNetworkPolicy != nil || o.GlobalNetworkPolicy != nil
			netSet = o.NetworkSet != nil || o.GlobalNetworkSet != nil
		)
		switch {
		case o.Pod != nil:
			var ep Endpoint
			var ok bool
			if ep, ok, err = normalizePod(o, c, serviceAccounts); ok {
				m.Endpoints = append(m.Endpoints, ep)
			}
		case netSet:
			var ns NetworkSet
			if ns, err = normalizeNetworkSet(o, c); err == nil {
				m.NetworkSets = append(m.NetworkSets, ns)
			}
		case o.NetworkPolicy != nil:
			pol, err = normalizeNetworkPolicy(o)
			isPol = true
		case o.ClusterNetworkPolicy != nil:
			pol, err = normalizeClusterNetworkPolicy(o)
			isPol = true
		case tabby:
			pol, err = normalizeTabbyPolicy(o, c)
			isPol = true
		}
		if err == nil && isPol {
			if _, ok := tierIndex[pol.Tier]; !ok {
				err = &FieldError{Source: o.Source, Object: o.Ref, Field: "spec.tier",
					Reason: fmt.Sprintf("tier %q does not exist", pol.Tier)}
			}
		}
		if err != nil {
			report(o, err)
			continue
		}
		if isPol {
			m.Policies = append(m.Policies, pol)
		}
	}

	slices.SortFunc(m.Policies, func(a, b Policy) int {
		return cmp.Or(cmp.Compare(tierIndex[a.Tier], tierIndex[b.Tier]), cmp.Compare(a.Order, b.Order), compareRef(a.Ref, b.Ref))
	})
	slices.SortFunc(m.Endpoints, func(a, b Endpoint) int { return compareRef(a.Ref, b.Ref) })
	slices.SortFunc(m.NetworkSets, func(a, b NetworkSet) int { return compareRef(a.Ref, b.Ref) })
	slices.SortStableFunc(errs, func(a, b error) int { return compareErrorSource(fileRank, a, b) })
	return m, errs
}

// latestByRef keeps the last object of each Ref, sorted by Ref.
func latestByRef(objs []Object) []Object {
	last := map[Ref]int{}
	for i, o := range objs {
		last[o.Ref] = i
	}
	out := make([]Object, 0, len(last))
	for i, o := range objs {
		if last[o.Ref] == i {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b Object) int { return compareRef(a.Ref, b.Ref) })
	return out
}

// tierOrder lists the tiers in evaluation order: cnp-admin, the Tabby tiers
// by (order, name), kubernetes, cnp-baseline.
func tierOrder(tabby map[string]Tier) []Tier {
	ts := make([]Tier, 0, len(tabby)+3)
	for _, t := range tabby {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b Tier) int { return cmp.Or(cmp.Compare(a.Order, b.Order), strings.Compare(a.Name, b.Name)) })
	out := make([]Tier, 0, len(ts)+3)
	out = append(out, Tier{Name: TierAdmin, DefaultAction: ActionPass})
	out = append(out, ts...)
	out = append(out, Tier{Name: TierKubernetes, DefaultAction: ActionDeny}, Tier{Name: TierBaseline, DefaultAction: ActionPass})
	return out
}

func compareRef(a, b Ref) int {
	return cmp.Or(strings.Compare(string(a.Kind), string(b.Kind)),
		strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

// compareErrorSource orders errors by file (in the order files first appear
// in the input) and document. Every error Normalize reports is a *FieldError.
func compareErrorSource(fileRank map[string]int, a, b error) int {
	var fa, fb *FieldError
	if !errors.As(a, &fa) || !errors.As(b, &fb) {
		return 0
	}
	return cmp.Or(cmp.Compare(fileRank[fa.Source.File], fileRank[fb.Source.File]), cmp.Compare(fa.Source.Doc, fb.Source.Doc))
}
