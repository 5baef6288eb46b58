package perf

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/e2e/probe"
	"github.com/tabbynet/tabby/policy"
)

const (
	// kubeApplyChanges is how many changes each of
	// BenchmarkKubeApplyToEnforced's two series makes.
	kubeApplyChanges = 100
	// kubeSyncTimeout bounds the wait for every agent's sync of a change.
	kubeSyncTimeout = 10 * time.Second
	// denyTimeout is how long a probe that must be denied waits for an
	// answer; allowTimeout how long one that must get through may take.
	denyTimeout  = 200 * time.Millisecond
	allowTimeout = 2 * time.Second
)

// flipPolicy is the NetworkPolicy the apply benchmark flips, as the file
// `kubectl apply` reads: in y, selecting app=server, admitting on TCP 80
// only pods app=<from> of namespace x.
func flipPolicy(from string) string {
	return `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: flip
  namespace: "y"
spec:
  podSelector:
    matchLabels: {app: server}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: x}
      podSelector:
        matchLabels: {app: ` + from + `}
    ports:
    - {protocol: TCP, port: 80}
`
}

// BenchmarkKubeApplyToEnforced applies a NetworkPolicy through the API
// server of a 3-node Kubernetes-mode lab and measures until it is enforced
// on every node. The policy selects a server pod on each node and flips
// between admitting x/a (version 0) and only x/b (version 1); every change
// changes every node's table. Two series of kubeApplyChanges changes:
//
//   - server-side apply, exactly the request `kubectl apply --server-side`
//     sends (PATCH application/apply-patch+yaml, fieldManager kubectl,
//     fieldValidation Strict, no force), from a client in this process:
//     ms-p50/ms-p99 from just before the request to the latest of the
//     three agents' reported end of the Sync that applied it (/status
//     lastSync, of a sync whose lastChangeSeen is after the request);
//     watch-ms-p50/watch-ms-p99 to the latest agent's receipt of the watch
//     event (lastChangeSeen);
//   - the real kubectl (`kubectl apply --server-side -f FILE`, through the
//     lab's loopback forwarder): kubectl-ms-p50/kubectl-ms-p99, the same
//     figure from just before kubectl starts, process start included.
//
// Every change is confirmed enforced: after the reported syncs, a probe
// from x/a to each node's server sees the new verdict.
func BenchmarkKubeApplyToEnforced(b *testing.B) {
	objs := []policy.Object{nsObject("x", nil), nsObject("y", nil),
		labPod("x", "a", "client", lab.NodeName(1)), labPod("x", "b", "other", lab.NodeName(2))}
	for i := 1; i <= kubeNodes; i++ {
		objs = append(objs, labPod("y", fmt.Sprintf("s%d", i), "server", lab.NodeName(i)))
	}
	l := upKubeLab(b, "tabby-perf-kapply", lab.Config{Objects: objs, Nodes: kubeNodes})
	kube, err := l.Kube()
	if err != nil {
		b.Fatal(err)
	}
	nodes := nodesOf(l)
	var src string
	var servers []netip.Addr
	for _, p := range l.State().Pods {
		switch {
		case p.Namespace == "x" && p.Name == "a":
			src = "/run/netns/" + p.Netns
		case p.Namespace == "y":
			servers = append(servers, p.IPs[0])
		}
	}
	dir := b.TempDir()
	var files [2]string
	var bodies [2][]byte
	for v, from := range []string{"client", "other"} {
		files[v] = filepath.Join(dir, fmt.Sprintf("flip-%d.yaml", v))
		if err := os.WriteFile(files[v], []byte(flipPolicy(from)), 0o644); err != nil {
			b.Fatal(err)
		}
		if bodies[v], err = yaml.YAMLToJSON([]byte(flipPolicy(from))); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	serverSideApply := func(v int) (time.Time, error) {
		t0 := time.Now()
		_, err := kube.Client.NetworkingV1().NetworkPolicies("y").Patch(ctx, "flip", types.ApplyPatchType, bodies[v],
			metav1.PatchOptions{FieldManager: "kubectl", FieldValidation: "Strict"})
		return t0, err
	}
	kubectlApply := func(v int) (time.Time, error) {
		cmd := exec.CommandContext(ctx, kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "--cache-dir", filepath.Join(dir, "cache"),
			"apply", "--server-side", "-f", files[v])
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "serverside-applied") {
			return t0, fmt.Errorf("kubectl apply: %v: %s", err, out)
		}
		return t0, nil
	}
	// Version 0 first, so the flips below start from a known state.
	if _, err := kubeChange(ctx, nodes, serverSideApply, 0, src, servers); err != nil {
		b.Fatalf("creating the policy: %v", err)
	}
	var apiLat, watchLat, kubectlLat []time.Duration
	b.ResetTimer()
	for range b.N {
		for i := range kubeApplyChanges {
			m, err := kubeChange(ctx, nodes, serverSideApply, 1-i%2, src, servers)
			if err != nil {
				b.Fatalf("server-side apply %d: %v", i, err)
			}
			apiLat, watchLat = append(apiLat, m.enforced), append(watchLat, m.seen)
		}
		for i := range kubeApplyChanges {
			m, err := kubeChange(ctx, nodes, kubectlApply, 1-i%2, src, servers)
			if err != nil {
				b.Fatalf("kubectl apply %d: %v", i, err)
			}
			kubectlLat = append(kubectlLat, m.enforced)
		}
	}
	b.StopTimer()
	b.ReportMetric(Ms(Percentile(apiLat, 0.5)), "ms-p50")
	b.ReportMetric(Ms(Percentile(apiLat, 0.99)), "ms-p99")
	b.ReportMetric(Ms(Percentile(watchLat, 0.5)), "watch-ms-p50")
	b.ReportMetric(Ms(Percentile(watchLat, 0.99)), "watch-ms-p99")
	b.ReportMetric(Ms(Percentile(kubectlLat, 0.5)), "kubectl-ms-p50")
	b.ReportMetric(Ms(Percentile(kubectlLat, 0.99)), "kubectl-ms-p99")
}

// kubeLatency is what kubeChange measures.
type kubeLatency struct {
	enforced time.Duration // write -> latest agent's end of the Sync that applied it
	seen     time.Duration // write -> latest agent's receipt of the watch event
}

// kubeChange writes version v with apply (which returns when it began) and
// waits until every node's agent reports a successful sync of a change it
// saw after that, then confirms with a probe from src to every server that
// the new verdict holds (version 0 admits src, version 1 does not).
func kubeChange(ctx context.Context, nodes []kubeNode, apply func(v int) (time.Time, error), v int,
	src string, servers []netip.Addr) (kubeLatency, error) {
	before, err := statusAll(ctx, nodes)
	if err != nil {
		return kubeLatency{}, err
	}
	t0, err := apply(v)
	if err != nil {
		return kubeLatency{}, err
	}
	sts, err := waitAllSynced(ctx, nodes, kubeSyncTimeout, func(i int, st *agentStatus) (bool, error) {
		return st.Syncs > before[i].Syncs && !st.LastChangeSeen.Before(t0) && !st.LastSync.Before(st.LastChangeSeen), nil
	})
	if err != nil {
		return kubeLatency{}, err
	}
	var seen time.Time
	for _, st := range sts {
		if st.LastChangeSeen.After(seen) {
			seen = st.LastChangeSeen
		}
	}
	if err := confirm(ctx, src, servers, v == 0); err != nil {
		return kubeLatency{}, err
	}
	return kubeLatency{enforced: latest(sts).Sub(t0), seen: seen.Sub(t0)}, nil
}

// confirm probes TCP 80 from src to every server at once: each must be
// reached iff want.
func confirm(ctx context.Context, src string, servers []netip.Addr, want bool) error {
	timeout := denyTimeout
	if want {
		timeout = allowTimeout
	}
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, dst := range servers {
		wg.Go(func() {
			res, err := probe.Probe(ctx, src, dst, 80, probe.TCP, timeout)
			switch {
			case err != nil:
				errs[i] = err
			case res.Reached != want:
				errs[i] = fmt.Errorf("synced, but a probe to %s is %s", dst, verdict(res.Reached))
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
