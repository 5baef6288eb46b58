// Package policy decodes Kubernetes and Tabby policy objects and normalises
// them into the Model the compiler consumes. The semantics (evaluation order
// of tiers, reserved label keys, Tabby's own kinds) are documented in
// README.md in this directory; this comment is the package contract.
//
// In: YAML or JSON documents (files, or bytes) holding v1 Namespace, Pod and
// ServiceAccount, networking.k8s.io/v1 NetworkPolicy,
// policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy and the
// tabby.dev/v1alpha1 kinds, one object per document or several in a v1 List
// or a typed list (PodList, ...).
//
// Decoding (LoadFiles, Decode, DecodeDocument, SplitDocuments):
//   - Documents are split at "---" lines; documents with only comments and
//     blank lines are dropped, and Source.Doc numbers the remaining ones from 1.
//   - Decoding is strict, like the API server's: unknown fields, values of the
//     wrong type and duplicate keys are errors, each reported with its full
//     path (spec.ingress[0].ports[1].port). Unknown kinds are errors naming
//     apiVersion and kind.
//   - Namespaced Kubernetes kinds without metadata.namespace are in
//     DefaultNamespace, as kubectl would apply them; cluster-scoped kinds lose
//     a metadata.namespace, as the API server drops it. Tabby kinds follow
//     their own rules (tabby.go).
//   - Every problem is a *FieldError (file, document, object, field path,
//     reason); several are joined with errors.Join. Objects that decode are
//     returned even when others in the same input fail.
//
// Normalisation (Normalize) applies every Kubernetes default once (policyTypes,
// TCP, the implied kubernetes.io/metadata.name namespace label, the "default"
// service account) and validates as the API server and the CRDs' schemas and
// CEL rules would, with the same paths and wording where they have one:
//   - A later object with the same Ref replaces an earlier one, before
//     validation.
//   - An invalid object is reported (one *FieldError per problem, wrapping the
//     apimachinery *field.Error where there is one) and left out; it never
//     affects other objects. A valid object using a feature Tabby lacks
//     (ClusterNetworkPolicy nodes and domainNames peers) is reported with an
//     error wrapping ErrUnsupported rather than enforced partially.
//   - Pods become Endpoints unless host-networked or terminated. Kubernetes
//     NetworkPolicy and ClusterNetworkPolicy rules become one Rule per (peer,
//     protocol), all keeping the source rule's Index.
//   - The Model is deterministic: tiers in evaluation order, policies by tier,
//     order and Ref, endpoints and network sets by Ref; errors in input file
//     and document order. Model.Dump renders it as text for debugging and
//     golden tests.
//
// Out: *Model (model.go) and []error. Nothing here does network I/O, logs or
// keeps global state beyond a cache of struct field tables.
//
// May import: the standard library, selectors/, k8s.io/api, k8s.io/apimachinery,
// sigs.k8s.io/network-policy-api and sigs.k8s.io/yaml. Never compiler/ or
// anything below it.
package policy
