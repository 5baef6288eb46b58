package v1alpha1

// Action is a rule's verdict.
// +kubebuilder:validation:Enum=Allow;Deny;Pass;Log
type Action string

// Rule actions. Pass leaves the tier for the next one; Log records the packet
// and goes on with the next rule.
const (
	Allow Action = "Allow"
	Deny  Action = "Deny"
	Pass  Action = "Pass"
	Log   Action = "Log"
)

// The CEL rules below are the cross-field checks of package policy
// (tabby_rule.go, tabby_entity.go), in the same order. The CRD environment
// has no cel.bind, so each rule spells out how a protocol resolves: a number,
// a name, or a number written as a string. A net's IP family is read from
// whether it contains ':' (every valid IPv6 form does, no IPv4 form does);
// the nets themselves are validated on EntityRule. deploy/crds/README.md
// lists each rule with an accepted and a rejected example.
//
// +kubebuilder:validation:XValidation:rule="!((has(self.source) && has(self.source.ports) && size(self.source.ports) > 0) || (has(self.source) && has(self.source.notPorts) && size(self.source.notPorts) > 0) || (has(self.destination) && has(self.destination.ports) && size(self.destination.ports) > 0) || (has(self.destination) && has(self.destination.notPorts) && size(self.destination.notPorts) > 0)) || (has(self.protocol) && (type(self.protocol) == int ? self.protocol in [6, 17, 132] : (self.protocol in ['TCP', 'UDP', 'SCTP'] || (self.protocol.matches('^[+-]?[0-9]+$') && int(self.protocol) in [6, 17, 132]))))",message="ports and notPorts need protocol TCP, UDP or SCTP"
// +kubebuilder:validation:XValidation:rule="!has(self.source) || ((!has(self.source.ports) || self.source.ports.all(p, type(p) == int || p.contains(':') || p.matches('^[+-]?[0-9]+$'))) && (!has(self.source.notPorts) || self.source.notPorts.all(p, type(p) == int || p.contains(':') || p.matches('^[+-]?[0-9]+$'))))",message="source ports and notPorts take numbers and ranges only: port names refer to the destination's containerPorts"
// +kubebuilder:validation:XValidation:rule="(!has(self.icmp) && !has(self.notICMP)) || (has(self.protocol) && (type(self.protocol) == int ? self.protocol in [1, 58] : (self.protocol in ['ICMP', 'ICMPv6'] || (self.protocol.matches('^[+-]?[0-9]+$') && int(self.protocol) in [1, 58]))))",message="icmp and notICMP need protocol ICMP or ICMPv6"
// +kubebuilder:validation:XValidation:rule="!has(self.ipVersion) || ((!(has(self.protocol) && (type(self.protocol) == int ? self.protocol == 1 : (self.protocol == 'ICMP' || (self.protocol.matches('^[+-]?[0-9]+$') && int(self.protocol) == 1)))) || self.ipVersion == 4) && (!(has(self.protocol) && (type(self.protocol) == int ? self.protocol == 58 : (self.protocol == 'ICMPv6' || (self.protocol.matches('^[+-]?[0-9]+$') && int(self.protocol) == 58)))) || self.ipVersion == 6))",message="ipVersion contradicts the protocol: ICMP is IPv4 only, ICMPv6 is IPv6 only"
// +kubebuilder:validation:XValidation:rule="!has(self.protocol) || !has(self.notProtocol) || (type(self.protocol) == int ? self.protocol : self.protocol == 'TCP' ? 6 : self.protocol == 'UDP' ? 17 : self.protocol == 'SCTP' ? 132 : self.protocol == 'ICMP' ? 1 : self.protocol == 'ICMPv6' ? 58 : self.protocol == 'UDPLite' ? 136 : self.protocol.matches('^[+-]?[0-9]+$') ? int(self.protocol) : 0) != (type(self.notProtocol) == int ? self.notProtocol : self.notProtocol == 'TCP' ? 6 : self.notProtocol == 'UDP' ? 17 : self.notProtocol == 'SCTP' ? 132 : self.notProtocol == 'ICMP' ? 1 : self.notProtocol == 'ICMPv6' ? 58 : self.notProtocol == 'UDPLite' ? 136 : self.notProtocol.matches('^[+-]?[0-9]+$') ? int(self.notProtocol) : 0)",message="notProtocol equals protocol: the rule could never match"
// +kubebuilder:validation:XValidation:rule="!(has(self.ipVersion) ? self.ipVersion == 4 : (has(self.protocol) && (type(self.protocol) == int ? self.protocol == 1 : (self.protocol == 'ICMP' || (self.protocol.matches('^[+-]?[0-9]+$') && int(self.protocol) == 1))))) || ((!(has(self.source) && has(self.source.nets) && size(self.source.nets) > 0) || self.source.nets.exists(n, !n.contains(':'))) && (!(has(self.destination) && has(self.destination.nets) && size(self.destination.nets) > 0) || self.destination.nets.exists(n, !n.contains(':'))))",message="the rule is IPv4 only (ipVersion 4 or protocol ICMP) but source.nets or destination.nets has no IPv4 network"
// +kubebuilder:validation:XValidation:rule="!(has(self.ipVersion) ? self.ipVersion == 6 : (has(self.protocol) && (type(self.protocol) == int ? self.protocol == 58 : (self.protocol == 'ICMPv6' || (self.protocol.matches('^[+-]?[0-9]+$') && int(self.protocol) == 58))))) || ((!(has(self.source) && has(self.source.nets) && size(self.source.nets) > 0) || self.source.nets.exists(n, n.contains(':'))) && (!(has(self.destination) && has(self.destination.nets) && size(self.destination.nets) > 0) || self.destination.nets.exists(n, n.contains(':'))))",message="the rule is IPv6 only (ipVersion 6 or protocol ICMPv6) but source.nets or destination.nets has no IPv6 network"
// +kubebuilder:validation:XValidation:rule="has(self.ipVersion) || (has(self.protocol) && (type(self.protocol) == int ? self.protocol in [1, 58] : (self.protocol in ['ICMP', 'ICMPv6'] || (self.protocol.matches('^[+-]?[0-9]+$') && int(self.protocol) in [1, 58])))) || !(has(self.source) && has(self.source.nets) && size(self.source.nets) > 0) || !(has(self.destination) && has(self.destination.nets) && size(self.destination.nets) > 0) || (self.source.nets.exists(n, !n.contains(':')) && self.destination.nets.exists(n, !n.contains(':'))) || (self.source.nets.exists(n, n.contains(':')) && self.destination.nets.exists(n, n.contains(':')))",message="source.nets and destination.nets share no IP family: the rule could never match"

// Rule is one ingress or egress rule. Every field given must match (AND).
type Rule struct {
	// +required
	Action Action `json:"action"`
	// IPVersion restricts the rule to IPv4 (4) or IPv6 (6).
	// +optional
	// +kubebuilder:validation:Enum=4;6
	IPVersion *int `json:"ipVersion,omitempty"`
	// Protocol is TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or a number 1-255.
	// +optional
	Protocol *Protocol `json:"protocol,omitempty"`
	// NotProtocol excludes one protocol.
	// +optional
	NotProtocol *Protocol `json:"notProtocol,omitempty"`
	// ICMP matches ICMP type and code; needs protocol ICMP or ICMPv6.
	// +optional
	ICMP *ICMPFields `json:"icmp,omitempty"`
	// NotICMP excludes an ICMP type (and code); needs protocol ICMP or ICMPv6.
	// +optional
	NotICMP *ICMPFields `json:"notICMP,omitempty"`
	// +optional
	Source EntityRule `json:"source,omitempty"`
	// +optional
	Destination EntityRule `json:"destination,omitempty"`
}

// ICMPFields matches an ICMP type and, optionally, code.
type ICMPFields struct {
	// Type is required: policy rejects an icmp match without one (a code
	// alone would need a type to mean anything).
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=255
	Type *int `json:"type,omitempty"`
	// Code needs Type.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=255
	Code *int `json:"code,omitempty"`
}

// EntityRule matches one side (source or destination) of a packet. Every
// field given must match (AND).
type EntityRule struct {
	// Nets: the address is in one of these CIDRs (a bare address is a host
	// route).
	// +optional
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self) || isIP(self)",message="must be a CIDR (10.0.0.0/8) or an IP address, without a zone, and IPv4 written as IPv4 (not ::ffff:a.b.c.d)"
	Nets []string `json:"nets,omitempty"`
	// NotNets: the address is in none of these.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self) || isIP(self)",message="must be a CIDR (10.0.0.0/8) or an IP address, without a zone, and IPv4 written as IPv4 (not ::ffff:a.b.c.d)"
	NotNets []string `json:"notNets,omitempty"`
	// Selector matches the labels of endpoints and network sets. In a
	// namespaced policy it matches in the policy's namespace unless
	// NamespaceSelector is given.
	// +optional
	Selector string `json:"selector,omitempty"`
	// NotSelector excludes endpoints and network sets it matches.
	// +optional
	NotSelector string `json:"notSelector,omitempty"`
	// NamespaceSelector matches namespace labels; global() matches
	// cluster-scoped subjects (GlobalNetworkSets) only.
	// +optional
	NamespaceSelector string `json:"namespaceSelector,omitempty"`
	// Ports match the port of this side: numbers, ranges "a:b" or (on the
	// destination only) container port names. Need protocol TCP, UDP or SCTP.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Ports []Port `json:"ports,omitempty"`
	// NotPorts excludes ports; same forms as Ports.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	NotPorts []Port `json:"notPorts,omitempty"`
	// ServiceAccounts matches pods by their service account.
	// +optional
	ServiceAccounts *ServiceAccountMatch `json:"serviceAccounts,omitempty"`
}

// ServiceAccountMatch matches pods by service account name and/or the
// service account's labels (AND when both are given).
//
// +kubebuilder:validation:XValidation:rule="(has(self.names) && size(self.names) > 0) || (has(self.selector) && size(self.selector) > 0)",message="serviceAccounts needs names or selector"
type ServiceAccountMatch struct {
	// Names are service account names (DNS-1123 subdomains).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Names []string `json:"names,omitempty"`
	// +optional
	Selector string `json:"selector,omitempty"`
}
