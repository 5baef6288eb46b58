package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func testNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "tabby-rf-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del: %v: %s", err, out)
		}
	})
	return name
}

func inNS(t *testing.T, ns string, cmdline string) {
	t.Helper()
	args := append([]string{"netns", "exec", ns}, strings.Fields(cmdline)...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", cmdline, err, out)
	}
}

func TestRouteFinder(t *testing.T) {
	ns := testNetns(t)
	for _, c := range []string{
		"ip link set lo up",
		// A routed pod (ptp / Calico style): a host route to a veth.
		"ip link add cali1 type veth peer name cali1p",
		"ip link set cali1 up",
		"ip route add 10.0.0.1/32 dev cali1",
		"ip -6 route add fd00::1/128 dev cali1",
		// The node's uplink, a gateway, and a local address.
		"ip link add eth0 type veth peer name eth0p",
		"ip link set eth0 up",
		"ip addr add 192.168.1.10/24 dev eth0",
		"ip route add default via 192.168.1.1",
		// A bridged pod (bridge CNI): the route goes to the bridge; the
		// pod is behind port vethb.
		"ip link add cni0 type bridge",
		"ip link set cni0 up",
		"ip addr add 10.1.0.1/24 dev cni0",
		"ip link add vethb type veth peer name vethbp",
		"ip link set vethb master cni0",
		"ip link set vethb up",
		"ip neigh replace 10.1.0.7 lladdr 02:00:00:00:00:07 dev cni0",
		"bridge fdb replace 02:00:00:00:00:07 dev vethb master static",
	} {
		inNS(t, ns, c)
	}
	f, err := NewRouteFinder("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for addr, want := range map[string]string{
		"10.0.0.1": "cali1", "fd00::1": "cali1", "10.1.0.7": "vethb",
		"8.8.8.8": "", "192.168.1.10": "", "10.1.0.9": "", "127.0.0.1": "",
	} {
		got, err := f.InterfaceFor(netip.MustParseAddr(addr))
		switch {
		case want == "" && !errors.Is(err, ErrNoInterface):
			t.Errorf("%s: got %q, %v; want an ErrNoInterface", addr, got, err)
		case want != "" && (err != nil || got != want):
			t.Errorf("%s: got %q, %v; want %s", addr, got, err, want)
		}
	}

	// Route changes are reported.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- f.WatchInterfaces(ctx, func() { changed <- struct{}{} }) }()
	time.Sleep(100 * time.Millisecond) // let the subscriptions open
	inNS(t, ns, "ip route add 10.0.0.2/32 dev cali1")
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported for a new route")
	}
	if got, err := f.InterfaceFor(netip.MustParseAddr("10.0.0.2")); err != nil || got != "cali1" {
		t.Fatalf("new route: %q, %v", got, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WatchInterfaces: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchInterfaces did not return after cancel")
	}
}
