package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tabbynet/tabby/e2e/kubetest"
)

// kubectl runs the cluster's kubectl as its admin with stdin, returning
// stdout and stderr.
func kubectl(t *testing.T, c *kubetest.Cluster, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Binaries.Kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// mustKubectl is kubectl that fails the test on an error.
func mustKubectl(t *testing.T, c *kubetest.Cluster, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := kubectl(t, c, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// TestManifestOnAPIServer takes tabby.yaml through a real kube-apiserver
// (one for all subtests, which run in order): a server-side dry run on an
// empty cluster, the real apply, a second apply that changes nothing, the
// agent's effective permissions, and kubectl's rejection of invalid Tabby
// policies.
func TestManifestOnAPIServer(t *testing.T) {
	readInputs(t, manifestPath)
	c := kubetest.Start(t)

	if !t.Run("dry run", func(t *testing.T) { testDryRun(t, c) }) {
		t.FailNow()
	}
	if !t.Run("apply twice", func(t *testing.T) { testApplyTwice(t, c) }) {
		t.FailNow()
	}
	t.Run("agent permissions", func(t *testing.T) { testAgentPermissions(t, c) })
	t.Run("effective rules are exactly the contract", func(t *testing.T) { testEffectiveRules(t, c) })
	t.Run("invalid policies rejected", func(t *testing.T) { testInvalidPolicies(t, c) })
}

// testDryRun: the whole file passes the API server's admission and
// validation (CRDs: structural schema, CEL cost; RBAC; DaemonSet) without
// being stored, both as `kubectl apply --server-side` (what README says) and
// as plain `kubectl apply`, which users type out of habit. The file holds no
// custom resources: those could not be dry-run before their CRD exists. Its
// namespace is created for real first: a dry run does not create it, so
// every namespaced object would be refused as "namespace not found".
func testDryRun(t *testing.T, c *kubetest.Cluster) {
	objs := readManifest(t, manifestPath)
	mustKubectl(t, c, "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+agentNamespace+"}\n", "apply", "--server-side", "-f", "-")
	for _, args := range [][]string{
		{"apply", "--server-side", "--dry-run=server", "-f", manifestPath},
		{"apply", "--dry-run=server", "-f", manifestPath},
	} {
		out := mustKubectl(t, c, "", args...)
		// One line per object, each marked as a dry run.
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(objs) {
			t.Errorf("kubectl %s: %d lines for %d objects:\n%s", strings.Join(args, " "), len(lines), len(objs), out)
		}
		for _, l := range lines {
			if !strings.HasSuffix(l, "(server dry run)") {
				t.Errorf("kubectl %s: %q is not a dry run", strings.Join(args, " "), l)
			}
		}
	}
	// Nothing but the namespace was stored.
	if out := mustKubectl(t, c, "", "get", "-f", manifestPath, "--ignore-not-found", "-o", "name"); strings.TrimSpace(out) != "namespace/"+agentNamespace {
		t.Errorf("after the dry runs the cluster holds:\n%s", out)
	}
}

// objectVersions maps every object of tabby.yaml, as stored, to its
// resourceVersion and generation.
func objectVersions(t *testing.T, c *kubetest.Cluster) map[string]string {
	t.Helper()
	out := mustKubectl(t, c, "", "get", "-f", manifestPath, "-o", "json")
	var list struct {
		Items []metav1.PartialObjectMetadata `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl get -f %s -o json: %v", manifestPath, err)
	}
	m := map[string]string{}
	for _, o := range list.Items {
		m[o.Kind+" "+o.Namespace+"/"+o.Name] = fmt.Sprintf("rv %s gen %d", o.ResourceVersion, o.Generation)
	}
	return m
}

// testApplyTwice applies tabby.yaml for real, waits for the CRDs to be
// served, and applies it again: the second apply must change no object
// (same resourceVersion everywhere), or every `kubectl apply` of the same
// release would roll the DaemonSet or rewrite the CRDs.
func testApplyTwice(t *testing.T, c *kubetest.Cluster) {
	objs := readManifest(t, manifestPath)
	mustKubectl(t, c, "", "apply", "--server-side", "-f", manifestPath)
	var crds []string
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, "crd/"+o.GetName())
		}
	}
	mustKubectl(t, c, "", append([]string{"wait", "--for=condition=Established", "--timeout=60s"}, crds...)...)

	// Controllers in the API server (CRD naming, API approval) write CRD
	// status after the apply; wait until nothing moves any more.
	before := objectVersions(t, c)
	for deadline := time.Now().Add(20 * time.Second); ; {
		time.Sleep(500 * time.Millisecond)
		again := objectVersions(t, c)
		if reflect.DeepEqual(before, again) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("objects keep changing after the apply:\n%v\n%v", before, again)
		}
		before = again
	}
	if len(before) != len(objs) {
		t.Fatalf("%d objects stored, %d in %s: %v", len(before), len(objs), manifestPath, before)
	}

	mustKubectl(t, c, "", "apply", "--server-side", "-f", manifestPath)
	if after := objectVersions(t, c); !reflect.DeepEqual(before, after) {
		for k, v := range after {
			if before[k] != v {
				t.Errorf("second apply changed %s: %s -> %s", k, before[k], v)
			}
		}
	}
}

// access is one request the agent's ServiceAccount may or may not make.
type access struct {
	verb, group, resource, subresource, namespace string
}

func (a access) String() string {
	r := a.resource
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	g := a.group
	if g == "" {
		g = "core"
	}
	ns := a.namespace
	if ns == "" {
		ns = "(all namespaces)"
	}
	return fmt.Sprintf("%s %s/%s in %s", a.verb, g, r, ns)
}

// agentClient is a client authenticated as the agent's ServiceAccount, by a
// client certificate with its user and groups: the API server authorizes it
// exactly as it would the DaemonSet's token.
func agentClient(t *testing.T, c *kubetest.Cluster, user string) *kubernetes.Clientset {
	t.Helper()
	cfg, err := c.UserConfig(user, agentGroups...)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func allowed(t *testing.T, cs *kubernetes.Clientset, a access) bool {
	t.Helper()
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectAccessReview %s: %v", a, err)
	}
	return r.Status.Allowed
}

// testAgentPermissions asks the API server, as the agent, about every verb
// contract B grants (cluster-wide and in a namespace) and a table of things
// it must not do.
func testAgentPermissions(t *testing.T, c *kubetest.Cluster) {
	cs := agentClient(t, c, agentUser)
	namespaced := map[string]bool{"pods": true, "serviceaccounts": true, "networkpolicies": true, "networksets": true}
	for _, p := range expand(agentRules) {
		res, sub, _ := strings.Cut(p.resource, "/")
		namespaces := []string{""}
		if namespaced[res] {
			namespaces = append(namespaces, "shop", agentNamespace)
		}
		for _, ns := range namespaces {
			if a := (access{p.verb, p.group, res, sub, ns}); !allowed(t, cs, a) {
				t.Errorf("the agent may not %s (contract B grants it)", a)
			}
		}
	}
	denied := []access{
		// Pods: read only, and no way into them.
		{"create", "", "pods", "", "shop"},
		{"update", "", "pods", "", "shop"},
		{"patch", "", "pods", "", "shop"},
		{"delete", "", "pods", "", "shop"},
		{"deletecollection", "", "pods", "", ""},
		{"update", "", "pods", "status", "shop"},
		{"create", "", "pods", "exec", "shop"},
		{"create", "", "pods", "eviction", "shop"},
		// No secrets, config or tokens, even in its own namespace.
		{"get", "", "secrets", "", agentNamespace},
		{"list", "", "secrets", "", ""},
		{"watch", "", "secrets", "", ""},
		{"get", "", "configmaps", "", agentNamespace},
		{"create", "", "serviceaccounts", "token", agentNamespace},
		{"update", "", "serviceaccounts", "", agentNamespace},
		// Nodes: get only (the TabbyNode's owner).
		{"list", "", "nodes", "", ""},
		{"watch", "", "nodes", "", ""},
		{"update", "", "nodes", "", ""},
		{"patch", "", "nodes", "status", ""},
		{"delete", "", "nodes", "", ""},
		// Namespaces, services, events: nothing beyond reading namespaces.
		{"create", "", "namespaces", "", ""},
		{"delete", "", "namespaces", "", ""},
		{"list", "", "services", "", ""},
		{"list", "", "endpoints", "", ""},
		{"create", "", "events", "", agentNamespace},
		// Policies are read, never written, nor their status.
		{"create", "networking.k8s.io", "networkpolicies", "", "shop"},
		{"update", "networking.k8s.io", "networkpolicies", "", "shop"},
		{"delete", "networking.k8s.io", "networkpolicies", "", "shop"},
		{"update", "policy.networking.k8s.io", "clusternetworkpolicies", "", ""},
		{"update", "policy.networking.k8s.io", "clusternetworkpolicies", "status", ""},
		{"create", "tabby.dev", "tiers", "", ""},
		{"delete", "tabby.dev", "globalnetworkpolicies", "", ""},
		{"update", "tabby.dev", "networkpolicies", "", "shop"},
		{"update", "tabby.dev", "networkpolicies", "status", "shop"},
		{"patch", "tabby.dev", "globalnetworkpolicies", "status", ""},
		{"create", "tabby.dev", "networksets", "", "shop"},
		// TabbyNodes: create once, then the status only.
		{"list", "tabby.dev", "tabbynodes", "", ""},
		{"watch", "tabby.dev", "tabbynodes", "", ""},
		{"update", "tabby.dev", "tabbynodes", "", ""},
		{"patch", "tabby.dev", "tabbynodes", "", ""},
		{"delete", "tabby.dev", "tabbynodes", "", ""},
		{"deletecollection", "tabby.dev", "tabbynodes", "", ""},
		{"create", "tabby.dev", "tabbynodes", "status", ""},
		{"delete", "tabby.dev", "tabbynodes", "status", ""},
		// Other API groups: nothing.
		{"get", "apiextensions.k8s.io", "customresourcedefinitions", "", ""},
		{"list", "apiextensions.k8s.io", "customresourcedefinitions", "", ""},
		{"create", "apiextensions.k8s.io", "customresourcedefinitions", "", ""},
		{"list", "apps", "daemonsets", "", ""},
		{"update", "apps", "daemonsets", "", agentNamespace},
		{"list", "discovery.k8s.io", "endpointslices", "", ""},
		{"get", "coordination.k8s.io", "leases", "", agentNamespace},
		{"create", "rbac.authorization.k8s.io", "clusterrolebindings", "", ""},
		{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", ""},
		{"bind", "rbac.authorization.k8s.io", "clusterroles", "", ""},
		{"impersonate", "", "users", "", ""},
		{"impersonate", "", "serviceaccounts", "", agentNamespace},
		{"create", "certificates.k8s.io", "certificatesigningrequests", "", ""},
		{"list", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", ""},
		{"get", "policy.networking.k8s.io", "adminnetworkpolicies", "", ""},
		{"get", "tabby.dev", "somethingelse", "", ""},
		{"*", "*", "*", "", ""},
	}
	for _, a := range denied {
		if allowed(t, cs, a) {
			t.Errorf("the agent may %s: contract B does not grant it", a)
		}
	}
}

// testEffectiveRules compares everything the agent may do, as the API
// server's RBAC authorizer lists it (SelfSubjectRulesReview), with contract
// B: the agent's rules minus those of another ServiceAccount of the same
// namespace (what every service account and authenticated user gets by
// default: discovery, self reviews) must be exactly the contract's, in the
// agent's namespace and in any other.
func testEffectiveRules(t *testing.T, c *kubetest.Cluster) {
	agent := agentClient(t, c, agentUser)
	other := agentClient(t, c, "system:serviceaccount:tabby-system:someone-else")
	for _, ns := range []string{agentNamespace, "shop"} {
		got := setMinus(rulesFor(t, agent, ns), rulesFor(t, other, ns))
		if want := expand(agentRules); !slices.Equal(got, want) {
			t.Errorf("namespace %s: the agent's own permissions are not contract B's: %s", ns, permissionDiff(got, want))
		}
	}
}

func rulesFor(t *testing.T, cs *kubernetes.Clientset, ns string) []permission {
	t.Helper()
	r, err := cs.AuthorizationV1().SelfSubjectRulesReviews().Create(context.Background(), &authorizationv1.SelfSubjectRulesReview{
		Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectRulesReview in %s: %v", ns, err)
	}
	if r.Status.EvaluationError != "" {
		t.Logf("SelfSubjectRulesReview in %s: %s", ns, r.Status.EvaluationError)
	}
	var rules []rbacv1.PolicyRule
	for _, rr := range r.Status.ResourceRules {
		rules = append(rules, rbacv1.PolicyRule{Verbs: rr.Verbs, APIGroups: rr.APIGroups, Resources: rr.Resources, ResourceNames: rr.ResourceNames})
	}
	return expand(rules)
}

func setMinus(a, b []permission) []permission {
	out := []permission{}
	for _, p := range a {
		if !slices.Contains(b, p) {
			out = append(out, p)
		}
	}
	return out
}
