//go:build linux

package networking

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestCrossNode wires two node namespaces with a veth "underlay", as the
// lab does, routes each node's pod CIDRs via the other node, and checks
// pod A on node 1 and pod B on node 2 reach each other over TCP and UDP,
// IPv4 and IPv6.
func TestCrossNode(t *testing.T) {
	node1, node2 := newNS(t), newNS(t)
	podA, podB := newNS(t), newNS(t)
	ctx := context.Background()

	// Underlay: ul0 in node1 <-> ul0 in node2.
	h1, h2 := handle(t, node1), handle(t, node2)
	ul := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ul0", TxQLen: -1}, PeerName: "ul0",
		PeerNamespace: netlink.NsFd(node2.Fd()), PeerTxQLen: -1}
	if err := h1.LinkAdd(ul); err != nil {
		t.Fatal(err)
	}
	underlay := []struct {
		h      *netlink.Handle
		addrs  []string
		routes [][2]string // pod CIDR of the other node, via
	}{
		{h1, []string{"192.0.2.1/24", "2001:db8:ff::1/64"}, [][2]string{{"10.244.2.0/24", "192.0.2.2"}, {"fd00:244:2::/64", "2001:db8:ff::2"}}},
		{h2, []string{"192.0.2.2/24", "2001:db8:ff::2/64"}, [][2]string{{"10.244.1.0/24", "192.0.2.1"}, {"fd00:244:1::/64", "2001:db8:ff::1"}}},
	}
	for i, u := range underlay {
		// Without this, the node sends no Neighbour Solicitation for the
		// peer node while ul0's link-local address is tentative (forwarded
		// packets have no local source to borrow), and the first IPv6
		// packets across wait 1-2 s. The lab must wire underlays the same
		// way, and wait as below: both ul0 ends have ifindex 2, which makes
		// linkwatch delay the carrier event (and the address) by up to 1 s.
		if err := []*Netns{node1, node2}[i].SetSysctl("net.ipv6.conf.ul0.accept_dad", "0"); err != nil {
			t.Fatal(err)
		}
		l, err := u.h.LinkByName("ul0")
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range u.addrs {
			p := netip.MustParsePrefix(a)
			na := &netlink.Addr{IPNet: prefixToIPNet(p)}
			if p.Addr().Is6() {
				na.Flags = unix.IFA_F_NODAD // usable at once
			}
			if err := u.h.AddrAdd(l, na); err != nil {
				t.Fatal(err)
			}
		}
		if err := u.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		for _, r := range u.routes {
			if err := u.h.RouteAdd(&netlink.Route{Dst: prefixToIPNet(netip.MustParsePrefix(r[0])),
				Gw: netip.MustParseAddr(r[1]).AsSlice(), LinkIndex: l.Attrs().Index}); err != nil {
				t.Fatalf("route %s via %s: %v", r[0], r[1], err)
			}
		}
	}

	for _, n := range []*Netns{node1, node2} {
		if err := n.WaitLinkLocal(ctx, "ul0"); err != nil {
			t.Fatal(err)
		}
	}

	a := spec(node1, podA, "a", "10.244.1.10", "fd00:244:1::10")
	b := spec(node2, podB, "b", "10.244.2.10", "fd00:244:2::10")
	for _, s := range []PodSpec{a, b} {
		if _, err := SetupPod(ctx, s); err != nil {
			t.Fatalf("SetupPod %s: %v", s.HostIfName, err)
		}
		if _, err := CheckPod(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for i := range a.IPs {
		assertReach(t, podA, a.IPs[i], startEcho(t, podB, b.IPs[i]))
		assertReach(t, podB, b.IPs[i], startEcho(t, podA, a.IPs[i]))
	}
}

// TestGatewayFallback removes the pod's permanent gateway entries and
// checks the host side still answers for the gateways: proxy NDP for
// fe80::1 on its own, proxy ARP for 169.254.1.1 once the node has a route
// to 169.254.1.1 out of another interface (a default route is enough;
// without one the kernel does not proxy, which is why Setup installs the
// permanent entries). The learned entries must point at the host veth.
func TestGatewayFallback(t *testing.T) {
	node, podA, podB := newNS(t), newNS(t), newNS(t)
	ctx := context.Background()
	a := spec(node, podA, "a", "10.244.0.120", "fd00:244::120")
	b := spec(node, podB, "b", "10.244.0.121", "fd00:244::121")
	var resA *PodInterface
	for _, s := range []PodSpec{a, b} {
		r, err := SetupPod(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if resA == nil {
			resA = r
		}
	}
	ph := handle(t, podA)
	for _, gw := range []netip.Addr{GatewayV4, GatewayV6} {
		if err := ph.NeighDel(&netlink.Neigh{LinkIndex: resA.PodIfIndex, Family: family(gw), IP: gw.AsSlice()}); err != nil {
			t.Fatalf("delete %s: %v", gw, err)
		}
	}
	assertReach(t, podA, a.IPs[1], startEcho(t, podB, b.IPs[1]))

	srv4 := startEcho(t, podB, b.IPs[0])
	if _, err := exchangeWith(podA, "udp", srv4.udp, 1, time.Second); err == nil {
		t.Log("kernel quirk gone? proxy ARP answered without a node route to 169.254.1.1")
	} else {
		t.Logf("as documented, no proxy ARP without a node route to 169.254.1.1: %v", err)
	}
	// A default route out of another interface (a second veth as uplink).
	nh := handle(t, node)
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0", TxQLen: -1}, PeerName: "uplink1", PeerTxQLen: -1}
	if err := nh.LinkAdd(up); err != nil {
		t.Fatal(err)
	}
	if err := nh.LinkSetUp(up); err != nil {
		t.Fatal(err)
	}
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: prefixToIPNet(netip.MustParsePrefix("0.0.0.0/0"))}); err != nil {
		t.Fatal(err)
	}
	assertReach(t, podA, a.IPs[0], srv4)

	for _, gw := range []netip.Addr{GatewayV4, GatewayV6} {
		nbs, err := ph.NeighList(resA.PodIfIndex, family(gw))
		if err != nil {
			t.Fatal(err)
		}
		ok := false
		for _, n := range nbs {
			ok = ok || (n.IP.Equal(gw.AsSlice()) && bytes.Equal(n.HardwareAddr, resA.HostMAC))
		}
		if !ok {
			t.Errorf("pod learned no entry %s -> %s: %v", gw, resA.HostMAC, nbs)
		}
	}
}
