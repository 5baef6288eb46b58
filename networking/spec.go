package networking

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
)

// The pod's gateways. Neither address exists on any interface: the pod holds
// a permanent neighbour entry mapping each to the host-side veth's MAC, and
// the host side also answers for them (proxy_arp; proxy NDP with a proxy
// entry for fe80::1), so every pod uses the same gateway no matter which node
// or pod CIDR it is on.
var (
	GatewayV4 = netip.MustParseAddr("169.254.1.1")
	GatewayV6 = netip.MustParseAddr("fe80::1")
)

// DefaultPodIfName is the pod-side interface name when the spec leaves it empty.
const DefaultPodIfName = "eth0"

// RouteProtocol marks the routes this package installs (rtm_protocol), so
// they can be told apart from routes of the node or a routing daemon. The
// value is unassigned in iproute2's rt_protos; ip shows it as "proto 84".
const RouteProtocol = 84

// maxIfNameLen is IFNAMSIZ-1: the kernel rejects longer names.
const maxIfNameLen = 15

// Validation bounds of the MTU: IPv4's minimum, IPv6's minimum, and the
// largest value an IFLA_MTU of a veth accepts on every kernel.
const (
	minMTUv4 = 68
	minMTUv6 = 1280
	maxMTU   = 65535
)

// PodSpec says how one pod's interface must look. SetupPod makes the kernel
// state equal to it, TeardownPod removes it, CheckPod compares against it.
type PodSpec struct {
	// HostNetns is the path of the node's network namespace; "" means the
	// namespace of this process (/proc/self/ns/net), as for a CNI plugin.
	HostNetns string
	// PodNetns is the path of the pod's network namespace (required), e.g.
	// the CNI_NETNS of the runtime or /run/netns/<name>.
	PodNetns string
	// HostIfName is the host-side veth: compiler.InterfaceName(ns, pod),
	// because the enforcer's verdict maps dispatch on this name.
	HostIfName string
	// PodIfName is the pod-side name; "" means DefaultPodIfName.
	PodIfName string
	// IPs are the pod's addresses (IPv4 and/or IPv6, any number per
	// family); each is configured as a /32 or /128 on the pod side.
	IPs []netip.Addr
	// MTU of both ends; 0 leaves the kernel's default (1500).
	MTU int
}

// PodInterface is what SetupPod built (and CheckPod found): what a CNI
// result reports.
type PodInterface struct {
	HostIfName  string
	HostIfIndex int
	HostMAC     net.HardwareAddr
	PodIfName   string
	PodIfIndex  int
	PodMAC      net.HardwareAddr
	// Addrs are the pod's addresses as configured (/32, /128), IPv4 first.
	Addrs []netip.Prefix
	// Gateways are the default-route gateways, one per family in use.
	Gateways []netip.Addr
	MTU      int
}

// hasFamilies reports which families the (normalised) spec uses.
func (s PodSpec) hasFamilies() (v4, v6 bool) {
	for _, ip := range s.IPs {
		if ip.Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4, v6
}

// prefixes returns each IP as a host prefix, in the spec's (sorted) order.
func (s PodSpec) prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.IPs))
	for _, ip := range s.IPs {
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out
}

func (s PodSpec) gateways() []netip.Addr {
	v4, v6 := s.hasFamilies()
	var out []netip.Addr
	if v4 {
		out = append(out, GatewayV4)
	}
	if v6 {
		out = append(out, GatewayV6)
	}
	return out
}

func (s PodSpec) hostNetnsPath() string {
	if s.HostNetns == "" {
		return "/proc/self/ns/net"
	}
	return s.HostNetns
}

// normalize validates the spec and returns a copy with defaults filled in
// and IPs sorted (IPv4 first), so every later step and every error is
// deterministic.
func (s PodSpec) normalize() (PodSpec, error) {
	fail := func(format string, args ...any) error {
		return &StepError{Step: "validate spec", Interface: s.HostIfName,
			Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, args...)...)}
	}
	if err := checkNetnsPath("pod netns", s.PodNetns, true); err != nil {
		return s, fail("%v", err)
	}
	if err := checkNetnsPath("host netns", s.HostNetns, false); err != nil {
		return s, fail("%v", err)
	}
	if err := checkIfName(s.HostIfName); err != nil {
		return s, fail("host interface: %v", err)
	}
	if s.PodIfName == "" {
		s.PodIfName = DefaultPodIfName
	}
	if err := checkIfName(s.PodIfName); err != nil {
		return s, fail("pod interface: %v", err)
	}
	if s.PodIfName == "lo" {
		return s, fail("pod interface cannot be named lo")
	}
	if len(s.IPs) == 0 {
		return s, fail("no IPs")
	}
	ips := slices.Clone(s.IPs)
	slices.SortFunc(ips, netip.Addr.Compare)
	for i, ip := range ips {
		if err := checkPodIP(ip); err != nil {
			return s, fail("%v", err)
		}
		if i > 0 && ips[i-1] == ip {
			return s, fail("duplicate IP %s", ip)
		}
	}
	s.IPs = ips
	_, v6 := s.hasFamilies()
	if s.MTU != 0 {
		lo := minMTUv4
		if v6 {
			lo = minMTUv6
		}
		if s.MTU < lo || s.MTU > maxMTU {
			return s, fail("MTU %d outside [%d, %d]", s.MTU, lo, maxMTU)
		}
	}
	return s, nil
}

func checkNetnsPath(what, p string, required bool) error {
	if p == "" {
		if required {
			return fmt.Errorf("%s path is empty", what)
		}
		return nil
	}
	// A relative path would depend on the working directory of whoever
	// runs the plugin.
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s path %q is not absolute", what, p)
	}
	return nil
}

// checkIfName applies the kernel's dev_valid_name rules.
func checkIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("name is empty")
	case len(name) > maxIfNameLen:
		return fmt.Errorf("name %q is %d bytes, longer than %d", name, len(name), maxIfNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("name %q is reserved", name)
	case strings.ContainsAny(name, "/:\x00") || strings.IndexFunc(name, isSpace) >= 0:
		return fmt.Errorf("name %q contains '/', ':', NUL or white space", name)
	}
	return nil
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

// checkPodIP rejects addresses a pod cannot own: unspecified, loopback,
// multicast, link-local (the gateways live there) and IPv4-mapped IPv6,
// which would be configured as IPv6 while callers meant IPv4.
func checkPodIP(ip netip.Addr) error {
	switch {
	case !ip.IsValid():
		return fmt.Errorf("invalid IP (zero value)")
	case ip.Zone() != "":
		return fmt.Errorf("IP %s has a zone", ip)
	case ip.Is4In6():
		return fmt.Errorf("IP %s is IPv4-mapped; give it as %s", ip, ip.Unmap())
	case ip.IsUnspecified(), ip.IsLoopback(), ip.IsMulticast(), ip.IsLinkLocalUnicast(),
		ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return fmt.Errorf("IP %s cannot be a pod address (unspecified, loopback, multicast or link-local)", ip)
	case ip.Is4() && ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("IP %s is the broadcast address", ip)
	}
	return nil
}
