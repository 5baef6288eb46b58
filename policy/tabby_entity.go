package policy

// Normalisation of one side (source or destination) of a tabby.dev rule.

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
	"github.com/tabbynet/tabby/selectors"
)

// entity normalises one EntityRule at field path f. isDst says whether it is
// the destination, the only side where named ports make sense (they name the
// destination endpoint's containerPorts).
//
// Selectors follow Calico (libcalico-go's GetEntityRuleSelector): as soon as
// any of selector, notSelector, namespaceSelector or serviceAccounts is given,
// Peer.Selector is the AND of
//   - the namespace scope: namespaceSelector over ns: keys when given, else
//     in a NetworkPolicy tabby:namespace == <policy namespace>, else nothing;
//   - selector;
//   - the service-account match (tabby:serviceaccount in {names}, selector
//     over sa: keys, tabby:kind == "pod").
//
// notSelector becomes Peer.NotSelector as written: the scope already limits
// the positive side, so "in my namespace and not X" needs no scoped X.
func (r *tabbyRuleCtx) entity(f string, in *tabbyv1.EntityRule, proto Protocol, isDst bool) Peer {
	e := r.errs
	var p Peer
	p.Nets = tabbyParseNets(e, f+".nets", in.Nets)
	p.NotNets = tabbyParseNets(e, f+".notNets", in.NotNets)

	var parts []*selectors.Selector
	if in.NamespaceSelector != "" {
		if s, ok := tabbyParseSelector(e, f+".namespaceSelector", in.NamespaceSelector); ok {
			parts = append(parts, tabbyNamespaceScope(s))
		}
	} else if r.namespace != "" {
		parts = append(parts, selectors.Eq(selectors.KeyNamespace, r.namespace))
	}
	if s, ok := tabbyParseSelector(e, f+".selector", in.Selector); ok && s != nil {
		parts = append(parts, s)
	}
	if in.ServiceAccounts != nil {
		if s := tabbyServiceAccounts(e, f+".serviceAccounts", in.ServiceAccounts); s != nil {
			parts = append(parts, s)
		}
	}
	scoped := in.Selector != "" || in.NotSelector != "" || in.NamespaceSelector != "" || in.ServiceAccounts != nil
	// Without any part (a GlobalNetworkPolicy with only notSelector) the
	// positive side stays unconstrained: And() would be all(), which matches
	// only addresses of known subjects and would exclude external ones.
	if scoped && len(parts) > 0 {
		p.Selector = selectors.And(parts...)
	}
	if s, ok := tabbyParseSelector(e, f+".notSelector", in.NotSelector); ok && s != nil {
		p.NotSelector = s
	}

	p.Ports, p.NamedPorts = r.ports(f+".ports", in.Ports, proto, isDst)
	p.NotPorts, p.NotNamedPorts = r.ports(f+".notPorts", in.NotPorts, proto, isDst)
	return p
}

// tabbyNamespaceScope turns a rule's namespaceSelector into a selector on the
// subjects themselves:
//   - all() is every namespaced subject (has(tabby:namespace)), as in Calico;
//   - a selector mentioning global() is taken as written over ns: keys, so
//     global() picks the cluster-scoped subjects and the rest namespaced ones;
//   - any other selector applies to namespaced subjects only. Calico would
//     let "!has(team)" match GlobalNetworkSets too (they have no namespace
//     labels); Tabby requires global() to reach them.
func tabbyNamespaceScope(s *selectors.Selector) *selectors.Selector {
	inNamespace := selectors.Has(selectors.KeyNamespace)
	if l, ok := s.Root().(*selectors.Leaf); ok && l.Op == selectors.OpAll {
		return inNamespace
	}
	prefixed := selectors.WithKeyPrefix(s, selectors.NamespaceLabelPrefix)
	if tabbyMentionsGlobal(s.Root()) {
		return prefixed
	}
	return selectors.And(inNamespace, prefixed)
}

func tabbyMentionsGlobal(n selectors.Node) bool {
	switch n := n.(type) {
	case *selectors.Leaf:
		return n.Op == selectors.OpGlobal
	case *selectors.NotExpr:
		return tabbyMentionsGlobal(n.Child)
	case *selectors.AndExpr:
		for _, c := range n.Children {
			if tabbyMentionsGlobal(c) {
				return true
			}
		}
	case *selectors.OrExpr:
		for _, c := range n.Children {
			if tabbyMentionsGlobal(c) {
				return true
			}
		}
	}
	return false
}

// tabbyServiceAccounts matches pods by service account: names OR'ed, AND'ed
// with the selector over sa: keys (Calico's semantics), and only pods.
func tabbyServiceAccounts(e *tabbyErrs, f string, in *tabbyv1.ServiceAccountMatch) *selectors.Selector {
	if len(in.Names) == 0 && in.Selector == "" {
		e.add(f, "needs names or selector")
		return nil
	}
	ok := true
	parts := []*selectors.Selector{selectors.Eq(selectors.KeyKind, "pod")}
	if len(in.Names) > 0 {
		for i, n := range in.Names {
			if msgs := validation.IsDNS1123Subdomain(n); len(msgs) > 0 {
				e.addf(fmt.Sprintf("%s.names[%d]", f, i), "%q is not a service account name: %s", n, strings.Join(msgs, "; "))
				ok = false
			}
		}
		parts = append(parts, selectors.In(selectors.KeyServiceAccount, in.Names...))
	}
	if s, sok := tabbyParseSelector(e, f+".selector", in.Selector); !sok {
		ok = false
	} else if s != nil {
		parts = append(parts, selectors.WithKeyPrefix(s, selectors.ServiceAccountLabelPrefix))
	}
	if !ok {
		return nil
	}
	return selectors.And(parts...)
}

// ports resolves a ports/notPorts list: numbers 1-65535, ranges "a:b" with
// a <= b, and names (destination only) as NamedPort with the rule's protocol.
func (r *tabbyRuleCtx) ports(f string, in []tabbyv1.Port, proto Protocol, isDst bool) ([]PortRange, []NamedPort) {
	if len(in) == 0 {
		return nil, nil
	}
	e := r.errs
	if !proto.HasPorts() {
		if proto == ProtoAny {
			e.add(f, "needs protocol TCP, UDP or SCTP (protocol is not set)")
		} else {
			e.addf(f, "needs protocol TCP, UDP or SCTP, not %s", proto)
		}
		return nil, nil
	}
	var ranges []PortRange
	var named []NamedPort
	for i, port := range in {
		pf := f + "[" + strconv.Itoa(i) + "]"
		pr, name, err := tabbyParsePort(port)
		switch {
		case err != nil:
			e.wrap(pf, err.Error(), err)
		case name != "" && !isDst:
			e.addf(pf, "named port %q is only valid on the destination (names refer to the destination's containerPorts)", name)
		case name != "":
			named = append(named, NamedPort{Name: name, Protocol: proto})
		default:
			ranges = append(ranges, pr)
		}
	}
	return ranges, named
}

// tabbyPortError is a port that is not a number 1-65535, a range "a:b" or a
// valid port name.
type tabbyPortError struct {
	Value  string
	Reason string
}

func (e *tabbyPortError) Error() string { return fmt.Sprintf("port %s %s", e.Value, e.Reason) }

// tabbyParsePort returns a range, or a name, or an error.
func tabbyParsePort(p tabbyv1.Port) (PortRange, string, error) {
	if p.Type == tabbyv1.FormNumber {
		n, err := tabbyPortNumber(p.NumVal, p.String())
		return PortRange{First: n, Last: n}, "", err
	}
	s := p.StrVal
	quoted := strconv.Quote(s)
	if a, b, ok := strings.Cut(s, ":"); ok {
		first, err1 := strconv.ParseInt(a, 10, 64)
		last, err2 := strconv.ParseInt(b, 10, 64)
		if err1 != nil || err2 != nil {
			return PortRange{}, "", &tabbyPortError{quoted, `is not a range "first:last" of numbers`}
		}
		lo, err := tabbyPortNumber(first, quoted)
		if err != nil {
			return PortRange{}, "", err
		}
		hi, err := tabbyPortNumber(last, quoted)
		if err != nil {
			return PortRange{}, "", err
		}
		if lo > hi {
			return PortRange{}, "", &tabbyPortError{quoted, "is a reversed range (first > last)"}
		}
		return PortRange{First: lo, Last: hi}, "", nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		v, err := tabbyPortNumber(n, quoted)
		return PortRange{First: v, Last: v}, "", err
	}
	if msgs := validation.IsValidPortName(s); len(msgs) > 0 {
		return PortRange{}, "", &tabbyPortError{quoted,
			`is not a number, a range "a:b" or a port name: ` + strings.Join(msgs, "; ")}
	}
	return PortRange{}, s, nil
}

func tabbyPortNumber(n int64, shown string) (uint16, error) {
	if n < 1 || n > 65535 {
		return 0, &tabbyPortError{shown, "is out of range 1-65535"}
	}
	return uint16(n), nil
}
