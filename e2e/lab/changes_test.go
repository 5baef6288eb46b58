package lab_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/e2e/probe"
	"github.com/tabbynet/tabby/policy"
)

// world is a small cluster built in code, so each change is one edit.
type world struct {
	namespaces map[string]map[string]string    // name -> labels
	pods       map[[2]string]map[string]string // ns/pod -> labels
	policies   map[string]*networkingv1.NetworkPolicy
}

func newWorld() *world {
	w := &world{
		namespaces: map[string]map[string]string{"x": {"team": "a"}, "y": {"team": "b"}},
		pods:       map[[2]string]map[string]string{},
		policies:   map[string]*networkingv1.NetworkPolicy{},
	}
	for _, ns := range []string{"x", "y"} {
		for _, p := range []string{"a", "b", "c"} {
			w.pods[[2]string{ns, p}] = map[string]string{"app": p}
		}
	}
	return w
}

// objects renders the world; pods have no node and no address: the lab
// places them (round-robin over the nodes) and gives them addresses.
func (w *world) objects() []policy.Object {
	var out []policy.Object
	for _, ns := range sortedKeys(w.namespaces) {
		out = append(out, policy.Object{Ref: policy.Ref{Kind: policy.KindNamespace, Name: ns},
			Namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: clone(w.namespaces[ns])}}})
	}
	for _, ns := range sortedKeys(w.namespaces) {
		for _, p := range []string{"a", "b", "c"} {
			labels, ok := w.pods[[2]string{ns, p}]
			if !ok {
				continue // deleted
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p, Labels: clone(labels)},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
					{ContainerPort: 80, Protocol: corev1.ProtocolTCP},
					{ContainerPort: 53, Protocol: corev1.ProtocolUDP},
					{ContainerPort: 9000, Protocol: corev1.ProtocolSCTP},
				}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning}}
			out = append(out, policy.Object{Ref: policy.Ref{Kind: policy.KindPod, Namespace: ns, Name: p}, Pod: pod})
		}
	}
	for _, k := range sortedKeys(w.policies) {
		np := w.policies[k].DeepCopy()
		out = append(out, policy.Object{Ref: policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: np.Namespace, Name: np.Name},
			NetworkPolicy: np})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func clone(m map[string]string) map[string]string { return maps.Clone(m) }

func port(p int32, proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(p)
	return networkingv1.NetworkPolicyPort{Port: &v, Protocol: &proto}
}

// TestChangesConverge applies one kind of change at a time to running
// agents and checks, after each, that the measured matrix (every probe)
// is the predicted one, and that the change did change the prediction, so
// no step passes by doing nothing.
func TestChangesConverge(t *testing.T) {
	requireRoot(t)
	w := newWorld()
	l := upLab(t, lab.Config{Objects: w.objects(), Nodes: 2, Name: "tlab-changes"})
	ctx := context.Background()

	// x/a admits 80/TCP from pods labelled role=client in namespaces
	// labelled team=b.
	allowClients := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "allow-clients"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{port(80, corev1.ProtocolTCP)},
			}},
		},
	}
	steps := []struct {
		name   string
		change func()
	}{
		{"initial", func() {}},
		{"policy add", func() { w.policies["x/allow-clients"] = allowClients.DeepCopy() }},
		{"pod relabel", func() { w.pods[[2]string{"y", "b"}]["role"] = "client" }},
		{"policy modify", func() {
			w.policies["x/allow-clients"].Spec.Ingress[0].Ports = append(w.policies["x/allow-clients"].Spec.Ingress[0].Ports,
				port(53, corev1.ProtocolUDP), port(9000, corev1.ProtocolSCTP))
		}},
		{"namespace relabel", func() { w.namespaces["y"]["team"] = "c" }},
		{"egress policy add", func() {
			w.policies["y/deny-egress"] = &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "deny-egress"},
				Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "c"}},
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				},
			}
		}},
		{"pod delete", func() { delete(w.pods, [2]string{"x", "b"}) }},
		{"policy delete", func() { delete(w.policies, "x/allow-clients") }},
		{"policy delete (last)", func() { delete(w.policies, "y/deny-egress") }},
	}
	var prev *sim.Matrix
	for _, st := range steps {
		st.change()
		start := time.Now()
		if err := l.UpdateManifests(w.objects()); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if err := l.WaitSynced(ctx); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		synced := time.Since(start)
		want, err := predict(l.Objects())
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if prev != nil && reflect.DeepEqual(prev.Results, want.Results) {
			t.Fatalf("%s: the change does not change the predicted matrix: the step tests nothing", st.name)
		}
		prev = want
		if err := compareMeasured(ctx, l, want.Results); err != nil {
			t.Errorf("%s: %v", st.name, err)
		}
		t.Logf("%s: agents synced in %v, %d probes (%d allowed) in %v", st.name, synced.Round(time.Millisecond),
			len(want.Results), countAllowed(want), (time.Since(start) - synced).Round(time.Millisecond))
	}

	// Another process's view: Open reads the state file and measures the same.
	other, err := lab.Open(l.State().StateDir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := other.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, prev) {
		t.Errorf("Open(...).Probe differs from the prediction:\ngot  %v\nwant %v", got.Results, prev.Results)
	}

	// What the lab cannot do at runtime is refused, and changes nothing.
	var pce *lab.PodChangeError
	objs := w.objects()
	for i, o := range objs {
		if o.Ref.Kind == policy.KindPod {
			objs[i].Pod = o.Pod.DeepCopy()
			other := "node-1"
			if p, _ := findPod(l.State(), o.Ref.Namespace, o.Ref.Name); p.Node == other {
				other = "node-2"
			}
			objs[i].Pod.Spec.NodeName = other
			break
		}
	}
	if err := l.UpdateManifests(objs); !errors.As(err, &pce) {
		t.Errorf("moving a pod: got %v, want a *lab.PodChangeError", err)
	}
	moved := w.objects()
	for i, o := range moved {
		if o.Ref.Kind == policy.KindPod {
			moved[i].Pod = o.Pod.DeepCopy()
			moved[i].Pod.Spec.Containers[0].Ports = moved[i].Pod.Spec.Containers[0].Ports[:1]
			break
		}
	}
	if err := l.UpdateManifests(moved); !errors.As(err, &pce) {
		t.Errorf("dropping a served port: got %v, want a *lab.PodChangeError", err)
	}
	if err := l.WaitSynced(ctx); err != nil {
		t.Errorf("WaitSynced after refused updates: %v", err)
	}
}

func findPod(st lab.State, ns, name string) (lab.PodState, bool) {
	for _, p := range st.Pods {
		if p.Namespace == ns && p.Name == name {
			return p, true
		}
	}
	return lab.PodState{}, false
}

func countAllowed(m *sim.Matrix) int {
	n := 0
	for _, r := range m.Results {
		if r.Allowed {
			n++
		}
	}
	return n
}

// TestLabSeesDrift proves the comparison can fail: with the agents'
// table deleted behind their back on one node, probes the prediction
// denies get through, and the lab measures exactly those.
func TestLabSeesDrift(t *testing.T) {
	requireRoot(t)
	w := newWorld()
	w.policies["x/deny-all"] = &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny-all"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{
			networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
	}
	// Long reconcile interval: the agent must not repair the drift while
	// it is being measured.
	l := upLab(t, lab.Config{Objects: w.objects(), Nodes: 2, Name: "tlab-drift",
		AgentArgs: []string{"--reconcile-interval", "10m"}})
	ctx := context.Background()
	want, err := predict(l.Objects())
	if err != nil {
		t.Fatal(err)
	}
	if err := compareMeasured(ctx, l, want.Results); err != nil {
		t.Fatalf("before the drift: %v", err)
	}
	st := l.State()
	node := st.Nodes[0]
	if err := probe.InNetns("/run/netns/"+node.Netns, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.DelTable(&nftables.Table{Name: compiler.DefaultTableName, Family: nftables.TableFamilyINet})
		return c.Flush()
	}); err != nil {
		t.Fatal(err)
	}
	onNode := map[string]bool{}
	for _, p := range st.Pods {
		onNode[p.Namespace+"/"+p.Name] = p.Node == node.Name
	}
	ms, err := l.Measure(ctx, probesOf(want), lab.ProbeOptions{Timeout: firstTimeout})
	if err != nil {
		t.Fatal(err)
	}
	differ := 0
	for i, m := range ms {
		// Without node-1's table, a probe is policed only on the other
		// node: the egress of a source there and the ingress of a
		// destination there.
		r := want.Results[i]
		wantReached := r.Allowed
		if !r.Allowed {
			wantReached = !enforcedOffNode(r.Probe, onNode)
		}
		if m.Reached != wantReached {
			t.Errorf("%s -> %s %d/%s: measured %v, want %v with %s's table gone", m.From, m.To, m.Port, m.Protocol,
				m.Reached, wantReached, node.Name)
		}
		if m.Reached != r.Allowed {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("deleting a node's table changed no measurement: the lab does not measure the agents' rules")
	}
	err = compareMeasured(ctx, l, want.Results)
	if err == nil {
		t.Fatal("compareMeasured found no difference after the drift")
	}
	t.Logf("as expected, %d probes differ (%s)", differ, strings.SplitN(err.Error(), "\n", 2)[0])
}

// enforcedOffNode says whether deny-all in x still blocks p when only the
// nodes other than the drifted one enforce: x's egress at the source's
// node, x's ingress at the destination's node.
func enforcedOffNode(p sim.Probe, onDriftedNode map[string]bool) bool {
	inX := func(pod string) bool { return len(pod) > 2 && pod[:2] == "x/" }
	return (inX(p.From) && !onDriftedNode[p.From]) || (inX(p.To) && !onDriftedNode[p.To])
}

func probesOf(m *sim.Matrix) []sim.Probe {
	out := make([]sim.Probe, len(m.Results))
	for i, r := range m.Results {
		out[i] = r.Probe
	}
	return out
}

// TestDualStack: pods with IPv6 (some IPv6-primary, so the matrix probes
// over both families) on both nodes: the underlay gets IPv6, and what is
// measured is what is predicted, before and after a policy.
func TestDualStack(t *testing.T) {
	requireRoot(t)
	w := newWorld()
	objs := w.objects()
	n := 0
	for i, o := range objs {
		if o.Ref.Kind != policy.KindPod {
			continue
		}
		n++
		v4, v6 := fmt.Sprintf("10.250.0.%d", n), fmt.Sprintf("fd00:250::%d", n)
		ips := []corev1.PodIP{{IP: v4}, {IP: v6}}
		if n%2 == 0 {
			ips[0], ips[1] = ips[1], ips[0]
		}
		objs[i].Pod = o.Pod.DeepCopy()
		objs[i].Pod.Status.PodIP, objs[i].Pod.Status.PodIPs = ips[0].IP, ips
	}
	l := upLab(t, lab.Config{Objects: objs, Nodes: 2, Name: "tlab-dual"})
	if st := l.State(); len(st.Nodes[0].UnderlayIPs) != 2 {
		t.Fatalf("no IPv6 underlay: %v", st.Nodes[0].UnderlayIPs)
	}
	ctx := context.Background()
	want, err := predict(l.Objects())
	if err != nil {
		t.Fatal(err)
	}
	if err := compareMeasured(ctx, l, want.Results); err != nil {
		t.Errorf("no policy: %v", err)
	}
	ms, err := l.Measure(ctx, probesOf(want), lab.ProbeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v6 := 0
	for _, m := range ms {
		if m.Dst.Is6() {
			v6++
		}
	}
	if v6 == 0 || v6 == len(ms) {
		t.Errorf("%d of %d probes over IPv6: want both families", v6, len(ms))
	}
	deny := policy.Object{Ref: policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "y", Name: "deny"},
		NetworkPolicy: &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "deny"}}}
	if err := l.UpdateManifests(append(objs, deny)); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if want, err = predict(l.Objects()); err != nil {
		t.Fatal(err)
	}
	if countAllowed(want) == len(want.Results) {
		t.Fatal("the policy denies nothing")
	}
	if err := compareMeasured(ctx, l, want.Results); err != nil {
		t.Errorf("deny y: %v", err)
	}
}

// TestUpFailsCleanly: an agent that cannot start makes Up fail with an
// *AgentError naming its log, and Up removes everything it built.
func TestUpFailsCleanly(t *testing.T) {
	requireRoot(t)
	state := t.TempDir()
	_, err := lab.Up(context.Background(), lab.Config{Objects: newWorld().objects(), Nodes: 2, Name: "tlab-fail",
		StateDir: state, Tabby: "/bin/false", Tabbyctl: filepath.Join(binDir, "tabbyctl"), ReadyTimeout: 5 * time.Second})
	var ae *lab.AgentError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), filepath.Join(state, "logs", "agent-node-1.log")) {
		t.Fatalf("got %v, want an *AgentError naming the agent's log", err)
	}
	assertNoNamespaces(t, "tlab-fail")
	if _, err := os.Stat(lab.StateFile(state)); !os.IsNotExist(err) {
		t.Errorf("a failed Up left its state file: %v", err)
	}
}
