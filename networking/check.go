//go:build linux

package networking

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// CheckPod compares the kernel state with spec (CNI CHECK) without changing
// anything. It returns the interface it found; when anything differs the
// error is a *CheckError (errors.Is ErrCheckFailed) listing every
// difference. Errors reading the state are *StepError as elsewhere.
func CheckPod(ctx context.Context, spec PodSpec) (*PodInterface, error) {
	s, err := spec.normalize()
	if err != nil {
		return nil, err
	}
	o, err := openOp(s)
	if err != nil {
		return nil, err
	}
	defer o.close()
	c := &checker{op: o}
	if err := o.do(ctx, "check", s.HostIfName, o.host.path, c.run); err != nil {
		return nil, err
	}
	if c.hostLink == nil {
		return nil, &CheckError{Interface: s.HostIfName, Problems: c.problems}
	}
	o.hostLink, o.podLink = c.hostLink, c.podLink
	res, err := o.result()
	if err != nil {
		return nil, err
	}
	if len(c.problems) > 0 {
		return res, &CheckError{Interface: s.HostIfName, Problems: c.problems}
	}
	return res, nil
}

type checker struct {
	*op
	problems []string
}

func (c *checker) addf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// run collects problems; it returns an error only when the state cannot be
// read. It stops early only when the veth pair itself is missing.
func (c *checker) run() error {
	hostIf, podIf := c.spec.HostIfName, c.spec.PodIfName
	hl, err := c.host.linkByName(hostIf)
	if err != nil {
		return err
	}
	pl, err := c.pod.linkByName(podIf)
	if err != nil {
		return err
	}
	ok, err := isPeerPair(c.host, hl, c.pod, pl)
	if err != nil {
		return err
	}
	if !ok {
		switch {
		case hl == nil:
			c.addf("host interface %s is missing", hostIf)
		case pl == nil:
			c.addf("pod interface %s is missing", podIf)
		default:
			c.addf("host interface %s (%s) is not the veth peer of pod interface %s (%s)", hostIf, hl.Type(), podIf, pl.Type())
		}
		return nil
	}
	c.hostLink, c.podLink = hl, pl
	c.checkLink("host interface "+hostIf, hl)
	c.checkLink("pod interface "+podIf, pl)
	for _, side := range []*nsRef{c.host, c.pod} {
		if lo, err := side.linkByName("lo"); err != nil {
			return err
		} else if lo == nil || lo.Attrs().Flags&net.FlagUp == 0 {
			c.addf("%s loopback is not up", side.role)
		}
	}
	for _, step := range []func() error{c.checkPodAddrs, c.checkPodRoutes, c.checkPodNeighbours,
		c.checkHostRoutes, c.checkHostProxy, c.checkSysctls} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) checkLink(what string, l netlink.Link) {
	a := l.Attrs()
	if a.Flags&net.FlagUp == 0 {
		c.addf("%s is down", what)
	}
	if c.spec.MTU != 0 && a.MTU != c.spec.MTU {
		c.addf("%s has MTU %d, want %d", what, a.MTU, c.spec.MTU)
	}
}

func (c *checker) checkPodAddrs() error {
	have, err := c.pod.addrs(c.podLink)
	if err != nil {
		return err
	}
	var got []netip.Prefix
	for _, a := range have {
		if p := ipNetToPrefix(a.IPNet); !p.Addr().IsLinkLocalUnicast() {
			got = append(got, p)
		}
	}
	slices.SortFunc(got, comparePrefix)
	if want := c.spec.prefixes(); !slices.Equal(got, want) {
		c.addf("pod interface %s has addresses %v, want %v", c.spec.PodIfName, got, want)
	}
	return nil
}

func (c *checker) checkPodRoutes() error {
	idx := c.podLink.Attrs().Index
	var want []*netlink.Route
	for _, gw := range c.spec.gateways() {
		want = append(want, podDefaultRoute(idx, gw))
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		have, err := c.pod.routes(fam)
		if err != nil {
			return err
		}
		for _, w := range want {
			if w.Family == fam && !anyRouteMatches(have, w) {
				c.addf("pod route default via %s dev %s onlink is missing", ipToAddr(w.Gw), c.spec.PodIfName)
			}
		}
		for _, r := range have {
			if r.LinkIndex == idx && r.Protocol != unix.RTPROT_KERNEL && !matchesAnyWanted(r, want) {
				c.addf("unexpected pod route %s", r)
			}
		}
	}
	return nil
}

func (c *checker) checkPodNeighbours() error {
	idx := c.podLink.Attrs().Index
	mac := c.hostLink.Attrs().HardwareAddr
	for _, gw := range c.spec.gateways() {
		have, err := c.pod.neighs(idx, family(gw))
		if err != nil {
			return err
		}
		ok := false
		for _, n := range have {
			ok = ok || (ipToAddr(n.IP) == gw && n.State&netlink.NUD_PERMANENT != 0 && bytes.Equal(n.HardwareAddr, mac))
		}
		if !ok {
			c.addf("pod neighbour %s lladdr %s permanent is missing", gw, mac)
		}
	}
	return nil
}

func (c *checker) checkHostRoutes() error {
	idx := c.hostLink.Attrs().Index
	for _, p := range c.spec.prefixes() {
		have, err := c.host.routes(family(p.Addr()))
		if err != nil {
			return err
		}
		w := hostRoute(idx, p)
		found := false
		for _, r := range have {
			if ipNetToPrefix(r.Dst) != p {
				continue
			}
			if routeMatches(r, w) {
				found = true
			} else {
				c.addf("host route %s goes to %s, not only %s", p, c.host.linkName(r.LinkIndex), c.spec.HostIfName)
			}
		}
		if !found {
			c.addf("host route %s dev %s is missing", p, c.spec.HostIfName)
		}
	}
	return nil
}

func (c *checker) checkHostProxy() error {
	if !c.v6 {
		return nil
	}
	idx := c.hostLink.Attrs().Index
	have, err := c.host.proxyNeighs(idx, netlink.FAMILY_V6)
	if err != nil {
		return err
	}
	for _, n := range have {
		if n.LinkIndex == idx && ipToAddr(n.IP) == GatewayV6 {
			return nil
		}
	}
	c.addf("host proxy neighbour %s dev %s is missing", GatewayV6, c.spec.HostIfName)
	return nil
}

func (c *checker) checkSysctls() error {
	hostWant := append(globalSysctls(c.v4, c.v6), hostIfSysctls(c.spec.HostIfName, c.v4, c.v6)...)
	for _, side := range []struct {
		where string
		fd    int
		want  []sysctl
	}{
		{"host", c.host.fd, hostWant},
		{"pod", c.pod.fd, podIfSysctls(c.spec.PodIfName, c.v6)},
	} {
		paths := make([]string, len(side.want))
		for i, s := range side.want {
			paths[i] = s.path
		}
		got, err := readSysctls(side.fd, paths)
		if err != nil {
			return err
		}
		for _, s := range side.want {
			if got[s.path] != s.value {
				c.addf("%s sysctl %s is %s, want %s", side.where, s.path, got[s.path], s.value)
			}
		}
	}
	return nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
