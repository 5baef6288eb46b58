package lab_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/e2e/probe"
	"github.com/tabbynet/tabby/policy"
)

// extraPod is a pod outside newWorld's a/b/c, with the same ports.
func extraPod(ns, name string, labels map[string]string, node string, ips ...string) policy.Object {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{ContainerPort: 80, Protocol: corev1.ProtocolTCP},
			{ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			{ContainerPort: 9000, Protocol: corev1.ProtocolSCTP},
		}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if len(ips) > 0 {
		pod.Status.PodIP = ips[0]
		for _, ip := range ips {
			pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
	return policy.Object{Ref: policy.Ref{Kind: policy.KindPod, Namespace: ns, Name: name}, Pod: pod}
}

// involving counts the predicted results from or to pod, and how many of
// them are allowed.
func involving(m *sim.Matrix, pod string) (n, allowed int) {
	for _, r := range m.Results {
		if r.From == pod || r.To == pod {
			n++
			if r.Allowed {
				allowed++
			}
		}
	}
	return n, allowed
}

func netnsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// routeTo returns `ip -n netns route show exact ip/32` (empty: no route).
func routeTo(t *testing.T, netns string, ip netip.Addr) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", netns, "route", "show", "exact", netip.PrefixFrom(ip, ip.BitLen()).String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func processGone(p *lab.Proc) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	return err != nil || strings.Contains(string(b), ") Z ")
}

// TestPodAddDelete adds pods to a running lab (one placed by the lab, one
// with its own node and address), deletes one of them and an original
// pod, then adds the deleted one back; after each change every probe
// measured is the predicted one, and the kernel objects come and go.
func TestPodAddDelete(t *testing.T) {
	requireRoot(t)
	w := newWorld()
	// Pods labelled app=d admit only their namespace's app=a, on 80/TCP:
	// a new pod gets both allowed and denied probes, so the agents must
	// really enforce for it.
	for _, ns := range []string{"x", "y"} {
		w.policies[ns+"/only-a-to-d"] = &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "only-a-to-d"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "d"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}}},
					Ports: []networkingv1.NetworkPolicyPort{port(80, corev1.ProtocolTCP)},
				}},
			},
		}
	}
	l := upLab(t, lab.Config{Objects: w.objects(), Nodes: 2, Name: "tlab-pods"})
	ctx := context.Background()
	xd := extraPod("x", "d", map[string]string{"app": "d"}, "")
	yd := extraPod("y", "d", map[string]string{"app": "d"}, "node-2", "10.77.0.7")

	steps := []struct {
		name    string
		objs    []policy.Object
		present []string // pods that must be in the lab afterwards
		absent  []string
	}{
		{"add x/d and y/d", append(w.objects(), xd, yd), []string{"x/d", "y/d", "y/c"}, nil},
		{"delete x/d and y/c", func() []policy.Object {
			delete(w.pods, [2]string{"y", "c"})
			return append(w.objects(), yd)
		}(), []string{"y/d"}, []string{"x/d", "y/c"}},
		{"add x/d again", append(w.objects(), yd, xd), []string{"x/d", "y/d"}, []string{"y/c"}},
	}
	var gone []lab.PodState
	for _, step := range steps {
		before := l.State()
		start := time.Now()
		if err := l.UpdateManifests(step.objs); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		changed := time.Since(start)
		if err := l.WaitSynced(ctx); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		synced := time.Since(start)
		want, err := predict(l.Objects())
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		st := l.State()
		for _, name := range step.present {
			ns, pod, _ := strings.Cut(name, "/")
			ps, ok := findPod(st, ns, pod)
			if !ok || !netnsExists(ps.Netns) || ps.Server == nil || processGone(ps.Server) {
				t.Fatalf("%s: pod %s not (fully) there: %+v", step.name, name, ps)
			}
			if ps.HostIf != compiler.InterfaceName(ns, pod) {
				t.Errorf("%s: pod %s host interface %q, want %q", step.name, name, ps.HostIf, compiler.InterfaceName(ns, pod))
			}
			if n, allowed := involving(want, name); n == 0 || (strings.HasSuffix(name, "/d") && (allowed == 0 || allowed == n)) {
				t.Fatalf("%s: %d probes involve %s, %d allowed: the step tests nothing", step.name, n, name, allowed)
			}
			for _, nd := range st.Nodes {
				if nd.Name != ps.Node && routeTo(t, nd.Netns, ps.IPs[0]) == "" {
					t.Errorf("%s: %s has no route to %s (%s)", step.name, nd.Name, name, ps.IPs[0])
				}
			}
		}
		if ps, ok := findPod(st, "y", "d"); ok && (ps.Node != "node-2" || ps.IPs[0] != netip.MustParseAddr("10.77.0.7")) {
			t.Errorf("%s: y/d placed on %s at %v, want its own node-2 and 10.77.0.7", step.name, ps.Node, ps.IPs)
		}
		for _, name := range step.absent {
			ns, pod, _ := strings.Cut(name, "/")
			if _, ok := findPod(st, ns, pod); ok {
				t.Errorf("%s: pod %s still in the state", step.name, name)
			}
			if old, ok := findPod(before, ns, pod); ok {
				gone = append(gone, old)
			}
		}
		for _, old := range gone {
			if _, back := findPod(st, old.Namespace, old.Name); back {
				continue
			}
			if netnsExists(old.Netns) || slices.Contains(st.Namespaces, old.Netns) {
				t.Errorf("%s: namespace %s of deleted pod %s/%s left", step.name, old.Netns, old.Namespace, old.Name)
			}
			if old.Server != nil && !processGone(old.Server) {
				t.Errorf("%s: server %d of deleted pod %s/%s still runs", step.name, old.Server.PID, old.Namespace, old.Name)
			}
			for _, nd := range st.Nodes {
				if r := routeTo(t, nd.Netns, old.IPs[0]); r != "" && !slices.ContainsFunc(st.Pods, func(p lab.PodState) bool {
					return slices.Contains(p.IPs, old.IPs[0])
				}) {
					t.Errorf("%s: %s still routes the deleted pod's %s: %s", step.name, nd.Name, old.IPs[0], r)
				}
			}
		}
		if err := compareMeasured(ctx, l, want.Results); err != nil {
			t.Errorf("%s: %v", step.name, err)
		}
		t.Logf("%s: pods changed in %v, agents synced in %v, %d probes (%d allowed) in %v", step.name,
			changed.Round(time.Millisecond), synced.Round(time.Millisecond), len(want.Results), countAllowed(want),
			(time.Since(start) - synced).Round(time.Millisecond))
	}

	// What the lab cannot do is refused before anything changes.
	st := l.State()
	var pce *lab.PodChangeError
	var ce *lab.ConfigError
	if err := l.UpdateManifests(append(w.objects(), yd, xd, extraPod("y", "e", nil, "", "fd00::e"))); !errors.As(err, &pce) {
		t.Errorf("IPv6 pod in an IPv4 lab: got %v, want a *lab.PodChangeError", err)
	}
	if err := l.UpdateManifests(append(w.objects(), yd, xd, extraPod("y", "e", nil, "node-3"))); !errors.As(err, &ce) {
		t.Errorf("pod on node-3 of 2: got %v, want a *lab.ConfigError", err)
	}
	if after := l.State(); len(after.Pods) != len(st.Pods) || len(after.Namespaces) != len(st.Namespaces) {
		t.Errorf("a refused update changed the lab: %d pods, %d namespaces, want %d, %d", len(after.Pods),
			len(after.Namespaces), len(st.Pods), len(st.Namespaces))
	}

	// Another process sees the added pods and measures the same.
	other, err := lab.Open(l.State().StateDir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := predict(l.Objects())
	if err != nil {
		t.Fatal(err)
	}
	if err := compareMeasured(ctx, other, want.Results); err != nil {
		t.Errorf("after Open: %v", err)
	}
}

// denyAllX: every pod of x denies all ingress and egress.
func denyAllX() *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny-all"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{
			networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
	}
}

// TestDriftRepaired: with the agents reconciling every second, flushing a
// node's whole ruleset behind its agent's back is repaired within a few
// reconcile periods: the measured matrix is the predicted one again.
func TestDriftRepaired(t *testing.T) {
	requireRoot(t)
	const period = time.Second
	w := newWorld()
	l := upLab(t, lab.Config{Objects: w.objects(), Nodes: 2, Name: "tlab-repair",
		AgentArgs: []string{"--reconcile-interval", period.String()}})
	ctx := context.Background()
	w.policies["x/deny-all"] = denyAllX()
	if err := l.UpdateManifests(w.objects()); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	want, err := predict(l.Objects())
	if err != nil {
		t.Fatal(err)
	}
	if countAllowed(want) == len(want.Results) {
		t.Fatal("the policy denies nothing")
	}
	if err := compareMeasured(ctx, l, want.Results); err != nil {
		t.Fatalf("before the drift: %v", err)
	}
	node := l.State().Nodes[0]
	nft := func(args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", node.Netns, "nft"}, args...)...).CombinedOutput()
		return string(out), err
	}
	hasTable := func() bool {
		_, err := nft("list", "table", "inet", compiler.DefaultTableName)
		return err == nil
	}
	if !hasTable() {
		t.Fatalf("%s has no table inet %s before the drift", node.Name, compiler.DefaultTableName)
	}
	flushed := time.Now()
	if out, err := nft("flush", "ruleset"); err != nil {
		t.Fatalf("nft flush ruleset: %v: %s", err, out)
	}
	// Seen gone right after the flush, unless a reconcile fell in the few
	// milliseconds in between (then the repair is only faster).
	sawGone := !hasTable()

	probes := probesOf(want)
	deadline := flushed.Add(5*period + 5*time.Second)
	var tableBack time.Duration
	for attempt := 1; ; attempt++ {
		if tableBack == 0 && hasTable() {
			tableBack = time.Since(flushed)
		}
		ms, err := l.Measure(ctx, probes, lab.ProbeOptions{Timeout: firstTimeout})
		if err != nil {
			t.Fatal(err)
		}
		differ := 0
		for i, m := range ms {
			if m.Reached != want.Results[i].Allowed {
				differ++
			}
		}
		if differ == 0 {
			repaired := time.Since(flushed)
			t.Logf("ruleset of %s flushed (table seen gone: %v); table back after %v, matrix equal to the prediction after %v (measurement %d, reconcile interval %v)",
				node.Name, sawGone, tableBack.Round(time.Millisecond), repaired.Round(time.Millisecond), attempt, period)
			if repaired > 3*period+2*firstTimeout {
				t.Errorf("repair took %v, more than 3 reconcile periods", repaired)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d of %d probes still differ from the prediction (table back: %v)",
				time.Since(flushed).Round(time.Millisecond), differ, len(probes), hasTable())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// And with the slow re-measurement of anything that differs.
	if err := compareMeasured(ctx, l, want.Results); err != nil {
		t.Errorf("after the repair: %v", err)
	}
}

// echoServer accepts TCP connections inside a pod namespace and echoes
// every line back.
func echoServer(t *testing.T, netns string, addr netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	if err := probe.InNetns("/run/netns/"+netns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(c, c) })
		}
	})
}

// roundTrip sends one line on c and expects it back.
func roundTrip(c net.Conn, r *bufio.Reader, msg string) error {
	if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if strings.TrimSpace(line) != msg {
		return fmt.Errorf("echoed %q, want %q", line, msg)
	}
	return nil
}

// leak is a denied probe that got through.
type leak struct {
	probe  sim.Probe
	at     time.Duration
	banner string
}

// TestAgentRestart kills the agents of both nodes with SIGKILL and starts
// them again, while denied pairs are probed continuously and an allowed
// TCP connection stays open: no denied probe may ever get through (the
// table stays while the agents are dead, and the restarted agents adopt
// it atomically), the connection must survive, and the matrix must be the
// predicted one afterwards.
func TestAgentRestart(t *testing.T) {
	requireRoot(t)
	w := newWorld()
	for _, ns := range []string{"x", "y"} {
		w.policies[ns+"/default-deny"] = &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-deny"},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
		}
	}
	// The allow-list: y/a admits x/a, on every port.
	w.policies["y/allow-xa"] = &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "allow-xa"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
			}}}},
		},
	}
	l := upLab(t, lab.Config{Objects: w.objects(), Nodes: 2, Name: "tlab-restart"})
	ctx := context.Background()
	want, err := predict(l.Objects())
	if err != nil {
		t.Fatal(err)
	}
	if err := compareMeasured(ctx, l, want.Results); err != nil {
		t.Fatalf("before the restart: %v", err)
	}
	st := l.State()
	client, _ := findPod(st, "x", "a")
	server, _ := findPod(st, "y", "a")
	if client.Node == server.Node {
		t.Fatalf("x/a and y/a are both on %s: the connection would not cross nodes", client.Node)
	}

	// The long-lived connection, on a port no probe uses.
	srvAddr := netip.AddrPortFrom(server.IPs[0], 7777)
	echoServer(t, server.Netns, srvAddr)
	var conn net.Conn
	if err := probe.InNetns("/run/netns/"+client.Netns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", srvAddr.String(), 3*time.Second)
		return err
	}); err != nil {
		t.Fatalf("x/a -> y/a:7777 (allowed): %v", err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	if err := roundTrip(conn, rd, "before"); err != nil {
		t.Fatalf("established connection before the restart: %v", err)
	}

	// Denied pairs, TCP and UDP, probed continuously: one goroutine per
	// probe, a new probe at most every 50 ms (a dropped one costs its
	// 100 ms timeout).
	var denied []sim.Probe
	for _, r := range want.Results {
		if !r.Allowed && r.Protocol != policy.ProtoSCTP {
			denied = append(denied, r.Probe)
		}
	}
	if len(denied) == 0 {
		t.Fatal("no denied probe: the test tests nothing")
	}
	ips := map[string][]netip.Addr{}
	nsOf := map[string]string{}
	for _, p := range st.Pods {
		ips[p.Namespace+"/"+p.Name] = p.IPs
		nsOf[p.Namespace+"/"+p.Name] = "/run/netns/" + p.Netns
	}
	var (
		mu     sync.Mutex
		leaks  []leak
		sent   atomic.Int64
		errs   atomic.Int64
		stop   = make(chan struct{})
		loopWG sync.WaitGroup
	)
	windowStart := time.Now()
	for _, p := range denied {
		loopWG.Go(func() {
			dst := ips[p.To][0]
			for {
				select {
				case <-stop:
					return
				default:
				}
				begin := time.Now()
				res, err := probe.Probe(ctx, nsOf[p.From], dst, p.Port, probe.Protocol(p.Protocol.String()), 100*time.Millisecond)
				sent.Add(1)
				switch {
				case err != nil:
					errs.Add(1)
				case res.Reached:
					mu.Lock()
					leaks = append(leaks, leak{probe: p, at: time.Since(windowStart), banner: res.Banner})
					mu.Unlock()
				}
				time.Sleep(50*time.Millisecond - time.Since(begin))
			}
		})
	}
	stopLoop := sync.OnceFunc(func() { close(stop); loopWG.Wait() })
	defer stopLoop()

	time.Sleep(500 * time.Millisecond) // the loop's baseline, agents alive
	nodes := []string{client.Node, server.Node}
	slices.Sort(nodes)
	oldPIDs := map[string]int{}
	for _, nd := range st.Nodes {
		oldPIDs[nd.Name] = nd.Agent.PID
	}
	killed := time.Now()
	for _, n := range nodes {
		if err := l.KillAgent(n); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if err := syscall.Kill(oldPIDs[n], 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("agent %s (pid %d) still exists after KillAgent: %v", n, oldPIDs[n], err)
		}
	}
	time.Sleep(time.Second)
	if err := roundTrip(conn, rd, "agents dead"); err != nil {
		t.Errorf("established connection with the agents dead: %v", err)
	}
	time.Sleep(time.Until(killed.Add(2 * time.Second)))
	restarted := time.Now()
	ready := map[string]time.Duration{}
	for _, n := range nodes {
		if err := l.StartAgent(ctx, n); err != nil {
			t.Fatal(err)
		}
		ready[n] = time.Since(restarted)
	}
	time.Sleep(time.Second) // the restarted agents' first moments count too
	stopLoop()
	window := time.Since(windowStart)

	mu.Lock()
	if len(leaks) > 0 {
		t.Errorf("%d denied probes got through; the first ones:", len(leaks))
	}
	for _, lk := range leaks[:min(len(leaks), 10)] {
		t.Errorf("denied probe %s -> %s %d/%s got through at %v into the window (answered %q)",
			lk.probe.From, lk.probe.To, lk.probe.Port, lk.probe.Protocol, lk.at.Round(time.Millisecond), lk.banner)
	}
	mu.Unlock()
	if n := errs.Load(); n > 0 {
		t.Errorf("%d probes failed to run", n)
	}
	if least := int64(len(denied)) * int64(window/(200*time.Millisecond)); sent.Load() < least/2 {
		t.Errorf("only %d probes in %v for %d denied pairs: the loop did not watch the window", sent.Load(), window, len(denied))
	}
	if err := roundTrip(conn, rd, "after"); err != nil {
		t.Errorf("established connection after the restart: %v", err)
	}
	for _, nd := range l.State().Nodes {
		if slices.Contains(nodes, nd.Name) && (nd.Agent == nil || nd.Agent.PID == oldPIDs[nd.Name]) {
			t.Errorf("agent %s was not restarted: %+v", nd.Name, nd.Agent)
		}
		s, err := l.Status(ctx, nd.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Ready || s.LastSyncError != "" || len(s.Errors) > 0 {
			t.Errorf("agent %s after the restart: %+v", nd.Name, s)
		}
	}
	if err := compareMeasured(ctx, l, want.Results); err != nil {
		t.Errorf("after the restart: %v", err)
	}
	t.Logf("%d denied pairs probed %d times over %v (agents of %v dead for %v, then ready after %v); %d got through; the established connection survived",
		len(denied), sent.Load(), window.Round(time.Millisecond), nodes, restarted.Sub(killed).Round(time.Millisecond),
		ready, len(leaks))
}
