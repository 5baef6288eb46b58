package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// These tests build two throwaway namespaces, "client" and "server", joined
// by a veth pair, and never create anything in the root namespace: the veth
// is created inside the client namespace with its peer placed directly in
// the server namespace. Deleting the namespaces (always, in t.Cleanup)
// deletes the veth with them.

var nsSeq atomic.Uint64

type lab struct {
	client, server         string // namespace paths
	clientName, serverName string
	clientV4, serverV4     netip.Addr
	clientV6, serverV6     netip.Addr
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and raw sockets")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
}

func run(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a namespace that is deleted when the test ends.
func newNetns(t *testing.T, role string) (name, path string) {
	t.Helper()
	name = fmt.Sprintf("tprobe-%d-%d-%s", os.Getpid(), nsSeq.Add(1), role)
	run(t, "", "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	run(t, "", "ip", "-n", name, "link", "set", "lo", "up")
	return name, "/run/netns/" + name
}

func newLab(t *testing.T) *lab {
	t.Helper()
	requireRoot(t)
	l := &lab{
		clientV4: netip.MustParseAddr("10.77.0.1"),
		serverV4: netip.MustParseAddr("10.77.0.2"),
		clientV6: netip.MustParseAddr("fd77::1"),
		serverV6: netip.MustParseAddr("fd77::2"),
	}
	l.clientName, l.client = newNetns(t, "c")
	l.serverName, l.server = newNetns(t, "s")
	run(t, "", "ip", "-n", l.clientName, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", l.serverName)
	for _, side := range []struct {
		ns     string
		v4, v6 netip.Addr
	}{{l.clientName, l.clientV4, l.clientV6}, {l.serverName, l.serverV4, l.serverV6}} {
		// Link up first: a nodad address added while the link is down
		// stays unusable for up to a second after it comes up (measured:
		// the first IPv6 packets are lost), an address added afterwards
		// is usable at once.
		run(t, "", "ip", "-n", side.ns, "link", "set", "eth0", "up")
		run(t, "", "ip", "-n", side.ns, "addr", "add", side.v4.String()+"/24", "dev", "eth0")
		run(t, "", "ip", "-n", side.ns, "addr", "add", side.v6.String()+"/64", "dev", "eth0", "nodad")
	}
	return l
}

// nft applies a ruleset in a namespace; the test skips without nft.
func nft(t *testing.T, ns, ruleset string) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs the nft command")
	}
	run(t, ruleset, "ip", "netns", "exec", ns, "nft", "-f", "-")
}

var (
	tcpPort  = Port{8080, TCP}
	udpPort  = Port{5353, UDP}
	sctpPort = Port{9999, SCTP}
	allPorts = []Port{tcpPort, udpPort, sctpPort}
)

func serve(t *testing.T, ns, banner string, ports []Port) *Server {
	t.Helper()
	s, err := ServeIn(t.Context(), ns, ports, WithBanner(banner))
	if err != nil {
		t.Fatalf("ServeIn: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestInNetns(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t, "x")
	var want, inside, outside unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		t.Fatal(err)
	}
	err := InNetns(path, func() error { return unix.Stat("/proc/thread-self/ns/net", &inside) })
	if err != nil {
		t.Fatal(err)
	}
	if inside.Ino != want.Ino {
		t.Errorf("f ran in netns inode %d, want %d", inside.Ino, want.Ino)
	}
	// A listener created inside keeps the namespace: the same port binds
	// again outside, which it could not if both were in one namespace.
	var l net.Listener
	if err := InNetns(path, func() (err error) { l, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l2, err := net.Listen("tcp4", l.Addr().String())
	if err != nil {
		t.Fatalf("port of the namespaced listener is taken in the root namespace: %v", err)
	}
	l2.Close()
	if err := unix.Stat("/proc/thread-self/ns/net", &outside); err != nil {
		t.Fatal(err)
	}
	if outside.Ino == want.Ino {
		t.Error("caller thread left in the test namespace")
	}

	var nerr *NetnsError
	if err := InNetns("/nonexistent/netns", func() error { return nil }); !errors.As(err, &nerr) || nerr.Op != "open" {
		t.Errorf("missing path: error %v, want *NetnsError open", err)
	}
	sentinel := errors.New("from f")
	if err := InNetns(path, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("error of f not passed through: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the panic of f", r)
			}
		}()
		InNetns(path, func() error { panic("boom") })
	}()
}

type probeCase struct {
	dst  netip.Addr
	port Port
}

// probeAll runs the cases in parallel and returns results in case order.
func probeAll(t *testing.T, src string, cases []probeCase, timeout time.Duration) []Result {
	t.Helper()
	res := make([]Result, len(cases))
	errs := make([]error, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Go(func() {
			res[i], errs[i] = Probe(t.Context(), src, c.dst, c.port.Number, c.port.Protocol, timeout)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("probe %s %s: %v", cases[i].dst, cases[i].port, err)
		}
	}
	return res
}

func TestReachability(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.server, "srv/b", allPorts)
	for _, dst := range []netip.Addr{l.serverV4, l.serverV6} {
		for _, p := range allPorts {
			before := srv.Hits(p)
			r, err := Probe(t.Context(), l.client, dst, p.Number, p.Protocol, 2*time.Second)
			if err != nil {
				t.Fatalf("%s %s: %v", dst, p, err)
			}
			if !r.Reached || r.Banner != "srv/b" || r.Failure != FailureNone || r.RTT <= 0 {
				t.Errorf("%s %s: %+v, want reached with banner srv/b", dst, p, r)
			}
			if srv.Hits(p) <= before {
				t.Errorf("%s %s: server hits did not grow", dst, p)
			}
		}
	}
	// Ports nobody serves: TCP and UDP are refused by the kernel, SCTP has no
	// kernel stack to refuse and times out (see the package documentation).
	const timeout = 700 * time.Millisecond
	for _, dst := range []netip.Addr{l.serverV4, l.serverV6} {
		for _, tc := range []struct {
			port Port
			want Failure
		}{{Port{8081, TCP}, FailureRefused}, {Port{5354, UDP}, FailureRefused}, {Port{9998, SCTP}, FailureTimeout}} {
			start := time.Now()
			r, err := Probe(t.Context(), l.client, dst, tc.port.Number, tc.port.Protocol, timeout)
			if err != nil {
				t.Fatalf("%s %s: %v", dst, tc.port, err)
			}
			if r.Reached || r.Failure != tc.want {
				t.Errorf("unserved %s %s: %+v, want failure %q", dst, tc.port, r, tc.want)
			}
			if el := time.Since(start); el > timeout+500*time.Millisecond {
				t.Errorf("unserved %s %s took %v with timeout %v", dst, tc.port, el, timeout)
			}
		}
	}
}

func TestSecondaryAddresses(t *testing.T) {
	l := newLab(t)
	// Replies must leave from the address the probe was sent to: a connected
	// UDP socket and a connected raw socket discard anything else, so these
	// probes fail if the server answered from its primary address.
	second := []netip.Addr{netip.MustParseAddr("10.77.0.3"), netip.MustParseAddr("fd77::3")}
	run(t, "", "ip", "-n", l.serverName, "addr", "add", "10.77.0.3/24", "dev", "eth0")
	run(t, "", "ip", "-n", l.serverName, "addr", "add", "fd77::3/64", "dev", "eth0", "nodad")
	serve(t, l.server, "srv/b", allPorts)
	var cases []probeCase
	for _, dst := range second {
		for _, p := range allPorts {
			cases = append(cases, probeCase{dst, p})
		}
	}
	for i, r := range probeAll(t, l.client, cases, 2*time.Second) {
		if !r.Reached || r.Banner != "srv/b" {
			t.Errorf("%s %s: %+v", cases[i].dst, cases[i].port, r)
		}
	}
}

func TestServerStopsWithContext(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(t.Context())
	s, err := ServeIn(ctx, l.server, allPorts)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Ports(); len(got) != 3 || got[0] != udpPort || got[1] != tcpPort || got[2] != sctpPort {
		t.Errorf("Ports() = %v, want sorted by number", got)
	}
	cancel()
	// Close after the context stopped the server: idempotent, no error.
	if err := s.Close(); err != nil {
		t.Errorf("Close after cancel: %v", err)
	}
	for _, p := range allPorts {
		r, err := Probe(t.Context(), l.client, l.serverV4, p.Number, p.Protocol, 300*time.Millisecond)
		if err != nil || r.Reached {
			t.Errorf("%s after stop: %+v, %v; want not reached", p, r, err)
		}
	}
	// An already-cancelled context: Serve succeeds, then stops at once.
	s2, err := ServeIn(ctx, l.server, allPorts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestSCTPWithoutResponder(t *testing.T) {
	l := newLab(t)
	// No server: the kernel answers ICMP protocol unreachable, which an SCTP
	// probe must not take for another probe's verdict, nor for an error.
	for _, dst := range []netip.Addr{l.serverV4, l.serverV6} {
		r, err := Probe(t.Context(), l.client, dst, 9999, SCTP, 500*time.Millisecond)
		if err != nil || r.Reached || r.Failure != FailureTimeout {
			t.Errorf("%s: %+v, %v; want timeout", dst, r, err)
		}
	}
}

func TestDeniedByNftables(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.server, "srv/b", allPorts)
	nft(t, l.serverName, `table inet probetest {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 8080 drop
		udp dport 5353 drop
		sctp dport 9999 drop
	}
}`)
	var cases []probeCase
	for _, dst := range []netip.Addr{l.serverV4, l.serverV6} {
		for _, p := range allPorts {
			cases = append(cases, probeCase{dst, p})
		}
	}
	const timeout = time.Second
	start := time.Now()
	res := probeAll(t, l.client, cases, timeout)
	if el := time.Since(start); el > timeout+time.Second {
		t.Errorf("denied probes took %v with timeout %v", el, timeout)
	}
	for i, r := range res {
		if r.Reached || r.Failure != FailureTimeout {
			t.Errorf("denied %s %s: %+v, want timeout", cases[i].dst, cases[i].port, r)
		}
	}
	for _, p := range allPorts {
		if h := srv.Hits(p); h != 0 {
			t.Errorf("%s: %d probes reached the server through a drop rule", p, h)
		}
	}
	// Removing the rules restores reachability: the rules, not the lab,
	// caused the failures.
	nft(t, l.serverName, "delete table inet probetest")
	for i, r := range probeAll(t, l.client, cases, 2*time.Second) {
		if !r.Reached {
			t.Errorf("after delete %s %s: %+v", cases[i].dst, cases[i].port, r)
		}
	}
}

func TestDeniedOnEgress(t *testing.T) {
	l := newLab(t)
	serve(t, l.server, "srv/b", allPorts)
	nft(t, l.clientName, `table inet probetest {
	chain output {
		type filter hook output priority 0; policy accept;
		tcp dport 8080 drop
		udp dport 5353 drop
		sctp dport 9999 drop
	}
}`)
	var cases []probeCase
	for _, p := range allPorts {
		cases = append(cases, probeCase{l.serverV4, p}, probeCase{l.serverV6, p})
	}
	for i, r := range probeAll(t, l.client, cases, time.Second) {
		// The kernel fails a datagram send dropped by output with EPERM;
		// a TCP SYN drop is silently retried and so times out.
		want := FailureProhibited
		if cases[i].port.Protocol == TCP {
			want = FailureTimeout
		}
		if r.Reached || r.Failure != want {
			t.Errorf("egress-denied %s %s: %+v, want %q", cases[i].dst, cases[i].port, r, want)
		}
	}
}

// counterPackets reads a named nftables counter.
func counterPackets(t *testing.T, ns, table, name string) uint64 {
	t.Helper()
	out := run(t, "", "ip", "netns", "exec", ns, "nft", "-j", "list", "counter", "inet", table, name)
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j: %v\n%s", err, out)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets
		}
	}
	t.Fatalf("no counter %s in\n%s", name, out)
	return 0
}

func TestSCTPConntrack(t *testing.T) {
	l := newLab(t)
	serve(t, l.server, "srv/b", []Port{sctpPort})
	// ct expressions switch conntrack on in the namespace. "established" on
	// the INIT ACK proves conntrack matched it to the INIT (verification
	// tags right); "invalid" must stay zero for INIT, INIT ACK and ABORT.
	nft(t, l.serverName, `table inet cttest {
	counter in_new {}
	counter in_established {}
	counter in_invalid {}
	counter out_established {}
	counter out_invalid {}
	chain input {
		type filter hook input priority 0; policy accept;
		meta l4proto sctp ct state new counter name in_new
		meta l4proto sctp ct state established counter name in_established
		meta l4proto sctp ct state invalid counter name in_invalid
	}
	chain output {
		type filter hook output priority 0; policy accept;
		meta l4proto sctp ct state established counter name out_established
		meta l4proto sctp ct state invalid counter name out_invalid
	}
}`)
	for _, dst := range []netip.Addr{l.serverV4, l.serverV6} {
		r, err := Probe(t.Context(), l.client, dst, sctpPort.Number, SCTP, 2*time.Second)
		if err != nil || !r.Reached {
			t.Fatalf("%s: %+v, %v", dst, r, err)
		}
	}
	// The ABORT is sent after the verdict; give it a moment to arrive.
	deadline := time.Now().Add(2 * time.Second)
	for counterPackets(t, l.serverName, "cttest", "in_established") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for name, min := range map[string]uint64{"in_new": 2, "in_established": 2, "out_established": 2} {
		if got := counterPackets(t, l.serverName, "cttest", name); got < min {
			t.Errorf("counter %s = %d, want >= %d", name, got, min)
		}
	}
	for _, name := range []string{"in_invalid", "out_invalid"} {
		if got := counterPackets(t, l.serverName, "cttest", name); got != 0 {
			t.Errorf("counter %s = %d, want 0", name, got)
		}
	}

	// The conntrack table itself (ctnetlink, no conntrack tool needed).
	ns, err := netns.GetFromPath(l.server)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, tc := range []struct {
		fam      netlink.InetFamily
		src, dst netip.Addr
	}{{unix.AF_INET, l.clientV4, l.serverV4}, {unix.AF_INET6, l.clientV6, l.serverV6}} {
		flows, err := h.ConntrackTableList(netlink.ConntrackTable, tc.fam)
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) {
			t.Logf("ctnetlink unavailable (%v): conntrack table not checked", err)
			return
		}
		if err != nil {
			t.Fatalf("conntrack list: %v", err)
		}
		found := false
		for _, f := range flows {
			s, _ := netip.AddrFromSlice(f.Forward.SrcIP)
			d, _ := netip.AddrFromSlice(f.Forward.DstIP)
			if f.Forward.Protocol == ipProtoSCTP && s.Unmap() == tc.src && d.Unmap() == tc.dst {
				found = true
			}
		}
		if !found {
			t.Errorf("no SCTP conntrack entry %s -> %s among %d flows", tc.src, tc.dst, len(flows))
		}
	}
}

func TestParallelProbes(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.server, "srv/b", allPorts)
	const n = 300
	cases := make([]probeCase, n)
	for i := range cases {
		dst := l.serverV4
		if i%2 == 1 {
			dst = l.serverV6
		}
		cases[i] = probeCase{dst, allPorts[i%3]}
	}
	start := time.Now()
	res := probeAll(t, l.client, cases, 5*time.Second)
	el := time.Since(start)
	t.Logf("%d parallel probes in %v", n, el)
	if el > 10*time.Second {
		t.Errorf("%d parallel probes took %v, want well under 15s", n, el)
	}
	for i, r := range res {
		if !r.Reached || r.Banner != "srv/b" {
			t.Errorf("probe %d (%s %s): %+v", i, cases[i].dst, cases[i].port, r)
		}
	}
	for _, p := range allPorts {
		if h := srv.Hits(p); h < n/3 {
			t.Errorf("%s: %d hits, want >= %d", p, h, n/3)
		}
	}
}

func TestProbeUsageErrors(t *testing.T) {
	ctx := t.Context()
	var ue *UsageError
	for name, call := range map[string]func() error{
		"invalid addr": func() error { _, err := Probe(ctx, "", netip.Addr{}, 80, TCP, time.Second); return err },
		"port 0":       func() error { _, err := Probe(ctx, "", netip.IPv4Unspecified(), 0, TCP, time.Second); return err },
		"protocol":     func() error { _, err := Probe(ctx, "", netip.IPv4Unspecified(), 80, "ICMP", time.Second); return err },
		"timeout":      func() error { _, err := Probe(ctx, "", netip.IPv4Unspecified(), 80, TCP, 0); return err },
		"banner": func() error {
			_, err := Serve(ctx, nil, WithBanner(strings.Repeat("x", maxBannerLen+1)))
			return err
		},
	} {
		if err := call(); !errors.As(err, &ue) {
			t.Errorf("%s: error %v, want *UsageError", name, err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Probe(cancelled, "", netip.MustParseAddr("127.0.0.1"), 80, UDP, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestProbeCancelledMidway(t *testing.T) {
	l := newLab(t)
	// Nothing serves SCTP, so the probe waits until cancelled, and must then
	// report the cancellation rather than a "timeout" verdict.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Probe(ctx, l.client, l.serverV4, 9999, SCTP, 10*time.Second)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("cancelled probe returned after %v", el)
	}
}
