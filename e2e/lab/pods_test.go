package lab

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/policy"
)

// TestDiffPods: arriving pods are placed on their own node or the least
// loaded one, get the next free address of their node's CIDR (a leaving
// pod's address is free again), and what the lab cannot do is refused.
func TestDiffPods(t *testing.T) {
	base := pod("x", "a", "", "") + pod("x", "b", "", "") + pod("x", "c", "", "")
	p, err := makePlan(decode(t, base), 2) // x/a, x/c on node-1; x/b on node-2
	if err != nil {
		t.Fatal(err)
	}
	ref := func(ns, name string) policy.Ref { return policy.Ref{Kind: policy.KindPod, Namespace: ns, Name: name} }

	// x/a leaves; y/a (no node) goes to the least loaded node, which is
	// node-1 or node-2 with one pod each: the lower index wins; y/b asks
	// for node-2; y/c brings its own address.
	next := pod("x", "b", "", "") + pod("x", "c", "", "") + pod("y", "a", "", "") + pod("y", "b", "node-2", "") +
		pod("y", "c", "", "10.9.9.9")
	d, err := diffPods(decode(t, next), p, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.removed) != 1 || d.removed[0] != ref("x", "a") {
		t.Errorf("removed %v, want [x/a]", d.removed)
	}
	xa := p.pods[p.byRef[ref("x", "a")]]
	want := []struct {
		ref  policy.Ref
		node int
		ip   netip.Addr
	}{
		{ref("y", "a"), 1, xa.IPs[0]}, // x/a's address is free again
		{ref("y", "b"), 2, netip.MustParseAddr("10.244.2.11")},
		{ref("y", "c"), 1, netip.MustParseAddr("10.9.9.9")}, // node-1: 2 pods, node-2: 2 pods
	}
	if len(d.added) != len(want) {
		t.Fatalf("added %+v, want %d pods", d.added, len(want))
	}
	for i, w := range want {
		got := d.added[i]
		if got.Ref != w.ref || got.Node != w.node || len(got.IPs) != 1 || got.IPs[0] != w.ip {
			t.Errorf("added[%d] = %v on node-%d at %v, want %v on node-%d at %v", i, got.Ref, got.Node, got.IPs, w.ref, w.node, w.ip)
		}
	}
	np := p.withDiff(d)
	if _, ok := np.byRef[ref("x", "a")]; ok || len(np.pods) != 5 || np.pods[np.byRef[ref("y", "c")]].Node != 1 {
		t.Errorf("withDiff: %+v", np.pods)
	}
	if _, ok := p.byRef[ref("y", "a")]; ok || len(p.pods) != 3 {
		t.Error("withDiff changed the original plan")
	}
	if d, err := diffPods(decode(t, base), p, 2); err != nil || !d.empty() {
		t.Errorf("same pods: %+v, %v", d, err)
	}

	var pce *PodChangeError
	var ce *ConfigError
	for _, tc := range []struct {
		name, yaml string
		target     any
	}{
		{"IPv6 without an IPv6 underlay", base + pod("y", "a", "", "fd00::1"), &pce},
		{"moved", pod("x", "a", "node-2", "") + pod("x", "b", "", "") + pod("x", "c", "", ""), &pce},
		{"not a lab node", base + pod("y", "a", "node-3", ""), &ce},
		{"duplicate address", base + pod("y", "a", "", xa.IPs[0].String()), &ce},
		{"underlay address", base + pod("y", "a", "", "192.168.254.50"), &ce},
	} {
		_, err := diffPods(decode(t, tc.yaml), p, 2)
		if !errors.As(err, tc.target) {
			t.Errorf("%s: got %v, want %T", tc.name, err, tc.target)
		}
	}
}
