package kubestore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/tabbynet/tabby/e2e/kubetest"
	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/policy/store/storetest"
)

var (
	refNS    = policy.Ref{Kind: policy.KindNamespace, Name: "shop"}
	refWeb   = policy.Ref{Kind: policy.KindPod, Namespace: "shop", Name: "web-0"}
	refAPI   = policy.Ref{Kind: policy.KindPod, Namespace: "shop", Name: "api-0"}
	refHost  = policy.Ref{Kind: policy.KindPod, Namespace: "shop", Name: "host-0"}
	refDone  = policy.Ref{Kind: policy.KindPod, Namespace: "shop", Name: "done-0"}
	refTier  = policy.Ref{Kind: policy.KindTier, Name: "security"}
	refCNP   = policy.Ref{Kind: policy.KindClusterNetworkPolicy, Name: "admin-deny"}
	refLater = policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "shop", Name: "after-restart"}
)

func podStatus(ctx context.Context, t *testing.T, c *kubetest.Cluster, name string, st corev1.PodStatus) {
	t.Helper()
	p, err := c.Client.CoreV1().Pods("shop").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status = st
	if _, err := c.Client.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("status of %s: %v", name, err)
	}
}

func extraPod(name string, hostNetwork bool) policy.Object {
	return policy.Object{Ref: policy.Ref{Kind: policy.KindPod, Namespace: "shop", Name: name}, Pod: &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{HostNetwork: hostNetwork, NodeName: "node-1",
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}}
}

func running(ip string) corev1.PodStatus {
	return corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
}

// TestKubernetes runs the store against a real API server with every CRD
// installed: the initial list, every kind's changes, trimming, terminated
// and host-networked pods, an API server restart, and a final comparison
// with a fresh list.
func TestKubernetes(t *testing.T) {
	t.Parallel()
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dyn := dynamic.NewForConfigOrDie(c.Config)
	installCRDs(ctx, t, dyn, append(tabbyCRDs(t), cnpCRD(t))...)
	objs := fixture(t)
	create(ctx, t, dyn, objs...)
	create(ctx, t, dyn, extraPod("host-0", true), extraPod("done-0", false))
	podStatus(ctx, t, c, "web-0", corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.2.0.5",
		PodIPs: []corev1.PodIP{{IP: "10.2.0.5"}, {IP: "fd00::5"}}})
	podStatus(ctx, t, c, "host-0", running("192.168.1.1"))
	podStatus(ctx, t, c, "done-0", corev1.PodStatus{Phase: corev1.PodSucceeded, PodIP: "10.2.0.9"})

	start := time.Now()
	rec := runStore(t, c.Config, time.Second)
	waitFor(t, rec, time.Minute, "synced", hasSynced)
	t.Logf("initial list of %d objects delivered and synced in %v", len(objs), time.Since(start).Round(time.Millisecond))

	t.Run("initial list", func(t *testing.T) {
		calls := rec.Calls()
		st := stateOf(t, calls)
		if last := calls[len(calls)-1]; last.Op != "synced" {
			t.Errorf("last call %s, want synced", last)
		}
		for _, o := range objs {
			got, ok := st[o.Ref]
			if !ok {
				t.Errorf("%s not delivered", o.Ref)
				continue
			}
			checkRoundTrip(t, got)
			if got.Source.File != resourceFor(t, o.Ref.Kind).source() || got.Source.Doc != 0 {
				t.Errorf("%s: source %+v", o.Ref, got.Source)
			}
		}
		for _, ref := range []policy.Ref{refHost, refDone} {
			if _, ok := st[ref]; ok {
				t.Errorf("%s delivered: host-networked and terminated pods are no endpoints", ref)
			}
		}
		for src, errs := range problemsOf(calls) {
			if len(errs) > 0 {
				t.Errorf("problems of %s: %v", src, errs)
			}
		}
	})

	t.Run("pods trimmed", func(t *testing.T) {
		p := stateOf(t, rec.Calls())[refWeb].Pod
		if p == nil {
			t.Fatal("web-0 not delivered")
		}
		if p.Annotations != nil || p.ManagedFields != nil || p.CreationTimestamp != (metav1.Time{}) ||
			p.Spec.Containers[0].Image != "" || p.Spec.Containers[0].Env != nil || p.Spec.RestartPolicy != "" {
			t.Errorf("kept what policy does not read: %+v", p)
		}
		if p.Labels["app"] != "web" || p.UID == "" || p.ResourceVersion == "" || p.Spec.NodeName != "node-1" ||
			p.Spec.ServiceAccountName != "web" || p.Status.PodIP != "10.2.0.5" || len(p.Status.PodIPs) != 2 ||
			p.Status.Phase != corev1.PodRunning {
			t.Errorf("lost what policy reads: %+v", p)
		}
		if len(p.Spec.Containers[0].Ports) != 2 || p.Spec.Containers[0].Ports[0].Name != "http" ||
			len(p.Spec.InitContainers) != 2 || p.Spec.InitContainers[0].RestartPolicy == nil {
			t.Errorf("lost ports or sidecars: %+v", p.Spec)
		}
		if p.APIVersion != "v1" || p.Kind != "Pod" {
			t.Errorf("type meta %+v", p.TypeMeta)
		}
	})

	t.Run("updates", func(t *testing.T) {
		mark := len(rec.Calls())
		patch := []byte(`{"metadata":{"labels":{"changed":"yes"}}}`)
		for _, o := range objs {
			if _, err := objectClient(t, dyn, o.Ref).Patch(ctx, o.Ref.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatalf("patch %s: %v", o.Ref, err)
			}
		}
		waitFor(t, rec, 30*time.Second, "every kind's update", func(calls []storetest.Call) bool {
			calls = calls[mark:]
			for _, o := range objs {
				if !upserted(calls, o.Ref, func(o policy.Object) bool { return labelsOf(o)["changed"] == "yes" }) {
					return false
				}
			}
			return true
		})
		for _, c := range rec.Calls()[mark:] {
			if c.Op == "upsert" {
				checkRoundTrip(t, c.Object)
			}
		}
	})

	t.Run("pod status only", func(t *testing.T) {
		mark := len(rec.Calls())
		// Conditions are dropped: this update changes nothing the store
		// delivers. The address change after it does.
		podStatus(ctx, t, c, "api-0", corev1.PodStatus{Phase: corev1.PodPending,
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}})
		podStatus(ctx, t, c, "api-0", running("10.2.0.6"))
		waitFor(t, rec, 30*time.Second, "api-0's address", func(calls []storetest.Call) bool {
			return upserted(calls[mark:], refAPI, func(o policy.Object) bool { return o.Pod.Status.PodIP == "10.2.0.6" })
		})
		calls := rec.Calls()[mark:]
		if len(calls) != 1 {
			t.Errorf("calls %q, want only the upsert with the address", ops(calls))
		}
	})

	t.Run("terminated pod", func(t *testing.T) {
		mark := len(rec.Calls())
		podStatus(ctx, t, c, "web-0", corev1.PodStatus{Phase: corev1.PodFailed, PodIP: "10.2.0.5"})
		waitFor(t, rec, 30*time.Second, "web-0 deleted", func(calls []storetest.Call) bool { return deleted(calls[mark:], refWeb) })
		if calls := rec.Calls()[mark:]; len(calls) != 1 {
			t.Errorf("calls %q, want one delete", ops(calls))
		}
	})

	// With streaming lists (client-go's WatchListClient, on by default in
	// v0.35) every reconnection after the restart is a full relist: every
	// object comes again, and none may be delivered again or deleted.
	t.Run("restart", func(t *testing.T) {
		mark := len(rec.Calls())
		if err := c.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		if err := c.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		var later policy.Object
		for _, o := range objs {
			if o.NetworkPolicy != nil {
				later = policy.Object{Ref: refLater, NetworkPolicy: o.NetworkPolicy.DeepCopy()}
			}
		}
		later.NetworkPolicy.Name = refLater.Name
		create(ctx, t, dyn, later)
		waitFor(t, rec, time.Minute, "a policy created after the restart", func(calls []storetest.Call) bool {
			return upserted(calls[mark:], refLater, nil)
		})
		for _, c := range rec.Calls()[mark:] {
			switch {
			case c.Op == "delete":
				t.Errorf("%s across an API server restart", c)
			case c.Op == "upsert" && c.Ref != refLater:
				t.Errorf("%s across an API server restart: nothing changed", c)
			}
		}
	})

	t.Run("deletes", func(t *testing.T) {
		mark := len(rec.Calls())
		var refs []policy.Ref
		for _, o := range objs {
			if o.Ref.Kind == policy.KindNamespace || o.Ref == refWeb {
				continue
			}
			refs = append(refs, o.Ref)
			// Grace period 0: without a kubelet a scheduled pod would stay
			// Terminating (and rightly still be delivered).
			now := int64(0)
			if err := objectClient(t, dyn, o.Ref).Delete(ctx, o.Ref.Name, metav1.DeleteOptions{GracePeriodSeconds: &now}); err != nil {
				t.Fatalf("delete %s: %v", o.Ref, err)
			}
		}
		// Without a namespace controller a deleted namespace stays
		// Terminating until its finalizer is removed by hand.
		tmp := policy.Object{Ref: policy.Ref{Kind: policy.KindNamespace, Name: "tmp"},
			Namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tmp"}}}
		create(ctx, t, dyn, tmp)
		// Delivered first: an object created and deleted while a watch is
		// reconnecting (client-go backs off for seconds after the restart)
		// is never seen at all, which is right.
		waitFor(t, rec, 30*time.Second, "namespace tmp", func(calls []storetest.Call) bool {
			return upserted(calls[mark:], tmp.Ref, nil)
		})
		if err := c.Client.CoreV1().Namespaces().Delete(ctx, "tmp", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		ns, err := c.Client.CoreV1().Namespaces().Get(ctx, "tmp", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ns.Spec.Finalizers = nil
		if _, err := c.Client.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, tmp.Ref)
		waitFor(t, rec, 30*time.Second, "every kind's delete", func(calls []storetest.Call) bool {
			for _, ref := range refs {
				if !deleted(calls[mark:], ref) {
					return false
				}
			}
			return true
		})
	})

	t.Run("converged", func(t *testing.T) {
		// Whatever is still in flight arrives within a second.
		time.Sleep(time.Second)
		got := stateOf(t, rec.Calls())
		want := freshState(ctx, t, dyn)
		for ref, w := range want {
			g, ok := got[ref]
			if !ok {
				t.Errorf("%s exists but the handler does not hold it", ref)
				continue
			}
			if err := sameContent(g, w); err != nil {
				t.Errorf("%s: the handler holds a stale version: %v", ref, err)
			}
		}
		for ref := range got {
			if _, ok := want[ref]; !ok {
				t.Errorf("the handler holds %s, which no longer exists", ref)
			}
		}
	})
}

// TestMissingAPIs starts the store before any CRD is installed, installs
// them, then breaks and mends one object, then runs a store whose RBAC
// lacks one resource.
func TestMissingAPIs(t *testing.T) {
	t.Parallel()
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dyn := dynamic.NewForConfigOrDie(c.Config)
	objs := fixture(t)
	byRef := map[policy.Ref]policy.Object{}
	for _, o := range objs {
		byRef[o.Ref] = o
	}
	create(ctx, t, dyn, byRef[refNS])

	optional := map[string]string{} // source -> resource
	for _, r := range resources() {
		if r.optional {
			optional[r.source()] = r.gvr.Resource
		}
	}
	rec := runStore(t, c.Config, time.Second)

	t.Run("not installed", func(t *testing.T) {
		waitFor(t, rec, 30*time.Second, "synced without the CRDs", hasSynced)
		probs := problemsOf(rec.Calls())
		for src, res := range optional {
			errs := probs[src]
			if len(errs) != 1 || !errors.Is(errs[0], ErrNotInstalled) ||
				!strings.Contains(errs[0].Error(), res) || !strings.Contains(errs[0].Error(), "not watched") {
				t.Errorf("problems of %s: %v, want one naming %s, not installed and not watched", src, errs, res)
			}
		}
		t.Logf("problem reported: %v", probs["kubernetes:tiers.tabby.dev"])
		if !upserted(rec.Calls(), refNS, nil) {
			t.Error("namespace shop not delivered")
		}
	})

	t.Run("installed", func(t *testing.T) {
		crds := tabbyCRDs(t)
		for _, cr := range crds {
			if cr.GetName() == "tiers.tabby.dev" {
				preserveUnknownSpec(t, cr)
			}
		}
		installCRDs(ctx, t, dyn, append(crds, cnpCRD(t))...)
		create(ctx, t, dyn, byRef[refTier], byRef[refCNP])
		waitFor(t, rec, 30*time.Second, "objects of new APIs, problems cleared", func(calls []storetest.Call) bool {
			probs := problemsOf(calls)
			for src := range optional {
				if p, ok := probs[src]; !ok || len(p) > 0 {
					return false
				}
			}
			return upserted(calls, refTier, nil) && upserted(calls, refCNP, nil)
		})
	})

	t.Run("bad object stays", func(t *testing.T) {
		mark := len(rec.Calls())
		const src = "kubernetes:tiers.tabby.dev"
		tiers := objectClient(t, dyn, refTier)
		if _, err := tiers.Patch(ctx, refTier.Name, types.MergePatchType, []byte(`{"spec":{"colour":"red"}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, rec, 30*time.Second, "the unknown field reported", func(calls []storetest.Call) bool {
			return len(problemsOf(calls)[src]) > 0
		})
		errs := problemsOf(rec.Calls())[src]
		var fe *policy.FieldError
		t.Logf("problem reported: %v", errs)
		if len(errs) != 1 || !errors.As(errs[0], &fe) || fe.Field != "spec.colour" || fe.Object != refTier {
			t.Errorf("problems %v, want the unknown field spec.colour of %s", errs, refTier)
		}
		if _, err := tiers.Patch(ctx, refTier.Name, types.MergePatchType, []byte(`{"spec":{"colour":null,"order":150}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, rec, 30*time.Second, "the fixed tier", func(calls []storetest.Call) bool {
			return upserted(calls, refTier, func(o policy.Object) bool { return *o.Tier.Spec.Order == 150 })
		})
		calls := rec.Calls()[mark:]
		if p, ok := problemsOf(calls)[src]; !ok || len(p) != 0 {
			t.Errorf("problems not cleared: %v", p)
		}
		for _, c := range calls {
			if (c.Op == "upsert" || c.Op == "delete") && c.Ref == refTier && (c.Op == "delete" || *c.Object.Tier.Spec.Order != 150) {
				t.Errorf("%s while the tier was bad", c)
			}
		}
	})

	t.Run("forbidden", func(t *testing.T) {
		rbac := c.Client.RbacV1()
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "kubestore-test"}, Rules: agentRules(false)}
		if _, err := rbac.ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kubestore-test"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "kubestore-test"}}}
		if _, err := rbac.ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cfg, err := c.UserConfig("kubestore-test")
		if err != nil {
			t.Fatal(err)
		}
		limited := runStore(t, cfg, time.Second)
		const src = "kubernetes:serviceaccounts"
		waitFor(t, limited, 30*time.Second, "forbidden reported", func(calls []storetest.Call) bool {
			return len(problemsOf(calls)[src]) > 0
		})
		errs := problemsOf(limited.Calls())[src]
		t.Logf("problem reported: %v", errs)
		if len(errs) != 1 || !errors.Is(errs[0], ErrForbidden) || !strings.Contains(errs[0].Error(), "serviceaccounts") {
			t.Errorf("problems %v, want one ErrForbidden naming serviceaccounts", errs)
		}
		time.Sleep(time.Second)
		if hasSynced(limited.Calls()) {
			t.Fatal("synced without being allowed to read service accounts")
		}
		role.Rules = agentRules(true)
		if _, err := rbac.ClusterRoles().Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, limited, time.Minute, "synced once allowed", func(calls []storetest.Call) bool {
			p, ok := problemsOf(calls)[src]
			return hasSynced(calls) && ok && len(p) == 0
		})
	})
}

// agentRules are the read rules of the agent's ClusterRole (deploy/'s
// contract), without service accounts unless withSAs.
func agentRules(withSAs bool) []rbacv1.PolicyRule {
	read := []string{"get", "list", "watch"}
	core := []string{"namespaces", "pods"}
	if withSAs {
		core = append(core, "serviceaccounts")
	}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: core, Verbs: read},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: read},
		{APIGroups: []string{"policy.networking.k8s.io"}, Resources: []string{"clusternetworkpolicies"}, Verbs: read},
		{APIGroups: []string{"tabby.dev"}, Resources: []string{"tiers", "networkpolicies", "globalnetworkpolicies",
			"networksets", "globalnetworksets"}, Verbs: read},
	}
}

// preserveUnknownSpec lets a CRD's spec hold fields its schema does not
// name, as a newer version of the CRD would: the way an object this agent
// cannot convert reaches it.
func preserveUnknownSpec(t *testing.T, cr *unstructured.Unstructured) {
	t.Helper()
	versions, _, _ := unstructured.NestedSlice(cr.Object, "spec", "versions")
	for _, v := range versions {
		vm := v.(map[string]any)
		if err := unstructured.SetNestedField(vm, true, "schema", "openAPIV3Schema", "properties", "spec",
			"x-kubernetes-preserve-unknown-fields"); err != nil {
			t.Fatal(err)
		}
	}
	if err := unstructured.SetNestedSlice(cr.Object, versions, "spec", "versions"); err != nil {
		t.Fatal(err)
	}
}
