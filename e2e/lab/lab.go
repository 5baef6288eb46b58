package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/tabbynet/tabby/e2e/controlplane"
	"github.com/tabbynet/tabby/policy"
)

// Lab is a running lab: the one Up built, or one Open found.
type Lab struct {
	cfg  Config
	st   *State
	plan *plan
	// objs are the objects the agents enforce now (placement filled in);
	// written are their bytes as in the manifest file.
	objs    []policy.Object
	written []byte
	// updated is when the last UpdateManifests changed the manifests and
	// WaitSynced has not yet seen every agent apply it.
	updated time.Time
	// procs are the processes this Lab value started (nil after Open).
	procs map[int]*running
	// kube is the control plane's client side in Kubernetes mode.
	kube *kubeRuntime
}

// Up builds a lab (see the package documentation). On failure it tears
// down whatever it built and returns the error (logs stay for reading).
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	objs, err := loadObjects(cfg.Files, cfg.Objects)
	if err != nil {
		return nil, err
	}
	p, err := makePlan(objs, cfg.Nodes)
	if err != nil {
		return nil, err
	}
	placed, err := placeObjects(objs, p, false)
	if err != nil {
		return nil, err
	}
	if err := cfg.findBinaries(); err != nil {
		return nil, err
	}
	if cfg.Kubernetes {
		if err := cfg.findKube(); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: needs root (network namespaces, nftables, raw sockets)")
	}
	unlock, err := lockDir(ctx, cfg.StateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := down(cfg.StateDir, cfg.Name); err != nil {
		return nil, fmt.Errorf("lab: cleaning up the previous lab: %w", err)
	}
	l := &Lab{cfg: cfg, plan: p, objs: placed, procs: map[int]*running{}}
	l.st = newState(cfg, p)
	if err := l.build(ctx); err != nil {
		if derr := down(cfg.StateDir, cfg.Name); derr != nil {
			err = errors.Join(err, fmt.Errorf("lab: cleaning up after the failure: %w", derr))
		}
		return nil, err
	}
	return l, nil
}

// findBinaries resolves the tabbyctl and tabby executables.
func (c *Config) findBinaries() error {
	if c.Tabbyctl == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("lab: own executable: %w", err)
		}
		c.Tabbyctl = exe
	}
	if c.Tabby == "" {
		c.Tabby = binaryNextTo(c.Tabbyctl, "tabby")
	}
	for _, b := range []*string{&c.Tabbyctl, &c.Tabby} {
		abs, err := filepath.Abs(*b)
		if err != nil {
			return configErr("binary %s: %w", *b, err)
		}
		if fi, err := os.Stat(abs); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return configErr("binary %s: not an executable file (build it with go build ./cmd/..., or pass --tabby)", abs)
		}
		*b = abs
	}
	return nil
}

// findKube checks what Kubernetes mode needs before anything is built: the
// control-plane binaries and the deploy manifest.
func (c *Config) findKube() error {
	if c.Deploy == "" {
		p, err := findDeploy(c.Tabbyctl)
		if err != nil {
			return err
		}
		c.Deploy = p
	}
	abs, err := filepath.Abs(c.Deploy)
	if err != nil {
		return configErr("deploy manifest %s: %w", c.Deploy, err)
	}
	if fi, err := os.Stat(abs); err != nil || fi.IsDir() {
		return configErr("deploy manifest %s: not a file", abs)
	}
	c.Deploy = abs
	if _, err := controlplane.FindBinaries(controlplane.BinDir()); err != nil {
		return fmt.Errorf("lab: Kubernetes mode: %w", err)
	}
	return nil
}

// newState lays out names and addresses; nothing exists yet.
func newState(cfg Config, p *plan) *State {
	st := &State{
		Version: stateVersion, Name: cfg.Name, StateDir: cfg.StateDir, Created: time.Now().UTC(),
		Underlay:  UnderlayState{Netns: underlayNetnsName(cfg.Name), IPs: []netip.Addr{bridgeAddr(underlayV4)}},
		Manifests: filepath.Join(cfg.StateDir, manifestsDir, manifestFile),
		Tabby:     cfg.Tabby, Tabbyctl: cfg.Tabbyctl, AgentArgs: slices.Clone(cfg.AgentArgs),
	}
	if p.v6 {
		st.Underlay.IPs = append(st.Underlay.IPs, bridgeAddr(underlayV6))
	}
	if cfg.Kubernetes {
		st.Kubernetes = &KubeState{Netns: cpNetnsName(cfg.Name), IP: cpAddr(),
			Dir: filepath.Join(cfg.StateDir, kubeDir), URL: "https://" + netipAddrPort(cpAddr(), APIServerPort),
			Deploy: cfg.Deploy}
	}
	for i := 1; i <= cfg.Nodes; i++ {
		nd := NodeState{Name: NodeName(i), Netns: nodeNetnsName(cfg.Name, i), PodCIDR: nodePodCIDR(i),
			UnderlayIPs: []netip.Addr{nodeAddr(underlayV4, i)},
			HealthAddr:  fmt.Sprintf("127.0.0.1:%d", HealthPort)}
		if p.v6 {
			nd.UnderlayIPs = append(nd.UnderlayIPs, nodeAddr(underlayV6, i))
		}
		st.Nodes = append(st.Nodes, nd)
	}
	for _, pp := range p.pods {
		st.Pods = append(st.Pods, PodState{
			Namespace: pp.Ref.Namespace, Name: pp.Ref.Name, Node: NodeName(pp.Node),
			Netns:  podNetnsName(cfg.Name, pp.Ref.Namespace, pp.Ref.Name),
			HostIf: pp.hostIf(), IPs: pp.IPs, Ports: pp.servedPorts(),
		})
	}
	return st
}

// build creates everything, recording it in the state file as it goes.
func (l *Lab) build(ctx context.Context) error {
	logs := filepath.Join(l.st.StateDir, logsDir)
	if err := os.RemoveAll(logs); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	for _, d := range []string{logs, filepath.Dir(l.st.Manifests)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	if err := l.save(); err != nil {
		return err
	}
	if err := l.buildUnderlay(ctx); err != nil {
		return err
	}
	if l.st.Kubernetes != nil {
		if err := l.buildControlPlane(ctx); err != nil {
			return err
		}
	}
	for i := range l.st.Nodes {
		if err := l.buildNode(ctx, i+1); err != nil {
			return err
		}
	}
	if l.st.Kubernetes != nil {
		// The kubelet's order: the objects exist before their pods are
		// built; a pod's status follows once its network is up.
		if err := l.kubeCreate(ctx); err != nil {
			return err
		}
	}
	for i := range l.st.Pods {
		if err := l.buildPod(ctx, &l.st.Pods[i]); err != nil {
			return err
		}
	}
	if err := l.routeRemotePods(); err != nil {
		return err
	}
	for i := range l.st.Pods {
		if p := &l.st.Pods[i]; len(p.Ports) > 0 {
			if err := l.startServer(p); err != nil {
				return err
			}
		}
	}
	if l.st.Kubernetes != nil {
		if err := l.kubeStatuses(ctx); err != nil {
			return err
		}
	}
	if err := l.writeManifests(l.objs); err != nil {
		return err
	}
	for i := range l.st.Nodes {
		if err := l.startAgent(&l.st.Nodes[i]); err != nil {
			return err
		}
	}
	for _, nd := range l.st.Nodes {
		if err := l.waitReady(ctx, nd); err != nil {
			return err
		}
	}
	l.st.Ready = true
	return l.save()
}

func (l *Lab) save() error { return saveState(l.st) }

// Open returns the lab recorded in a state directory ("" = the default),
// for Probe, UpdateManifests, WaitSynced and Down from another process.
func Open(stateDir string) (*Lab, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	st, err := loadState(abs)
	if err != nil {
		return nil, err
	}
	if !st.Ready {
		return nil, fmt.Errorf("lab: the lab in %s is incomplete (lab up failed or is running); run tabbyctl lab up or down", abs)
	}
	data, err := os.ReadFile(st.Manifests)
	if err != nil {
		return nil, fmt.Errorf("lab: manifests: %w", err)
	}
	objs, err := policy.Decode(st.Manifests, data)
	if err != nil {
		return nil, fmt.Errorf("lab: manifests: %w", err)
	}
	p := planFromState(st)
	cfg := Config{Name: st.Name, StateDir: abs, Nodes: len(st.Nodes), ReadyTimeout: DefaultReadyTimeout,
		Tabby: st.Tabby, Tabbyctl: st.Tabbyctl, AgentArgs: slices.Clone(st.AgentArgs)}
	l := &Lab{cfg: cfg, st: st, plan: p, objs: objs, written: data, procs: map[int]*running{}}
	if st.Kubernetes != nil {
		cfg.Kubernetes, cfg.Deploy = true, st.Kubernetes.Deploy
		if l.kube, err = openKube(st); err != nil {
			return nil, err
		}
	}
	l.cfg = cfg
	return l, nil
}

// planFromState rebuilds the placement from a state file.
func planFromState(st *State) *plan {
	p := &plan{byRef: map[policy.Ref]int{}}
	for _, ps := range st.Pods {
		ref := policy.Ref{Kind: policy.KindPod, Namespace: ps.Namespace, Name: ps.Name}
		node := nodeIndex(ps.Node, len(st.Nodes))
		var ports []policy.ContainerPort
		for _, s := range ps.Ports {
			var n uint16
			var proto string
			if _, err := fmt.Sscanf(s, "%d/%s", &n, &proto); err == nil {
				ports = append(ports, policy.ContainerPort{Port: n, Protocol: protocolFromName(proto)})
			}
		}
		p.byRef[ref] = len(p.pods)
		p.pods = append(p.pods, podPlan{Ref: ref, Node: node, IPs: ps.IPs, Ports: ports})
		for _, ip := range ps.IPs {
			p.v6 = p.v6 || ip.Is6()
		}
	}
	return p
}

func protocolFromName(s string) policy.Protocol {
	for _, p := range []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP} {
		if p.String() == s {
			return p
		}
	}
	return 0
}

// State returns a copy of the lab's record.
func (l *Lab) State() State {
	st := *l.st
	st.Nodes = slices.Clone(st.Nodes)
	st.Pods = slices.Clone(st.Pods)
	st.Namespaces = slices.Clone(st.Namespaces)
	st.AgentArgs = slices.Clone(st.AgentArgs)
	return st
}

// Objects returns the objects the agents enforce, placement filled in:
// what compiler/sim must be given to predict this lab's matrix.
func (l *Lab) Objects() []policy.Object { return slices.Clone(l.objs) }

func (l *Lab) node(name string) (NodeState, bool) {
	for _, nd := range l.st.Nodes {
		if nd.Name == name {
			return nd, true
		}
	}
	return NodeState{}, false
}

func (l *Lab) pod(ns, name string) (PodState, bool) {
	for _, p := range l.st.Pods {
		if p.Namespace == ns && p.Name == name {
			return p, true
		}
	}
	return PodState{}, false
}

// writeManifests replaces the agents' manifest file atomically.
func (l *Lab) writeManifests(objs []policy.Object) error {
	b, err := encodeObjects(objs)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(l.st.Manifests, b); err != nil {
		return fmt.Errorf("lab: manifests: %w", err)
	}
	l.written = b
	return nil
}

// UpdateManifests makes objs the agents' whole input. Pods the lab does
// not have yet are built first (placed as Up places them), pods that left
// the objects are torn down (server, routes, interface, namespace); the
// others get the lab's placement and must keep it (see PodChangeError).
// WaitSynced then waits for the agents to apply it. Writing the same
// objects again is a no-op.
func (l *Lab) UpdateManifests(objs []policy.Object) error {
	return l.UpdateManifestsContext(context.Background(), objs)
}

// UpdateManifestsContext is UpdateManifests with a context for building
// and tearing down pods.
func (l *Lab) UpdateManifestsContext(ctx context.Context, objs []policy.Object) error {
	return l.update(ctx, objs, nil)
}

// update is UpdateManifestsContext; in Kubernetes mode, a non-nil scope
// limits the writes to the API server to those objects (Apply, Delete).
func (l *Lab) update(ctx context.Context, objs []policy.Object, scope map[policy.Ref]bool) error {
	d, err := diffPods(objs, l.plan, len(l.st.Nodes))
	if err != nil {
		return err
	}
	// Everything is checked before anything changes: a refused update
	// leaves the lab as it was.
	placed, err := placeObjects(objs, l.plan.withDiff(d), true)
	if err != nil {
		return err
	}
	b, err := encodeObjects(placed)
	if err != nil {
		return err
	}
	if l.kube != nil {
		// Always: kubectl may have changed the API since the last update.
		changed, err := l.kubeUpdate(ctx, placed, d, scope)
		if err != nil {
			return err
		}
		// The record of what the API server now holds (the agents read
		// the API, not this file).
		if err := writeFileAtomic(l.st.Manifests, b); err != nil {
			return fmt.Errorf("lab: manifests: %w", err)
		}
		l.objs, l.written = placed, b
		// The start of the last write that changed the API: any batch that
		// ends later and passes the quiet period has seen it.
		if !changed.IsZero() {
			l.updated = changed
		}
		return nil
	}
	if d.empty() && bytes.Equal(b, l.written) {
		l.objs = placed
		return nil
	}
	if err := l.applyPods(ctx, d); err != nil {
		return err
	}
	// Taken before the rename: any batch that ends later and passes the
	// quiet period has seen the new file.
	at := time.Now()
	if err := writeFileAtomic(l.st.Manifests, b); err != nil {
		return fmt.Errorf("lab: manifests: %w", err)
	}
	l.objs, l.written, l.updated = placed, b, at
	return nil
}

// UpdateManifestFiles is UpdateManifests with objects read from files.
func (l *Lab) UpdateManifestFiles(files ...string) error {
	objs, err := loadObjects(files, nil)
	if err != nil {
		return err
	}
	return l.UpdateManifests(objs)
}

// Down tears the lab down (see the package function Down).
func (l *Lab) Down(ctx context.Context) error {
	return Down(ctx, l.st.StateDir, l.st.Name)
}
