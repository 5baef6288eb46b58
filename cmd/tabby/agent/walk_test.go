package agent

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tabbynet/tabby/policy"
)

// walker generates random but always individually valid changes over a small
// cluster in which every kind of dependency occurs: pods carry namespace and
// service account labels, policies name tiers, select by namespace and
// service account, and network sets carry namespace labels.
type walker struct {
	t   *testing.T
	rng *rand.Rand
	st  state
}

func (w *walker) obj(doc string) change {
	objs := decode(w.t, "walk.yaml", doc)
	o := objs[0]
	return change{ref: o.Ref, obj: &o}
}

func (w *walker) pick(xs ...string) string { return xs[w.rng.IntN(len(xs))] }

// tiers lists the Tabby tiers that exist now, plus "default".
func (w *walker) tiers() []string {
	out := []string{"default"}
	for ref := range w.st {
		if ref.Kind == policy.KindTier {
			out = append(out, ref.Name)
		}
	}
	slices.Sort(out)
	return out
}

func (w *walker) next() change {
	ns := w.pick("ns-a", "ns-b")
	switch w.rng.IntN(10) {
	case 0:
		name := w.pick("ns-a", "ns-b")
		if w.rng.IntN(4) == 0 {
			return change{ref: policy.Ref{Kind: policy.KindNamespace, Name: name}}
		}
		return w.obj(fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {env: %s}}\n",
			name, w.pick("prod", "test")))
	case 1:
		if w.rng.IntN(4) == 0 {
			return change{ref: policy.Ref{Kind: policy.KindServiceAccount, Namespace: ns, Name: "sa1"}}
		}
		return w.obj(fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa1, namespace: %s, labels: {role: %s}}\n",
			ns, w.pick("r1", "r2")))
	case 2:
		name := w.pick("t1", "t2")
		if w.rng.IntN(3) == 0 {
			return change{ref: policy.Ref{Kind: policy.KindTier, Name: name}}
		}
		return w.obj(fmt.Sprintf("apiVersion: tabby.dev/v1alpha1\nkind: Tier\nmetadata: {name: %s}\nspec: {order: %d, defaultAction: %s}\n",
			name, 100+w.rng.IntN(3)*50, w.pick("Deny", "Pass")))
	case 3, 4, 5:
		i := w.rng.IntN(6)
		name := fmt.Sprintf("p%d", i)
		if w.rng.IntN(6) == 0 {
			return change{ref: policy.Ref{Kind: policy.KindPod, Namespace: ns, Name: name}}
		}
		return w.obj(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {app: %s}}
spec:
  nodeName: %s
  serviceAccountName: %s
  hostNetwork: %v
  containers: [{name: c, image: x, ports: [{name: http, containerPort: %s}]}]
status: {podIP: 10.1.%d.%d}
`, name, ns, w.pick("web", "db"), w.pick(testNode, testNode, "n2"), w.pick("sa1", "default"),
			w.rng.IntN(8) == 0, w.pick("80", "8080"), 1+int(ns[len(ns)-1]-'a'), i+1))
	case 6:
		return w.obj(fmt.Sprintf(`apiVersion: tabby.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: g%d}
spec:
  tier: %s
  order: %d
  selector: app == "%s"
  ingress:
  - action: %s
    source: {serviceAccounts: {selector: role == "r1"}, namespaceSelector: all()}
  egress:
  - action: Deny
    destination: {namespaceSelector: env == "test"}
  - action: Allow
`, w.rng.IntN(2), w.pick(w.tiers()...), w.rng.IntN(3), w.pick("web", "db"), w.pick("Allow", "Pass", "Deny")))
	case 7:
		return w.obj(fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: k, namespace: %s}
spec:
  podSelector: {matchLabels: {app: %s}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {env: %s}}}, {podSelector: {}, namespaceSelector: {}}]
    ports: [{port: http}]
`, ns, w.pick("web", "db"), w.pick("prod", "test")))
	case 8:
		return w.obj(fmt.Sprintf(`apiVersion: tabby.dev/v1alpha1
kind: NetworkSet
metadata: {name: ext, namespace: %s, labels: {role: ext}}
spec: {nets: [%s]}
`, ns, w.pick("192.0.2.0/24", "198.51.100.0/24, 192.0.2.7")))
	default:
		return w.obj(fmt.Sprintf(`apiVersion: tabby.dev/v1alpha1
kind: NetworkPolicy
metadata: {name: to-ext, namespace: %s}
spec:
  tier: %s
  selector: all()
  types: [Egress]
  egress:
  - action: Allow
    destination: {selector: role == "ext"}
`, ns, w.pick(w.tiers()...)))
	}
}

// TestRandomWalkConvergence applies random changes in random batches and
// checks every batch against a full compile, then rebuilds the final state
// from scratch. It covers what the corpus does not: namespace, service
// account and tier changes re-normalising their dependents.
func TestRandomWalkConvergence(t *testing.T) {
	f := &fakeFinder{all: true}
	for seed := range uint64(20) {
		w := &walker{t: t, rng: rand.New(rand.NewPCG(seed, 99)), st: state{}}
		app := newFakeApplier()
		a := syncAgent(t, app, f)
		a.rec.Synced()
		var cs []change
		run := func(i int) {
			feed(a, cs)
			checkBatch(t, a, app, w.st, f, fmt.Sprintf("seed %d batch before change %d", seed, i))
			cs = nil
		}
		for i := range 150 {
			c := w.next()
			// A tier deletion goes alone in its batch: a policy version
			// naming the tier and arriving in the same batch would never
			// have been valid, and the agent would rightly keep the
			// policy's previous version, which a full compile cannot know.
			isolate := c.obj == nil && c.ref.Kind == policy.KindTier
			if isolate && len(cs) > 0 {
				run(i)
			}
			w.st.apply(c)
			cs = append(cs, c)
			if isolate || w.rng.IntN(3) == 0 {
				run(i + 1)
			}
		}
		run(150)
		fresh := newFakeApplier()
		b := syncAgent(t, fresh, f)
		b.rec.Synced()
		for _, o := range w.st.objects() {
			b.rec.Upsert(o)
		}
		b.batch()
		if fresh.last().String() != app.last().String() {
			t.Fatalf("seed %d: a fresh agent on the final state reaches a different table", seed)
		}
	}
}
