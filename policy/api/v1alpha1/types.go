package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Order fields are float64, as in Calico, so a policy can be slotted between
// two others without renumbering. controller-gen needs
// crd:allowDangerousTypes=true to emit them (as type: number).
//
// The CRDs in deploy/crds are generated from this package (make generate);
// the markers here are their only source. Their validation agrees with
// package policy's normalisation: what one rejects, the other rejects, except
// where a check needs other objects (a policy's tier exists) or the selector
// grammar, which only policy can check, and the maxItems/maxLength bounds the
// CEL cost budget needs, which only the CRDs have. deploy/crds/README.md
// lists each rule and bound; deploy/crdcheck tests both verdicts.

// TierAction is what a tier does with a packet no rule of the tier decided.
// +kubebuilder:validation:Enum=Deny;Pass
type TierAction string

// Tier default actions.
const (
	TierDeny TierAction = "Deny"
	TierPass TierAction = "Pass"
)

// Tier is a stage of policy evaluation. Tiers run by ascending order, then
// name; the implicit tier "default" has order 1000000.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=tabby
// +kubebuilder:printcolumn:name="Order",type=number,JSONPath=".spec.order"
// +kubebuilder:printcolumn:name="Default Action",type=string,JSONPath=".spec.defaultAction"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="a Tier name must be a DNS-1123 label (it becomes part of nftables chain names)"
// +kubebuilder:validation:XValidation:rule="!(self.metadata.name in ['cnp-admin', 'kubernetes', 'cnp-baseline'])",message="the tier name is reserved for a built-in tier"
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'default' || self.?spec.?order.hasValue()",message="spec.order is required"
// +kubebuilder:validation:XValidation:rule="self.metadata.name != 'default' || self.?spec.?order.orValue(1000000.0) == 1000000.0",message="the order of tier default is fixed at 1000000"
// +genclient:nonNamespaced
type Tier struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={}
	Spec TierSpec `json:"spec,omitempty"`
}

// TierSpec is the specification of a Tier.
type TierSpec struct {
	// Order places the tier: lower runs first. Required, except on the tier
	// named "default", whose order is fixed at 1000000.
	// +optional
	Order *float64 `json:"order,omitempty"`
	// DefaultAction applies to an endpoint governed by the tier when no rule of
	// the tier decided. Deny when unset.
	// +optional
	// +kubebuilder:default=Deny
	DefaultAction TierAction `json:"defaultAction,omitempty"`
}

// TierList is a list of Tiers.
// +kubebuilder:object:root=true
type TierList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Tier `json:"items"`
}

// PolicyType is a direction a policy governs.
// +kubebuilder:validation:Enum=Ingress;Egress
type PolicyType string

// Policy types.
const (
	PolicyTypeIngress PolicyType = "Ingress"
	PolicyTypeEgress  PolicyType = "Egress"
)

// NetworkPolicy is a namespaced Tabby policy: it applies to the pods of its
// namespace that spec.selector matches.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,categories=tabby
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Tier",type=string,JSONPath=".spec.tier"
// +kubebuilder:printcolumn:name="Order",type=number,JSONPath=".spec.order"
// +kubebuilder:printcolumn:name="Selector",type=string,JSONPath=".spec.selector"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type NetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={}
	Spec NetworkPolicySpec `json:"spec,omitempty"`
	// Status is written by Tabby, never by users; policy ignores it.
	// +optional
	Status PolicyStatus `json:"status,omitzero"`
}

// PolicyStatus reports what Tabby made of a NetworkPolicy or
// GlobalNetworkPolicy. Package policy ignores it: a policy means what its spec
// says, whatever its status.
type PolicyStatus struct {
	// ObservedGeneration is the metadata.generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are the latest observations of the policy's state.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// NetworkPolicySpec is the specification of a NetworkPolicy.
//
// +kubebuilder:validation:XValidation:rule="!has(self.types) || size(self.types) == 0 || !has(self.ingress) || size(self.ingress) == 0 || 'Ingress' in self.types",message="spec.ingress has rules but spec.types does not include Ingress"
// +kubebuilder:validation:XValidation:rule="!has(self.types) || size(self.types) == 0 || !has(self.egress) || size(self.egress) == 0 || 'Egress' in self.types",message="spec.egress has rules but spec.types does not include Egress"
type NetworkPolicySpec struct {
	// Tier names the tier the policy belongs to; "default" when unset. It
	// must name a Tier that exists (checked by Tabby, not by the CRD).
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	// +kubebuilder:validation:XValidation:rule="!(self in ['cnp-admin', 'kubernetes', 'cnp-baseline'])",message="names a built-in tier, which Tabby policies cannot join"
	Tier string `json:"tier,omitempty"`
	// Order sorts the policy within its tier, lower first. Absent sorts after
	// every ordered policy of the tier.
	// +optional
	Order *float64 `json:"order,omitempty"`
	// Selector chooses the pods of the namespace the policy applies to;
	// all() when unset.
	// +optional
	Selector string `json:"selector,omitempty"`
	// ServiceAccountSelector further restricts the pods by the labels of
	// their service account.
	// +optional
	ServiceAccountSelector string `json:"serviceAccountSelector,omitempty"`
	// Types are the directions the policy governs. Default: Ingress, plus
	// Egress when Egress rules are present.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	Types []PolicyType `json:"types,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Ingress []Rule `json:"ingress,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Egress []Rule `json:"egress,omitempty"`
}

// NetworkPolicyList is a list of NetworkPolicies.
// +kubebuilder:object:root=true
type NetworkPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NetworkPolicy `json:"items"`
}

// GlobalNetworkPolicy is a cluster-scoped Tabby policy: it applies to the
// pods of every namespace that spec.namespaceSelector and spec.selector match.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=tabby
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Tier",type=string,JSONPath=".spec.tier"
// +kubebuilder:printcolumn:name="Order",type=number,JSONPath=".spec.order"
// +kubebuilder:printcolumn:name="Selector",type=string,JSONPath=".spec.selector"
// +kubebuilder:printcolumn:name="Namespace Selector",type=string,JSONPath=".spec.namespaceSelector",priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
// +genclient:nonNamespaced
type GlobalNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={}
	Spec GlobalNetworkPolicySpec `json:"spec,omitempty"`
	// Status is written by Tabby, never by users; policy ignores it.
	// +optional
	Status PolicyStatus `json:"status,omitzero"`
}

// GlobalNetworkPolicySpec is the specification of a GlobalNetworkPolicy: a
// NetworkPolicySpec plus NamespaceSelector.
//
// +kubebuilder:validation:XValidation:rule="!has(self.types) || size(self.types) == 0 || !has(self.ingress) || size(self.ingress) == 0 || 'Ingress' in self.types",message="spec.ingress has rules but spec.types does not include Ingress"
// +kubebuilder:validation:XValidation:rule="!has(self.types) || size(self.types) == 0 || !has(self.egress) || size(self.egress) == 0 || 'Egress' in self.types",message="spec.egress has rules but spec.types does not include Egress"
type GlobalNetworkPolicySpec struct {
	// Tier names the tier the policy belongs to; "default" when unset. It
	// must name a Tier that exists (checked by Tabby, not by the CRD).
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	// +kubebuilder:validation:XValidation:rule="!(self in ['cnp-admin', 'kubernetes', 'cnp-baseline'])",message="names a built-in tier, which Tabby policies cannot join"
	Tier string `json:"tier,omitempty"`
	// +optional
	Order *float64 `json:"order,omitempty"`
	// +optional
	Selector string `json:"selector,omitempty"`
	// NamespaceSelector restricts the pods to namespaces whose labels match.
	// +optional
	NamespaceSelector string `json:"namespaceSelector,omitempty"`
	// +optional
	ServiceAccountSelector string `json:"serviceAccountSelector,omitempty"`
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	Types []PolicyType `json:"types,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Ingress []Rule `json:"ingress,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Egress []Rule `json:"egress,omitempty"`
}

// GlobalNetworkPolicyList is a list of GlobalNetworkPolicies.
// +kubebuilder:object:root=true
type GlobalNetworkPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GlobalNetworkPolicy `json:"items"`
}

// NetworkSet is a namespaced, labelled list of networks that rule selectors
// of its namespace (or naming it through namespaceSelector) can match.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,categories=tabby
// +kubebuilder:printcolumn:name="First Net",type=string,JSONPath=".spec.nets[0]"
// +kubebuilder:printcolumn:name="Nets",type=string,JSONPath=".spec.nets",priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type NetworkSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec NetworkSetSpec `json:"spec,omitempty"`
}

// NetworkSetSpec is the specification of a NetworkSet or GlobalNetworkSet.
type NetworkSetSpec struct {
	// Nets are CIDRs or bare addresses (a host route), IPv4 and IPv6 mixed.
	// +optional
	// +kubebuilder:validation:MaxItems=65536
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self) || isIP(self)",message="must be a CIDR (10.0.0.0/8) or an IP address, without a zone, and IPv4 written as IPv4 (not ::ffff:a.b.c.d)"
	Nets []string `json:"nets,omitempty"`
}

// NetworkSetList is a list of NetworkSets.
// +kubebuilder:object:root=true
type NetworkSetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NetworkSet `json:"items"`
}

// GlobalNetworkSet is a cluster-scoped NetworkSet; namespaceSelector
// global() matches it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=tabby
// +kubebuilder:printcolumn:name="First Net",type=string,JSONPath=".spec.nets[0]"
// +kubebuilder:printcolumn:name="Nets",type=string,JSONPath=".spec.nets",priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
// +genclient:nonNamespaced
type GlobalNetworkSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec NetworkSetSpec `json:"spec,omitempty"`
}

// GlobalNetworkSetList is a list of GlobalNetworkSets.
// +kubebuilder:object:root=true
type GlobalNetworkSetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GlobalNetworkSet `json:"items"`
}
