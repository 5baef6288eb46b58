package lab_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/e2e/controlplane"
	"github.com/tabbynet/tabby/e2e/kubetest"
	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/policy"
)

// kubeWorld is the Kubernetes-mode test's cluster: x/a on node-1, x/b on
// node-2, y/c placed by the lab; no policy yet.
func kubeWorld() []policy.Object {
	w := newWorld()
	delete(w.pods, [2]string{"x", "c"})
	delete(w.pods, [2]string{"y", "a"})
	delete(w.pods, [2]string{"y", "b"})
	objs := w.objects()
	for i, o := range objs {
		if o.Ref.Kind == policy.KindPod && o.Ref.Namespace == "x" {
			pod := o.Pod.DeepCopy()
			pod.Spec.NodeName = map[string]string{"a": "node-1", "b": "node-2"}[o.Ref.Name]
			objs[i].Pod = pod
		}
	}
	return objs
}

// aFromB admits to x/a only x/b, on 80/TCP.
func aFromB() policy.Object {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a-from-b"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "b"}}}},
				Ports: []networkingv1.NetworkPolicyPort{port(80, corev1.ProtocolTCP)},
			}},
		},
	}
	return policy.Object{Ref: policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "x", Name: "a-from-b"}, NetworkPolicy: np}
}

// checkMatrix measures every probe of objs' prediction and fails on any
// difference; it returns the prediction.
func checkMatrix(ctx context.Context, t *testing.T, l *lab.Lab, what string, objs []policy.Object) *sim.Matrix {
	t.Helper()
	want, err := predict(objs)
	if err != nil {
		t.Fatalf("%s: predict: %v", what, err)
	}
	if err := compareMeasured(ctx, l, want.Results); err != nil {
		t.Errorf("%s: %v", what, err)
	}
	return want
}

// TestKubernetesLab runs a 2-node lab in Kubernetes mode: objects go
// through a real API server, agents read it with deploy's RBAC, and the lab
// plays kubelet. A NetworkPolicy created through the API, changed with
// kubectl and deleted converges each time (measured == predicted), pods come
// and go through the API, the API server restarts under the agents, and
// Down cleans up even what the control plane's own record no longer names.
func TestKubernetesLab(t *testing.T) {
	requireRoot(t)
	kubetest.RequireBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l := upLab(t, lab.Config{Objects: kubeWorld(), Nodes: 2, Name: "tlab-kube", Kubernetes: true})
	st := l.State()
	kube, err := l.Kube()
	if err != nil {
		t.Fatal(err)
	}
	if st.Kubernetes == nil || st.Kubernetes.URL != "https://192.168.254.2:6443" || !netnsExists(st.Kubernetes.Netns) {
		t.Fatalf("Kubernetes state: %+v", st.Kubernetes)
	}

	// The kubelet's part: pods exist with their node, address and status.
	pods, err := kube.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 3 {
		t.Fatalf("%d pods in the API, want 3", len(pods.Items))
	}
	for _, p := range pods.Items {
		ps, ok := findPod(st, p.Namespace, p.Name)
		if !ok || p.Spec.NodeName != ps.Node || p.Status.PodIP != ps.IPs[0].String() || p.Status.Phase != corev1.PodRunning {
			t.Errorf("pod %s/%s in the API: node %q, IP %q, phase %s; the lab has %+v", p.Namespace, p.Name,
				p.Spec.NodeName, p.Status.PodIP, p.Status.Phase, ps)
		}
	}
	nodes, err := kube.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 2 || nodes.Items[0].Status.Addresses[1].Address != "192.168.254.11" {
		t.Errorf("nodes: %v, %+v", err, nodes)
	}
	checkAgentIdentity(ctx, t, l)

	// No policy: everything is allowed.
	base := checkMatrix(ctx, t, l, "no policy", l.Objects())
	if countAllowed(base) != len(base.Results) {
		t.Fatalf("without policies %d of %d probes allowed", countAllowed(base), len(base.Results))
	}

	// A NetworkPolicy created through the API.
	start := time.Now()
	if err := l.Apply(ctx, aFromB()); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("NetworkPolicy created through the API and enforced by both agents in %v", time.Since(start).Round(time.Millisecond))
	if _, err := kube.Client.NetworkingV1().NetworkPolicies("x").Get(ctx, "a-from-b", metav1.GetOptions{}); err != nil {
		t.Fatalf("the policy is not in the API: %v", err)
	}
	with := checkMatrix(ctx, t, l, "a-from-b", l.Objects())
	if a := countAllowed(with); a == 0 || a == len(with.Results) || a == countAllowed(base) {
		t.Fatalf("with a-from-b %d of %d allowed: the step tests nothing", a, len(with.Results))
	}

	// Changed with kubectl through the forwarder: now port 53/UDP instead.
	changed := strings.NewReader(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress: [{from: [{podSelector: {matchLabels: {app: b}}}], ports: [{port: 53, protocol: UDP}]}]
`)
	since := time.Now()
	cmd := exec.CommandContext(ctx, kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "apply", "-f", "-")
	cmd.Stdin = changed
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "configured") {
		t.Fatalf("kubectl apply: %v: %s", err, out)
	}
	if err := l.WaitSyncedAfter(ctx, since); err != nil {
		t.Fatal(err)
	}
	fromAPI, err := l.APIObjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := checkMatrix(ctx, t, l, "a-from-b changed with kubectl", fromAPI)
	if reflect.DeepEqual(after.Results, with.Results) {
		t.Error("the kubectl change did not change the prediction: the step tests nothing")
	}

	// Pods through the API: one added (created, built, then status), one
	// deleted (deleted, then torn down).
	xd := extraPod("x", "d", map[string]string{"app": "a"}, "")
	if err := l.Apply(ctx, xd); err != nil {
		t.Fatal(err)
	}
	if err := l.Delete(ctx, policy.Ref{Kind: policy.KindPod, Namespace: "y", Name: "c"}); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := kube.Client.CoreV1().Pods("x").Get(ctx, "d", metav1.GetOptions{})
	if err != nil || got.Status.PodIP == "" || got.Status.Phase != corev1.PodRunning {
		t.Errorf("added pod x/d in the API: %v %+v", err, got)
	}
	if _, err := kube.Client.CoreV1().Pods("y").Get(ctx, "c", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("deleted pod y/c: %v, want NotFound", err)
	}
	if ps, ok := findPod(l.State(), "y", "c"); ok || netnsExists("tlab-kube-pod-y-c") {
		t.Errorf("deleted pod y/c still built: %+v", ps)
	}
	// Apply and Delete wrote only their objects: kubectl's version of the
	// policy stays, and the prediction comes from the API.
	np, err := kube.Client.NetworkingV1().NetworkPolicies("x").Get(ctx, "a-from-b", metav1.GetOptions{})
	if err != nil || np.Spec.Ingress[0].Ports[0].Port.IntValue() != 53 {
		t.Errorf("kubectl's change to a-from-b did not survive an unrelated Apply: %v %+v", err, np)
	}
	if fromAPI, err = l.APIObjects(ctx); err != nil {
		t.Fatal(err)
	}
	checkMatrix(ctx, t, l, "pods changed", fromAPI)

	// The API server restarts under the agents; a change after it returns
	// converges.
	if err := l.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.Client.CoreV1().Pods("x").List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("the API answers after StopAPIServer")
	}
	begin := time.Now()
	if err := l.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	restart := time.Since(begin)
	start = time.Now()
	if err := l.Delete(ctx, aFromB().Ref); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server restarted in %v; a deletion after it converged in %v", restart.Round(time.Millisecond),
		time.Since(start).Round(time.Millisecond))
	final := checkMatrix(ctx, t, l, "policy deleted after the restart", l.Objects())
	if countAllowed(final) != len(final.Results) {
		t.Errorf("after deleting the only policy %d of %d allowed", countAllowed(final), len(final.Results))
	}

	// Another process's view: Open sees the same lab; applying the same
	// objects again (server-side apply by the same manager) writes nothing.
	other, err := lab.Open(st.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	before := resourceVersions(ctx, t, kube)
	if err := other.UpdateManifests(l.Objects()); err != nil {
		t.Fatal(err)
	}
	if err := other.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if after := resourceVersions(ctx, t, kube); !maps.Equal(before, after) || len(before) < 6 {
		t.Errorf("re-applying the same objects changed the API:\nbefore %v\nafter  %v", before, after)
	}

	// A crash that lost the control plane's record: Down still stops
	// etcd and kube-apiserver (found in the lab's namespaces) and the
	// forwarder (in lab.json).
	cp, err := controlplane.Open(st.Kubernetes.Dir)
	if err != nil {
		t.Fatal(err)
	}
	procs := cp.Processes()
	if len(procs) != 2 {
		t.Fatalf("control plane processes: %+v", procs)
	}
	if err := os.Remove(controlplane.StateFile(st.Kubernetes.Dir)); err != nil {
		t.Fatal(err)
	}
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if p.Alive() {
			t.Errorf("%s (pid %d) survived lab down", p.Name, p.PID)
		}
	}
	if fw := st.Kubernetes.Forwarder; fw == nil || !processGone(fw) {
		t.Errorf("forwarder %+v survived lab down", fw)
	}
	if _, err := os.Stat(st.Kubernetes.Dir); !os.IsNotExist(err) {
		t.Errorf("lab down left %s: %v", st.Kubernetes.Dir, err)
	}
}

// checkAgentIdentity checks that the agents run as deploy's service account
// with nothing more than its RBAC: each created its TabbyNode, and its
// kubeconfig, used from its node's namespace, may watch pods but not read
// secrets or write policies.
func checkAgentIdentity(ctx context.Context, t *testing.T, l *lab.Lab) {
	t.Helper()
	kube, err := l.Kube()
	if err != nil {
		t.Fatal(err)
	}
	tabbyNodes := schema.GroupVersionResource{Group: "tabby.dev", Version: "v1alpha1", Resource: "tabbynodes"}
	for _, nd := range l.State().Nodes {
		var lastErr error
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, lastErr = kube.Dynamic.Resource(tabbyNodes).Get(ctx, nd.Name, metav1.GetOptions{})
			if lastErr == nil || time.Now().After(deadline) {
				break
			}
		}
		if lastErr != nil {
			t.Errorf("TabbyNode %s: %v", nd.Name, lastErr)
		}
		for _, c := range []struct {
			verb, resource, want string
		}{
			{"watch", "pods", "yes"},
			{"list", "networkpolicies.networking.k8s.io", "yes"},
			{"create", "tabbynodes.tabby.dev", "yes"},
			{"get", "secrets", "no"},
			{"create", "networkpolicies.tabby.dev", "no"},
			{"update", "tabbynodes.tabby.dev", "no"}, // only its status subresource
		} {
			// stdout only: kubectl warns on stderr that tabbynodes are
			// cluster-scoped.
			out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", nd.Netns, kube.Kubectl, "--kubeconfig", nd.Kubeconfig,
				"auth", "can-i", c.verb, c.resource).Output()
			if got := strings.TrimSpace(string(out)); got != c.want {
				t.Errorf("%s's agent: can-i %s %s = %q, want %q", nd.Name, c.verb, c.resource, got, c.want)
			}
		}
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", nd.Netns, kube.Kubectl, "--kubeconfig", nd.Kubeconfig,
			"auth", "whoami", "-o", "json").CombinedOutput()
		var who struct {
			Status struct {
				UserInfo struct {
					Username string   `json:"username"`
					Groups   []string `json:"groups"`
				} `json:"userInfo"`
			} `json:"status"`
		}
		if err == nil {
			err = json.Unmarshal(out, &who)
		}
		if err != nil || who.Status.UserInfo.Username != lab.AgentUser ||
			!slices.Equal(slices.Sorted(slices.Values(who.Status.UserInfo.Groups)), slices.Sorted(slices.Values(lab.AgentGroups))) {
			t.Errorf("%s's agent is %+v (%v), want %s in %v", nd.Name, who.Status.UserInfo, err, lab.AgentUser, lab.AgentGroups)
		}
	}
}

// TestKubernetesLabBadInput: Kubernetes mode's own input errors come before
// anything is built.
func TestKubernetesLabBadInput(t *testing.T) {
	requireRoot(t)
	kubetest.RequireBinaries(t)
	dir := t.TempDir()
	_, err := lab.Up(context.Background(), lab.Config{Objects: kubeWorld(), Nodes: 2, Name: "tlab-kbad", StateDir: dir,
		Kubernetes: true, Deploy: filepath.Join(dir, "missing.yaml"),
		Tabby: filepath.Join(binDir, "tabby"), Tabbyctl: filepath.Join(binDir, "tabbyctl")})
	var ce *lab.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Up with a missing deploy manifest = %v, want a *ConfigError naming it", err)
	}
	if _, err := os.Stat(lab.StateFile(dir)); !os.IsNotExist(err) {
		t.Errorf("bad input left a state file: %v", err)
	}
	assertNoNamespaces(t, "tlab-kbad")
}

// resourceVersions maps every namespace and pod to its resourceVersion.
func resourceVersions(ctx context.Context, t *testing.T, kube *lab.KubeAccess) map[string]string {
	t.Helper()
	out := map[string]string{}
	nss, err := kube.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss.Items {
		out["ns/"+ns.Name] = ns.ResourceVersion
	}
	pods, err := kube.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		out["pod/"+p.Namespace+"/"+p.Name] = p.ResourceVersion
	}
	return out
}
