package perf

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selectors"
)

// NamespaceInfo is one namespace of a rendered cluster: its labels and the
// app label values of its pods, which generated policies select on.
type NamespaceInfo struct {
	Name   string
	Labels map[string]string
	Apps   []string
}

// RenderModel turns a normalised model (e2e/synth's) back into the raw
// objects it was normalised from: Namespaces with their labels,
// ServiceAccounts, and Pods with labels, node, addresses and container
// ports. Policies are not rendered (their selectors are already compiled
// to the selectors AST); GeneratePolicies writes NetworkPolicies of the
// same shapes over the returned namespaces. Output is sorted.
func RenderModel(m *policy.Model) ([]policy.Object, []NamespaceInfo) {
	type nsAcc struct {
		labels map[string]string
		apps   map[string]bool
		sas    map[string]bool
	}
	nss := map[string]*nsAcc{}
	var objs []policy.Object
	for _, ep := range m.Endpoints {
		ns := ep.Ref.Namespace
		acc := nss[ns]
		if acc == nil {
			acc = &nsAcc{labels: map[string]string{}, apps: map[string]bool{}, sas: map[string]bool{}}
			nss[ns] = acc
		}
		user := map[string]string{}
		sa := ""
		for k, v := range ep.Labels {
			switch {
			case k == selectors.KeyServiceAccount:
				sa = v
			case strings.HasPrefix(k, selectors.NamespaceLabelPrefix):
				acc.labels[strings.TrimPrefix(k, selectors.NamespaceLabelPrefix)] = v
			case strings.Contains(k, ":"): // other reserved keys: policy/ adds them again
			default:
				user[k] = v
			}
		}
		if app := user["app"]; app != "" {
			acc.apps[app] = true
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: ep.Ref.Name, Namespace: ns, Labels: user},
			Spec:       corev1.PodSpec{NodeName: ep.Node, Containers: []corev1.Container{{Name: "main", Image: "registry.example/app:1"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		}
		if sa != "" {
			pod.Spec.ServiceAccountName = sa
			acc.sas[sa] = true
		}
		for _, cp := range ep.Ports {
			pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports, corev1.ContainerPort{
				Name: cp.Name, ContainerPort: int32(cp.Port), Protocol: corev1.Protocol(cp.Protocol.String())})
		}
		for i, ip := range ep.IPs {
			if i == 0 {
				pod.Status.PodIP = ip.String()
			}
			pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip.String()})
		}
		objs = append(objs, policy.Object{Ref: ep.Ref, Pod: pod})
	}
	var infos []NamespaceInfo
	for _, name := range slices.Sorted(maps.Keys(nss)) {
		acc := nss[name]
		objs = append(objs, policy.Object{
			Ref:       policy.Ref{Kind: policy.KindNamespace, Name: name},
			Namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: acc.labels}},
		})
		for _, sa := range slices.Sorted(maps.Keys(acc.sas)) {
			objs = append(objs, policy.Object{
				Ref:            policy.Ref{Kind: policy.KindServiceAccount, Namespace: name, Name: sa},
				ServiceAccount: &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: name}},
			})
		}
		infos = append(infos, NamespaceInfo{Name: name, Labels: acc.labels, Apps: slices.Sorted(maps.Keys(acc.apps))})
	}
	sortObjects(objs)
	return objs, infos
}

func sortObjects(objs []policy.Object) {
	slices.SortStableFunc(objs, func(a, b policy.Object) int {
		return cmp.Or(cmp.Compare(a.Ref.Kind, b.Ref.Kind), cmp.Compare(a.Ref.Namespace, b.Ref.Namespace),
			cmp.Compare(a.Ref.Name, b.Ref.Name))
	})
}

// Policy shapes GeneratePolicies cycles through, in the proportions of
// e2e/synth's Kubernetes policies.
const (
	shapeDefaultDeny = iota
	shapeAppToApp
	shapeFromNamespaces
	shapeIPBlock
	shapeEgressDNS
	shapeCrossNamespace
	numShapes
)

// GeneratePolicies returns n NetworkPolicies spread over nss (a
// deterministic function of its arguments): default deny, allow from an app
// of the same namespace on a named or numeric port, allow from namespaces
// of a team, allow from an ipBlock with except, egress to the cluster DNS,
// and allow from an app of other namespaces of an environment. Policies
// are named np-<i>; namespaces without apps get only default deny and DNS.
func GeneratePolicies(nss []NamespaceInfo, n int, seed uint64) []policy.Object {
	if len(nss) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x51ab))
	pick := func(xs []string) string {
		if len(xs) == 0 {
			return "none"
		}
		return xs[rng.IntN(len(xs))]
	}
	teams := []string{"payments", "search", "identity", "growth", "data", "infra", "mobile", "ads", "video", "ml"}
	envs := []string{"prod", "staging", "dev"}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	out := make([]policy.Object, 0, n)
	for i := range n {
		ns := nss[rng.IntN(len(nss))]
		name := fmt.Sprintf("np-%d", i)
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns.Name}}
		app := pick(ns.Apps)
		sel := metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
		port := intstr.FromInt32(int32([]int{8080, 8000, 9000, 5432, 6379}[rng.IntN(5)]))
		if rng.IntN(2) == 0 {
			port = intstr.FromString([]string{"http", "grpc", "metrics", "postgres", "redis"}[rng.IntN(5)])
		}
		ingress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		switch shape := i % numShapes; shape {
		case shapeDefaultDeny:
			np.Spec = networkingv1.NetworkPolicySpec{PolicyTypes: ingress}
		case shapeAppToApp:
			np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: ingress,
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": pick(ns.Apps)}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				}}}
		case shapeFromNamespaces:
			np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: ingress,
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
						MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn,
							Values: []string{pick(teams), pick(teams)}}}}}},
				}}}
		case shapeIPBlock:
			base := netip.AddrFrom4([4]byte{172, byte(16 + rng.IntN(16)), byte(rng.IntN(256)), 0})
			np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: ingress,
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{
						CIDR:   netip.PrefixFrom(base, 24).String(),
						Except: []string{netip.PrefixFrom(base, 28).String()}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				}}}
		case shapeEgressDNS:
			dns := intstr.FromInt32(53)
			np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel,
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					To: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}},
				}}}
		case shapeCrossNamespace:
			other := nss[rng.IntN(len(nss))]
			np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: ingress,
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": pick(envs)}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": pick(other.Apps)}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				}}}
		}
		out = append(out, policy.Object{Ref: policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: ns.Name, Name: name}, NetworkPolicy: np})
	}
	return out
}
