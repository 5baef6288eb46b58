package kubestore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/tabbynet/tabby/policy"
	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
)

// clients are the API clients of a Store; unit tests pass fakes.
type clients struct {
	core kubernetes.Interface
	cnp  cnpclient.Interface
	dyn  dynamic.Interface
	// discover lists the resources the API server serves in one group
	// version ("v1", "tabby.dev/v1alpha1"); a NotFound error when it serves
	// none.
	discover func(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error)
}

// resource is one kind the store watches: how to list and watch it, what of
// it to keep, and how to turn it into a policy.Object.
type resource struct {
	gvr  schema.GroupVersionResource
	kind policy.Kind
	// optional: served only when a CRD is installed, so discovery is asked
	// first and a missing API is a reported problem, not a sync that hangs.
	optional bool
	example  runtime.Object
	lister   func(c *clients) lister
	// transform trims an object before the informer caches it (in place: the
	// informer owns it at that point).
	transform cache.TransformFunc
	// convert turns a cached object into a policy.Object (a copy: the cache's
	// object is never handed out).
	convert func(src policy.Source, obj any) (policy.Object, error)
	// absent reports objects handled as if they did not exist; nil: none.
	absent func(obj any) bool
	// same reports whether two cached versions convert to the same object
	// apart from resourceVersion.
	same func(a, b any) bool
}

// source names the resource in Object.Source.File and Problems, e.g.
// "kubernetes:pods", "kubernetes:networkpolicies.tabby.dev".
func (r *resource) source() string {
	if r.gvr.Group == "" {
		return "kubernetes:" + r.gvr.Resource
	}
	return "kubernetes:" + r.gvr.Resource + "." + r.gvr.Group
}

// lister holds one resource's list and watch calls and the client they use
// (cache.ToListWatcherWithWatchListSemantics asks it whether streaming lists
// work: fake clientsets say no).
type lister struct {
	list   cache.ListWithContextFunc
	watch  cache.WatchFuncWithContext
	client any
}

// typedLister adapts a typed client's List and Watch.
func typedLister[L runtime.Object](client any, tweak func(*metav1.ListOptions),
	list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) lister {
	if tweak == nil {
		tweak = func(*metav1.ListOptions) {}
	}
	return lister{
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			l, err := list(ctx, o)
			if err != nil {
				return nil, err // not l: a typed nil in an interface is not nil
			}
			return l, nil
		},
		watch: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return watchFn(ctx, o)
		},
		client: client,
	}
}

// podFieldSelector keeps out, on the server, the pods policy never applies
// to: host-networked ones (spec.hostNetwork is immutable) and terminated
// ones. A pod that terminates stops matching, and the API server sends a
// DELETED event for it.
const podFieldSelector = "spec.hostNetwork=false,status.phase!=Succeeded,status.phase!=Failed"

// cnpGV is policy.networking.k8s.io/v1alpha2 (the module declares it as a
// metav1.GroupVersion).
var cnpGV = schema.GroupVersion(cnpv1alpha2.GroupVersion)

// resources lists what the store watches, core kinds first.
func resources() []*resource {
	return []*resource{
		{
			gvr: corev1.SchemeGroupVersion.WithResource("namespaces"), kind: policy.KindNamespace,
			example: &corev1.Namespace{},
			lister: func(c *clients) lister {
				n := c.core.CoreV1().Namespaces()
				return typedLister(c.core, nil, n.List, n.Watch)
			},
			transform: stripMeta,
			convert: typedConvert(policy.KindNamespace, corev1.SchemeGroupVersion.WithKind("Namespace"),
				func(o *policy.Object, v *corev1.Namespace) { o.Namespace = v }),
			same: typedSame[corev1.Namespace],
		},
		{
			gvr: corev1.SchemeGroupVersion.WithResource("pods"), kind: policy.KindPod,
			example: &corev1.Pod{},
			lister: func(c *clients) lister {
				p := c.core.CoreV1().Pods(metav1.NamespaceAll)
				return typedLister(c.core, func(o *metav1.ListOptions) { o.FieldSelector = podFieldSelector }, p.List, p.Watch)
			},
			transform: trimPod,
			convert: typedConvert(policy.KindPod, corev1.SchemeGroupVersion.WithKind("Pod"),
				func(o *policy.Object, v *corev1.Pod) { o.Pod = v }),
			absent: podAbsent,
			same:   typedSame[corev1.Pod],
		},
		{
			gvr: corev1.SchemeGroupVersion.WithResource("serviceaccounts"), kind: policy.KindServiceAccount,
			example: &corev1.ServiceAccount{},
			lister: func(c *clients) lister {
				s := c.core.CoreV1().ServiceAccounts(metav1.NamespaceAll)
				return typedLister(c.core, nil, s.List, s.Watch)
			},
			transform: stripMeta,
			convert: typedConvert(policy.KindServiceAccount, corev1.SchemeGroupVersion.WithKind("ServiceAccount"),
				func(o *policy.Object, v *corev1.ServiceAccount) { o.ServiceAccount = v }),
			same: typedSame[corev1.ServiceAccount],
		},
		{
			gvr: networkingv1.SchemeGroupVersion.WithResource("networkpolicies"), kind: policy.KindK8sNetworkPolicy,
			example: &networkingv1.NetworkPolicy{},
			lister: func(c *clients) lister {
				n := c.core.NetworkingV1().NetworkPolicies(metav1.NamespaceAll)
				return typedLister(c.core, nil, n.List, n.Watch)
			},
			transform: stripMeta,
			convert: typedConvert(policy.KindK8sNetworkPolicy, networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"),
				func(o *policy.Object, v *networkingv1.NetworkPolicy) { o.NetworkPolicy = v }),
			same: typedSame[networkingv1.NetworkPolicy],
		},
		{
			gvr:  cnpGV.WithResource("clusternetworkpolicies"),
			kind: policy.KindClusterNetworkPolicy, optional: true,
			example: &cnpv1alpha2.ClusterNetworkPolicy{},
			lister: func(c *clients) lister {
				n := c.cnp.PolicyV1alpha2().ClusterNetworkPolicies()
				return typedLister(c.cnp, nil, n.List, n.Watch)
			},
			transform: stripMeta,
			convert: typedConvert(policy.KindClusterNetworkPolicy, cnpGV.WithKind("ClusterNetworkPolicy"),
				func(o *policy.Object, v *cnpv1alpha2.ClusterNetworkPolicy) { o.ClusterNetworkPolicy = v }),
			same: typedSame[cnpv1alpha2.ClusterNetworkPolicy],
		},
		tabbyResource("tiers", policy.KindTier, tabbyv1.KindTier,
			func(o *policy.Object, v *tabbyv1.Tier) { o.Tier = v }),
		tabbyResource("networkpolicies", policy.KindTabbyNetworkPolicy, tabbyv1.KindNetworkPolicy,
			func(o *policy.Object, v *tabbyv1.NetworkPolicy) { o.TabbyNetworkPolicy = v }),
		tabbyResource("globalnetworkpolicies", policy.KindGlobalNetworkPolicy, tabbyv1.KindGlobalNetworkPolicy,
			func(o *policy.Object, v *tabbyv1.GlobalNetworkPolicy) { o.GlobalNetworkPolicy = v }),
		tabbyResource("networksets", policy.KindNetworkSet, tabbyv1.KindNetworkSet,
			func(o *policy.Object, v *tabbyv1.NetworkSet) { o.NetworkSet = v }),
		tabbyResource("globalnetworksets", policy.KindGlobalNetworkSet, tabbyv1.KindGlobalNetworkSet,
			func(o *policy.Object, v *tabbyv1.GlobalNetworkSet) { o.GlobalNetworkSet = v }),
	}
}

// tabbyResource is a tabby.dev/v1alpha1 kind, read with the dynamic client.
func tabbyResource[T any, PT interface {
	*T
	metav1.Object
}](plural string, kind policy.Kind, apiKind string, set func(*policy.Object, PT)) *resource {
	gvr := tabbyv1.SchemeGroupVersion.WithResource(plural)
	return &resource{
		gvr: gvr, kind: kind, optional: true,
		example: &unstructured.Unstructured{},
		lister: func(c *clients) lister {
			r := c.dyn.Resource(gvr).Namespace(metav1.NamespaceAll)
			return typedLister(c.dyn, nil, r.List, r.Watch)
		},
		transform: stripMeta,
		convert:   unstructuredConvert(kind, tabbyv1.SchemeGroupVersion.WithKind(apiKind), set),
		same:      unstructuredSame,
	}
}

// stripMeta drops what policy never reads and what changes without the
// object meaning anything new: managedFields and annotations (kubectl's
// last-applied-configuration alone doubles the size of a policy).
func stripMeta(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		m.SetAnnotations(nil)
	}
	return obj, nil
}

// trimPod keeps of a pod what policy reads (policy.normalizePod and the
// named ports of netpol, CNP and Tabby rules): identity and labels, node,
// service account, host networking, the ports of containers and init
// containers (sidecars are init containers with restartPolicy Always), the
// addresses and the phase. Everything else (images, env, volumes, conditions,
// container statuses) changes often or weighs a lot and decides nothing.
func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID,
			ResourceVersion: p.ResourceVersion, Labels: p.Labels,
		},
		Spec: corev1.PodSpec{
			NodeName:                 p.Spec.NodeName,
			ServiceAccountName:       p.Spec.ServiceAccountName,
			DeprecatedServiceAccount: p.Spec.DeprecatedServiceAccount,
			HostNetwork:              p.Spec.HostNetwork,
			InitContainers:           trimContainers(p.Spec.InitContainers, true),
			Containers:               trimContainers(p.Spec.Containers, false),
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}
	return out, nil
}

func trimContainers(cs []corev1.Container, init bool) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Ports: c.Ports}
		if init {
			out[i].RestartPolicy = c.RestartPolicy
		}
	}
	return out
}

// podAbsent: a host-networked pod has the node's addresses and NetworkPolicy
// does not apply to it; a terminated pod's addresses may already belong to
// another pod. Neither is an endpoint (policy.normalizePod agrees), so the
// store treats both as deleted. The field selector already keeps them out;
// this holds whatever the server sends.
func podAbsent(obj any) bool {
	p, ok := obj.(*corev1.Pod)
	return ok && (p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed)
}

// typedConvert converts an object of a typed client: a deep copy with its
// apiVersion and kind (typed clients clear them), as policy.Decode returns it.
func typedConvert[T any, PT interface {
	*T
	metav1.Object
	runtime.Object
}](kind policy.Kind, gvk schema.GroupVersionKind, set func(*policy.Object, PT)) func(policy.Source, any) (policy.Object, error) {
	return func(src policy.Source, obj any) (policy.Object, error) {
		in, ok := obj.(PT)
		if !ok {
			return policy.Object{}, &policy.FieldError{Source: src, Reason: fmt.Sprintf("unexpected %T from the %s informer", obj, kind)}
		}
		v := in.DeepCopyObject().(PT)
		v.GetObjectKind().SetGroupVersionKind(gvk)
		o := policy.Object{Source: src, Ref: policy.Ref{Kind: kind, Namespace: v.GetNamespace(), Name: v.GetName()}}
		set(&o, v)
		return o, nil
	}
}

// unstructuredConvert converts an object of the dynamic client into its Go
// type. Unknown fields are errors (a CRD newer than this agent, or one that
// preserves unknown fields), each reported with its path as policy.Decode
// reports them in a manifest.
func unstructuredConvert[T any, PT interface {
	*T
	metav1.Object
}](kind policy.Kind, gvk schema.GroupVersionKind, set func(*policy.Object, PT)) func(policy.Source, any) (policy.Object, error) {
	return func(src policy.Source, obj any) (policy.Object, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return policy.Object{}, &policy.FieldError{Source: src, Reason: fmt.Sprintf("unexpected %T from the %s informer", obj, kind)}
		}
		o := policy.Object{Source: src, Ref: policy.Ref{Kind: kind, Namespace: u.GetNamespace(), Name: u.GetName()}}
		if got := u.GroupVersionKind(); got != gvk {
			return o, &policy.FieldError{Source: src, Object: o.Ref, Field: "kind",
				Reason: fmt.Sprintf("%s %s from the %s informer", got.GroupVersion(), got.Kind, gvk.Kind)}
		}
		v := PT(new(T))
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, v, true); err != nil {
			return o, conversionErrors(o, err)
		}
		set(&o, v)
		return o, nil
	}
}

// conversionErrors turns a FromUnstructured error into *policy.FieldErrors:
// one per unknown field (a strict decoding error lists them all), or one for
// a value of the wrong type.
func conversionErrors(o policy.Object, err error) error {
	var strict interface{ Errors() []error }
	if !errors.As(err, &strict) {
		return &policy.FieldError{Source: o.Source, Object: o.Ref, Reason: "cannot convert: " + err.Error(), Err: err}
	}
	var errs []error
	for _, e := range strict.Errors() {
		fe := &policy.FieldError{Source: o.Source, Object: o.Ref, Reason: e.Error(), Err: e}
		if path, ok := strings.CutPrefix(e.Error(), `unknown field "`); ok {
			fe.Field, fe.Reason = strings.TrimSuffix(path, `"`), "unknown field"
		}
		errs = append(errs, fe)
	}
	return errors.Join(errs...)
}

// typedSame compares two cached versions apart from resourceVersion, on
// shallow copies (nothing is modified).
func typedSame[T any, PT interface {
	*T
	metav1.Object
}](a, b any) bool {
	x, ok1 := a.(PT)
	y, ok2 := b.(PT)
	if !ok1 || !ok2 {
		return false
	}
	xc, yc := *x, *y
	PT(&xc).SetResourceVersion("")
	PT(&yc).SetResourceVersion("")
	return equality.Semantic.DeepEqual(xc, yc)
}

// unstructuredSame is typedSame for the dynamic client's objects.
func unstructuredSame(a, b any) bool {
	x, ok1 := a.(*unstructured.Unstructured)
	y, ok2 := b.(*unstructured.Unstructured)
	if !ok1 || !ok2 {
		return false
	}
	return equality.Semantic.DeepEqual(withoutRV(x.Object), withoutRV(y.Object))
}

// withoutRV is a copy of m, shallow except for metadata, without
// metadata.resourceVersion.
func withoutRV(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		c := make(map[string]any, len(md))
		for k, v := range md {
			if k != "resourceVersion" {
				c[k] = v
			}
		}
		out["metadata"] = c
	}
	return out
}
