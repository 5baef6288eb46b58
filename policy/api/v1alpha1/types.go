package v1alpha1

// Placeholders: the Tabby-kinds helper replaces this file with the full types.

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Tier is a placeholder.
type Tier struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
}

// NetworkPolicy is a placeholder.
type NetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
}

// GlobalNetworkPolicy is a placeholder.
type GlobalNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
}

// NetworkSet is a placeholder.
type NetworkSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
}

// GlobalNetworkSet is a placeholder.
type GlobalNetworkSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
}
