package kubestore

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	cnpfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/tabbynet/tabby/policy"
	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
	"github.com/tabbynet/tabby/policy/store/storetest"
)

// fixture decodes testdata/objects.yaml: one object of every kind.
func fixture(t *testing.T) []policy.Object {
	t.Helper()
	data, err := os.ReadFile("testdata/objects.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := policy.Decode("testdata/objects.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func resourceFor(t *testing.T, k policy.Kind) *resource {
	t.Helper()
	for _, r := range resources() {
		if r.kind == k {
			return r
		}
	}
	t.Fatalf("no resource for %s", k)
	return nil
}

// apiForm is o as its informer holds it before the transform: a typed object
// without apiVersion and kind (typed clients clear them), or unstructured for
// the tabby.dev kinds, with resourceVersion rv.
func apiForm(t *testing.T, o policy.Object, rv string) runtime.Object {
	t.Helper()
	v, err := o.Typed()
	if err != nil {
		t.Fatal(err)
	}
	obj := v.(runtime.Object)
	obj.(metav1.Object).SetResourceVersion(rv)
	if strings.HasPrefix(string(o.Ref.Kind), "tabby.dev/") {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		return &unstructured.Unstructured{Object: m}
	}
	obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
	return obj
}

// deliver runs an API object through the resource's transform and convert.
func deliver(t *testing.T, r *resource, obj runtime.Object) (policy.Object, error) {
	t.Helper()
	tr, err := r.transform(obj.DeepCopyObject())
	if err != nil {
		t.Fatal(err)
	}
	return r.convert(policy.Source{File: r.source()}, tr)
}

// checkRoundTrip is the equivalence the package promises: what the store
// delivers is what policy.Decode makes of the same object in a manifest.
func checkRoundTrip(t *testing.T, got policy.Object) {
	t.Helper()
	b, err := policy.Encode([]policy.Object{got})
	if err != nil {
		t.Fatal(err)
	}
	back, err := policy.Decode("roundtrip.yaml", b)
	if err != nil || len(back) != 1 {
		t.Fatalf("decoding %s: %d objects, %v\n%s", got.Ref, len(back), err, b)
	}
	if back[0].Ref != got.Ref {
		t.Errorf("Ref %s after decoding, delivered %s", back[0].Ref, got.Ref)
	}
	want, _ := back[0].Typed()
	have, _ := got.Typed()
	if !equality.Semantic.DeepEqual(want, have) {
		t.Errorf("%s: delivered object differs from decoding it:\ndelivered %#v\ndecoded   %#v", got.Ref, have, want)
	}
}

func TestConvertLikeDecode(t *testing.T) {
	kinds := map[policy.Kind]bool{}
	for _, o := range fixture(t) {
		kinds[o.Ref.Kind] = true
		r := resourceFor(t, o.Ref.Kind)
		got, err := deliver(t, r, apiForm(t, o, "7"))
		if err != nil {
			t.Fatalf("%s: %v", o.Ref, err)
		}
		if got.Ref != o.Ref || got.Source != (policy.Source{File: r.source()}) {
			t.Errorf("got %s from %s, want %s from %s", got.Ref, got.Source, o.Ref, r.source())
		}
		if s := got.Source.String(); !strings.HasPrefix(s, "kubernetes:") || strings.Contains(s, "document") {
			t.Errorf("source prints as %q", s)
		}
		checkRoundTrip(t, got)
		typed, _ := got.Typed()
		meta := typed.(metav1.Object)
		if meta.GetAnnotations() != nil || meta.GetResourceVersion() != "7" {
			t.Errorf("%s: annotations %v, resourceVersion %q", o.Ref, meta.GetAnnotations(), meta.GetResourceVersion())
		}
		if o.Pod != nil {
			continue // checked by TestTrimPod
		}
		// Apart from the annotations, the object is the manifest's.
		want, _ := o.Typed()
		want.(metav1.Object).SetAnnotations(nil)
		want.(metav1.Object).SetResourceVersion("7")
		if !equality.Semantic.DeepEqual(want, typed) {
			t.Errorf("%s: delivered %#v\nwant %#v", o.Ref, typed, want)
		}
	}
	if len(kinds) != 10 {
		t.Errorf("fixture has %d kinds, want all 10", len(kinds))
	}
}

func TestTrimPod(t *testing.T) {
	var pod *corev1.Pod
	for _, o := range fixture(t) {
		if o.Ref.Name == "web-0" {
			pod = o.Pod
		}
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.2.0.5",
		PodIPs:     []corev1.PodIP{{IP: "10.2.0.5"}, {IP: "fd00::5"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	pod.Spec.Volumes = []corev1.Volume{{Name: "data"}}
	pod.UID = "uid-1"
	r := resourceFor(t, policy.KindPod)
	trimmed, err := r.transform(pod.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	p := trimmed.(*corev1.Pod)
	if p.Annotations != nil || p.ManagedFields != nil || p.Spec.Volumes != nil || p.Status.Conditions != nil {
		t.Errorf("kept what policy does not read: %+v", p)
	}
	if p.Spec.Containers[0].Image != "" || p.Spec.Containers[0].Env != nil || p.Spec.InitContainers[0].Image != "" {
		t.Errorf("kept images or env: %+v", p.Spec)
	}
	if p.UID != "uid-1" || p.Labels["app"] != "web" || p.Spec.NodeName != "node-1" || p.Spec.ServiceAccountName != "web" ||
		p.Status.PodIP != "10.2.0.5" || len(p.Status.PodIPs) != 2 || p.Status.Phase != corev1.PodRunning {
		t.Errorf("lost what policy reads: %+v", p)
	}
	if len(p.Spec.Containers[0].Ports) != 2 || p.Spec.Containers[0].Ports[1].Protocol != corev1.ProtocolUDP ||
		p.Spec.InitContainers[0].RestartPolicy == nil || p.Spec.InitContainers[0].Ports[0].Name != "admin" {
		t.Errorf("lost ports or the sidecar's restartPolicy: %+v", p.Spec)
	}
	again, _ := r.transform(p.DeepCopy())
	if !equality.Semantic.DeepEqual(again, p) {
		t.Errorf("trimming is not idempotent")
	}
	// The trimmed pod is the same endpoint as the whole one.
	src := policy.Source{File: "pods"}
	whole := policy.Object{Source: src, Ref: policy.Ref{Kind: policy.KindPod, Namespace: "shop", Name: "web-0"}, Pod: pod}
	got, err := r.convert(src, p)
	if err != nil {
		t.Fatal(err)
	}
	m1, errs1 := policy.Normalize([]policy.Object{whole})
	m2, errs2 := policy.Normalize([]policy.Object{got})
	if len(errs1)+len(errs2) > 0 || !reflect.DeepEqual(m1.Endpoints, m2.Endpoints) || len(m2.Endpoints) != 1 {
		t.Errorf("endpoints differ: %+v (%v)\nvs %+v (%v)", m1.Endpoints, errs1, m2.Endpoints, errs2)
	}
}

func TestUnknownFields(t *testing.T) {
	r := resourceFor(t, policy.KindTier)
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "tabby.dev/v1alpha1", "kind": "Tier",
		"metadata": map[string]any{"name": "security", "resourceVersion": "3"},
		"spec":     map[string]any{"order": int64(100), "bogus": true, "extra": map[string]any{"deep": int64(1)}},
	}}
	_, err := deliver(t, r, u)
	errs := flatten(err)
	if len(errs) != 2 {
		t.Fatalf("errors %v, want 2", errs)
	}
	for i, field := range []string{"spec.bogus", "spec.extra"} {
		var fe *policy.FieldError
		if !errors.As(errs[i], &fe) || fe.Field != field || fe.Reason != "unknown field" ||
			fe.Object != (policy.Ref{Kind: policy.KindTier, Name: "security"}) || fe.Source.File != "kubernetes:tiers.tabby.dev" {
			t.Errorf("error %d: %#v, want unknown field %s", i, errs[i], field)
		}
	}
	want := "kubernetes:tiers.tabby.dev: tabby.dev/Tier security: spec.bogus: unknown field"
	if errs[0].Error() != want {
		t.Errorf("message %q, want %q", errs[0], want)
	}
	u.Object["spec"] = map[string]any{"order": "first"}
	_, err = deliver(t, r, u)
	var fe *policy.FieldError
	if !errors.As(err, &fe) || !strings.Contains(fe.Reason, "cannot convert") {
		t.Errorf("wrong type: %v", err)
	}
}

// eventStore is a Store outside Run with rec as its handler, to drive one
// resource's informer callbacks by hand.
func eventStore(t *testing.T, k policy.Kind) (*watched, *storetest.Recorder) {
	t.Helper()
	rec := storetest.NewRecorder()
	s := newStore(Config{Node: "node-1", Logger: slog.New(slog.DiscardHandler)}, nil)
	s.h = rec
	return newWatched(s, resourceFor(t, k)), rec
}

func tier(rv string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "tabby.dev/v1alpha1", "kind": "Tier",
		"metadata": map[string]any{"name": "sec", "resourceVersion": rv},
		"spec":     spec,
	}}
}

func ops(calls []storetest.Call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.String())
	}
	return out
}

func expectCalls(t *testing.T, rec *storetest.Recorder, step string, want ...string) []storetest.Call {
	t.Helper()
	calls := rec.Take()
	got := ops(calls)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: calls %q, want %q", step, got, want)
	}
	return calls
}

func TestEvents(t *testing.T) {
	w, rec := eventStore(t, policy.KindTier)
	const up = "upsert tabby.dev/Tier sec from kubernetes:tiers.tabby.dev"
	const probs = "problems kubernetes:tiers.tabby.dev: "
	v1 := tier("1", map[string]any{"order": int64(1)})
	w.OnAdd(v1, true)
	expectCalls(t, rec, "add", up)
	w.OnUpdate(v1, v1.DeepCopy())
	expectCalls(t, rec, "relist with the same resourceVersion")
	v2 := v1.DeepCopy()
	v2.SetResourceVersion("2")
	v2.SetLabels(nil) // transform output unchanged
	w.OnUpdate(v1, v2)
	expectCalls(t, rec, "new resourceVersion, same content")
	v3 := tier("3", map[string]any{"order": int64(3)})
	w.OnUpdate(v2, v3)
	calls := expectCalls(t, rec, "changed", up)
	if len(calls) == 1 && *calls[0].Object.Tier.Spec.Order != 3 {
		t.Errorf("delivered order %v", *calls[0].Object.Tier.Spec.Order)
	}
	bad := tier("4", map[string]any{"order": int64(4), "colour": "red"})
	w.OnUpdate(v3, bad)
	calls = expectCalls(t, rec, "bad version: reported, the previous one stays", probs+"1")
	if len(calls) == 1 && !strings.Contains(calls[0].Problems[0].Error(), "spec.colour: unknown field") {
		t.Errorf("problem %v", calls[0].Problems)
	}
	w.OnUpdate(bad, bad.DeepCopy())
	expectCalls(t, rec, "bad version relisted")
	bad5 := tier("5", map[string]any{"order": int64(5), "colour": "blue"})
	w.OnUpdate(bad, bad5)
	expectCalls(t, rec, "still bad, same text") // same problem text: not reported again
	fixed := tier("6", map[string]any{"order": int64(6)})
	w.OnUpdate(bad5, fixed)
	expectCalls(t, rec, "fixed", probs+"0", up)
	w.OnDelete(cache.DeletedFinalStateUnknown{Key: "sec", Obj: fixed})
	expectCalls(t, rec, "deleted while the watch was down", "delete tabby.dev/Tier sec")
	w.OnDelete(fixed)
	expectCalls(t, rec, "deleted twice")

	// A bad object never delivered: reported, then cleared by its deletion
	// without a Delete.
	w.OnAdd(bad, false)
	expectCalls(t, rec, "new bad object", probs+"1")
	w.OnDelete(bad)
	expectCalls(t, rec, "bad object deleted", probs+"0")
}

func TestPodEvents(t *testing.T) {
	w, rec := eventStore(t, policy.KindPod)
	const up = "upsert Pod shop/p from kubernetes:pods"
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", ResourceVersion: "1"},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	w.OnAdd(pod, true)
	expectCalls(t, rec, "pending pod", up)
	running := pod.DeepCopy()
	running.ResourceVersion, running.Status.Phase, running.Status.PodIP = "2", corev1.PodRunning, "10.0.0.1"
	w.OnUpdate(pod, running)
	expectCalls(t, rec, "running", up)
	done := running.DeepCopy()
	done.ResourceVersion, done.Status.Phase = "3", corev1.PodSucceeded
	w.OnUpdate(running, done)
	expectCalls(t, rec, "succeeded", "delete Pod shop/p")
	w.OnDelete(done)
	expectCalls(t, rec, "terminal pod deleted")
	host := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "h", Namespace: "kube-system", ResourceVersion: "4"},
		Spec: corev1.PodSpec{HostNetwork: true}, Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "192.168.1.1"}}
	w.OnAdd(host, false)
	expectCalls(t, rec, "host-networked pod")
}

// TestRunFakes runs the whole store on fake clientsets: discovery failing,
// then answering (the tabby.dev kinds served, CNP not).
func TestRunFakes(t *testing.T) {
	var core, cnp, tabby []runtime.Object
	for _, o := range fixture(t) {
		obj := apiForm(t, o, "1")
		switch {
		case o.ClusterNetworkPolicy != nil:
			cnp = append(cnp, obj)
		case strings.HasPrefix(string(o.Ref.Kind), "tabby.dev/"):
			tabby = append(tabby, obj)
		default:
			core = append(core, obj)
		}
	}
	listKinds := map[schema.GroupVersionResource]string{}
	for _, r := range resources() {
		if r.gvr.Group == tabbyv1.GroupName {
			listKinds[r.gvr] = strings.TrimPrefix(string(r.kind), "tabby.dev/") + "List"
		}
	}
	discoveries := 0
	c := &clients{
		core: fake.NewClientset(core...),
		cnp:  cnpfake.NewClientset(cnp...),
		dyn:  dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, tabby...),
		discover: func(_ context.Context, gv string) (*metav1.APIResourceList, error) {
			if gv != "tabby.dev/v1alpha1" {
				return nil, apierrors.NewNotFound(schema.GroupResource{}, gv)
			}
			if discoveries++; discoveries == 1 {
				return nil, apierrors.NewInternalError(errors.New("etcd is sad"))
			}
			l := &metav1.APIResourceList{GroupVersion: gv}
			for r := range listKinds {
				l.APIResources = append(l.APIResources, metav1.APIResource{Name: r.Resource})
			}
			return l, nil
		},
	}
	s := newStore(Config{Node: "node-1", Logger: slog.New(slog.DiscardHandler), RecheckInterval: time.Hour}, c)
	rec := storetest.NewRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, rec) }()

	// Discovery fails first: the tabby.dev kinds are reported and Synced
	// waits for them.
	if err := rec.WaitFor(ctx, func(calls []storetest.Call) bool {
		return len(problemsOf(calls)["kubernetes:tiers.tabby.dev"]) == 1
	}); err != nil {
		t.Fatal(err)
	}
	if hasSynced(rec.Calls()) {
		t.Fatal("Synced before the tabby.dev API was known to be served")
	}
	if err := rec.WaitFor(ctx, func(calls []storetest.Call) bool { return hasSynced(calls) }); err != nil {
		t.Fatal(err)
	}
	calls := rec.Calls()
	st := stateOf(t, calls)
	for _, o := range fixture(t) {
		_, ok := st[o.Ref]
		if want := o.ClusterNetworkPolicy == nil; ok != want {
			t.Errorf("%s delivered: %v, want %v", o.Ref, ok, want)
		}
	}
	probs := problemsOf(calls)
	if len(probs["kubernetes:tiers.tabby.dev"]) != 0 {
		t.Errorf("tiers problem not cleared: %v", probs["kubernetes:tiers.tabby.dev"])
	}
	cnpProbs := probs["kubernetes:clusternetworkpolicies.policy.networking.k8s.io"]
	if len(cnpProbs) != 1 || !errors.Is(cnpProbs[0], ErrNotInstalled) ||
		!strings.Contains(cnpProbs[0].Error(), "not watched") {
		t.Errorf("CNP problems %v, want one ErrNotInstalled", cnpProbs)
	}

	// A change after Synced arrives.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "late"}}
	if _, err := c.core.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := rec.WaitFor(ctx, func(calls []storetest.Call) bool {
		_, ok := stateOf(t, calls)[policy.Ref{Kind: policy.KindNamespace, Name: "late"}]
		return ok
	}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	n := len(rec.Calls())
	time.Sleep(100 * time.Millisecond)
	if len(rec.Calls()) != n {
		t.Errorf("handler called after Run returned")
	}
}

var rest0 = rest.Config{Host: "https://127.0.0.1:1"}

func TestNewValidates(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Node: "n"}, "REST is required"},
		{Config{REST: nil}, "REST is required"},
		{Config{REST: &rest0, Node: ""}, "Node is required"},
		{Config{REST: &rest0, Node: "Bad_Node"}, "node name"},
		{Config{REST: &rest0, Node: "n", RecheckInterval: -1}, "negative"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
	s, err := New(Config{REST: &rest0, Node: "node-1"})
	if err != nil || s.cfg.RecheckInterval != DefaultRecheckInterval {
		t.Errorf("New: %v, recheck %v", err, s.cfg.RecheckInterval)
	}
	if err := s.Run(context.Background(), nil); err == nil {
		t.Error("Run with a nil handler succeeded")
	}
}

// stateOf folds upserts and deletes into what the handler holds; a Delete
// of an object it does not hold is an error.
func stateOf(t *testing.T, calls []storetest.Call) map[policy.Ref]policy.Object {
	t.Helper()
	st := map[policy.Ref]policy.Object{}
	for _, c := range calls {
		switch c.Op {
		case "upsert":
			st[c.Ref] = c.Object
		case "delete":
			if _, ok := st[c.Ref]; !ok {
				t.Errorf("delete of %s, never delivered", c.Ref)
			}
			delete(st, c.Ref)
		}
	}
	return st
}

// problemsOf is each source's current problems.
func problemsOf(calls []storetest.Call) map[string][]error {
	p := map[string][]error{}
	for _, c := range calls {
		if c.Op == "problems" {
			p[c.Source] = c.Problems
		}
	}
	return p
}

func hasSynced(calls []storetest.Call) bool {
	for _, c := range calls {
		if c.Op == "synced" {
			return true
		}
	}
	return false
}
