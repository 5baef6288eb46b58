package lab_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/e2e/kubetest"
	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/policy"
)

// apiOutage is how long TestKubernetesAPIServerOutage keeps the agents'
// API server down: the 30 s.
const apiOutage = 30 * time.Second

// outageConvergeBound bounds convergence once the API server is back. The
// agents' datastore retries a refused watch itself at most every 2 s plus
// 50 % jitter (client-go's own backoff would reach 30-60 s during a 30 s
// outage), so the new state should arrive within ~3 s of the server being
// ready; the bound leaves room for a loaded CI machine.
const outageConvergeBound = 20 * time.Second

// outageRoundGap spaces the rounds of probes during the outage.
const outageRoundGap = 200 * time.Millisecond

// cGuard denies all ingress to pods app=c in y.
func cGuard() policy.Object {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "c-guard"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "c"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	return policy.Object{Ref: policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "y", Name: "c-guard"}, NetworkPolicy: np}
}

// aFromBOn is aFromB on another port.
func aFromBOn(p int32, proto corev1.Protocol) policy.Object {
	o := aFromB()
	o.NetworkPolicy = o.NetworkPolicy.DeepCopy()
	o.NetworkPolicy.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{port(p, proto)}
	return o
}

// TestKubernetesAPIServerOutage is issue 4's "the API server is stopped
// for 30 s: enforcement is unchanged, and changes made meanwhile converge
// after it returns", with the cluster changing meanwhile as it does in an
// HA control plane: a second kube-apiserver on the same etcd (the lab's
// replica) takes writes while the agents' server is down. Through it a
// policy changes, a pod is relabelled and a pod is added (the lab, as
// kubelet, builds it). For the whole outage, round after round, every
// probe of the matrix from before is measured as predicted from before
// (a denied probe that gets through fails at once), every node's kernel
// table stays byte for byte the same and no agent syncs. Once the server
// is back, the new state must be measured as predicted within
// outageConvergeBound; the convergence time is logged.
func TestKubernetesAPIServerOutage(t *testing.T) {
	requireRoot(t)
	kubetest.RequireBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), apiOutage+outageConvergeBound+3*time.Minute)
	defer cancel()
	world := append(kubeWorld(), aFromB(), cGuard())
	l := upLab(t, lab.Config{Objects: world, Nodes: 2, Name: "tlab-koutage", Kubernetes: true})
	replica, err := l.StartAPIServerReplica(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replica.Client.CoreV1().Pods("x").Get(ctx, "a", metav1.GetOptions{}); err != nil {
		t.Fatalf("the replica does not serve the cluster: %v", err)
	}

	// The changes, and a check that each of them shows in the matrix on
	// its own: the final state is measured only once all three arrived.
	var cPod policy.Object // y/c relabelled: c-guard no longer selects it
	for _, o := range l.Objects() {
		if o.Ref == (policy.Ref{Kind: policy.KindPod, Namespace: "y", Name: "c"}) {
			cPod = o
			cPod.Pod = o.Pod.DeepCopy()
			cPod.Pod.Labels = map[string]string{"app": "open"}
		}
	}
	if cPod.Pod == nil {
		t.Fatal("no pod y/c")
	}
	changedPolicy := aFromBOn(53, corev1.ProtocolUDP)
	newPod := extraPod("x", "d", map[string]string{"app": "a"}, lab.NodeName(2))
	before := l.Objects()
	pBefore, err := predict(before)
	if err != nil {
		t.Fatal(err)
	}
	checkOutageDesign(t, before, changedPolicy, cPod, newPod)
	if a := countAllowed(pBefore); a == 0 || a == len(pBefore.Results) {
		t.Fatalf("before: %d of %d probes allowed; want both verdicts", a, len(pBefore.Results))
	}
	checkMatrix(ctx, t, l, "before the outage", before)
	tables, err := nftTables(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	stBefore, err := statuses(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// The outage: the agents' API server is killed; the cluster changes
	// through the replica.
	if err := l.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	if err := l.Apply(ctx, changedPolicy, cPod, newPod); err != nil {
		t.Fatalf("changing the cluster through the replica: %v", err)
	}
	changed := time.Since(down)
	if got, err := replica.Client.CoreV1().Pods("x").Get(ctx, "d", metav1.GetOptions{}); err != nil || got.Status.PodIP == "" {
		t.Fatalf("the new pod through the replica: %v %+v", err, got)
	}
	rounds, probes := 0, 0
	var problems []string
	for time.Since(down) < apiOutage {
		rounds++
		if err := measureStrict(ctx, l, pBefore.Results); err != nil {
			t.Fatalf("%v into the outage: %v", time.Since(down).Round(time.Millisecond), err)
		}
		probes += len(pBefore.Results)
		tablesNow, err := nftTables(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		stNow, err := statuses(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range sameEnforcement(tables, tablesNow, stBefore, stNow, true) {
			t.Errorf("%v into the outage: %s", time.Since(down).Round(time.Millisecond), d)
		}
		if t.Failed() {
			t.FailNow()
		}
		problems = append(problems, statusProblems(stNow)...)
		time.Sleep(outageRoundGap)
	}
	t.Logf("API server down for %v; the changes went through the replica in %v; %d rounds, %d probes, all as before; "+
		"kernel tables unchanged, no sync", time.Since(down).Round(time.Millisecond), changed.Round(time.Millisecond), rounds, probes)
	// The datastore reports a refused watch (kubestore.watchRetrying): an
	// operator sees in /status (and TabbyNode) why nothing changes.
	if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, "cannot reach the API server") }) {
		t.Errorf("no agent reported the API server's absence in /status (problems: %q)", problems)
	} else {
		t.Logf("the agents reported meanwhile, e.g.: %s", problems[0])
	}

	// Back: the new state converges.
	restart := time.Now()
	if err := l.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	fromAPI, err := l.APIObjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pAfter, err := predict(fromAPI)
	if err != nil {
		t.Fatal(err)
	}
	if written, err := predict(l.Objects()); err != nil || !reflect.DeepEqual(written.Results, pAfter.Results) {
		t.Fatalf("the API does not hold the changes made through the replica (%v)", err)
	}
	converged, err := waitMeasured(ctx, l, pAfter.Results, ready.Add(outageConvergeBound))
	if err != nil {
		t.Fatalf("not converged %v after the API server was back: %v", outageConvergeBound, err)
	}
	if err := compareMeasured(ctx, l, pAfter.Results); err != nil {
		t.Fatalf("converged, then: %v", err)
	}
	stAfter, err := statuses(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	var lastSync time.Time
	for node, st := range stAfter {
		if len(st.Errors) > 0 || st.LastSyncError != "" {
			t.Errorf("%s after convergence reports %q %v", node, st.LastSyncError, st.Errors)
		}
		if st.LastSync.After(lastSync) {
			lastSync = st.LastSync
		}
	}
	t.Logf("API server restarted in %v; the changes made meanwhile measured as predicted %v after it was ready "+
		"(the agents' last sync %v after it)", ready.Sub(restart).Round(time.Millisecond),
		converged.Sub(ready).Round(time.Millisecond), lastSync.Sub(ready).Round(time.Millisecond))

	if err := l.StopAPIServerReplica(); err != nil {
		t.Error(err)
	}
	if _, err := replica.Client.CoreV1().Pods("x").List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("the replica answers after StopAPIServerReplica")
	}
}

// checkOutageDesign makes sure each change alone shows in the matrix, so
// that measured == predicted after the outage means all of them arrived:
// without the policy change or without the relabel the prediction differs
// on the pods that existed before; the new pod has denied probes, which an
// agent that does not know it would let through.
func checkOutageDesign(t *testing.T, before []policy.Object, changedPolicy, relabelled, newPod policy.Object) {
	t.Helper()
	with := func(objs ...policy.Object) []sim.Result {
		all := slices.Clone(before)
		for _, o := range objs {
			if i := slices.IndexFunc(all, func(a policy.Object) bool { return a.Ref == o.Ref }); i >= 0 {
				all[i] = o
			} else {
				all = append(all, o)
			}
		}
		m, err := predict(all)
		if err != nil {
			t.Fatal(err)
		}
		return without(m.Results, sim.PodName(newPod.Ref))
	}
	final := with(changedPolicy, relabelled, newPod)
	if reflect.DeepEqual(with(relabelled, newPod), final) {
		t.Error("the policy change alone does not show in the matrix")
	}
	if reflect.DeepEqual(with(changedPolicy, newPod), final) {
		t.Error("the relabel alone does not show in the matrix")
	}
	m, err := predict(append(slices.Clone(before), changedPolicy, relabelled, newPod))
	if err != nil {
		t.Fatal(err)
	}
	n, allowed := involving(m, sim.PodName(newPod.Ref))
	if n == allowed {
		t.Error("every probe of the new pod is allowed: an agent that does not know it would pass")
	}
}

// without drops the results from or to pod.
func without(rs []sim.Result, pod string) []sim.Result {
	return slices.DeleteFunc(slices.Clone(rs), func(r sim.Result) bool { return r.From == pod || r.To == pod })
}

// measureStrict measures want's probes once: a probe that gets through
// although denied is a failure outright (a probe cannot be answered by
// accident); one that does not get through although allowed is measured
// again with the long timeout before it counts (a slow answer on a loaded
// machine is not a verdict).
func measureStrict(ctx context.Context, l *lab.Lab, want []sim.Result) error {
	got, err := l.Measure(ctx, probesOfResults(want), lab.ProbeOptions{Timeout: firstTimeout})
	if err != nil {
		return err
	}
	var diffs []string
	var again []sim.Probe
	for i, m := range got {
		switch {
		case m.Reached && !want[i].Allowed:
			diffs = append(diffs, fmt.Sprintf("  %s -> %s %d/%s: predicted denied, got through", m.From, m.To, m.Port, m.Protocol))
		case !m.Reached && want[i].Allowed:
			again = append(again, m.Probe)
		}
	}
	if len(again) > 0 {
		got, err := l.Measure(ctx, again, lab.ProbeOptions{Timeout: retryTimeout})
		if err != nil {
			return err
		}
		for _, m := range got {
			if !m.Reached {
				diffs = append(diffs, fmt.Sprintf("  %s -> %s %d/%s: predicted allowed, %s", m.From, m.To, m.Port, m.Protocol, measured(m)))
			}
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%d of %d probes differ from the prediction:\n%s", len(diffs), len(want), strings.Join(diffs, "\n"))
	}
	return nil
}

// waitMeasured measures want's probes round after round until one round
// measures all as predicted, and returns when that round began; after
// deadline it returns the last round's differences.
func waitMeasured(ctx context.Context, l *lab.Lab, want []sim.Result, deadline time.Time) (time.Time, error) {
	probes := probesOfResults(want)
	for {
		start := time.Now()
		got, err := l.Measure(ctx, probes, lab.ProbeOptions{Timeout: firstTimeout})
		if err != nil {
			return time.Time{}, err
		}
		var diffs []string
		for i, m := range got {
			if m.Reached != want[i].Allowed {
				diffs = append(diffs, fmt.Sprintf("  %s -> %s %d/%s: predicted %s, measured %s", m.From, m.To, m.Port,
					m.Protocol, verdict(want[i].Allowed), measured(m)))
			}
		}
		if len(diffs) == 0 {
			return start, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d probes differ:\n%s", len(diffs), len(want), strings.Join(diffs, "\n"))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func probesOfResults(rs []sim.Result) []sim.Probe {
	out := make([]sim.Probe, len(rs))
	for i, r := range rs {
		out[i] = r.Probe
	}
	return out
}

// statusProblems lists every agent's reported problems, sorted by node.
func statusProblems(sts map[string]*lab.AgentStatus) []string {
	var out []string
	for _, node := range slices.Sorted(maps.Keys(sts)) {
		for _, e := range sts[node].Errors {
			out = append(out, node+": "+e)
		}
	}
	return out
}
