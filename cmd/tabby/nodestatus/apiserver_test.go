package nodestatus

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/tabbynet/tabby/cmd/tabby/agent"
	"github.com/tabbynet/tabby/e2e/kubetest"
	"github.com/tabbynet/tabby/policy/api/v1alpha1"
)

// The agent's identity and the part of its ClusterRole (deploy/, contract B)
// that the Reporter uses: no list or watch, so it runs with exactly that.
const agentUser = "system:serviceaccount:tabby-system:tabby-agent"

var agentGroups = []string{"system:serviceaccounts", "system:serviceaccounts:tabby-system", "system:authenticated"}

var reporterRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
	{APIGroups: []string{"tabby.dev"}, Resources: []string{"tabbynodes"}, Verbs: []string{"get", "create"}},
	{APIGroups: []string{"tabby.dev"}, Resources: []string{"tabbynodes/status"}, Verbs: []string{"get", "update", "patch"}},
}

func kubectl(t *testing.T, c *kubetest.Cluster, args ...string) string {
	t.Helper()
	out, err := exec.Command(c.Binaries.Kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type statusCheck func(*v1alpha1.TabbyNode) bool

// TestReporterAgainstAPIServer runs the Reporter with the agent's RBAC
// against a real kube-apiserver: creation with the owner reference, status
// updates, kubectl's columns, a user's write (conflict), a user's delete,
// and an API server restart.
func TestReporterAgainstAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kubectl(t, c, "apply", "--server-side", "-f", "../../../deploy/crds/tabby.dev_tabbynodes.yaml")
	kubectl(t, c, "wait", "--for=condition=Established", "--timeout=60s", "crd/tabbynodes.tabby.dev")
	node, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "tabby-agent-nodestatus"}, Rules: reporterRules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tabby-agent-nodestatus"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "tabby-agent-nodestatus"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "tabby-system", Name: "tabby-agent"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	userCfg, err := c.UserConfig(agentUser, agentGroups...)
	if err != nil {
		t.Fatal(err)
	}
	client, err := dynamic.NewForConfig(userCfg)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}

	src := &fakeSource{}
	logs := &syncBuffer{}
	rep, err := New(Config{
		Client: client, Node: testNode, Source: src.get, Datastore: "kubernetes", AgentVersion: "v-test",
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinInterval: 200 * time.Millisecond, Heartbeat: time.Second, Poll: 50 * time.Millisecond,
		RetryMin: 200 * time.Millisecond, RetryMax: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rep.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("reporter logs:\n%s", logs.String())
		}
	}()

	get := func() (*v1alpha1.TabbyNode, error) {
		u, err := admin.Resource(TabbyNodes).Get(ctx, testNode, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		var tn v1alpha1.TabbyNode
		return &tn, fromUnstructured(u, &tn)
	}
	waitStatus := func(what string, ok statusCheck) *v1alpha1.TabbyNode {
		t.Helper()
		var tn *v1alpha1.TabbyNode
		eventually(t, what, 20*time.Second, func() error {
			var err error
			if tn, err = get(); err != nil {
				return err
			}
			if !ok(tn) {
				return fmt.Errorf("status %+v", tn.Status)
			}
			return nil
		})
		return tn
	}

	tn := waitStatus("the starting status", func(tn *v1alpha1.TabbyNode) bool {
		return tn.Status.Datastore == "kubernetes" && len(tn.Status.Conditions) == 2
	})
	if refs := tn.OwnerReferences; len(refs) != 1 || refs[0].UID != node.UID || refs[0].Kind != "Node" || refs[0].Name != testNode {
		t.Fatalf("owner references %+v, want Node %s %s", refs, testNode, node.UID)
	}
	if tn.Status.Ready || tn.Status.AgentVersion != "v-test" {
		t.Fatalf("starting status %+v", tn.Status)
	}

	src.set(func(st *agent.Status) {
		enforcing(st)
		st.LastSync = time.Now()
		st.Errors = []string{"shop/bad: spec.ingress[0].ports[0].port: must be 1-65535 (left out)", "another problem"}
	})
	tn = waitStatus("the enforcing status", func(tn *v1alpha1.TabbyNode) bool { return tn.Status.Ready })
	if st := tn.Status; st.Policies != 3 || st.LocalEndpoints != 2 || st.Endpoints != 20 || st.ErrorCount != 2 || st.LastSync == nil {
		t.Fatalf("status %+v", st)
	}
	lines := strings.Split(strings.TrimSpace(kubectl(t, c, "get", "tabbynodes")), "\n")
	if len(lines) != 2 {
		t.Fatalf("kubectl get tabbynodes:\n%s", strings.Join(lines, "\n"))
	}
	if got, want := strings.Fields(lines[0]), []string{"NAME", "READY", "POLICIES", "LOCAL", "ENDPOINTS", "ERRORS", "LAST", "SYNC", "AGE"}; !slices.Equal(got, want) {
		t.Fatalf("kubectl columns %q, want %q", got, want)
	}
	if got, want := strings.Fields(lines[1])[:6], []string{testNode, "true", "3", "2", "20", "2"}; !slices.Equal(got, want) {
		t.Fatalf("kubectl row %q, want %q...", lines[1], want)
	}

	// A user overwrites the status: the agent's next write conflicts (its
	// resourceVersion is stale), refetches and writes its own on top.
	u, err := admin.Resource(TabbyNodes).Get(ctx, testNode, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, int64(999), "status", "policies"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Resource(TabbyNodes).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	src.set(func(st *agent.Status) { st.Policies = 4 })
	waitStatus("the agent's status over the user's", func(tn *v1alpha1.TabbyNode) bool { return tn.Status.Policies == 4 })
	if !strings.Contains(logs.String(), "changed since it was read") {
		t.Fatalf("no conflict was handled:\n%s", logs.String())
	}

	// A user deletes it: recreated (by the heartbeat), owned by the Node.
	uid := tn.UID
	if err := admin.Resource(TabbyNodes).Delete(ctx, testNode, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	tn = waitStatus("the TabbyNode recreated", func(tn *v1alpha1.TabbyNode) bool { return tn.UID != uid && tn.Status.Policies == 4 })
	if refs := tn.OwnerReferences; len(refs) != 1 || refs[0].UID != node.UID {
		t.Fatalf("recreated without its owner: %+v", refs)
	}

	// The API server goes away for a while; the agent changes meanwhile.
	const warning = "level=WARN msg=\"writing the TabbyNode status failed"
	warnings, recoveries := logs.count(warning), logs.count("TabbyNode status written again")
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	src.set(func(st *agent.Status) { st.Policies = 9 })
	eventually(t, "failed writes while the API server is down", 10*time.Second, func() error {
		if n := logs.count("writing the TabbyNode status failed again"); n < 2 {
			return fmt.Errorf("%d retries logged", n)
		}
		return nil
	})
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	waitStatus("the change made while the API server was down", func(tn *v1alpha1.TabbyNode) bool { return tn.Status.Policies == 9 })
	if n := logs.count(warning) - warnings; n != 1 {
		t.Fatalf("%d warnings for one outage, want 1", n)
	}
	if n := logs.count("TabbyNode status written again") - recoveries; n != 1 {
		t.Fatalf("%d recoveries logged, want 1", n)
	}
	if _, err := client.Resource(TabbyNodes).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the agent's identity can list tabbynodes (err %v): the test would not prove least privilege", err)
	}
}
