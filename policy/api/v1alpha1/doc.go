// Package v1alpha1 holds the Go types of Tabby's own kinds (group tabby.dev,
// version v1alpha1): Tier, NetworkPolicy, GlobalNetworkPolicy, NetworkSet,
// GlobalNetworkSet. They are what users write in YAML and, later, the source
// of the CRDs. Imports: k8s.io/apimachinery only.
package v1alpha1
