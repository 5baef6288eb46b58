//go:build linux

package networking

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestSamePodNodeDualStack: two pods on one node reach each other over TCP
// and UDP, IPv4 and IPv6, in both directions, with their own source IPs.
func TestSetupPodSameNodeDualStack(t *testing.T) {
	node, podA, podB := newNS(t), newNS(t), newNS(t)
	ctx := context.Background()
	a := spec(node, podA, "a", "10.244.0.10", "fd00:244::10")
	b := spec(node, podB, "b", "10.244.0.11", "fd00:244::11")
	for _, s := range []PodSpec{a, b} {
		if _, err := SetupPod(ctx, s); err != nil {
			t.Fatalf("SetupPod %s: %v", s.HostIfName, err)
		}
		if _, err := CheckPod(ctx, s); err != nil {
			t.Fatalf("CheckPod %s: %v", s.HostIfName, err)
		}
	}
	for i := range a.IPs {
		srvB := startEcho(t, podB, b.IPs[i])
		assertReach(t, podA, a.IPs[i], srvB)
		srvA := startEcho(t, podA, a.IPs[i])
		assertReach(t, podB, b.IPs[i], srvA)
	}
}

// TestSetupPodStateExact reads every object back via netlink and compares
// it with the contract in doc.go, spelled out here independently.
func TestSetupPodStateExact(t *testing.T) {
	node, pod := newNS(t), newNS(t)
	s := spec(node, pod, "exact", "fd00:244::20", "10.244.0.20") // unsorted on purpose
	s.MTU = 1400
	res, err := SetupPod(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	nh, ph := handle(t, node), handle(t, pod)
	hl, err := nh.LinkByName(s.HostIfName)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := ph.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	lo, err := ph.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{hl, pl} {
		if l.Type() != "veth" || l.Attrs().Flags&net.FlagUp == 0 || l.Attrs().MTU != 1400 {
			t.Errorf("%s: type %s flags %v mtu %d, want an up veth with MTU 1400", l.Attrs().Name, l.Type(), l.Attrs().Flags, l.Attrs().MTU)
		}
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("pod lo is down")
	}
	if hlo, err := nh.LinkByName("lo"); err != nil || hlo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("node lo is not up (%v)", err)
	}
	if hl.Attrs().ParentIndex != pl.Attrs().Index || pl.Attrs().ParentIndex != hl.Attrs().Index {
		t.Errorf("not peers: host link %d->%d, pod link %d->%d", hl.Attrs().Index, hl.Attrs().ParentIndex, pl.Attrs().Index, pl.Attrs().ParentIndex)
	}
	want := PodInterface{HostIfName: s.HostIfName, HostIfIndex: hl.Attrs().Index, HostMAC: hl.Attrs().HardwareAddr,
		PodIfName: "eth0", PodIfIndex: pl.Attrs().Index, PodMAC: pl.Attrs().HardwareAddr,
		Addrs:    []netip.Prefix{netip.MustParsePrefix("10.244.0.20/32"), netip.MustParsePrefix("fd00:244::20/128")},
		Gateways: []netip.Addr{netip.MustParseAddr("169.254.1.1"), netip.MustParseAddr("fe80::1")}, MTU: 1400}
	if fmt.Sprint(*res) != fmt.Sprint(want) {
		t.Errorf("result\n got %+v\nwant %+v", *res, want)
	}

	// Pod addresses: exactly the two host prefixes (plus the kernel's
	// link-local), the IPv6 one without DAD.
	as, err := ph.AddrList(pl, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range as {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		got = append(got, a.IPNet.String())
		if a.IP.To4() == nil && a.Flags&unix.IFA_F_NODAD == 0 {
			t.Errorf("%s lacks nodad (flags %#x)", a.IPNet, a.Flags)
		}
	}
	if strings.Join(got, ",") != "10.244.0.20/32,fd00:244::20/128" {
		t.Errorf("pod addresses %v", got)
	}

	// Pod routes: one onlink default per family and nothing else.
	var routes []string
	for _, r := range linkRoutes(t, ph, pl.Attrs().Index) {
		routes = append(routes, fmt.Sprintf("%s via %s onlink=%v proto=%d", r.Dst, r.Gw, r.Flags&int(netlink.FLAG_ONLINK) != 0, r.Protocol))
	}
	if w := "0.0.0.0/0 via 169.254.1.1 onlink=true proto=84,::/0 via fe80::1 onlink=true proto=84"; strings.Join(routes, ",") != w {
		t.Errorf("pod routes\n got %v\nwant %s", routes, w)
	}

	// Pod neighbours: both gateways permanent at the host veth's MAC.
	for _, gw := range []string{"169.254.1.1", "fe80::1"} {
		fam := netlink.FAMILY_V4
		if strings.Contains(gw, ":") {
			fam = netlink.FAMILY_V6
		}
		ns, err := ph.NeighList(pl.Attrs().Index, fam)
		if err != nil {
			t.Fatal(err)
		}
		ok := false
		for _, n := range ns {
			ok = ok || (n.IP.String() == gw && n.State == netlink.NUD_PERMANENT && bytes.Equal(n.HardwareAddr, hl.Attrs().HardwareAddr))
		}
		if !ok {
			t.Errorf("no permanent neighbour %s -> %s in %v", gw, hl.Attrs().HardwareAddr, ns)
		}
	}

	// Host routes: each pod IP as a host route on the veth, v4 scope link.
	routes = nil
	for _, r := range linkRoutes(t, nh, hl.Attrs().Index) {
		routes = append(routes, fmt.Sprintf("%s gw=%v scope=%s proto=%d", r.Dst, r.Gw, r.Scope, r.Protocol))
	}
	if w := "10.244.0.20/32 gw=<nil> scope=link proto=84,fd00:244::20/128 gw=<nil> scope=universe proto=84"; strings.Join(routes, ",") != w {
		t.Errorf("host routes\n got %v\nwant %s", routes, w)
	}
	// Host proxy NDP entry for the IPv6 gateway.
	ps, err := nh.NeighProxyList(hl.Attrs().Index, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].IP.String() != "fe80::1" {
		t.Errorf("host proxy neighbours %v, want fe80::1", ps)
	}

	// Sysctls.
	h := s.HostIfName
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":                  "1",
		"net.ipv6.conf.all.forwarding":         "1",
		"net/ipv4/conf/" + h + "/proxy_arp":    "1",
		"net/ipv4/conf/" + h + "/forwarding":   "1",
		"net/ipv4/neigh/" + h + "/proxy_delay": "0",
		"net/ipv6/conf/" + h + "/proxy_ndp":    "1",
		"net/ipv6/conf/" + h + "/forwarding":   "1",
		"net/ipv6/conf/" + h + "/accept_ra":    "0",
		"net/ipv6/conf/" + h + "/accept_dad":   "0",
		"net/ipv6/conf/" + h + "/disable_ipv6": "0",
		"net/ipv6/neigh/" + h + "/proxy_delay": "0",
	} {
		got, err := node.Sysctl(key)
		if err != nil || got != want {
			t.Errorf("node sysctl %s = %q (%v), want %s", key, got, err, want)
		}
	}
	for _, key := range []string{"net.ipv6.conf.eth0.disable_ipv6", "net.ipv6.conf.eth0.accept_dad"} {
		if got, err := pod.Sysctl(key); err != nil || got != "0" {
			t.Errorf("pod %s = %q (%v), want 0", key, got, err)
		}
	}
	// Neither side's IPv6 link-local address is tentative.
	for _, l := range []struct {
		h    *netlink.Handle
		link netlink.Link
	}{{nh, hl}, {ph, pl}} {
		as, err := l.h.AddrList(l.link, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Flags&unix.IFA_F_TENTATIVE != 0 {
				t.Errorf("%s: %s is tentative", l.link.Attrs().Name, a.IPNet)
			}
		}
	}
}

// TestSetupPodIdempotent: setup twice leaves the same state (same ifindexes
// and MACs, so nothing was recreated); teardown twice succeeds and leaves
// the node exactly as before.
func TestSetupPodIdempotent(t *testing.T) {
	node, pod := newNSUp(t), newNSUp(t)
	ctx := context.Background()
	s := spec(node, pod, "idem", "10.244.0.30", "fd00:244::30")
	before := snapshot(t, node)
	podBefore := snapshot(t, pod)
	r1, err := SetupPod(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	snap1, psnap1 := snapshot(t, node), snapshot(t, pod)
	r2, err := SetupPod(ctx, s)
	if err != nil {
		t.Fatalf("second SetupPod: %v", err)
	}
	if snap2, psnap2 := snapshot(t, node), snapshot(t, pod); snap1 != snap2 || psnap1 != psnap2 {
		t.Errorf("second setup changed the state:\nnode before:\n%s\nnode after:\n%s\npod before:\n%s\npod after:\n%s", snap1, snap2, psnap1, psnap2)
	}
	if fmt.Sprint(r1) != fmt.Sprint(r2) {
		t.Errorf("results differ: %+v vs %+v", r1, r2)
	}
	for i := range 2 {
		if err := TeardownPod(ctx, s); err != nil {
			t.Fatalf("TeardownPod #%d: %v", i+1, err)
		}
	}
	if after := snapshot(t, node); after != before {
		t.Errorf("teardown left node state:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if after := snapshot(t, pod); after != podBefore {
		t.Errorf("pod state after teardown:\n%s\nbefore setup:\n%s", after, podBefore)
	}
	if _, err := CheckPod(ctx, s); !errors.Is(err, ErrCheckFailed) {
		t.Errorf("CheckPod after teardown: %v, want ErrCheckFailed", err)
	}
}

// TestTeardownRemovesReachability: once B is torn down, A's traffic to B
// fails fast (no route on the node) and no trace of B is left.
func TestTeardownRemovesEverything(t *testing.T) {
	node, podA, podB := newNSUp(t), newNSUp(t), newNSUp(t)
	ctx := context.Background()
	a := spec(node, podA, "a", "10.244.0.40", "fd00:244::40")
	b := spec(node, podB, "b", "10.244.0.41", "fd00:244::41")
	if _, err := SetupPod(ctx, a); err != nil {
		t.Fatal(err)
	}
	withA := snapshot(t, node)
	if _, err := SetupPod(ctx, b); err != nil {
		t.Fatal(err)
	}
	srv := startEcho(t, podB, b.IPs[0])
	assertReach(t, podA, a.IPs[0], srv)
	if err := TeardownPod(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, node); got != withA {
		t.Errorf("node after teardown of b:\n%s\nwant:\n%s", got, withA)
	}
	if l, err := handle(t, podB).LinkByName("eth0"); err == nil {
		t.Errorf("pod b still has %s", l.Attrs().Name)
	}
	if _, err := exchange(podA, "tcp", srv.tcp); err == nil {
		t.Error("a still reaches b's address after teardown")
	}
	if _, err := CheckPod(ctx, a); err != nil {
		t.Errorf("a is damaged by b's teardown: %v", err)
	}
}

// TestSetupPodBadSpec: every bad spec fails with a typed error naming the
// step and leaves node and pod namespaces untouched.
func TestSetupPodBadSpec(t *testing.T) {
	node, pod := newNSUp(t), newNSUp(t)
	good := spec(node, pod, "bad", "10.244.0.50", "fd00:244::50")
	notNS := filepath.Join(t.TempDir(), "not-a-netns")
	if err := os.WriteFile(notNS, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mutate func(*PodSpec)
		is     error
		step   string
		text   string
	}{
		{"pod netns missing", func(s *PodSpec) { s.PodNetns = "/run/netns/tabby-absent-" + node.Name() }, ErrNetnsNotFound, "open pod netns", "no such file"},
		{"pod netns is a plain file", func(s *PodSpec) { s.PodNetns = notNS }, ErrNetnsNotFound, "open pod netns", "not a network namespace"},
		{"host netns missing", func(s *PodSpec) { s.HostNetns = "/run/netns/tabby-absent-" + pod.Name() }, ErrNetnsNotFound, "open host netns", "no such file"},
		{"pod netns is the host netns", func(s *PodSpec) { s.PodNetns = s.HostNetns }, ErrInvalidSpec, "open pod netns", "is the host netns"},
		{"duplicate IP", func(s *PodSpec) { s.IPs = append(s.IPs, s.IPs[0]) }, ErrInvalidSpec, "validate spec", "duplicate IP 10.244.0.50"},
		{"host name too long", func(s *PodSpec) { s.HostIfName = "tab0123456789abc" }, ErrInvalidSpec, "validate spec", "longer than 15"},
		{"pod name too long", func(s *PodSpec) { s.PodIfName = "eth0123456789abc" }, ErrInvalidSpec, "validate spec", "longer than 15"},
		{"pod name with slash", func(s *PodSpec) { s.PodIfName = "eth/0" }, ErrInvalidSpec, "validate spec", "contains"},
		{"no IPs", func(s *PodSpec) { s.IPs = nil }, ErrInvalidSpec, "validate spec", "no IPs"},
		{"gateway as pod IP", func(s *PodSpec) { s.IPs = parseAddrs("169.254.1.1") }, ErrInvalidSpec, "validate spec", "link-local"},
		{"mapped IPv4", func(s *PodSpec) { s.IPs = parseAddrs("::ffff:10.0.0.1") }, ErrInvalidSpec, "validate spec", "IPv4-mapped"},
		{"MTU below IPv6 minimum", func(s *PodSpec) { s.MTU = 1000 }, ErrInvalidSpec, "validate spec", "MTU 1000"},
		{"relative netns path", func(s *PodSpec) { s.PodNetns = "netns/x" }, ErrInvalidSpec, "validate spec", "not absolute"},
	}
	nodeBefore, podBefore := snapshot(t, node), snapshot(t, pod)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := good
			s.IPs = append([]netip.Addr(nil), good.IPs...)
			c.mutate(&s)
			_, err := SetupPod(context.Background(), s)
			t.Log(err)
			if !errors.Is(err, c.is) {
				t.Fatalf("err = %v, want %v", err, c.is)
			}
			var se *StepError
			if !errors.As(err, &se) || se.Step != c.step {
				t.Errorf("err = %#v, want a StepError of step %q", err, c.step)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Errorf("err %q does not say %q", err, c.text)
			}
			if got := snapshot(t, node); got != nodeBefore {
				t.Errorf("node changed:\n%s", got)
			}
			if got := snapshot(t, pod); got != podBefore {
				t.Errorf("pod changed:\n%s", got)
			}
		})
	}
}

// TestSetupPodAddressInUse: a second pod cannot take an IP another pod (or
// the node itself) already has, and the failed setup leaves nothing behind.
func TestSetupPodAddressInUse(t *testing.T) {
	node, podA, podB := newNSUp(t), newNSUp(t), newNSUp(t)
	ctx := context.Background()
	nh := handle(t, node)
	// CONFIG_DUMMY is off on this kernel kind: a veth pair stands in for an uplink.
	uplink := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0", TxQLen: -1}, PeerName: "uplink1", PeerTxQLen: -1}
	if err := nh.LinkAdd(uplink); err != nil {
		t.Fatal(err)
	}
	if err := nh.LinkSetUp(uplink); err != nil {
		t.Fatal(err)
	}
	if err := nh.AddrAdd(uplink, &netlink.Addr{IPNet: prefixToIPNet(netip.MustParsePrefix("192.0.2.1/24"))}); err != nil {
		t.Fatal(err)
	}
	a := spec(node, podA, "a", "10.244.0.60")
	if _, err := SetupPod(ctx, a); err != nil {
		t.Fatal(err)
	}
	nodeBefore, podBefore := snapshot(t, node), snapshot(t, podB)
	for _, ip := range []string{"10.244.0.60", "192.0.2.1"} {
		b := spec(node, podB, "b", "10.244.0.61", ip)
		_, err := SetupPod(ctx, b)
		if !errors.Is(err, ErrAddressInUse) {
			t.Fatalf("pod b with %s: err = %v, want ErrAddressInUse", ip, err)
		}
		if !strings.Contains(err.Error(), ip) {
			t.Errorf("error %q does not name %s", err, ip)
		}
		if got := snapshot(t, node); got != nodeBefore {
			t.Errorf("node changed:\n%s\nwant:\n%s", got, nodeBefore)
		}
		if got := snapshot(t, podB); got != podBefore {
			t.Errorf("pod b changed:\n%s", got)
		}
	}
	// The race path: the route appears after the veth was created. The
	// step fails, the veth is rolled back, a's route survives.
	b := spec(node, podB, "b", "10.244.0.62")
	stepHook = func(step string) error {
		if step == stepHostRoutes {
			return nh.RouteAdd(&netlink.Route{LinkIndex: uplink.Attrs().Index, Dst: prefixToIPNet(netip.MustParsePrefix("10.244.0.62/32"))})
		}
		return nil
	}
	t.Cleanup(func() { stepHook = nil })
	_, err := SetupPod(ctx, b)
	stepHook = nil
	if !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("race: err = %v, want ErrAddressInUse", err)
	}
	if _, err := nh.LinkByName(b.HostIfName); err == nil {
		t.Error("b's veth survived the failed setup")
	}
	if _, err := CheckPod(ctx, a); err != nil {
		t.Errorf("a damaged: %v", err)
	}
}

// TestSetupPodRollbackEveryStep fails each step in turn and checks that
// nothing is left in either namespace.
func TestSetupPodRollbackEveryStep(t *testing.T) {
	node := newNSUp(t)
	injected := errors.New("injected failure")
	steps := []string{stepPreflight, stepPrepareNode, stepInspect, stepCreate, stepHostLink, stepPodLo,
		stepPodLink, stepPodAddrs, stepPodRoutes, stepPodNeigh, stepHostRoutes, stepHostProxy, stepHostLL}
	t.Cleanup(func() { stepHook = nil })
	for i, step := range steps {
		pod := newNSUp(t)
		s := spec(node, pod, fmt.Sprintf("rb%d", i), fmt.Sprintf("10.244.1.%d", i+1), fmt.Sprintf("fd00:244:1::%d", i+1))
		nodeBefore, podBefore := snapshot(t, node), snapshot(t, pod)
		stepHook = func(s string) error {
			if s == step {
				return injected
			}
			return nil
		}
		_, err := SetupPod(context.Background(), s)
		stepHook = nil
		var se *StepError
		if !errors.Is(err, injected) || !errors.As(err, &se) || se.Step != step {
			t.Errorf("step %q: err = %v", step, err)
			continue
		}
		if got := snapshot(t, node); got != nodeBefore {
			t.Errorf("step %q left node state:\n%s\nwant:\n%s", step, got, nodeBefore)
		}
		if got := snapshot(t, pod); got != podBefore {
			t.Errorf("step %q left pod state:\n%s\nwant:\n%s", step, got, podBefore)
		}
	}
}

// TestSetupPodContextCancelled: a cancelled context stops before anything
// is created.
func TestSetupPodContextCancelled(t *testing.T) {
	node, pod := newNSUp(t), newNSUp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := snapshot(t, node)
	_, err := SetupPod(ctx, spec(node, pod, "ctx", "10.244.0.70"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := snapshot(t, node); got != before {
		t.Errorf("node changed:\n%s", got)
	}
}

// TestSetupPodNameTaken: a pod-side eth0 of another device, or a host-side
// device of another type under the name, is an error; neither is touched.
func TestSetupPodNameTaken(t *testing.T) {
	node, pod := newNSUp(t), newNSUp(t)
	ctx := context.Background()
	s := spec(node, pod, "taken", "10.244.0.80")
	// Another plugin's eth0 (a veth whose peer is not ours).
	if err := handle(t, pod).LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", TxQLen: -1}, PeerName: "other0", PeerTxQLen: -1}); err != nil {
		t.Fatal(err)
	}
	nodeBefore, podBefore := snapshot(t, node), snapshot(t, pod)
	if _, err := SetupPod(ctx, s); !errors.Is(err, ErrInterfaceExists) {
		t.Fatalf("pod eth0 taken: err = %v, want ErrInterfaceExists", err)
	}
	if snapshot(t, node) != nodeBefore || snapshot(t, pod) != podBefore {
		t.Error("a failed setup changed state")
	}

	pod2 := newNSUp(t)
	s2 := spec(node, pod2, "taken2", "10.244.0.81")
	if err := handle(t, node).LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: s2.HostIfName, TxQLen: -1}}); err != nil {
		t.Fatal(err)
	}
	nodeBefore = snapshot(t, node)
	_, err := SetupPod(ctx, s2)
	if !errors.Is(err, ErrInterfaceExists) || !strings.Contains(err.Error(), "bridge") {
		t.Fatalf("host name taken: err = %v, want ErrInterfaceExists naming the bridge", err)
	}
	if snapshot(t, node) != nodeBefore {
		t.Error("a failed setup changed the node")
	}
	// Teardown never deletes a device it cannot prove is this pod's veth.
	if err := TeardownPod(ctx, s2); err != nil {
		t.Fatal(err)
	}
	if _, err := handle(t, node).LinkByName(s2.HostIfName); err != nil {
		t.Errorf("teardown removed a foreign device: %v", err)
	}
}

// TestCheckPodDetectsDriftAndSetupRepairs breaks the state in four places;
// CheckPod names each, SetupPod repairs them without recreating the veth.
func TestCheckPodDetectsDriftAndSetupRepairs(t *testing.T) {
	node, pod := newNSUp(t), newNSUp(t)
	ctx := context.Background()
	s := spec(node, pod, "drift", "10.244.0.90", "fd00:244::90")
	res, err := SetupPod(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	nh, ph := handle(t, node), handle(t, pod)
	if err := nh.RouteDel(hostRoute(res.HostIfIndex, netip.MustParsePrefix("10.244.0.90/32"))); err != nil {
		t.Fatal(err)
	}
	if err := ph.RouteDel(podDefaultRoute(res.PodIfIndex, GatewayV6)); err != nil {
		t.Fatal(err)
	}
	if err := ph.NeighDel(&netlink.Neigh{LinkIndex: res.PodIfIndex, Family: netlink.FAMILY_V4, IP: GatewayV4.AsSlice()}); err != nil {
		t.Fatal(err)
	}
	if err := node.SetSysctl("net/ipv4/conf/"+s.HostIfName+"/proxy_arp", "0"); err != nil {
		t.Fatal(err)
	}
	if err := ph.AddrAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: res.PodIfIndex}},
		&netlink.Addr{IPNet: prefixToIPNet(netip.MustParsePrefix("10.9.9.9/32"))}); err != nil {
		t.Fatal(err)
	}
	_, err = CheckPod(ctx, s)
	var ce *CheckError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCheckFailed) {
		t.Fatalf("CheckPod: %v, want *CheckError", err)
	}
	for _, want := range []string{"host route 10.244.0.90/32", "default via fe80::1", "neighbour 169.254.1.1",
		"proxy_arp is 0", "10.9.9.9/32"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("check error does not mention %q: %v", want, err)
		}
	}
	t.Log(err)
	if len(ce.Problems) != 5 {
		t.Errorf("problems = %q, want 5", ce.Problems)
	}
	res2, err := SetupPod(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if res2.HostIfIndex != res.HostIfIndex || res2.PodIfIndex != res.PodIfIndex {
		t.Errorf("repair recreated the veth: %+v -> %+v", res, res2)
	}
	if _, err := CheckPod(ctx, s); err != nil {
		t.Errorf("after repair: %v", err)
	}
}

// TestSetupPodConvergesToNewSpec: changing the IPs (and dropping IPv6)
// removes what the old spec had.
func TestSetupPodConvergesToNewSpec(t *testing.T) {
	node, pod := newNSUp(t), newNSUp(t)
	ctx := context.Background()
	old := spec(node, pod, "conv", "10.244.0.100", "fd00:244::100")
	if _, err := SetupPod(ctx, old); err != nil {
		t.Fatal(err)
	}
	next := spec(node, pod, "conv", "10.244.0.101")
	res, err := SetupPod(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckPod(ctx, next); err != nil {
		t.Errorf("CheckPod new spec: %v", err)
	}
	nh, ph := handle(t, node), handle(t, pod)
	var got []string
	for _, r := range linkRoutes(t, nh, res.HostIfIndex) {
		got = append(got, r.Dst.String())
	}
	for _, r := range linkRoutes(t, ph, res.PodIfIndex) {
		got = append(got, "pod "+r.Dst.String()+" via "+r.Gw.String())
	}
	if w := "10.244.0.101/32,pod 0.0.0.0/0 via 169.254.1.1"; strings.Join(got, ",") != w {
		t.Errorf("routes %v, want %s", got, w)
	}
	if ps, err := nh.NeighProxyList(res.HostIfIndex, netlink.FAMILY_V6); err != nil || len(ps) != 0 {
		t.Errorf("proxy entries left: %v %v", ps, err)
	}
	nbs, err := ph.NeighList(res.PodIfIndex, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nbs {
		if n.State&netlink.NUD_PERMANENT != 0 {
			t.Errorf("permanent IPv6 neighbour left: %v", n)
		}
	}
}

// TestStaleSandbox: a veth under the pod's host name whose peer lives in an
// old sandbox is replaced by setup, and a late teardown naming the old
// sandbox does not touch the new pair.
func TestStaleSandbox(t *testing.T) {
	node, oldPod, newPod := newNSUp(t), newNSUp(t), newNSUp(t)
	ctx := context.Background()
	oldSpec := spec(node, oldPod, "sts-0", "10.244.0.110")
	if _, err := SetupPod(ctx, oldSpec); err != nil {
		t.Fatal(err)
	}
	newSpec := spec(node, newPod, "sts-0", "10.244.0.110")
	if _, err := SetupPod(ctx, newSpec); err != nil {
		t.Fatalf("setup over a stale veth: %v", err)
	}
	if _, err := handle(t, oldPod).LinkByName("eth0"); err == nil {
		t.Error("old sandbox still has eth0")
	}
	if err := TeardownPod(ctx, oldSpec); err != nil {
		t.Fatalf("late teardown of the old sandbox: %v", err)
	}
	if _, err := CheckPod(ctx, newSpec); err != nil {
		t.Errorf("late teardown damaged the new sandbox: %v", err)
	}
	// Teardown after the pod's netns is gone: nothing to do, and the
	// kernel removes the host end with the namespace.
	if err := newPod.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := TeardownPod(ctx, newSpec); err != nil {
		t.Fatalf("teardown with the netns gone: %v", err)
	}
	waitGone(t, node, newSpec.HostIfName)
}

// TestSetupPodConcurrent: a CNI plugin gets concurrent ADDs on one node.
func TestSetupPodConcurrent(t *testing.T) {
	node := newNS(t)
	ctx := context.Background()
	const n = 6
	specs := make([]PodSpec, n)
	pods := make([]*Netns, n)
	for i := range n {
		pods[i] = newNS(t)
		specs[i] = spec(node, pods[i], fmt.Sprintf("conc-%d", i), fmt.Sprintf("10.244.2.%d", i+1), fmt.Sprintf("fd00:244:2::%d", i+1))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = SetupPod(ctx, specs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
		if _, err := CheckPod(ctx, specs[i]); err != nil {
			t.Errorf("pod %d: %v", i, err)
		}
	}
	srv := startEcho(t, pods[n-1], specs[n-1].IPs[1])
	assertReach(t, pods[0], specs[0].IPs[1], srv)
}
