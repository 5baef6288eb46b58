// Package crdcheck tests the CRDs in deploy/crds with the API server's own
// validation code, without an API server: k8s.io/apiextensions-apiserver's
// CRD validation (structural schema, CEL compilation and cost budget), and on
// objects the functions a kube-apiserver v1.35 create calls (pruning,
// defaulting, ObjectMeta, OpenAPI schema, list types, CEL rules), in the
// order its custom-resource strategy calls them (harness_test.go).
//
// Every case is also given to package policy's normaliser, and the two
// verdicts must agree: the CRDs may not accept what Tabby rejects, nor reject
// what it accepts, except where a case documents why (a check that needs
// other objects or the selector grammar, which only Tabby has).
//
// It is a module of its own (deploy/crdcheck/go.mod) so that the
// apiextensions-apiserver dependency never reaches the main module;
// deploy/crds_test.go runs its tests from the main module's `go test`.
//
// In: ../crds/*.yaml, ../../e2e/testdata/conformance/tabby/*.yaml. Out: test
// results only. Imports: k8s.io/apiextensions-apiserver, k8s.io/apiserver,
// k8s.io/apimachinery, sigs.k8s.io/yaml and github.com/tabbynet/tabby/policy
// (replaced by the checkout it sits in).
package crdcheck
