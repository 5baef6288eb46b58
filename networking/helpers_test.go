//go:build linux

package networking

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/compiler"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Every kernel test works in namespaces it creates and always deletes; the
// root namespace's links, routes, rules and sysctls are never touched.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
}

// newNS creates a throwaway namespace deleted when the test ends.
func newNS(t *testing.T) *Netns {
	t.Helper()
	requireRoot(t)
	ns, err := NewNetns("")
	if err != nil {
		t.Fatalf("NewNetns: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Errorf("delete %s: %v", ns.Name(), err)
		}
	})
	return ns
}

// newNSUp is newNS with lo up, as every real node and pod namespace has it;
// tests that compare snapshots before and after use it, because SetupPod
// brings lo up on both sides and does not undo that.
func newNSUp(t *testing.T) *Netns {
	t.Helper()
	ns := newNS(t)
	h := shortHandle(t, ns)
	defer h.Close()
	if err := h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo"}}); err != nil {
		t.Fatalf("lo up in %s: %v", ns.Name(), err)
	}
	return ns
}

// shortHandle opens a netlink handle the caller closes at once: an open
// netlink socket holds its namespace alive, which would keep a deleted
// namespace's veths around.
func shortHandle(t *testing.T, ns *Netns) *netlink.Handle {
	t.Helper()
	h, err := ns.Handle()
	if err != nil {
		t.Fatalf("handle in %s: %v", ns.Name(), err)
	}
	return h
}

// handle opens a netlink handle in ns, closed when the test ends.
func handle(t *testing.T, ns *Netns) *netlink.Handle {
	t.Helper()
	h, err := ns.Handle()
	if err != nil {
		t.Fatalf("handle in %s: %v", ns.Name(), err)
	}
	t.Cleanup(h.Close)
	return h
}

// spec builds a PodSpec for pod "test/<name>" on node with the interface
// name the enforcer dispatches on.
func spec(node, pod *Netns, name string, ips ...string) PodSpec {
	return PodSpec{
		HostNetns:  node.Path(),
		PodNetns:   pod.Path(),
		HostIfName: compiler.InterfaceName("test", name),
		IPs:        parseAddrs(ips...),
	}
}

func parseAddrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// snapshot renders what this package could have changed in a namespace:
// links, addresses, main-table routes, permanent and proxy neighbours. Sorted
// lines, so two snapshots compare with ==.
func snapshot(t *testing.T, ns *Netns) string {
	t.Helper()
	h := shortHandle(t, ns)
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatalf("links: %v", err)
	}
	names := map[int]string{}
	var lines []string
	for _, l := range links {
		a := l.Attrs()
		names[a.Index] = a.Name
		lines = append(lines, fmt.Sprintf("link %s %s idx=%d mac=%s mtu=%d up=%v",
			a.Name, l.Type(), a.Index, a.HardwareAddr, a.MTU, a.Flags&net.FlagUp != 0))
		as, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatalf("addrs: %v", err)
		}
		for _, ad := range as {
			// DAD of the kernel's link-local addresses finishes at its own pace.
			flags := ad.Flags &^ (unix.IFA_F_TENTATIVE | unix.IFA_F_OPTIMISTIC)
			lines = append(lines, fmt.Sprintf("addr %s %s flags=%#x", a.Name, ad.IPNet, flags))
		}
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			nbs, err := h.NeighList(a.Index, fam)
			if err != nil {
				t.Fatalf("neigh: %v", err)
			}
			for _, n := range nbs {
				if n.State&netlink.NUD_PERMANENT != 0 {
					lines = append(lines, fmt.Sprintf("neigh %s %s %s", a.Name, n.IP, n.HardwareAddr))
				}
			}
			ps, err := h.NeighProxyList(a.Index, fam)
			if err != nil {
				t.Fatalf("proxy neigh: %v", err)
			}
			for _, n := range ps {
				lines = append(lines, fmt.Sprintf("proxy %s %s", a.Name, n.IP))
			}
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RouteList(nil, fam)
		if err != nil {
			t.Fatalf("routes: %v", err)
		}
		for _, r := range rs {
			lines = append(lines, fmt.Sprintf("route %s gw=%s dev=%s scope=%d proto=%d flags=%d metric=%d",
				r.Dst, r.Gw, names[r.LinkIndex], r.Scope, r.Protocol, r.Flags, r.Priority))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// linkRoutes returns the non-kernel main-table routes of one link.
func linkRoutes(t *testing.T, h *netlink.Handle, idx int) []netlink.Route {
	t.Helper()
	var out []netlink.Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RouteList(nil, fam)
		if err != nil {
			t.Fatalf("routes: %v", err)
		}
		for _, r := range rs {
			if r.LinkIndex == idx && r.Protocol != unix.RTPROT_KERNEL {
				out = append(out, r)
			}
		}
	}
	return out
}

// echoServer answers TCP and UDP on one IP inside a pod: it replies with
// "<source IP the server saw>|<payload>", which proves the path and the
// absence of NAT in one exchange.
type echoServer struct {
	tcp netip.AddrPort
	udp netip.AddrPort
}

func startEcho(t *testing.T, ns *Netns, ip netip.Addr) echoServer {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp", netip.AddrPortFrom(ip, 0).String()); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(ip, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", ip, ns.Name(), err)
	}
	t.Cleanup(func() { _ = ln.Close(); _ = pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
				fmt.Fprintf(c, "%s|%s", src, line)
			}()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			src := from.(*net.UDPAddr).AddrPort().Addr().Unmap()
			_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s|%s", src, buf[:n])), from)
		}
	}()
	return echoServer{
		tcp: ln.Addr().(*net.TCPAddr).AddrPort(),
		udp: pc.LocalAddr().(*net.UDPAddr).AddrPort(),
	}
}

// exchange sends one message from inside ns over proto ("tcp" or "udp") and
// returns the source IP the server saw.
func exchange(ns *Netns, proto string, to netip.AddrPort) (netip.Addr, error) {
	attempts := 1
	if proto == "udp" {
		attempts = 3 // datagrams have no retransmission of their own
	}
	return exchangeWith(ns, proto, to, attempts, 2*time.Second)
}

// exchangeWith is exchange with explicit UDP attempts and timeout per attempt.
func exchangeWith(ns *Netns, proto string, to netip.AddrPort, attempts int, timeout time.Duration) (netip.Addr, error) {
	var seen netip.Addr
	err := ns.Do(func() error {
		msg := fmt.Sprintf("hello-%d\n", time.Now().UnixNano())
		var last error
		for range attempts {
			c, err := net.DialTimeout(proto, to.String(), timeout)
			if err != nil {
				return err
			}
			_ = c.SetDeadline(time.Now().Add(timeout))
			if _, err := c.Write([]byte(msg)); err != nil {
				c.Close()
				return err
			}
			buf := make([]byte, 256)
			n, err := c.Read(buf)
			c.Close()
			if err != nil {
				last = err
				continue
			}
			src, payload, ok := strings.Cut(string(buf[:n]), "|")
			if !ok || payload != msg {
				return fmt.Errorf("bad echo %q for %q", buf[:n], msg)
			}
			seen, err = netip.ParseAddr(src)
			return err
		}
		return last
	})
	return seen, err
}

// firstExchangeBudget bounds the first TCP exchange to a fresh pod: below
// the 1 s initial SYN retransmission timeout, so a first SYN lost to a
// neighbour resolution that cannot start (see accept_dad in kernel.go)
// fails the test instead of hiding in a retry.
const firstExchangeBudget = 900 * time.Millisecond

// assertReach checks TCP and UDP from a pod to a server, and that the
// server saw the client's pod IP as the source.
func assertReach(t *testing.T, from *Netns, fromIP netip.Addr, to echoServer) {
	t.Helper()
	for _, c := range []struct {
		proto string
		dst   netip.AddrPort
	}{{"tcp", to.tcp}, {"udp", to.udp}} {
		start := time.Now()
		seen, err := exchange(from, c.proto, c.dst)
		if d := time.Since(start); err == nil && c.proto == "tcp" && d > firstExchangeBudget {
			t.Errorf("tcp %s -> %s took %v: the first SYN was lost", fromIP, c.dst, d)
		}
		if err != nil {
			t.Errorf("%s %s -> %s: %v", c.proto, fromIP, c.dst, err)
			continue
		}
		if seen != fromIP {
			t.Errorf("%s %s -> %s: server saw source %s", c.proto, fromIP, c.dst, seen)
		}
	}
}

// waitGone polls until the link is absent from ns (namespace destruction
// removes veths asynchronously).
func waitGone(t *testing.T, ns *Netns, name string) {
	t.Helper()
	h := shortHandle(t, ns)
	defer h.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h.LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("link %s still in %s (err %v)", name, ns.Name(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
