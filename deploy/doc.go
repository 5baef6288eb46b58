// Package deploy holds what is applied to a cluster to run Tabby in
// Kubernetes mode; it has no Go API. crds/ are the CustomResourceDefinitions
// of the tabby.dev/v1alpha1 kinds, generated from the Go types in
// policy/api/v1alpha1 by generate.sh (`make generate`), with a
// kustomization.yaml and a README listing every validation rule.
//
// Its tests guard those files: TestCRDsUpToDate regenerates the CRDs and the
// deepcopy functions into a temporary directory and compares them byte for
// byte with the checked-in ones; TestCRDsAgainstAPIServerCode runs the tests of
// the nested module crdcheck/, which validate the CRDs and sample objects
// with the API server's own code and compare every verdict with package
// policy's normaliser.
//
// Imports: the standard library only (the tests run tools as processes).
package deploy
