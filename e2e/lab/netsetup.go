package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/networking"
)

// netnsDir is where named namespaces live (shared with `ip netns`).
const netnsDir = "/run/netns"

// Interface names inside the lab's own namespaces.
const (
	bridgeName = "br0"  // in the underlay namespace
	nodeUplink = "eth0" // a node's end of its underlay veth
)

// underlayPort is the underlay's end of node i's veth.
func underlayPort(i int) string { return fmt.Sprintf("node%d", i) }

func netnsPath(name string) string { return filepath.Join(netnsDir, name) }

// newNetns creates a named namespace and records it before anything is
// built inside, so that Down finds it even if Up dies right after.
func (l *Lab) newNetns(name string) (*networking.Netns, error) {
	ns, err := networking.NewNetns(name)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l.st.Namespaces = append(l.st.Namespaces, name)
	if err := l.save(); err != nil {
		_ = ns.Delete()
		return nil, err
	}
	return ns, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func hostNet(a netip.Addr) *net.IPNet { return ipNet(netip.PrefixFrom(a, a.BitLen())) }

// addAddr adds a on link; IPv6 addresses skip DAD so they are usable at
// once (callers add them after the link is up, as the kernel wants).
func addAddr(h *netlink.Handle, link netlink.Link, a netip.Addr, bits int) error {
	na := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, bits))}
	if a.Is6() {
		na.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, na); err != nil {
		return fmt.Errorf("address %s/%d on %s: %w", a, bits, link.Attrs().Name, err)
	}
	return nil
}

// prepareLink turns DAD off (so the link-local address is usable as soon as
// the carrier is up: the node solicits neighbours from it) and brings the
// link up.
func prepareLink(ns *networking.Netns, h *netlink.Handle, link netlink.Link, v6 bool) error {
	name := link.Attrs().Name
	if v6 {
		if err := ns.SetSysctl("net/ipv6/conf/"+name+"/accept_dad", "0"); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("link %s up: %w", name, err)
	}
	return nil
}

// buildUnderlay creates the underlay namespace with its bridge.
func (l *Lab) buildUnderlay(ctx context.Context) error {
	ns, err := l.newNetns(l.st.Underlay.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := ns.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	if err := linkUp(h, "lo"); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName, TxQLen: -1}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("lab: underlay bridge: %w", err)
	}
	if err := prepareLink(ns, h, br, l.plan.v6); err != nil {
		return fmt.Errorf("lab: underlay: %w", err)
	}
	for _, a := range l.st.Underlay.IPs {
		if err := addAddr(h, br, a, prefixFor(a).Bits()); err != nil {
			return fmt.Errorf("lab: underlay: %w", err)
		}
	}
	if l.plan.v6 {
		return ns.WaitLinkLocal(ctx, bridgeName)
	}
	return nil
}

func prefixFor(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return underlayV4
	}
	return underlayV6
}

func linkUp(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("lab: link %s up: %w", name, err)
	}
	return nil
}

// joinUnderlay creates namespace name and joins it to the underlay bridge:
// a veth created in the underlay (portName, attached to the bridge, up) with
// its peer nodeUplink placed directly in the new namespace, so nothing ever
// appears in the root namespace; then lo up. setup configures the namespace
// side (its uplink is not up yet); errors are wrapped with what.
func (l *Lab) joinUnderlay(name, portName, what string, v6 bool,
	setup func(ns *networking.Netns, h *netlink.Handle, up netlink.Link, fail func(error) error) error) error {
	ns, err := l.newNetns(name)
	if err != nil {
		return err
	}
	defer ns.Close()
	uns, err := networking.OpenNetns(netnsPath(l.st.Underlay.Netns))
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer uns.Close()
	uh, err := uns.Handle()
	if err != nil {
		return err
	}
	defer uh.Close()
	h, err := ns.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	fail := func(err error) error { return fmt.Errorf("lab: %s: %w", what, err) }

	port := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: portName, TxQLen: -1},
		PeerName: nodeUplink, PeerNamespace: netlink.NsFd(ns.Fd()), PeerTxQLen: -1}
	if err := uh.LinkAdd(port); err != nil {
		return fail(fmt.Errorf("underlay veth: %w", err))
	}
	br, err := uh.LinkByName(bridgeName)
	if err != nil {
		return fail(err)
	}
	if err := uh.LinkSetMaster(port, br); err != nil {
		return fail(fmt.Errorf("attach %s to %s: %w", port.Name, bridgeName, err))
	}
	if err := prepareLink(uns, uh, port, v6); err != nil {
		return fail(err)
	}
	if err := linkUp(h, "lo"); err != nil {
		return err
	}
	up, err := h.LinkByName(nodeUplink)
	if err != nil {
		return fail(err)
	}
	return setup(ns, h, up, fail)
}

// buildNode creates node i's namespace and joins it to the underlay.
func (l *Lab) buildNode(ctx context.Context, i int) error {
	nd := &l.st.Nodes[i-1]
	return l.joinUnderlay(nd.Netns, underlayPort(i), nd.Name, l.plan.v6,
		func(ns *networking.Netns, h *netlink.Handle, up netlink.Link, fail func(error) error) error {
			return l.setupNode(ctx, nd, ns, h, up, fail)
		})
}

// setupNode configures a node's side of the underlay: forwarding, the
// uplink's addresses and default routes.
func (l *Lab) setupNode(ctx context.Context, nd *NodeState, ns *networking.Netns, h *netlink.Handle,
	up netlink.Link, fail func(error) error) error {
	sysctls := [][2]string{{"net.ipv4.ip_forward", "1"}}
	if l.plan.v6 {
		sysctls = append(sysctls, [2]string{"net.ipv6.conf.all.forwarding", "1"})
	}
	for _, s := range sysctls {
		if err := ns.SetSysctl(s[0], s[1]); err != nil {
			return fail(err)
		}
	}
	if err := prepareLink(ns, h, up, l.plan.v6); err != nil {
		return fail(err)
	}
	for _, a := range nd.UnderlayIPs {
		if err := addAddr(h, up, a, prefixFor(a).Bits()); err != nil {
			return fail(err)
		}
		// The default route is what makes proxy ARP answer for the pods'
		// gateway 169.254.1.1 (see networking's doc); the bridge address
		// is a harmless next hop that nothing beyond it uses.
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if a.Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		gw := bridgeAddr(prefixFor(a))
		if err := h.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: ipNet(def), Gw: gw.AsSlice()}); err != nil {
			return fail(fmt.Errorf("default route via %s: %w", gw, err))
		}
	}
	if l.plan.v6 {
		if err := ns.WaitLinkLocal(ctx, nodeUplink); err != nil {
			return fail(err)
		}
	}
	return nil
}

// buildPod creates a pod's namespace and interface on its node.
func (l *Lab) buildPod(ctx context.Context, p *PodState) error {
	ns, err := l.newNetns(p.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	nd, ok := l.node(p.Node)
	if !ok {
		return fmt.Errorf("lab: pod %s/%s: no node %s", p.Namespace, p.Name, p.Node)
	}
	_, err = networking.SetupPod(ctx, networking.PodSpec{
		HostNetns: netnsPath(nd.Netns), PodNetns: ns.Path(), HostIfName: p.HostIf, IPs: p.IPs,
	})
	if err != nil {
		return fmt.Errorf("lab: pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// routeRemotePods gives every node a route to every pod of every other
// node via that node's underlay address of the pod address's family.
func (l *Lab) routeRemotePods() error {
	for _, p := range l.st.Pods {
		if err := l.podRoutes(p, true); err != nil {
			return err
		}
	}
	return nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func familyAddr(addrs []netip.Addr, v4 bool) (netip.Addr, bool) {
	for _, a := range addrs {
		if a.Is4() == v4 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// deleteNetns removes a named namespace's bind mount and file. The kernel
// destroys the namespace, and every interface in it, once no process holds
// it; absent is success.
func deleteNetns(name string) error {
	p := netnsPath(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("lab: unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// netnsInode identifies a namespace file (0 when it is not there).
func netnsInode(path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}
