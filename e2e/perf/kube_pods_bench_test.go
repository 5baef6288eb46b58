package perf

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/policy"
)

// kubePodsCreated is how many pods BenchmarkKubePodToSets creates.
const kubePodsCreated = 50

// BenchmarkKubePodToSets creates pods through the API server of a 3-node
// Kubernetes-mode lab, one at a time, and measures until the pod's IP is
// in every node's sets. A NetworkPolicy on a server pod on each node
// admits pods app=client of namespace x, so every node's table has a set of
// their addresses; each new pod is such a client, placed by the lab. The
// lab plays kubelet as it does for any pod: it creates the pod (spec only),
// builds its network namespace and interface, then writes status.podIP.
// Per pod, the end is the latest of the three agents' reported end of the
// sync that put the IP in its sets (/status lastSync; the IP is read back
// from the kernel's sets in each node's namespace over netlink before the
// sync counts, and the status is read again after, so a later sync cannot
// pass for it):
//
//   - create-ms-p50/create-ms-p99 from just before the create call;
//   - status-ms-p50/status-ms-p99 from just before the status.podIP write;
//   - kubelet-ms-p50 is the lab's part in between (building the pod).
func BenchmarkKubePodToSets(b *testing.B) {
	objs := []policy.Object{nsObject("x", nil), nsObject("y", nil), allowFrom("y", "clients", "server", "x", "client", 80)}
	for i := 1; i <= kubeNodes; i++ {
		objs = append(objs, labPod("y", fmt.Sprintf("s%d", i), "server", lab.NodeName(i)))
	}
	l := upKubeLab(b, "tabby-perf-kpods", lab.Config{Objects: objs, Nodes: kubeNodes})
	nodes := nodesOf(l)
	ctx := context.Background()
	// The check can fail: an address of the pod CIDRs that no pod has is
	// in no node's sets (no set holds a whole range the new pods fall in).
	for _, nd := range l.State().Nodes {
		unused := nd.PodCIDR.Addr().Next() // .1: the lab assigns from .10
		for _, n := range nodes {
			if in, err := inSets(n.netns, unused); err != nil || in {
				b.Fatalf("%s: unassigned %s in the sets: %v %v", n.name, unused, in, err)
			}
		}
	}
	var fromCreate, fromStatus, kubelet []time.Duration
	n := 0
	b.ResetTimer()
	for range b.N {
		for range kubePodsCreated {
			m, err := oneKubePod(ctx, l, nodes, fmt.Sprintf("c%03d", n))
			if err != nil {
				b.Fatalf("pod %d: %v", n, err)
			}
			n++
			fromCreate, fromStatus, kubelet = append(fromCreate, m.create), append(fromStatus, m.status), append(kubelet, m.kubelet)
		}
	}
	b.StopTimer()
	b.ReportMetric(Ms(Percentile(fromCreate, 0.5)), "create-ms-p50")
	b.ReportMetric(Ms(Percentile(fromCreate, 0.99)), "create-ms-p99")
	b.ReportMetric(Ms(Percentile(fromStatus, 0.5)), "status-ms-p50")
	b.ReportMetric(Ms(Percentile(fromStatus, 0.99)), "status-ms-p99")
	b.ReportMetric(Ms(Percentile(kubelet, 0.5)), "kubelet-ms-p50")
}

// podLatency is what oneKubePod measures.
type podLatency struct {
	create, status, kubelet time.Duration
}

// clientPod is a pod app=client in x without ports (it needs no server:
// only its address matters).
func clientPod(name string) policy.Object {
	return policy.Object{Ref: policy.Ref{Kind: policy.KindPod, Namespace: "x", Name: name},
		Pod: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "x", Labels: map[string]string{"app": "client"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		}}
}

// oneKubePod creates pod x/name through the lab (create, build, status)
// and waits until every node's agent reports a sync after the status write
// whose sets hold the pod's IP.
func oneKubePod(ctx context.Context, l *lab.Lab, nodes []kubeNode, name string) (podLatency, error) {
	if err := l.Apply(ctx, clientPod(name)); err != nil {
		return podLatency{}, err
	}
	created, statusAt := l.PodWrites("x", name)
	if created.IsZero() || statusAt.IsZero() {
		return podLatency{}, fmt.Errorf("the lab did not create x/%s and write its status (%v, %v)", name, created, statusAt)
	}
	var ip netip.Addr
	for _, p := range l.State().Pods {
		if p.Namespace == "x" && p.Name == name {
			ip = p.IPs[0]
		}
	}
	if !ip.IsValid() {
		return podLatency{}, fmt.Errorf("the lab did not build x/%s", name)
	}
	sts, err := waitAllSynced(ctx, nodes, kubeSyncTimeout, func(i int, st *agentStatus) (bool, error) {
		if !st.LastSync.After(statusAt) {
			return false, nil
		}
		ok, err := inSets(nodes[i].netns, ip)
		if err != nil || !ok {
			return false, err
		}
		// The sets were read after this status: unless another sync ended
		// meanwhile, this is the sync that put the IP there.
		again, err := nodes[i].hc.status(ctx)
		if err != nil {
			return false, err
		}
		return again.LastSync.Equal(st.LastSync), nil
	})
	if err != nil {
		return podLatency{}, fmt.Errorf("x/%s (%s): %w", name, ip, err)
	}
	end := latest(sts)
	return podLatency{create: end.Sub(created), status: end.Sub(statusAt), kubelet: statusAt.Sub(created)}, nil
}
