package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RouteFinder is the netlink InterfaceFinder: the interface a pod's address
// is routed to in the node's network namespace. Routes through a gateway,
// local addresses and loopback are not pods. A route to a Linux bridge (bridge
// CNI) is followed to the bridge port through the neighbour entry of the
// address and the bridge's forwarding database; until both exist the pod
// counts as not found (traffic creates them).
type RouteFinder struct {
	h  *netlink.Handle
	ns netns.NsHandle // -1: the agent's own namespace
}

// NewRouteFinder opens a netlink handle on the network namespace at nsPath
// (for example /var/run/netns/NAME); "" is the agent's own namespace.
func NewRouteFinder(nsPath string) (*RouteFinder, error) {
	f := &RouteFinder{ns: netns.None()}
	var err error
	if nsPath == "" {
		f.h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		if f.ns, err = netns.GetFromPath(nsPath); err != nil {
			return nil, fmt.Errorf("agent: network namespace %s: %w", nsPath, err)
		}
		f.h, err = netlink.NewHandleAt(f.ns, unix.NETLINK_ROUTE)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("agent: netlink: %w", err)
	}
	return f, nil
}

// Close releases the netlink handle.
func (f *RouteFinder) Close() {
	if f.h != nil {
		f.h.Close()
	}
	if f.ns.IsOpen() {
		_ = f.ns.Close()
	}
}

// InterfaceFor implements InterfaceFinder.
func (f *RouteFinder) InterfaceFor(addr netip.Addr) (string, error) {
	routes, err := f.h.RouteGet(net.IP(addr.AsSlice()))
	if err != nil {
		return "", fmt.Errorf("%w: route to %s: %w", ErrNoInterface, addr, err)
	}
	if len(routes) == 0 {
		return "", fmt.Errorf("%w: no route to %s", ErrNoInterface, addr)
	}
	r := routes[0]
	switch {
	case r.Type == unix.RTN_LOCAL:
		return "", fmt.Errorf("%w: %s is an address of this node", ErrNoInterface, addr)
	case r.Gw != nil || len(r.MultiPath) > 0 || r.Via != nil:
		return "", fmt.Errorf("%w: %s is routed through a gateway", ErrNoInterface, addr)
	}
	link, err := f.h.LinkByIndex(r.LinkIndex)
	if err != nil {
		return "", fmt.Errorf("%w: interface %d routing %s: %w", ErrNoInterface, r.LinkIndex, addr, err)
	}
	attrs := link.Attrs()
	if attrs.Flags&net.FlagLoopback != 0 {
		return "", fmt.Errorf("%w: %s is routed to loopback", ErrNoInterface, addr)
	}
	if link.Type() == "bridge" {
		return f.bridgePort(attrs, addr)
	}
	return attrs.Name, nil
}

// bridgePort finds the bridge port behind which addr lives: its MAC from the
// bridge's neighbour table, then the port from the forwarding database.
func (f *RouteFinder) bridgePort(br *netlink.LinkAttrs, addr netip.Addr) (string, error) {
	family := unix.AF_INET
	if addr.Is6() {
		family = unix.AF_INET6
	}
	neighs, err := f.h.NeighList(br.Index, family)
	if err != nil {
		return "", fmt.Errorf("%w: neighbours of bridge %s: %w", ErrNoInterface, br.Name, err)
	}
	var mac net.HardwareAddr
	for _, n := range neighs {
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr && len(n.HardwareAddr) > 0 {
			mac = n.HardwareAddr
			break
		}
	}
	if mac == nil {
		return "", fmt.Errorf("%w: %s is behind bridge %s and has no neighbour entry yet", ErrNoInterface, addr, br.Name)
	}
	fdb, err := f.h.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return "", fmt.Errorf("%w: forwarding database: %w", ErrNoInterface, err)
	}
	for _, n := range fdb {
		if n.MasterIndex != br.Index || n.LinkIndex == br.Index || !bytes.Equal(n.HardwareAddr, mac) {
			continue
		}
		port, err := f.h.LinkByIndex(n.LinkIndex)
		if err != nil {
			return "", fmt.Errorf("%w: bridge port %d: %w", ErrNoInterface, n.LinkIndex, err)
		}
		return port.Attrs().Name, nil
	}
	return "", fmt.Errorf("%w: %s (%s) is behind bridge %s and not in its forwarding database yet",
		ErrNoInterface, addr, mac, br.Name)
}

// WatchInterfaces implements InterfaceWatcher with netlink route and link
// subscriptions in the finder's namespace.
func (f *RouteFinder) WatchInterfaces(ctx context.Context, changed func()) error {
	done := make(chan struct{})
	defer close(done)
	errc := make(chan error, 2)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	routes := make(chan netlink.RouteUpdate, 64)
	links := make(chan netlink.LinkUpdate, 64)
	var nsOpt *netns.NsHandle
	if f.ns.IsOpen() {
		nsOpt = &f.ns
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done,
		netlink.RouteSubscribeOptions{Namespace: nsOpt, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("agent: route subscription: %w", err)
	}
	if err := netlink.LinkSubscribeWithOptions(links, done,
		netlink.LinkSubscribeOptions{Namespace: nsOpt, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("agent: link subscription: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("agent: netlink subscription: %w", err)
		case _, ok := <-routes:
			if !ok {
				return errors.New("agent: route subscription closed")
			}
			changed()
		case _, ok := <-links:
			if !ok {
				return errors.New("agent: link subscription closed")
			}
			changed()
		}
	}
}
