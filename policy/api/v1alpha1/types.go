package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Order fields are float64, as in Calico, so a policy can be slotted between
// two others without renumbering. controller-gen needs
// crd:allowDangerousTypes=true to emit them.

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
// +kubebuilder:resource:scope=Cluster
// +genclient:nonNamespaced
type Tier struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

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
// +kubebuilder:resource:scope=Namespaced
type NetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec NetworkPolicySpec `json:"spec,omitempty"`
}

// NetworkPolicySpec is the specification of a NetworkPolicy.
type NetworkPolicySpec struct {
	// Tier names the tier the policy belongs to; "default" when unset.
	// +optional
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
	Types []PolicyType `json:"types,omitempty"`
	// +optional
	Ingress []Rule `json:"ingress,omitempty"`
	// +optional
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
// +kubebuilder:resource:scope=Cluster
// +genclient:nonNamespaced
type GlobalNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec GlobalNetworkPolicySpec `json:"spec,omitempty"`
}

// GlobalNetworkPolicySpec is the specification of a GlobalNetworkPolicy: a
// NetworkPolicySpec plus NamespaceSelector.
type GlobalNetworkPolicySpec struct {
	// +optional
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
	Types []PolicyType `json:"types,omitempty"`
	// +optional
	Ingress []Rule `json:"ingress,omitempty"`
	// +optional
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
// +kubebuilder:resource:scope=Namespaced
type NetworkSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec NetworkSetSpec `json:"spec,omitempty"`
}

// NetworkSetSpec is the specification of a NetworkSet or GlobalNetworkSet.
type NetworkSetSpec struct {
	// Nets are CIDRs or bare addresses (a host route), IPv4 and IPv6 mixed.
	// +optional
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
// +kubebuilder:resource:scope=Cluster
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
