package policy

import (
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/selectors"
)

// This file is the normalised model: what policy/ produces and compiler/
// consumes. Every Kubernetes default (TCP for an empty protocol, policyTypes,
// which side a named port is resolved on) has already been applied here, so
// the compiler renders without interpreting Kubernetes semantics.

// Action is a rule's verdict.
type Action uint8

// Actions. Log records the packet and goes on to the next rule.
const (
	ActionAllow Action = iota + 1
	ActionDeny
	ActionPass
	ActionLog
)

func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "Allow"
	case ActionDeny:
		return "Deny"
	case ActionPass:
		return "Pass"
	case ActionLog:
		return "Log"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Protocol is an IP protocol number; 0 means "any".
type Protocol uint8

// Protocols Tabby names.
const (
	ProtoAny    Protocol = 0
	ProtoICMP   Protocol = 1
	ProtoTCP    Protocol = 6
	ProtoUDP    Protocol = 17
	ProtoICMPv6 Protocol = 58
	ProtoSCTP   Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case ProtoAny:
		return "any"
	case ProtoICMP:
		return "ICMP"
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoICMPv6:
		return "ICMPv6"
	case ProtoSCTP:
		return "SCTP"
	}
	return fmt.Sprintf("%d", uint8(p))
}

// HasPorts reports whether the protocol carries ports nftables can match.
func (p Protocol) HasPorts() bool { return p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP }

// Direction is ingress (traffic to the selected endpoint) or egress (from it).
type Direction uint8

// Directions.
const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Kind names the source object kind of a policy or subject.
type Kind string

// Kinds Tabby reads.
const (
	KindK8sNetworkPolicy     Kind = "NetworkPolicy"           // networking.k8s.io/v1
	KindClusterNetworkPolicy Kind = "ClusterNetworkPolicy"    // policy.networking.k8s.io/v1alpha2
	KindTabbyNetworkPolicy   Kind = "tabby.dev/NetworkPolicy" // namespaced
	KindGlobalNetworkPolicy  Kind = "tabby.dev/GlobalNetworkPolicy"
	KindTier                 Kind = "tabby.dev/Tier"
	KindNetworkSet           Kind = "tabby.dev/NetworkSet"
	KindGlobalNetworkSet     Kind = "tabby.dev/GlobalNetworkSet"
	KindPod                  Kind = "Pod"
	KindNamespace            Kind = "Namespace"
	KindServiceAccount       Kind = "ServiceAccount"
)

// Ref identifies a source object.
type Ref struct {
	Kind      Kind
	Namespace string // empty for cluster-scoped objects
	Name      string
}

func (r Ref) String() string {
	if r.Namespace == "" {
		return string(r.Kind) + " " + r.Name
	}
	return string(r.Kind) + " " + r.Namespace + "/" + r.Name
}

// PortRange is an inclusive range of ports; a single port has First == Last.
type PortRange struct{ First, Last uint16 }

// NamedPort is a port given by name. It always refers to the destination
// endpoint's containerPorts: on an ingress rule that is the policy's own
// endpoint, on an egress rule the peer. Protocol ProtoAny matches a port of that
// name with whatever protocol it declares (ClusterNetworkPolicy semantics).
type NamedPort struct {
	Name     string
	Protocol Protocol
}

// Peer matches one side (source or destination) of a packet. Every non-empty
// field must match (AND). Within Ports/NamedPorts any entry may match (OR).
type Peer struct {
	Nets    []netip.Prefix // address in any of these
	NotNets []netip.Prefix // address in none of these
	// Selector matches endpoints and network sets; the packet's address must
	// belong to one that matches. nil means no constraint.
	Selector    *selectors.Selector
	NotSelector *selectors.Selector
	// Ports and NamedPorts match the destination port (they are only set on a
	// rule's Destination; on Source they match the source port, Tabby policy
	// only). A packet matches if its port is in Ports or is one of NamedPorts.
	Ports         []PortRange
	NamedPorts    []NamedPort
	NotPorts      []PortRange
	NotNamedPorts []NamedPort
}

// ICMPMatch matches ICMP (or ICMPv6, by the rule's protocol) type and code.
type ICMPMatch struct {
	Type uint8
	Code *uint8 // nil: any code
}

// Rule is one normalised rule.
type Rule struct {
	// Index is the position of the source rule in the object (ingress[i] /
	// egress[i]); several normalised rules may share it (a Kubernetes rule with
	// two peers becomes two rules). Name is the rule's name where the kind has one.
	Index int
	Name  string

	Action Action
	// IPFamily restricts to 4 or 6; 0 means both.
	IPFamily    int
	Protocol    Protocol // ProtoAny: any
	NotProtocol Protocol // ProtoAny: no constraint
	ICMP        *ICMPMatch
	NotICMP     *ICMPMatch
	Source      Peer
	Destination Peer
	// LogPrefix is used by ActionLog.
	LogPrefix string
}

// Policy is one normalised policy: it applies to every endpoint Subject
// matches, in the directions it has.
type Policy struct {
	Ref  Ref
	Tier string
	// Order sorts policies within a tier: lower first, then by Ref.
	Order   float64
	Subject *selectors.Selector
	// Ingress/Egress say which directions the policy governs. A governed
	// direction isolates the endpoint in this tier even with no rules.
	Ingress, Egress bool
	IngressRules    []Rule
	EgressRules     []Rule
}

// Rules returns the rules of one direction.
func (p *Policy) Rules(d Direction) []Rule {
	if d == Egress {
		return p.EgressRules
	}
	return p.IngressRules
}

// Governs reports whether the policy governs direction d.
func (p *Policy) Governs(d Direction) bool {
	if d == Egress {
		return p.Egress
	}
	return p.Ingress
}

// Well-known tiers. Tabby tiers sit between Admin and Kubernetes.
const (
	TierAdmin      = "cnp-admin"
	TierKubernetes = "kubernetes"
	TierBaseline   = "cnp-baseline"
)

// Tier is a stage of evaluation. An endpoint governed by at least one policy
// of the tier in a direction, where no rule decides, gets DefaultAction
// (Deny or Pass). Tiers are evaluated in slice order of Model.Tiers.
type Tier struct {
	Name          string
	Ref           Ref // the Tier object for Tabby tiers; zero for built-in ones
	Order         float64
	DefaultAction Action
}

// ContainerPort is a port an endpoint declares.
type ContainerPort struct {
	Name     string
	Port     uint16
	Protocol Protocol
}

// Endpoint is a pod (or, later, a host endpoint).
type Endpoint struct {
	Ref Ref
	// Labels are the pod's labels plus the reserved keys of selectors
	// (tabby:namespace, tabby:kind, tabby:serviceaccount, ns:*, sa:*).
	Labels selectors.Map
	IPs    []netip.Addr // empty when unknown
	Ports  []ContainerPort
	Node   string
	// Interface is the host-side interface of a local endpoint when it was
	// discovered (policy-only mode: from the route to the pod's IP). Empty
	// means the name Tabby's own CNI gives it (compiler.InterfaceName).
	Interface string
}

// NetworkSet is a labelled list of networks that selectors match.
type NetworkSet struct {
	Ref    Ref
	Labels selectors.Map // with reserved keys, like Endpoint
	Nets   []netip.Prefix
}

// Model is the whole normalised input to the compiler.
type Model struct {
	// Tiers in evaluation order: cnp-admin, Tabby tiers by order,
	// kubernetes, cnp-baseline. After the last tier: allow.
	Tiers       []Tier
	Policies    []Policy // any order; the compiler sorts
	Endpoints   []Endpoint
	NetworkSets []NetworkSet
}
