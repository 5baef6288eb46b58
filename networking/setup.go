//go:build linux

package networking

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Step names, in the order SetupPod runs them; they appear in StepError.Step.
const (
	stepPreflight   = "check addresses"
	stepPrepareNode = "prepare node"
	stepInspect     = "inspect host interface"
	stepRemoveStale = "remove stale host interface"
	stepCreate      = "create veth"
	stepHostLink    = "configure host interface"
	stepPodLo       = "set pod loopback up"
	stepPodLink     = "configure pod interface"
	stepPodAddrs    = "set pod addresses"
	stepPodRoutes   = "set pod routes"
	stepPodNeigh    = "set pod gateway neighbours"
	stepHostRoutes  = "set host routes"
	stepHostProxy   = "set host proxy neighbour"
	stepHostLL      = "wait for host link-local address"
	stepRollback    = "roll back"
	stepDelete      = "delete veth"
)

// stepHook, set only by tests, runs before every step and can fail it, so
// the rollback of each step is tested against the real kernel.
var stepHook func(step string) error

// op is one SetupPod/CheckPod/TeardownPod call: the spec and both namespaces.
type op struct {
	spec              PodSpec
	v4, v6            bool
	host, pod         *nsRef
	hostLink, podLink netlink.Link
	created           bool // this call created the veth: failure deletes it
}

func openOp(spec PodSpec) (*op, error) {
	o := &op{spec: spec}
	o.v4, o.v6 = spec.hasFamilies()
	var err error
	if o.host, err = openNS("host", spec.hostNetnsPath()); err != nil {
		return nil, err
	}
	if o.pod, err = openNS("pod", spec.PodNetns); err != nil {
		o.host.close()
		return nil, err
	}
	same, err := sameNetns(o.host.fd, o.pod.fd)
	if err == nil && same {
		err = fmt.Errorf("%w: the pod netns is the host netns", ErrInvalidSpec)
	}
	if err != nil {
		o.close()
		return nil, &StepError{Step: "open pod netns", Netns: spec.PodNetns, Err: err}
	}
	return o, nil
}

func (o *op) close() {
	o.host.close()
	o.pod.close()
}

// do runs one step: it stops on a cancelled context, lets the test hook
// fail the step, and wraps any error with the step, interface and netns.
func (o *op) do(ctx context.Context, step, iface, nsPath string, fn func() error) error {
	err := ctx.Err()
	if err == nil && stepHook != nil {
		err = stepHook(step)
	}
	if err == nil {
		err = fn()
	}
	if err != nil {
		return &StepError{Step: step, Interface: iface, Netns: nsPath, Err: err}
	}
	return nil
}

// SetupPod makes the pod's interface match spec and returns what it built.
// See doc.go for the exact state.
// It is idempotent: on an existing, matching veth pair it converges the
// rest (addresses, routes, neighbours, sysctls) and changes nothing that is
// already right. If this call created the veth and a later step fails, it
// deletes the veth again, which takes every address, route and neighbour
// entry on it along, so a failed setup leaves nothing behind except the
// node-wide settings of prepareNode and the pod's lo being up.
func SetupPod(ctx context.Context, spec PodSpec) (*PodInterface, error) {
	s, err := spec.normalize()
	if err != nil {
		return nil, err
	}
	o, err := openOp(s)
	if err != nil {
		return nil, err
	}
	defer o.close()
	return o.setup(ctx)
}

func (o *op) setup(ctx context.Context) (_ *PodInterface, err error) {
	hostIf, podIf := o.spec.HostIfName, o.spec.PodIfName
	hp, pp := o.host.path, o.pod.path
	if err := o.do(ctx, stepPreflight, hostIf, hp, func() error { return o.checkAddrsFree(0) }); err != nil {
		return nil, err
	}
	if err := o.do(ctx, stepPrepareNode, "", hp, o.prepareNode); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && o.created {
			if rerr := o.rollback(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	if err := o.ensureVeth(ctx); err != nil {
		return nil, err
	}
	steps := []struct {
		name, iface, ns string
		fn              func() error
	}{
		{stepHostLink, hostIf, hp, o.configureHostLink},
		{stepPodLo, "lo", pp, o.podLoopbackUp},
		{stepPodLink, podIf, pp, o.configurePodLink},
		{stepPodAddrs, podIf, pp, o.ensurePodAddrs},
		{stepPodRoutes, podIf, pp, o.ensurePodRoutes},
		{stepPodNeigh, podIf, pp, o.ensurePodNeighbours},
		{stepHostRoutes, hostIf, hp, o.ensureHostRoutes},
		{stepHostProxy, hostIf, hp, o.ensureHostProxyNeigh},
		{stepHostLL, hostIf, hp, func() error { return o.waitHostLinkLocal(ctx) }},
	}
	for _, st := range steps {
		if err := o.do(ctx, st.name, st.iface, st.ns, st.fn); err != nil {
			return nil, err
		}
	}
	return o.result()
}

// prepareNode makes the node-wide settings pods need; they are never undone
// (other pods rely on them) and are no-ops on a real node:
//   - forwarding (globalSysctls);
//   - lo up. Kernel quirk: in a namespace that has never had a local address,
//     the local routing table does not exist, inet_addr_type() then calls
//     every IPv4 address RTN_BROADCAST, and the neighbour entries the node
//     creates for pod IPs become NOARP with lladdr ff:ff:ff:ff:ff:ff: UDP to
//     the pod works, TCP is dropped (pkt_type is not PACKET_HOST), and the
//     NOARP entries outlive a later lo up. lo's 127.0.0.1 creates the table.
func (o *op) prepareNode() error {
	if err := writeSysctls(o.host.fd, globalSysctls(o.v4, o.v6), true); err != nil {
		return err
	}
	lo, err := o.host.linkByName("lo")
	if err != nil {
		return err
	}
	if lo == nil {
		return errors.New("host netns has no lo")
	}
	return setMTUUp(o.host.h, lo, 0)
}

// checkAddrsFree fails with ErrAddressInUse when a pod IP is an address of
// the node or is routed (main table) anywhere but to this pod's host veth:
// ownIdx when known, otherwise any link under the spec's host name.
func (o *op) checkAddrsFree(ownIdx int) error {
	byFam := map[int][]netlink.Route{}
	for _, p := range o.spec.prefixes() {
		if owner, err := o.host.hostOwnsAddr(p.Addr()); err != nil {
			return err
		} else if owner != "" {
			return fmt.Errorf("%w: %s is an address of host interface %s", ErrAddressInUse, p.Addr(), owner)
		}
		fam := family(p.Addr())
		if _, ok := byFam[fam]; !ok {
			rs, err := o.host.routes(fam)
			if err != nil {
				return err
			}
			byFam[fam] = rs
		}
		for _, r := range byFam[fam] {
			if ipNetToPrefix(r.Dst) != p {
				continue
			}
			if ownIdx != 0 && r.LinkIndex == ownIdx {
				continue
			}
			if r.LinkIndex == 0 {
				return fmt.Errorf("%w: %s has a route of type %d", ErrAddressInUse, p, r.Type)
			}
			name := o.host.linkName(r.LinkIndex)
			if ownIdx == 0 && name == o.spec.HostIfName {
				continue // this pod's own (maybe stale) veth
			}
			return fmt.Errorf("%w: %s is routed to %s", ErrAddressInUse, p, name)
		}
	}
	return nil
}

// ensureVeth finds this pod's veth pair or creates it. A veth under the host
// name whose peer is not the pod's interface was left by an earlier sandbox
// of the same pod (the name derives from namespace/name), so it is replaced,
// as Calico does.
func (o *op) ensureVeth(ctx context.Context) error {
	hostIf, hp := o.spec.HostIfName, o.host.path
	var stale netlink.Link
	err := o.do(ctx, stepInspect, hostIf, hp, func() error {
		l, err := o.host.linkByName(hostIf)
		if err != nil || l == nil {
			return err
		}
		if l.Type() != "veth" {
			return fmt.Errorf("%w: %s is a %s device, not a veth", ErrInterfaceExists, hostIf, l.Type())
		}
		pl, err := o.pod.linkByName(o.spec.PodIfName)
		if err != nil {
			return err
		}
		ok, err := isPeerPair(o.host, l, o.pod, pl)
		if err != nil {
			return err
		}
		if ok {
			o.hostLink, o.podLink = l, pl
		} else {
			stale = l
		}
		return nil
	})
	if err != nil || o.hostLink != nil {
		return err
	}
	if stale != nil {
		if err := o.do(ctx, stepRemoveStale, hostIf, hp, func() error {
			return ignoreNotFound(o.host.h.LinkDel(stale))
		}); err != nil {
			return err
		}
	}
	return o.do(ctx, stepCreate, hostIf, hp, o.createVeth)
}

// createVeth creates the pair with the pod end directly in the pod netns
// under its final name: no rename, no window with a stray interface.
func (o *op) createVeth() error {
	hostIf, podIf := o.spec.HostIfName, o.spec.PodIfName
	if pl, err := o.pod.linkByName(podIf); err != nil {
		return err
	} else if pl != nil {
		return fmt.Errorf("%w: the pod netns already has %s (a %s device)", ErrInterfaceExists, podIf, pl.Type())
	}
	la := netlink.NewLinkAttrs()
	la.Name = hostIf
	la.MTU = o.spec.MTU
	veth := &netlink.Veth{
		LinkAttrs:     la,
		PeerName:      podIf,
		PeerNamespace: netlink.NsFd(o.pod.fd),
		PeerTxQLen:    -1,
		PeerMTU:       uint32(o.spec.MTU),
	}
	if err := o.host.h.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%w: %s (host) or %s (pod) was created concurrently: %w", ErrInterfaceExists, hostIf, podIf, err)
		}
		return err
	}
	o.created = true
	hl, err := o.host.linkByName(hostIf)
	if err != nil {
		return err
	}
	pl, err := o.pod.linkByName(podIf)
	if err != nil {
		return err
	}
	ok, err := isPeerPair(o.host, hl, o.pod, pl)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("created veth %s/%s but cannot find it as a pair", hostIf, podIf)
	}
	o.hostLink, o.podLink = hl, pl
	return nil
}

// rollback deletes the veth this call created; the kernel removes both ends
// and every address, route and neighbour entry on them.
func (o *op) rollback() error {
	l := o.hostLink
	if l == nil {
		var err error
		if l, err = o.host.linkByName(o.spec.HostIfName); err != nil || l == nil || l.Type() != "veth" {
			return nil
		}
	}
	if err := ignoreNotFound(o.host.h.LinkDel(l)); err != nil {
		return &StepError{Step: stepRollback, Interface: o.spec.HostIfName, Netns: o.host.path, Err: err}
	}
	return nil
}

func (o *op) configureHostLink() error {
	if err := writeSysctls(o.host.fd, hostIfSysctls(o.spec.HostIfName, o.v4, o.v6), true); err != nil {
		return err
	}
	return setMTUUp(o.host.h, o.hostLink, o.spec.MTU)
}

func (o *op) podLoopbackUp() error {
	lo, err := o.pod.linkByName("lo")
	if err != nil {
		return err
	}
	if lo == nil {
		return errors.New("pod netns has no lo")
	}
	return setMTUUp(o.pod.h, lo, 0)
}

func (o *op) configurePodLink() error {
	if err := writeSysctls(o.pod.fd, podIfSysctls(o.spec.PodIfName, o.v6), true); err != nil {
		return err
	}
	return setMTUUp(o.pod.h, o.podLink, o.spec.MTU)
}

func setMTUUp(h *netlink.Handle, l netlink.Link, mtu int) error {
	a := l.Attrs()
	if mtu != 0 && a.MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set mtu %d: %w", mtu, err)
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
	}
	return nil
}

// ensurePodAddrs leaves exactly the spec's addresses on the pod interface
// (besides the kernel's own IPv6 link-local one). IPv6 ones carry nodad:
// nothing else is on a veth, and DAD would hold them tentative (unusable
// as a source) for about a second after every setup.
func (o *op) ensurePodAddrs() error {
	want := map[netip.Prefix]bool{}
	for _, p := range o.spec.prefixes() {
		want[p] = false
	}
	have, err := o.pod.addrs(o.podLink)
	if err != nil {
		return err
	}
	for _, a := range have {
		p := ipNetToPrefix(a.IPNet)
		if p.Addr().IsLinkLocalUnicast() {
			continue
		}
		if _, ok := want[p]; ok && (p.Addr().Is4() || a.Flags&unix.IFA_F_NODAD != 0) {
			want[p] = true
			continue
		}
		if err := o.pod.h.AddrDel(o.podLink, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("delete address %s: %w", p, err)
		}
	}
	for _, p := range o.spec.prefixes() {
		if want[p] {
			continue
		}
		a := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := o.pod.h.AddrAdd(o.podLink, a); err != nil {
			return fmt.Errorf("add address %s: %w", p, err)
		}
	}
	return nil
}

// ensurePodRoutes installs one onlink default route per family and removes
// any other route on the pod interface except the kernel's own.
func (o *op) ensurePodRoutes() error {
	idx := o.podLink.Attrs().Index
	var want []*netlink.Route
	for _, gw := range o.spec.gateways() {
		want = append(want, podDefaultRoute(idx, gw))
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		have, err := o.pod.routes(fam)
		if err != nil {
			return err
		}
		for _, w := range want {
			if w.Family != fam || anyRouteMatches(have, w) {
				continue
			}
			if err := o.pod.h.RouteReplace(w); err != nil {
				return fmt.Errorf("add default route via %s: %w", w.Gw, err)
			}
		}
		if have, err = o.pod.routes(fam); err != nil {
			return err
		}
		for _, r := range have {
			if r.LinkIndex != idx || r.Protocol == unix.RTPROT_KERNEL || matchesAnyWanted(r, want) {
				continue
			}
			if err := o.pod.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("delete route %s: %w", r.Dst, err)
			}
		}
	}
	return nil
}

// ensurePodNeighbours maps each gateway to the host veth's MAC permanently,
// so the pod never has to resolve it: IPv4 proxy_arp only answers when the
// node has a route to 169.254.1.1 out of another interface (see doc.go).
// A gateway entry of a family the spec no longer has is removed.
func (o *op) ensurePodNeighbours() error {
	idx := o.podLink.Attrs().Index
	mac := o.hostLink.Attrs().HardwareAddr
	for _, gw := range []netip.Addr{GatewayV4, GatewayV6} {
		wanted := (gw.Is4() && o.v4) || (gw.Is6() && o.v6)
		have, err := o.pod.neighs(idx, family(gw))
		if err != nil {
			return err
		}
		var cur *netlink.Neigh
		for i := range have {
			if ipToAddr(have[i].IP) == gw {
				cur = &have[i]
			}
		}
		switch {
		case wanted && (cur == nil || cur.State&netlink.NUD_PERMANENT == 0 || !bytes.Equal(cur.HardwareAddr, mac)):
			n := &netlink.Neigh{LinkIndex: idx, Family: family(gw), State: netlink.NUD_PERMANENT,
				IP: gw.AsSlice(), HardwareAddr: mac}
			if err := o.pod.h.NeighSet(n); err != nil {
				return fmt.Errorf("set neighbour %s lladdr %s: %w", gw, mac, err)
			}
		case !wanted && cur != nil && cur.State&netlink.NUD_PERMANENT != 0:
			if err := o.pod.h.NeighDel(cur); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("delete neighbour %s: %w", gw, err)
			}
		}
	}
	return nil
}

// ensureHostRoutes routes each pod IP to the host veth and removes this
// package's routes on the veth for IPs no longer in the spec. A missing
// route is added exclusively (NLM_F_EXCL), so a concurrent setup of another
// pod with the same IP fails here instead of silently taking the route.
func (o *op) ensureHostRoutes() error {
	idx := o.hostLink.Attrs().Index
	if err := o.checkAddrsFree(idx); err != nil {
		return err
	}
	want := map[netip.Prefix]bool{}
	for _, p := range o.spec.prefixes() {
		want[p] = true
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		have, err := o.host.routes(fam)
		if err != nil {
			return err
		}
		for _, p := range o.spec.prefixes() {
			if family(p.Addr()) != fam {
				continue
			}
			w := hostRoute(idx, p)
			exact, ours := false, false
			for _, r := range have {
				if ipNetToPrefix(r.Dst) == p && r.LinkIndex == idx {
					ours = true
					exact = exact || routeMatches(r, w)
				}
			}
			switch {
			case exact:
			case ours:
				err = o.host.h.RouteReplace(w)
			default:
				err = o.host.h.RouteAdd(w)
				if errors.Is(err, unix.EEXIST) {
					err = fmt.Errorf("%w: %s was routed elsewhere concurrently: %w", ErrAddressInUse, p, err)
				}
			}
			if err != nil {
				return fmt.Errorf("route %s dev %s: %w", p, o.spec.HostIfName, err)
			}
		}
		for _, r := range have {
			if r.LinkIndex != idx || r.Protocol != RouteProtocol || want[ipNetToPrefix(r.Dst)] {
				continue
			}
			if err := o.host.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("delete stale route %s: %w", r.Dst, err)
			}
		}
	}
	return nil
}

// ensureHostProxyNeigh adds the proxy NDP entry for fe80::1 on the host veth
// (removing it when the spec has no IPv6).
func (o *op) ensureHostProxyNeigh() error {
	idx := o.hostLink.Attrs().Index
	have, err := o.host.proxyNeighs(idx, netlink.FAMILY_V6)
	if err != nil {
		return err
	}
	found := false
	for _, n := range have {
		found = found || (n.LinkIndex == idx && ipToAddr(n.IP) == GatewayV6)
	}
	n := &netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V6, Flags: netlink.NTF_PROXY, IP: GatewayV6.AsSlice()}
	switch {
	case o.v6 && !found:
		if err := o.host.h.NeighSet(n); err != nil {
			return fmt.Errorf("add proxy neighbour %s: %w", GatewayV6, err)
		}
	case !o.v6 && found:
		if err := o.host.h.NeighDel(n); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete proxy neighbour %s: %w", GatewayV6, err)
		}
	}
	return nil
}

// waitHostLinkLocal: see waitLinkLocal.
func (o *op) waitHostLinkLocal(ctx context.Context) error {
	if !o.v6 {
		return nil
	}
	return waitLinkLocal(ctx, o.host.h, o.hostLink)
}

// result reads both ends back for the caller (fresh flags, MACs, MTU).
func (o *op) result() (*PodInterface, error) {
	hl, err := o.host.h.LinkByIndex(o.hostLink.Attrs().Index)
	if err != nil {
		return nil, &StepError{Step: "read back", Interface: o.spec.HostIfName, Netns: o.host.path, Err: err}
	}
	pl, err := o.pod.h.LinkByIndex(o.podLink.Attrs().Index)
	if err != nil {
		return nil, &StepError{Step: "read back", Interface: o.spec.PodIfName, Netns: o.pod.path, Err: err}
	}
	return &PodInterface{
		HostIfName:  hl.Attrs().Name,
		HostIfIndex: hl.Attrs().Index,
		HostMAC:     hl.Attrs().HardwareAddr,
		PodIfName:   pl.Attrs().Name,
		PodIfIndex:  pl.Attrs().Index,
		PodMAC:      pl.Attrs().HardwareAddr,
		Addrs:       o.spec.prefixes(),
		Gateways:    o.spec.gateways(),
		MTU:         pl.Attrs().MTU,
	}, nil
}
