//go:build linux

package networking

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// This file defines the wanted kernel state (sysctls, routes, neighbours)
// once, for SetupPod to write and CheckPod to compare, and wraps the netlink
// calls that need care (dump retries, name lookups).

// globalSysctls: the node must forward between the veths and its uplinks.
// These are node-wide; Setup sets them only when they differ (writing
// net.ipv6.conf.all.forwarding flips every interface to router mode, which
// stops plain accept_ra=1 uplinks from taking router advertisements, exactly
// as on any Kubernetes node with IPv6 pods) and Teardown never resets them.
func globalSysctls(v4, v6 bool) []sysctl {
	var out []sysctl
	if v4 {
		out = append(out, sysctl{"net/ipv4/ip_forward", "1"})
	}
	if v6 {
		out = append(out, sysctl{"net/ipv6/conf/all/forwarding", "1"})
	}
	return out
}

// hostIfSysctls are the host-side veth's settings:
//   - proxy_arp / proxy_ndp: the host answers for the gateways should the pod
//     ever resolve them (its permanent entries are the primary path);
//   - neigh proxy_delay=0: proxied answers otherwise wait up to 0.8 s;
//   - forwarding=1 on the veth: proxy NDP only answers on forwarding interfaces;
//   - accept_ra=0: a pod must never install routes on the node by sending
//     router advertisements (accept_ra=2 on "default" would otherwise allow it);
//   - accept_dad=0 (set before the link goes up): the node sends Neighbour
//     Solicitations for the pod's address from the veth's link-local address
//     and sends none while that address is tentative, so with DAD every new
//     pod is unreachable from the node for 1-2 s (the first SYN is lost). A
//     point-to-point veth with a random MAC has nobody to collide with;
//   - disable_ipv6=0 first, so the rest applies on nodes that disable IPv6 by default.
func hostIfSysctls(ifname string, v4, v6 bool) []sysctl {
	var out []sysctl
	if v4 {
		out = append(out,
			sysctl{"net/ipv4/conf/" + ifname + "/forwarding", "1"},
			sysctl{"net/ipv4/conf/" + ifname + "/proxy_arp", "1"},
			sysctl{"net/ipv4/neigh/" + ifname + "/proxy_delay", "0"},
		)
	}
	if v6 {
		out = append(out,
			sysctl{"net/ipv6/conf/" + ifname + "/disable_ipv6", "0"},
			sysctl{"net/ipv6/conf/" + ifname + "/accept_dad", "0"},
			sysctl{"net/ipv6/conf/" + ifname + "/accept_ra", "0"},
			sysctl{"net/ipv6/conf/" + ifname + "/forwarding", "1"},
			sysctl{"net/ipv6/conf/" + ifname + "/proxy_ndp", "1"},
			sysctl{"net/ipv6/neigh/" + ifname + "/proxy_delay", "0"},
		)
	}
	return out
}

// podIfSysctls: the pod interface needs IPv6 enabled before its /128 can be
// added, whatever the runtime's namespace defaults are, and no DAD (its
// link-local address is usable at once, like the nodad /128).
func podIfSysctls(ifname string, v6 bool) []sysctl {
	if !v6 {
		return nil
	}
	return []sysctl{
		{"net/ipv6/conf/" + ifname + "/disable_ipv6", "0"},
		{"net/ipv6/conf/" + ifname + "/accept_dad", "0"},
	}
}

// podDefaultRoute is "default via <gw> dev <pod if> onlink": the gateway is
// on no subnet of the pod (its addresses are /32 and /128), so the route
// must say the gateway is on the link.
func podDefaultRoute(podIdx int, gw netip.Addr) *netlink.Route {
	return &netlink.Route{
		LinkIndex: podIdx,
		Dst:       prefixToIPNet(netip.PrefixFrom(unspecified(gw), 0)),
		Gw:        gw.AsSlice(),
		Flags:     int(netlink.FLAG_ONLINK),
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
		Family:    family(gw),
	}
}

// hostRoute is "<ip>/32 dev <host if> scope link" (IPv6 routes have no
// scope: the kernel reports universe whatever was asked).
func hostRoute(hostIdx int, p netip.Prefix) *netlink.Route {
	r := &netlink.Route{
		LinkIndex: hostIdx,
		Dst:       prefixToIPNet(p),
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
		Family:    family(p.Addr()),
	}
	if p.Addr().Is4() {
		r.Scope = netlink.SCOPE_LINK
	}
	return r
}

// routeMatches compares the fields Setup sets; metric and kernel flags like
// linkdown are not part of the contract.
func routeMatches(got netlink.Route, want *netlink.Route) bool {
	if got.LinkIndex != want.LinkIndex || got.Table != want.Table || got.Protocol != want.Protocol ||
		len(got.MultiPath) != 0 {
		return false
	}
	if ipNetToPrefix(got.Dst) != ipNetToPrefix(want.Dst) || ipToAddr(got.Gw) != ipToAddr(want.Gw) {
		return false
	}
	if got.Flags&int(netlink.FLAG_ONLINK) != want.Flags&int(netlink.FLAG_ONLINK) {
		return false
	}
	if want.Family == netlink.FAMILY_V4 && got.Scope != want.Scope {
		return false
	}
	return true
}

func anyRouteMatches(have []netlink.Route, w *netlink.Route) bool {
	for _, r := range have {
		if routeMatches(r, w) {
			return true
		}
	}
	return false
}

func matchesAnyWanted(r netlink.Route, want []*netlink.Route) bool {
	for _, w := range want {
		if routeMatches(r, w) {
			return true
		}
	}
	return false
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// ipToAddr converts a netlink IP; IPv4 arrives in either length, and the
// package never handles IPv4-mapped IPv6, so Unmap is safe.
func ipToAddr(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

func ipNetToPrefix(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a := ipToAddr(n.IP)
	ones, bits := n.Mask.Size()
	if !a.IsValid() || bits == 0 {
		return netip.Prefix{}
	}
	if a.Is4() && bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones)
}

// nsRef is an open namespace with a netlink handle in it.
type nsRef struct {
	role string // "host" or "pod", for messages
	path string
	fd   int
	h    *netlink.Handle
}

func openNS(role, path string) (*nsRef, error) {
	fd, err := openNetnsFd(path)
	if err != nil {
		return nil, &StepError{Step: "open " + role + " netns", Netns: path, Err: err}
	}
	h, err := handleAt(fd)
	if err != nil {
		_ = unix.Close(fd)
		return nil, &StepError{Step: "open " + role + " netns", Netns: path, Err: err}
	}
	return &nsRef{role: role, path: path, fd: fd, h: h}, nil
}

func (r *nsRef) close() {
	if r == nil {
		return
	}
	r.h.Close()
	_ = unix.Close(r.fd)
}

// maxDumpRetries bounds retries of a dump the kernel marked interrupted
// (NLM_F_DUMP_INTR: the table changed while it was being read).
const maxDumpRetries = 5

func retryDump[T any](fn func() (T, error)) (T, error) {
	var v T
	var err error
	for range maxDumpRetries {
		v, err = fn()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// linkByName returns the link or nil if there is none. The kernel also
// finds links by alternative name, so the primary name is checked.
func (r *nsRef) linkByName(name string) (netlink.Link, error) {
	l, err := r.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil, nil
		}
		return nil, err
	}
	if l.Attrs().Name != name {
		return nil, nil
	}
	return l, nil
}

func (r *nsRef) routes(fam int) ([]netlink.Route, error) {
	return retryDump(func() ([]netlink.Route, error) {
		return r.h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
}

func (r *nsRef) addrs(l netlink.Link) ([]netlink.Addr, error) {
	return retryDump(func() ([]netlink.Addr, error) { return r.h.AddrList(l, netlink.FAMILY_ALL) })
}

func (r *nsRef) neighs(idx, fam int) ([]netlink.Neigh, error) {
	return retryDump(func() ([]netlink.Neigh, error) { return r.h.NeighList(idx, fam) })
}

func (r *nsRef) proxyNeighs(idx, fam int) ([]netlink.Neigh, error) {
	return retryDump(func() ([]netlink.Neigh, error) { return r.h.NeighProxyList(idx, fam) })
}

// hostOwnsAddr reports whether an address of the host namespace equals ip
// (a pod cannot take the node's own address).
func (r *nsRef) hostOwnsAddr(ip netip.Addr) (string, error) {
	all, err := retryDump(func() ([]netlink.Addr, error) { return r.h.AddrList(nil, family(ip)) })
	if err != nil {
		return "", err
	}
	for _, a := range all {
		if ipToAddr(a.IP) == ip {
			name := fmt.Sprintf("ifindex %d", a.LinkIndex)
			if l, err := r.h.LinkByIndex(a.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			return name, nil
		}
	}
	return "", nil
}

// linkName names an ifindex of the namespace for messages.
func (r *nsRef) linkName(idx int) string {
	if l, err := r.h.LinkByIndex(idx); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("ifindex %d", idx)
}

// isPeerPair reports whether host (in r) and pod (in pod) are the two ends of
// one veth: each names the other as its peer ifindex, and each peer's
// namespace id is the other namespace. ifindexes alone are only unique per
// namespace, so both checks are needed.
func isPeerPair(host *nsRef, hl netlink.Link, pod *nsRef, pl netlink.Link) (bool, error) {
	if hl == nil || pl == nil || hl.Type() != "veth" || pl.Type() != "veth" {
		return false, nil
	}
	ha, pa := hl.Attrs(), pl.Attrs()
	if ha.ParentIndex != pa.Index || pa.ParentIndex != ha.Index {
		return false, nil
	}
	podID, err := host.h.GetNetNsIdByFd(pod.fd)
	if err != nil {
		return false, fmt.Errorf("netns id of pod netns: %w", err)
	}
	hostID, err := pod.h.GetNetNsIdByFd(host.fd)
	if err != nil {
		return false, fmt.Errorf("netns id of host netns: %w", err)
	}
	return podID >= 0 && hostID >= 0 && ha.NetNsID == podID && pa.NetNsID == hostID, nil
}

// linkLocalTimeout bounds waitLinkLocal: above the 1 s linkwatch delay.
const linkLocalTimeout = 3 * time.Second

// waitLinkLocal returns once the link has a usable (not tentative) IPv6
// link-local address. Why SetupPod waits, kernel behaviour:
//   - the node solicits a pod's address only from the veth's link-local
//     address (ndisc_send_ns drops the solicitation when the device has no
//     usable one, and a forwarded packet's source is not the node's), so a
//     packet to the pod before then costs a 1 s neighbour retry (a lost SYN);
//   - even with accept_dad=0 a new address is tentative until the DAD work
//     item runs;
//   - the address is only created on the carrier event, which linkwatch
//     delays by up to 1 s when it deems it not urgent - and for a veth it
//     does so exactly when the two ends have the same ifindex in their
//     namespaces (dev->ifindex == dev_get_iflink(dev)), e.g. the first pod
//     of a fresh lab node (both ifindex 2), or two lab nodes' underlay ends.
func waitLinkLocal(ctx context.Context, h *netlink.Handle, l netlink.Link) error {
	ctx, cancel := context.WithTimeout(ctx, linkLocalTimeout)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		as, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_V6) })
		if err != nil {
			return err
		}
		for _, a := range as {
			if !a.IP.IsLinkLocalUnicast() {
				continue
			}
			if a.Flags&unix.IFA_F_DADFAILED != 0 {
				return fmt.Errorf("link-local %s failed duplicate address detection", a.IP)
			}
			if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_OPTIMISTIC) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s has no usable IPv6 link-local address: %w", l.Attrs().Name, ctx.Err())
		case <-tick.C:
		}
	}
}
