package agent

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tabbynet/tabby/policy"
)

// The benchmark cluster has the size of e2e/synth's default (500
// namespaces, 10,000 pods, 2,000 policies, 110 pods on this node) as raw
// objects, which is what the agent normalises.
const (
	benchNamespaces = 500
	benchPods       = 10000
	benchPolicies   = 2000
	benchLocalEvery = 91 // ~110 local pods
)

var (
	benchOnce sync.Once
	benchObjs []policy.Object
)

func benchCluster() []policy.Object {
	benchOnce.Do(func() {
		rng := rand.New(rand.NewPCG(1, 1))
		apps := []string{"web", "api", "db", "cache", "worker"}
		for i := range benchNamespaces {
			name := fmt.Sprintf("ns-%d", i)
			benchObjs = append(benchObjs, policy.Object{
				Ref: policy.Ref{Kind: policy.KindNamespace, Name: name},
				Namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name,
					Labels: map[string]string{"team": fmt.Sprintf("t%d", i%20), "env": []string{"prod", "dev"}[i%2]}}},
			})
		}
		for i := range benchPods {
			ns, name := fmt.Sprintf("ns-%d", i%benchNamespaces), fmt.Sprintf("pod-%d", i)
			node := fmt.Sprintf("node-%d", 2+i%90)
			if i%benchLocalEvery == 0 {
				node = testNode
			}
			benchObjs = append(benchObjs, policy.Object{
				Ref: policy.Ref{Kind: policy.KindPod, Namespace: ns, Name: name},
				Pod: &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
						Labels: map[string]string{"app": apps[rng.IntN(len(apps))], "version": fmt.Sprintf("v%d", rng.IntN(3))}},
					Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "x",
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
					Status: corev1.PodStatus{PodIP: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255)},
				},
			})
		}
		for i := range benchPolicies {
			ns, name := fmt.Sprintf("ns-%d", i%benchNamespaces), fmt.Sprintf("np-%d", i)
			port := intstr.FromString("http")
			benchObjs = append(benchObjs, policy.Object{
				Ref: policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: ns, Name: name},
				NetworkPolicy: &networkingv1.NetworkPolicy{
					ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
					Spec: networkingv1.NetworkPolicySpec{
						PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": apps[i%len(apps)]}},
						Ingress: []networkingv1.NetworkPolicyIngressRule{{
							From: []networkingv1.NetworkPolicyPeer{{
								PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": apps[(i+1)%len(apps)]}},
								NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", i%20)}},
							}},
							Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
						}},
					},
				},
			})
		}
	})
	return benchObjs
}

// BenchmarkNormalizeFull is what re-normalising everything on each batch
// would cost: one policy.Normalize of the whole cluster.
func BenchmarkNormalizeFull(b *testing.B) {
	objs := benchCluster()
	for b.Loop() {
		if _, errs := policy.Normalize(objs); len(errs) > 0 {
			b.Fatal(errs[0])
		}
	}
}

// benchAgent is an agent holding the whole benchmark cluster.
func benchAgent(b *testing.B) *Agent {
	app := newFakeApplier()
	a := syncAgent(b, app, &fakeFinder{all: true})
	a.rec.Synced()
	for _, o := range benchCluster() {
		a.rec.Upsert(o)
	}
	a.batch()
	if app.syncs() != 1 || len(a.Status().Errors) > 0 {
		b.Fatalf("initial batch: %d syncs, errors %v", app.syncs(), a.Status().Errors)
	}
	return a
}

// BenchmarkAgentInitialBatch is the first batch of a start: everything.
func BenchmarkAgentInitialBatch(b *testing.B) {
	benchCluster()
	for b.Loop() {
		benchAgent(b)
	}
}

// BenchmarkAgentBatchPodLabel is one batch with one local pod's labels
// changed: normalisation of that pod only, engine update, Flush, Sync.
func BenchmarkAgentBatchPodLabel(b *testing.B) {
	a := benchAgent(b)
	pod := benchCluster()[benchNamespaces] // pod-0: local
	i := 0
	for b.Loop() {
		o := pod
		o.Pod = pod.Pod.DeepCopy()
		o.Pod.Labels["app"] = []string{"web", "api"}[i%2]
		i++
		a.rec.Upsert(o)
		a.batch()
	}
}

// BenchmarkAgentBatchNamespaceLabel changes one namespace's labels: its 20
// pods are re-normalised as dependents.
func BenchmarkAgentBatchNamespaceLabel(b *testing.B) {
	a := benchAgent(b)
	ns := benchCluster()[0]
	i := 0
	for b.Loop() {
		o := ns
		o.Namespace = ns.Namespace.DeepCopy()
		o.Namespace.Labels["team"] = fmt.Sprintf("t%d", i%20)
		i++
		a.rec.Upsert(o)
		a.batch()
	}
}
