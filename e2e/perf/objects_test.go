package perf

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tabbynet/tabby/policy"
)

func nsObject(name string, labels map[string]string) policy.Object {
	return policy.Object{Ref: policy.Ref{Kind: policy.KindNamespace, Name: name},
		Namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}}
}

// labPod is a pod on a lab node serving TCP port 80.
func labPod(ns, name, app, node string) policy.Object {
	return policy.Object{Ref: policy.Ref{Kind: policy.KindPod, Namespace: ns, Name: name},
		Pod: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "x",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		}}
}

// allowFrom is a NetworkPolicy in ns selecting app=to, allowing TCP port
// from pods app=from of namespace fromNS (ingress only).
func allowFrom(ns, name, to, fromNS, from string, port int32) policy.Object {
	p := intstr.FromInt32(port)
	tcp := corev1.ProtocolTCP
	return policy.Object{Ref: policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: ns, Name: name},
		NetworkPolicy: &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": to}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": fromNS}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": from}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
				}},
			},
		}}
}

// allowTo is a NetworkPolicy in ns selecting app=from, allowing egress on
// TCP port to pods app=to of namespace toNS.
func allowTo(ns, name, from, toNS, to string, port int32) policy.Object {
	p := intstr.FromInt32(port)
	tcp := corev1.ProtocolTCP
	return policy.Object{Ref: policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: ns, Name: name},
		NetworkPolicy: &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": from}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					To: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": toNS}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": to}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
				}},
			},
		}}
}

// pairPolicies are n policies around the tested pair x/client -> y/server:
// two that allow the pair on port, and n-2 that select the same pods with
// other peers and ports (ingress on the server, egress on the client), so
// the pair's traffic is classified against all of them.
func pairPolicies(n int, port int32) []policy.Object {
	if n <= 0 {
		return nil
	}
	out := []policy.Object{allowFrom("y", "pair-in", "server", "x", "client", port)}
	if n > 1 {
		out = append(out, allowTo("x", "pair-out", "client", "y", "server", port))
	}
	for i := 2; i < n; i++ {
		other := fmt.Sprintf("app-%d", i)
		if i%2 == 0 {
			out = append(out, allowFrom("y", fmt.Sprintf("pair-in-%d", i), "server", fmt.Sprintf("ns-%03d", i%100), other, int32(10000+i)))
		} else {
			out = append(out, allowTo("x", fmt.Sprintf("pair-out-%d", i), "client", fmt.Sprintf("ns-%03d", i%100), other, int32(10000+i)))
		}
	}
	return out
}
