package policy

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tabbynet/tabby/selectors"
)

// networking.k8s.io/v1 NetworkPolicy, to the letter of the API: defaulting as
// in SetDefaults_NetworkPolicySpec and SetDefaults_NetworkPolicyPort,
// validation as in ValidateNetworkPolicySpec (same paths, same wording).

// normalizeNetworkPolicy validates and normalises a Kubernetes NetworkPolicy.
func normalizeNetworkPolicy(o Object) (Policy, error) {
	np := o.NetworkPolicy
	ns := np.Namespace
	spec := field.NewPath("spec")
	errs := validateMeta(&np.ObjectMeta)

	podSel, e := labelSelector(&np.Spec.PodSelector, spec.Child("podSelector"))
	errs = append(errs, e...)
	ingress, egress, e := policyTypes(&np.Spec, spec.Child("policyTypes"))
	errs = append(errs, e...)

	pol := Policy{
		Ref:     o.Ref,
		Tier:    TierKubernetes,
		Subject: selectors.And(podsInNamespace(ns), podSel),
		Ingress: ingress,
		Egress:  egress,
	}
	// Rules of a direction policyTypes leaves out are validated (the API
	// server validates the whole spec) but have no effect.
	for i, r := range np.Spec.Ingress {
		p := spec.Child("ingress").Index(i)
		rules, e := networkPolicyRule(ns, i, Ingress, r.Ports, r.From, p.Child("ports"), p.Child("from"))
		errs = append(errs, e...)
		if ingress {
			pol.IngressRules = append(pol.IngressRules, rules...)
		}
	}
	for i, r := range np.Spec.Egress {
		p := spec.Child("egress").Index(i)
		rules, e := networkPolicyRule(ns, i, Egress, r.Ports, r.To, p.Child("ports"), p.Child("to"))
		errs = append(errs, e...)
		if egress {
			pol.EgressRules = append(pol.EgressRules, rules...)
		}
	}
	if len(errs) > 0 {
		return Policy{}, objectErrors(o, errs)
	}
	return pol, nil
}

// policyTypes returns the directions the policy governs. Without policyTypes
// a policy governs ingress, and egress too when it has egress rules.
func policyTypes(spec *networkingv1.NetworkPolicySpec, p *field.Path) (ingress, egress bool, errs field.ErrorList) {
	if len(spec.PolicyTypes) == 0 {
		return true, len(spec.Egress) > 0, nil
	}
	if len(spec.PolicyTypes) > 2 {
		return false, false, field.ErrorList{field.Invalid(p, spec.PolicyTypes, "may not specify more than two policyTypes")}
	}
	for i, t := range spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		default:
			errs = append(errs, field.NotSupported(p.Index(i), t,
				[]networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}))
		}
	}
	return ingress, egress, errs
}

// networkPolicyRule validates and expands one ingress or egress rule. An
// empty peer list matches any peer, an empty port list any protocol and port.
func networkPolicyRule(ns string, index int, dir Direction, ports []networkingv1.NetworkPolicyPort,
	peers []networkingv1.NetworkPolicyPeer, portsPath, peersPath *field.Path) ([]Rule, field.ErrorList) {
	var errs field.ErrorList
	ps := portSet{}
	for i := range ports {
		errs = append(errs, networkPolicyPort(&ports[i], portsPath.Index(i), ps)...)
	}
	out := []Peer{{}}
	if len(peers) > 0 {
		out = out[:0]
		for i := range peers {
			peer, e := networkPolicyPeer(ns, &peers[i], peersPath.Index(i))
			errs = append(errs, e...)
			out = append(out, peer)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return expandRules(index, "", ActionAllow, dir, out, ps), nil
}

// networkPolicyPort validates one port entry and adds it to ps. The protocol
// defaults to TCP here and nowhere else.
func networkPolicyPort(port *networkingv1.NetworkPolicyPort, p *field.Path, ps portSet) field.ErrorList {
	var errs field.ErrorList
	proto := ProtoTCP
	if port.Protocol != nil {
		var err error
		if proto, err = protocolName(string(*port.Protocol)); err != nil {
			errs = append(errs, field.NotSupported(p.Child("protocol"), *port.Protocol,
				[]corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}))
		}
	}
	switch {
	case port.Port == nil:
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "may not be specified when `port` is not specified"))
		}
		if len(errs) == 0 {
			ps.addAny(proto)
		}
	case port.Port.Type == intstr.Int:
		first, last := port.Port.IntVal, port.Port.IntVal
		errs = append(errs, validPort(first, p.Child("port"))...)
		if port.EndPort != nil {
			last = *port.EndPort
			if last < first {
				errs = append(errs, field.Invalid(p.Child("endPort"), first, "must be greater than or equal to `port`"))
			}
			errs = append(errs, validPort(last, p.Child("endPort"))...)
		}
		if len(errs) == 0 {
			ps.addRange(proto, PortRange{First: uint16(first), Last: uint16(last)})
		}
	default:
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "may not be specified when `port` is non-numeric"))
		}
		errs = append(errs, validPortName(port.Port.StrVal, p.Child("port"))...)
		if len(errs) == 0 {
			ps.addNamed(proto, NamedPort{Name: port.Port.StrVal, Protocol: proto})
		}
	}
	return errs
}

// networkPolicyPeer validates and converts one peer. Pod peers only ever
// match pods: the selectors all start from tabby:kind == "pod".
func networkPolicyPeer(ns string, peer *networkingv1.NetworkPolicyPeer, p *field.Path) (Peer, field.ErrorList) {
	var errs field.ErrorList
	n := 0
	var podSel, nsSel *selectors.Selector
	if peer.PodSelector != nil {
		n++
		var e field.ErrorList
		podSel, e = labelSelector(peer.PodSelector, p.Child("podSelector"))
		errs = append(errs, e...)
	}
	if peer.NamespaceSelector != nil {
		n++
		var e field.ErrorList
		nsSel, e = namespaceSelector(peer.NamespaceSelector, p.Child("namespaceSelector"))
		errs = append(errs, e...)
	}
	var out Peer
	if peer.IPBlock != nil {
		n++
		var e field.ErrorList
		out, e = ipBlock(peer.IPBlock, p.Child("ipBlock"))
		errs = append(errs, e...)
	}
	switch {
	case n == 0:
		errs = append(errs, field.Required(p, "must specify a peer"))
	case n > 1 && peer.IPBlock != nil:
		errs = append(errs, field.Forbidden(p, "may not specify both ipBlock and another peer"))
	}
	if len(errs) > 0 {
		return Peer{}, errs
	}
	switch {
	case peer.IPBlock != nil:
		return out, nil
	case peer.NamespaceSelector == nil:
		// podSelector alone: pods of the policy's own namespace.
		return Peer{Selector: selectors.And(podsInNamespace(ns), podSel)}, nil
	default:
		// namespaceSelector, with or without podSelector: pods of the
		// matching namespaces (all of their pods without podSelector).
		return Peer{Selector: selectors.And(podsSelector(), nsSel, podSel)}, nil
	}
}

// ipBlock validates an ipBlock: cidr is required, every except entry must be
// strictly inside it (hence of the same family).
func ipBlock(b *networkingv1.IPBlock, p *field.Path) (Peer, field.ErrorList) {
	if b.CIDR == "" {
		return Peer{}, field.ErrorList{field.Required(p.Child("cidr"), "")}
	}
	cidr, err := parseCIDR(b.CIDR, p.Child("cidr"))
	if err != nil {
		return Peer{}, field.ErrorList{err}
	}
	var errs field.ErrorList
	var except []netip.Prefix
	for i, s := range b.Except {
		ep := p.Child("except").Index(i)
		ex, err := parseCIDR(s, ep)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !cidr.Contains(ex.Addr()) || ex.Bits() <= cidr.Bits() {
			errs = append(errs, field.Invalid(ep, s, "must be a strict subset of `cidr`"))
			continue
		}
		except = append(except, ex)
	}
	if len(errs) > 0 {
		return Peer{}, errs
	}
	return Peer{Nets: []netip.Prefix{cidr}, NotNets: sortPrefixes(except)}, nil
}
