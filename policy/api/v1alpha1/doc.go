// Package v1alpha1 holds the Go types of Tabby's own kinds (group tabby.dev,
// version v1alpha1): Tier, NetworkPolicy, GlobalNetworkPolicy, NetworkSet,
// GlobalNetworkSet, and their List types. They are what users write in YAML
// and the source of the CRDs in deploy/crds: `make generate` runs
// controller-gen (pinned in deploy/generate.sh) on the kubebuilder markers
// here, and also writes zz_generated.deepcopy.go; a test fails when either is
// stale. See the notes on Order and on the int-or-string types (NumOrString).
//
// The types carry the user's input as written: defaults and validation are
// applied by package policy (policy/tabby*.go), which turns them into the
// normalised model. Protocol and Port keep whether a value was given as a
// number or as a string, so that a decoded object marshals back unchanged.
//
// Imports: k8s.io/apimachinery only.
//
// +kubebuilder:object:generate=true
// +groupName=tabby.dev
package v1alpha1
