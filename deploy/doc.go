// Package deploy holds what is applied to a cluster to run Tabby in
// Kubernetes mode; it has no Go API (README.md describes the layout).
// tabby.yaml is the one file users apply: overlays/policy-only rendered by
// `kubectl kustomize`, i.e. base/ (namespace, ServiceAccount, RBAC,
// ConfigMap, DaemonSet) plus the CRDs. crds/ are the CustomResourceDefinitions
// of the tabby.dev/v1alpha1 kinds, generated from the Go types in
// policy/api/v1alpha1; crds/upstream is the ClusterNetworkPolicy CRD copied
// from the sigs.k8s.io/network-policy-api module. generate.sh (`make
// generate`) writes all three.
//
// Its tests guard those files. TestCRDsUpToDate and TestManifestUpToDate
// regenerate into temporary directories and compare byte for byte with the
// checked-in files; TestCRDsAgainstAPIServerCode runs the tests of the
// nested module crdcheck/, which validate the CRDs and sample objects with
// the API server's own code and compare every verdict with package policy's
// normaliser. TestManifestOnAPIServer applies tabby.yaml to a real
// kube-apiserver (e2e/kubetest) and checks the agent's effective
// permissions and kubectl's rejection of invalid policies; the manifest and
// DaemonSet tests check the rendered objects against the contracts, and
// TestAgentCapabilities runs the agent with exactly the DaemonSet's
// capabilities in namespaces of its own.
//
// Imports (tests only): the standard library, k8s.io/{api,apimachinery,
// client-go}, e2e/kubetest and networking (to reach the agent's health
// endpoint inside its network namespace); everything else runs as a
// process (controller-gen, kubectl, the tabby binary, go test).
package deploy
