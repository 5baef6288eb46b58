package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/networking"
	"github.com/tabbynet/tabby/policy"
)

// podDiff is what an update does to the lab's pods: the pods that leave
// (in the lab's order) and the pods that arrive, placed (in object order).
type podDiff struct {
	removed []policy.Ref
	added   []podPlan
}

func (d podDiff) empty() bool { return len(d.removed) == 0 && len(d.added) == 0 }

// diffPods compares the pods (endpoints) of objs with the plan: pods the
// plan has and objs do not leave; pods objs have and the plan does not
// arrive and are placed like Up places them (spec.nodeName, else the node
// with the fewest pods; an address from the node's CIDR when they have
// none). A pod whose node, addresses or ports changed is a
// *PodChangeError, and so is an IPv6 pod in a lab built without an IPv6
// underlay; bad placement is a *ConfigError, as for Up.
func diffPods(objs []policy.Object, p *plan, nodes int) (podDiff, error) {
	m, errs := policy.Normalize(objs)
	if len(errs) > 0 {
		return podDiff{}, &ConfigError{fmt.Errorf("manifests: %w", errors.Join(errs...))}
	}
	eps := map[policy.Ref]*policy.Endpoint{}
	for i := range m.Endpoints {
		eps[m.Endpoints[i].Ref] = &m.Endpoints[i]
	}
	var d podDiff
	used := map[netip.Addr]string{}
	load := make([]int, nodes+1) // pods per node (1-based)
	for _, pp := range p.pods {
		ep := eps[pp.Ref]
		if ep == nil {
			d.removed = append(d.removed, pp.Ref)
			continue
		}
		if err := samePod(pp, ep); err != nil {
			return podDiff{}, err
		}
		for _, ip := range pp.IPs {
			used[ip] = pp.name()
		}
		load[pp.Node]++
	}
	seen := map[policy.Ref]bool{}
	for _, o := range objs {
		ep := eps[o.Ref]
		if o.Ref.Kind != policy.KindPod || ep == nil || seen[o.Ref] {
			continue
		}
		seen[o.Ref] = true
		if _, known := p.byRef[o.Ref]; known {
			continue
		}
		name := sim.PodName(o.Ref)
		pp := podPlan{Ref: o.Ref, IPs: slices.Clone(ep.IPs), Ports: ep.Ports}
		if ep.Node != "" {
			if pp.Node = nodeIndex(ep.Node, nodes); pp.Node == 0 {
				return podDiff{}, configErr("pod %s: spec.nodeName %q is not a lab node (want node-1..node-%d)", name, ep.Node, nodes)
			}
		} else {
			pp.Node = 1
			for i := 2; i <= nodes; i++ {
				if load[i] < load[pp.Node] {
					pp.Node = i
				}
			}
		}
		for _, ip := range pp.IPs {
			switch {
			case underlayV4.Contains(ip) || underlayV6.Contains(ip):
				return podDiff{}, configErr("pod %s: IP %s is in the lab's underlay %s / %s", name, ip, underlayV4, underlayV6)
			case used[ip] != "":
				return podDiff{}, configErr("pods %s and %s have the same IP %s", used[ip], name, ip)
			case ip.Is6() && !p.v6:
				// The underlay's family is fixed when it is built.
				return podDiff{}, &PodChangeError{Pod: name, Reason: fmt.Sprintf("IPv6 address %s, and the lab was built without an IPv6 underlay", ip)}
			}
			used[ip] = name
		}
		if len(pp.IPs) == 0 {
			cidr := nodePodCIDR(pp.Node)
			a := nodeAddr(cidr, 0)
			for used[a] != "" {
				a = a.Next()
			}
			if !cidr.Contains(a) {
				return podDiff{}, configErr("node %s: pod CIDR %s is full", NodeName(pp.Node), cidr)
			}
			used[a] = name
			pp.IPs = []netip.Addr{a}
		}
		load[pp.Node]++
		d.added = append(d.added, pp)
	}
	return d, nil
}

// withDiff returns a copy of p with d applied.
func (p *plan) withDiff(d podDiff) *plan {
	out := &plan{v6: p.v6}
	for _, pp := range p.pods {
		if !slices.Contains(d.removed, pp.Ref) {
			out.pods = append(out.pods, pp)
		}
	}
	out.pods = append(out.pods, d.added...)
	out.byRef = make(map[policy.Ref]int, len(out.pods))
	for i, pp := range out.pods {
		out.byRef[pp.Ref] = i
	}
	return out
}

// applyPods makes the kernel match d: removed pods are torn down first (so
// an arriving pod may reuse a leaving pod's address), then arriving pods
// are built. The state file and the plan follow each pod as it is done, so
// a failure half-way leaves a record that Down (and the next update) can
// work from.
func (l *Lab) applyPods(ctx context.Context, d podDiff) error {
	if len(d.added) > 0 && l.cfg.Tabbyctl == "" {
		return errors.New("lab: the state file does not record the tabbyctl binary (lab made by an older version): run lab up again")
	}
	for _, ref := range d.removed {
		if err := l.removePod(ctx, ref); err != nil {
			return err
		}
	}
	for _, pp := range d.added {
		if err := l.addPod(ctx, pp); err != nil {
			return err
		}
	}
	return nil
}

// addPod builds one pod on a running lab: namespace and interface on its
// node, routes to it on every other node, then its server.
func (l *Lab) addPod(ctx context.Context, pp podPlan) error {
	l.plan = l.plan.withDiff(podDiff{added: []podPlan{pp}})
	l.st.Pods = append(l.st.Pods, PodState{
		Namespace: pp.Ref.Namespace, Name: pp.Ref.Name, Node: NodeName(pp.Node),
		Netns:  podNetnsName(l.st.Name, pp.Ref.Namespace, pp.Ref.Name),
		HostIf: pp.hostIf(), IPs: pp.IPs, Ports: pp.servedPorts(),
	})
	ps := &l.st.Pods[len(l.st.Pods)-1]
	if err := l.save(); err != nil {
		return err
	}
	if err := l.buildPod(ctx, ps); err != nil {
		return err
	}
	if err := l.podRoutes(*ps, true); err != nil {
		return err
	}
	if len(ps.Ports) > 0 {
		return l.startServer(ps)
	}
	return nil
}

// removePod undoes addPod (or Up) for one pod: server, routes on the other
// nodes, interface, namespace. Each step tolerates what is already gone.
func (l *Lab) removePod(ctx context.Context, ref policy.Ref) error {
	i := slices.IndexFunc(l.st.Pods, func(p PodState) bool { return p.Namespace == ref.Namespace && p.Name == ref.Name })
	if i < 0 {
		l.plan = l.plan.withDiff(podDiff{removed: []policy.Ref{ref}})
		return nil
	}
	ps := l.st.Pods[i]
	fail := func(err error) error { return fmt.Errorf("lab: removing pod %s/%s: %w", ps.Namespace, ps.Name, err) }
	if ps.Server != nil {
		if errs := stopProcesses([]Proc{*ps.Server}, 5*time.Second); len(errs) > 0 {
			return fail(errors.Join(errs...))
		}
		delete(l.procs, ps.Server.PID)
	}
	if err := l.podRoutes(ps, false); err != nil {
		return fail(err)
	}
	nd, _ := l.node(ps.Node)
	if err := networking.TeardownPod(ctx, networking.PodSpec{HostNetns: netnsPath(nd.Netns),
		PodNetns: netnsPath(ps.Netns), HostIfName: ps.HostIf, IPs: ps.IPs}); err != nil {
		return fail(err)
	}
	if err := deleteNetns(ps.Netns); err != nil {
		return fail(err)
	}
	l.st.Pods = slices.Delete(l.st.Pods, i, i+1)
	l.st.Namespaces = slices.DeleteFunc(l.st.Namespaces, func(n string) bool { return n == ps.Netns })
	l.plan = l.plan.withDiff(podDiff{removed: []policy.Ref{ref}})
	return l.save()
}

// podRoutes adds (or deletes) the route to each of p's addresses on every
// node but p's own, via p's node's underlay address of that family.
// Deleting an absent route is success.
func (l *Lab) podRoutes(p PodState, add bool) error {
	home, ok := l.node(p.Node)
	if !ok {
		return fmt.Errorf("lab: pod %s/%s: no node %s", p.Namespace, p.Name, p.Node)
	}
	for _, nd := range l.st.Nodes {
		if nd.Name == p.Node {
			continue
		}
		if err := nodeRoutes(nd, home, p, add); err != nil {
			return fmt.Errorf("lab: %s: %w", nd.Name, err)
		}
	}
	return nil
}

func nodeRoutes(nd, home NodeState, p PodState, add bool) error {
	ns, err := networking.OpenNetns(netnsPath(nd.Netns))
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := ns.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	up, err := h.LinkByName(nodeUplink)
	if err != nil {
		return err
	}
	for _, ip := range p.IPs {
		gw, ok := familyAddr(home.UnderlayIPs, ip.Is4())
		if !ok {
			return fmt.Errorf("node %s has no %s underlay address for pod %s/%s", home.Name, family(ip), p.Namespace, p.Name)
		}
		r := &netlink.Route{LinkIndex: up.Attrs().Index, Dst: hostNet(ip), Gw: gw.AsSlice()}
		if add {
			if err := h.RouteAdd(r); err != nil {
				return fmt.Errorf("route %s via %s: %w", ip, gw, err)
			}
		} else if err := h.RouteDel(r); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("delete route %s via %s: %w", ip, gw, err)
		}
	}
	return nil
}

// KillAgent SIGKILLs node's agent, as a crash or the OOM killer would (no
// chance to clean up), and waits until it is gone. The kernel table stays:
// the agent never owns enforcement past its own lifetime.
func (l *Lab) KillAgent(node string) error {
	i := slices.IndexFunc(l.st.Nodes, func(n NodeState) bool { return n.Name == node })
	if i < 0 {
		return fmt.Errorf("lab: no node %q", node)
	}
	nd := l.st.Nodes[i]
	if nd.Agent == nil || !alive(*nd.Agent) {
		return l.agentErr(nd, errors.New("not running"))
	}
	p := *nd.Agent
	err := syscall.Kill(-p.PID, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) { // not a group leader
		err = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return l.agentErr(nd, fmt.Errorf("kill: %w", err))
	}
	if r := l.procs[p.PID]; r != nil {
		<-r.exited // our child: reaped by its Wait goroutine
		delete(l.procs, p.PID)
	}
	for deadline := time.Now().Add(5 * time.Second); alive(p); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return l.agentErr(nd, errors.New("survived SIGKILL"))
		}
	}
	return nil
}

// StartAgent starts node's agent as Up does (same binary, flags and log,
// appended to) and waits for its /readyz. The agent must not be running.
func (l *Lab) StartAgent(ctx context.Context, node string) error {
	i := slices.IndexFunc(l.st.Nodes, func(n NodeState) bool { return n.Name == node })
	if i < 0 {
		return fmt.Errorf("lab: no node %q", node)
	}
	nd := &l.st.Nodes[i]
	if nd.Agent != nil && alive(*nd.Agent) {
		return l.agentErr(*nd, fmt.Errorf("already running (pid %d)", nd.Agent.PID))
	}
	if l.cfg.Tabby == "" {
		return fmt.Errorf("lab: the state file does not record the tabby binary (lab made by an older version): run lab up again")
	}
	if err := l.startAgent(nd); err != nil {
		return err
	}
	return l.waitReady(ctx, *nd)
}
