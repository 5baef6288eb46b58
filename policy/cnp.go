package policy

import (
	"errors"
	"fmt"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	cnp "sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/tabbynet/tabby/selectors"
)

// policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy. Validation mirrors
// the CRD's OpenAPI schema and CEL rules (the API server would reject what is
// rejected here), plus the peers Tabby cannot enforce yet (nodes,
// domainNames), which are reported with ErrUnsupported rather than dropped:
// silently dropping a peer would change what an Accept or Deny rule means.

// ErrUnsupported is wrapped by the *FieldError of a valid object using a
// feature Tabby does not implement yet.
var ErrUnsupported = errors.New("not supported by Tabby yet")

// CRD limits.
const (
	cnpMaxPriority = 1000
	cnpMaxRules    = 25
	cnpMaxItems    = 25 // peers, protocols, networks per rule
	cnpMaxName     = 100
	cnpMaxCIDR     = 43
)

// originUnsupported marks a field.Error that objectErrors turns into an
// ErrUnsupported *FieldError.
const originUnsupported = "tabby-unsupported"

func unsupported(p *field.Path, what string) *field.Error {
	return field.Forbidden(p, what+" "+ErrUnsupported.Error()).WithOrigin(originUnsupported)
}

// invalid is an Invalid error without a value: for rules about a whole
// object, where printing the value would not help.
func invalid(p *field.Path, detail string) *field.Error {
	return field.Invalid(p, field.OmitValueType{}, detail)
}

// normalizeClusterNetworkPolicy validates and normalises a ClusterNetworkPolicy.
func normalizeClusterNetworkPolicy(o Object) (Policy, error) {
	c := o.ClusterNetworkPolicy
	spec := field.NewPath("spec")
	errs := validateMeta(&c.ObjectMeta)
	pol := Policy{Ref: o.Ref, Order: float64(c.Spec.Priority)}

	switch c.Spec.Tier {
	case cnp.AdminTier:
		pol.Tier = TierAdmin
	case cnp.BaselineTier:
		pol.Tier = TierBaseline
	default:
		errs = append(errs, field.NotSupported(spec.Child("tier"), c.Spec.Tier, []cnp.Tier{cnp.AdminTier, cnp.BaselineTier}))
	}
	if c.Spec.Priority < 0 || c.Spec.Priority > cnpMaxPriority {
		errs = append(errs, field.Invalid(spec.Child("priority"), c.Spec.Priority,
			fmt.Sprintf("must be between 0 and %d, inclusive", cnpMaxPriority)))
	}
	var e field.ErrorList
	pol.Subject, e = cnpSubject(&c.Spec.Subject, spec.Child("subject"))
	errs = append(errs, e...)

	if n := len(c.Spec.Ingress); n > cnpMaxRules {
		errs = append(errs, field.TooMany(spec.Child("ingress"), n, cnpMaxRules))
	}
	if n := len(c.Spec.Egress); n > cnpMaxRules {
		errs = append(errs, field.TooMany(spec.Child("egress"), n, cnpMaxRules))
	}
	// A CNP without rules in a direction does not affect that direction.
	pol.Ingress, pol.Egress = len(c.Spec.Ingress) > 0, len(c.Spec.Egress) > 0
	for i := range c.Spec.Ingress {
		r := &c.Spec.Ingress[i]
		p := spec.Child("ingress").Index(i)
		var peers []Peer
		if len(r.From) == 0 {
			errs = append(errs, field.Required(p.Child("from"), "must have at least 1 item"))
		} else if len(r.From) > cnpMaxItems {
			errs = append(errs, field.TooMany(p.Child("from"), len(r.From), cnpMaxItems))
		}
		for j := range r.From {
			peer, e := cnpPeer(r.From[j].Namespaces, r.From[j].Pods, nil, p.Child("from").Index(j))
			errs = append(errs, e...)
			peers = append(peers, peer)
		}
		rules, e := cnpRule(i, r.Name, r.Action, Ingress, peers, r.Protocols, p)
		errs = append(errs, e...)
		pol.IngressRules = append(pol.IngressRules, rules...)
	}
	for i := range c.Spec.Egress {
		r := &c.Spec.Egress[i]
		p := spec.Child("egress").Index(i)
		var peers []Peer
		if len(r.To) == 0 {
			errs = append(errs, field.Required(p.Child("to"), "must have at least 1 item"))
		} else if len(r.To) > cnpMaxItems {
			errs = append(errs, field.TooMany(p.Child("to"), len(r.To), cnpMaxItems))
		}
		withoutNamedPorts := false
		for j := range r.To {
			peer, e := cnpPeer(r.To[j].Namespaces, r.To[j].Pods, &r.To[j], p.Child("to").Index(j))
			errs = append(errs, e...)
			peers = append(peers, peer)
			withoutNamedPorts = withoutNamedPorts || r.To[j].Networks != nil || r.To[j].Nodes != nil || r.To[j].DomainNames != nil
		}
		if withoutNamedPorts && hasNamedPort(r.Protocols) {
			errs = append(errs, invalid(p, "networks/nodes/domainNames peer cannot be set with namedPorts since there are no namedPorts for networks/nodes/domainNames"))
		}
		rules, e := cnpRule(i, r.Name, r.Action, Egress, peers, r.Protocols, p)
		errs = append(errs, e...)
		pol.EgressRules = append(pol.EgressRules, rules...)
	}
	if len(errs) > 0 {
		return Policy{}, objectErrors(o, errs)
	}
	return pol, nil
}

// cnpSubject: exactly one of namespaces (all pods of the matching
// namespaces) or pods (namespaceSelector and podSelector).
func cnpSubject(s *cnp.ClusterNetworkPolicySubject, p *field.Path) (*selectors.Selector, field.ErrorList) {
	if (s.Namespaces == nil) == (s.Pods == nil) {
		return nil, field.ErrorList{invalid(p, "exactly one of namespaces or pods must be set")}
	}
	peer, errs := cnpPeer(s.Namespaces, s.Pods, nil, p)
	return peer.Selector, errs
}

// cnpPeer converts a subject or peer. egress is the egress peer, whose other
// shapes (networks, nodes, domainNames) count towards "exactly one"; nil for
// subjects and ingress peers.
func cnpPeer(namespaces *metav1.LabelSelector, pods *cnp.NamespacedPod, egress *cnp.ClusterNetworkPolicyEgressPeer, p *field.Path) (Peer, field.ErrorList) {
	n := 0
	for _, set := range []bool{namespaces != nil, pods != nil} {
		if set {
			n++
		}
	}
	want := "namespaces or pods"
	if egress != nil {
		want = "namespaces, pods, nodes, networks or domainNames"
		for _, set := range []bool{egress.Nodes != nil, egress.Networks != nil, egress.DomainNames != nil} {
			if set {
				n++
			}
		}
	}
	if n != 1 {
		return Peer{}, field.ErrorList{invalid(p, "exactly one of "+want+" must be set")}
	}
	switch {
	case namespaces != nil:
		sel, errs := namespaceSelector(namespaces, p.Child("namespaces"))
		return Peer{Selector: selectors.And(podsSelector(), sel)}, errs
	case pods != nil:
		nsSel, errs := namespaceSelector(&pods.NamespaceSelector, p.Child("pods", "namespaceSelector"))
		podSel, e := labelSelector(&pods.PodSelector, p.Child("pods", "podSelector"))
		return Peer{Selector: selectors.And(podsSelector(), nsSel, podSel)}, append(errs, e...)
	case egress.Networks != nil:
		return cnpNetworks(egress.Networks, p.Child("networks"))
	case egress.Nodes != nil:
		return Peer{}, field.ErrorList{unsupported(p.Child("nodes"), "nodes peers are")}
	default:
		return Peer{}, field.ErrorList{unsupported(p.Child("domainNames"), "domainNames peers are")}
	}
}

func cnpNetworks(nets []cnp.CIDR, p *field.Path) (Peer, field.ErrorList) {
	var errs field.ErrorList
	switch {
	case len(nets) == 0:
		errs = append(errs, field.Required(p, "must have at least 1 item"))
	case len(nets) > cnpMaxItems:
		errs = append(errs, field.TooMany(p, len(nets), cnpMaxItems))
	}
	var out []netip.Prefix
	seen := map[cnp.CIDR]bool{}
	for i, s := range nets {
		ip := p.Index(i)
		switch {
		case len(s) > cnpMaxCIDR:
			errs = append(errs, field.TooLong(ip, s, cnpMaxCIDR))
			continue
		case seen[s]: // listType=set
			errs = append(errs, field.Duplicate(ip, s))
			continue
		}
		seen[s] = true
		pfx, err := parseCIDR(string(s), ip)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, pfx)
	}
	return Peer{Nets: sortPrefixes(out)}, errs
}

func hasNamedPort(protocols []cnp.ClusterNetworkPolicyProtocol) bool {
	for _, pr := range protocols {
		if pr.DestinationNamedPort != "" {
			return true
		}
	}
	return false
}

// cnpRule validates a rule's name, action and protocols and expands it.
func cnpRule(index int, name string, action cnp.ClusterNetworkPolicyRuleAction, dir Direction, peers []Peer,
	protocols []cnp.ClusterNetworkPolicyProtocol, p *field.Path) ([]Rule, field.ErrorList) {
	var errs field.ErrorList
	if len(name) > cnpMaxName {
		errs = append(errs, field.TooLong(p.Child("name"), name, cnpMaxName))
	}
	var act Action
	switch action {
	case cnp.ClusterNetworkPolicyRuleActionAccept:
		act = ActionAllow
	case cnp.ClusterNetworkPolicyRuleActionDeny:
		act = ActionDeny
	case cnp.ClusterNetworkPolicyRuleActionPass:
		act = ActionPass
	default:
		errs = append(errs, field.NotSupported(p.Child("action"), action, []cnp.ClusterNetworkPolicyRuleAction{
			cnp.ClusterNetworkPolicyRuleActionAccept, cnp.ClusterNetworkPolicyRuleActionDeny, cnp.ClusterNetworkPolicyRuleActionPass}))
	}
	pp := p.Child("protocols")
	switch {
	case protocols != nil && len(protocols) == 0:
		errs = append(errs, field.Required(pp, "must have at least 1 item"))
	case len(protocols) > cnpMaxItems:
		errs = append(errs, field.TooMany(pp, len(protocols), cnpMaxItems))
	}
	ps := portSet{}
	for i := range protocols {
		errs = append(errs, cnpProtocol(&protocols[i], pp.Index(i), ps)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return expandRules(index, name, act, dir, peers, ps), nil
}

// cnpProtocol validates one protocols entry: exactly one of tcp, udp, sctp or
// destinationNamedPort; a protocol needs a destinationPort, a number or a
// range start < end.
func cnpProtocol(pr *cnp.ClusterNetworkPolicyProtocol, p *field.Path, ps portSet) field.ErrorList {
	type proto struct {
		name  string
		proto Protocol
		port  **cnp.Port
	}
	var set []proto
	if pr.TCP != nil {
		set = append(set, proto{"tcp", ProtoTCP, &pr.TCP.DestinationPort})
	}
	if pr.UDP != nil {
		set = append(set, proto{"udp", ProtoUDP, &pr.UDP.DestinationPort})
	}
	if pr.SCTP != nil {
		set = append(set, proto{"sctp", ProtoSCTP, &pr.SCTP.DestinationPort})
	}
	n := len(set)
	if pr.DestinationNamedPort != "" {
		n++
	}
	if n != 1 {
		return field.ErrorList{invalid(p, "exactly one of tcp, udp, sctp or destinationNamedPort must be set")}
	}
	if pr.DestinationNamedPort != "" {
		// The CRD does not constrain the name; one that is not a valid port
		// name simply matches no container port.
		ps.addNamed(ProtoAny, NamedPort{Name: pr.DestinationNamedPort, Protocol: ProtoAny})
		return nil
	}
	s := set[0]
	pp := p.Child(s.name, "destinationPort")
	port := *s.port
	if port == nil {
		return field.ErrorList{field.Required(pp, "")}
	}
	var errs field.ErrorList
	switch {
	case (port.Number != 0) == (port.Range != nil):
		errs = append(errs, invalid(pp, "exactly one of number or range must be set"))
	case port.Range == nil:
		errs = append(errs, validPort(port.Number, pp.Child("number"))...)
		if len(errs) == 0 {
			ps.addRange(s.proto, PortRange{First: uint16(port.Number), Last: uint16(port.Number)})
		}
	default:
		rp := pp.Child("range")
		errs = append(errs, validPort(port.Range.Start, rp.Child("start"))...)
		errs = append(errs, validPort(port.Range.End, rp.Child("end"))...)
		if len(errs) == 0 && port.Range.Start >= port.Range.End {
			errs = append(errs, invalid(rp, "Start port must be less than End port"))
		}
		if len(errs) == 0 {
			ps.addRange(s.proto, PortRange{First: uint16(port.Range.Start), Last: uint16(port.Range.End)})
		}
	}
	return errs
}
