package policy

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"

	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
)

// Source locates a decoded document: File and its 1-based document number.
// An object read from an API rather than a file has Doc 0 and a File naming
// the resource (kubestore: "kubernetes:networkpolicies.networking.k8s.io").
type Source struct {
	File string
	Doc  int
}

func (s Source) String() string {
	switch {
	case s.File == "":
		return fmt.Sprintf("document %d", s.Doc)
	case s.Doc == 0:
		return s.File
	}
	return fmt.Sprintf("%s (document %d)", s.File, s.Doc)
}

// Object is one decoded object: Source, Ref, and exactly one typed field.
type Object struct {
	Source Source
	Ref    Ref

	Namespace            *corev1.Namespace
	Pod                  *corev1.Pod
	ServiceAccount       *corev1.ServiceAccount
	NetworkPolicy        *networkingv1.NetworkPolicy
	ClusterNetworkPolicy *cnpv1alpha2.ClusterNetworkPolicy
	Tier                 *tabbyv1.Tier
	TabbyNetworkPolicy   *tabbyv1.NetworkPolicy
	GlobalNetworkPolicy  *tabbyv1.GlobalNetworkPolicy
	NetworkSet           *tabbyv1.NetworkSet
	GlobalNetworkSet     *tabbyv1.GlobalNetworkSet
}

// FieldError is a validation or decoding error about one field of one object.
type FieldError struct {
	Source Source
	Object Ref    // zero when the object could not be identified
	Field  string // field path, e.g. spec.ingress[0].ports[1].port
	Reason string
	Err    error // wrapped cause, may be nil
}

func (e *FieldError) Error() string {
	msg := e.Source.String() + ": "
	if e.Object.Name != "" {
		msg += e.Object.String() + ": "
	}
	if e.Field != "" {
		msg += e.Field + ": "
	}
	return msg + e.Reason
}

func (e *FieldError) Unwrap() error { return e.Err }

// Cluster is what normalising one policy or set needs to know about the rest
// of the input. It is built from the valid Namespace, ServiceAccount and Tier
// objects before any policy is normalised.
type Cluster struct {
	// Namespaces maps a namespace name to its labels, including the implied
	// kubernetes.io/metadata.name.
	Namespaces map[string]map[string]string
	// Tiers holds the names of the Tabby tiers that exist ("default" always).
	Tiers map[string]bool
}
