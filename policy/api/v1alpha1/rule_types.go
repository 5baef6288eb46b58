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
	// +optional
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
	Nets []string `json:"nets,omitempty"`
	// NotNets: the address is in none of these.
	// +optional
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
	Ports []Port `json:"ports,omitempty"`
	// NotPorts excludes ports; same forms as Ports.
	// +optional
	NotPorts []Port `json:"notPorts,omitempty"`
	// ServiceAccounts matches pods by their service account.
	// +optional
	ServiceAccounts *ServiceAccountMatch `json:"serviceAccounts,omitempty"`
}

// ServiceAccountMatch matches pods by service account name and/or the
// service account's labels (AND when both are given).
type ServiceAccountMatch struct {
	// +optional
	Names []string `json:"names,omitempty"`
	// +optional
	Selector string `json:"selector,omitempty"`
}
