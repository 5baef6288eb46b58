package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of Tabby's kinds.
const GroupName = "tabby.dev"

// SchemeGroupVersion is tabby.dev/v1alpha1.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Kind names, as they appear in the kind field of a document.
const (
	KindTier                = "Tier"
	KindNetworkPolicy       = "NetworkPolicy"
	KindGlobalNetworkPolicy = "GlobalNetworkPolicy"
	KindNetworkSet          = "NetworkSet"
	KindGlobalNetworkSet    = "GlobalNetworkSet"
	KindTabbyNode           = "TabbyNode"
)

var (
	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the kinds of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&Tier{}, &TierList{},
		&NetworkPolicy{}, &NetworkPolicyList{},
		&GlobalNetworkPolicy{}, &GlobalNetworkPolicyList{},
		&NetworkSet{}, &NetworkSetList{},
		&GlobalNetworkSet{}, &GlobalNetworkSetList{},
		&TabbyNode{}, &TabbyNodeList{},
	)
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
