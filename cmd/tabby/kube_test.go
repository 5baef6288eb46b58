package main

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/tabbynet/tabby/cmd/tabby/nodestatus"
	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/e2e/kubetest"
	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/policy/api/v1alpha1"
)

// The agent's identity in deploy/ (contract B).
const agentUser = "system:serviceaccount:tabby-system:tabby-agent"

var agentGroups = []string{"system:serviceaccounts", "system:serviceaccounts:tabby-system", "system:authenticated"}

// syncBuffer collects the logs of an agent run in this process.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func kubectl(t *testing.T, c *kubetest.Cluster, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(c.Binaries.Kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

const tabbyPolicy = `apiVersion: tabby.dev/v1alpha1
kind: NetworkPolicy
metadata: {name: tabby-allow, namespace: shop}
spec:
  selector: app == "web"
  ingress:
  - action: Allow
    source: {selector: app == "client"}
`

// TestAgentKubernetesMode runs `tabby agent` with the kubernetes datastore
// (in this process, with the real enforcer in a throwaway network namespace)
// against a real kube-apiserver, as deploy/'s service account with deploy/'s
// RBAC: it is not ready while the API server is down at its start, becomes
// ready after the first sync once it is back, enforces objects created,
// changed and deleted through the API, and reports in its TabbyNode.
func TestAgentKubernetesMode(t *testing.T) {
	clearAgentEnv(t)
	ns := throwawayNetns(t)
	c := kubetest.Start(t)
	ctx := context.Background()

	kubectl(t, c, "", "apply", "--server-side", "-k", "../../deploy/crds")
	kubectl(t, c, "", "apply", "--server-side", "-k", "../../deploy/crds/upstream")
	kubectl(t, c, "", "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
	kubectl(t, c, "", "apply", "--server-side", "-f", "../../deploy/base/rbac.yaml")
	node, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, c, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", "apply", "--server-side", "-f", "-")
	kubectl(t, c, pods+"---\n"+netpol("allow-client", 80), "apply", "--server-side", "-f", "-")
	for name, ip := range map[string]string{"web": "10.0.0.1", "client": "10.0.0.2"} {
		// The lab's kubelet part: the API server drops a created pod's status.
		p, err := c.Client.CoreV1().Pods("shop").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
		if _, err := c.Client.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ipns(t, ns, "link", "set", "lo", "up")
	ipns(t, ns, "link", "add", "veth-web", "type", "veth", "peer", "name", "veth-web-p")
	ipns(t, ns, "link", "set", "veth-web", "up")
	ipns(t, ns, "route", "add", "10.0.0.1/32", "dev", "veth-web")
	kubeconfig, err := c.UserKubeconfig(agentUser, agentGroups...)
	if err != nil {
		t.Fatal(err)
	}

	// The agent starts while the API server is down.
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	runCtx, stop := context.WithCancel(ctx)
	exited := make(chan int, 1)
	go func() {
		exited <- run(runCtx, []string{"agent", "--node", "n1", "--kubeconfig", kubeconfig, "--netns", "/run/netns/" + ns,
			"--health-addr", "127.0.0.1:0", "--log-format", "text", "--log-level", "debug", "--reconcile-interval", "1s"}, logs, logs)
	}()
	defer func() {
		stop()
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			t.Error("the agent did not stop")
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
	}()
	var addr string
	waitFor(t, "the agent's health address in its log", 20*time.Second, func() bool {
		m := regexp.MustCompile(`health=(127\.0\.0\.1:\d+)`).FindStringSubmatch(logs.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	health := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := run(ctx, append([]string{"health", "--addr", addr}, args...), &out, &out)
		return code, out.String()
	}
	waitFor(t, "/healthz", 10*time.Second, func() bool { code, _ := health(); return code == 0 })
	for range 10 { // 1 s: alive, not ready, nothing in the kernel
		if code, out := health("--ready"); code != 1 || !strings.Contains(out, "503") {
			t.Fatalf("tabby health --ready with the API server down: exit %d: %s", code, out)
		}
		if out, err := nftTable(t, ns); err == nil {
			t.Fatalf("a table before the first sync:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready once the API server is back", 60*time.Second, func() bool { code, _ := health("--ready"); return code == 0 })
	table, err := nftTable(t, ns)
	if err != nil {
		t.Fatalf("no table when ready: %v: %s", err, table)
	}
	for _, want := range []string{chainOf("allow-client"), `"veth-web"`, "10.0.0.2"} {
		if !strings.Contains(table, want) {
			t.Fatalf("kernel table lacks %q:\n%s", want, table)
		}
	}

	admin, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	tabbyNode := func() (*v1alpha1.TabbyNode, error) {
		u, err := admin.Resource(nodestatus.TabbyNodes).Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		var tn v1alpha1.TabbyNode
		return &tn, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &tn)
	}
	waitNode := func(what string, ok func(v1alpha1.TabbyNodeStatus) bool) *v1alpha1.TabbyNode {
		t.Helper()
		var tn *v1alpha1.TabbyNode
		var err error
		waitFor(t, what, 20*time.Second, func() bool {
			tn, err = tabbyNode()
			return err == nil && ok(tn.Status)
		})
		return tn
	}
	tn := waitNode("TabbyNode ready with 1 policy", func(st v1alpha1.TabbyNodeStatus) bool {
		return st.Ready && st.Policies == 1 && st.LocalEndpoints == 1 && st.Endpoints == 2
	})
	if st := tn.Status; st.Datastore != "kubernetes" || st.AgentVersion != buildVersion() || st.ErrorCount != 0 || st.LastSync == nil {
		t.Fatalf("TabbyNode status %+v", st)
	}
	if refs := tn.OwnerReferences; len(refs) != 1 || refs[0].UID != node.UID {
		t.Fatalf("TabbyNode owners %+v, want Node n1 %s", refs, node.UID)
	}

	// Through the API: a Tabby policy added, the NetworkPolicy deleted.
	kubectl(t, c, tabbyPolicy, "apply", "--server-side", "-f", "-")
	tabbyChain := compiler.PolicyChainName(policy.Ref{Kind: policy.KindTabbyNetworkPolicy, Namespace: "shop", Name: "tabby-allow"}, policy.Ingress)
	waitFor(t, "the Tabby policy in the kernel", 10*time.Second, func() bool {
		table, _ := nftTable(t, ns)
		return strings.Contains(table, tabbyChain)
	})
	waitNode("TabbyNode with 2 policies", func(st v1alpha1.TabbyNodeStatus) bool { return st.Policies == 2 })
	kubectl(t, c, "", "delete", "-n", "shop", "networkpolicies.networking.k8s.io", "allow-client")
	waitFor(t, "the deleted NetworkPolicy out of the kernel", 10*time.Second, func() bool {
		table, _ := nftTable(t, ns)
		return !strings.Contains(table, chainOf("allow-client")) && strings.Contains(table, tabbyChain)
	})
	waitNode("TabbyNode with 1 policy again", func(st v1alpha1.TabbyNodeStatus) bool { return st.Policies == 1 })
	out := kubectl(t, c, "", "get", "tabbynodes")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "n1 true 1 1 2") {
		t.Fatalf("kubectl get tabbynodes:\n%s", out)
	}

	// SIGTERM's path: the table stays.
	before, _ := nftTable(t, ns)
	stop()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("agent exit %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the agent did not stop")
	}
	exited <- 0 // for the deferred wait
	if after, err := nftTable(t, ns); err != nil || after != before {
		t.Fatalf("table changed on shutdown (%v):\n--- before\n%s\n--- after\n%s", err, before, after)
	}
	if !strings.Contains(logs.String(), "table stays in place") {
		t.Fatal("no shutdown message in the logs")
	}
}
