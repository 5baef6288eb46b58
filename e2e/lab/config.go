package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/policy"
)

// Defaults of Config.
const (
	DefaultName         = "tabby-lab"
	DefaultStateDir     = "/run/tabby-lab"
	DefaultReadyTimeout = 30 * time.Second
	// MaxNodes bounds Config.Nodes: node addresses and pod CIDRs are
	// numbered by node index inside one /24 and 10.244.0.0/16.
	MaxNodes = 200
)

// HealthPort is the port of every agent's /readyz and /status, on
// 127.0.0.1 of its own node namespace (each node has its own loopback).
const HealthPort = 9099

// Underlay addressing: only ever configured inside the lab's namespaces.
var (
	underlayV4   = netip.MustParsePrefix("192.168.254.0/24")
	underlayV6   = netip.MustParsePrefix("fd74:6162:6279::/64")
	podCIDRsBase = netip.MustParsePrefix("10.244.0.0/16")
)

// Config says what lab to build.
type Config struct {
	// Files are manifests (multi-document YAML); Objects are already
	// decoded ones. Both may be given: files first.
	Files   []string
	Objects []policy.Object
	// Nodes is the number of node namespaces (1..MaxNodes).
	Nodes int
	// StateDir holds lab.json, manifests/ and logs/ (default DefaultStateDir).
	StateDir string
	// Name prefixes every namespace (default DefaultName): <Name>-underlay,
	// <Name>-node-<i>, <Name>-pod-<ns>-<pod> (and <Name>-cp in Kubernetes mode). Two labs with different names
	// and state directories can run side by side.
	Name string
	// Tabby is the agent binary (default: "tabby" next to Tabbyctl);
	// Tabbyctl is the binary whose hidden `lab serve` runs the pod servers
	// (default: this executable).
	Tabby, Tabbyctl string
	// ReadyTimeout bounds the wait for each server and agent (default
	// DefaultReadyTimeout).
	ReadyTimeout time.Duration
	// AgentArgs are extra flags for every `tabby agent`.
	AgentArgs []string
	// Kubernetes runs the lab in Kubernetes mode: a control plane (etcd and
	// kube-apiserver) in the namespace <Name>-cp on the underlay, objects
	// created through its API, agents reading from it (see the package
	// documentation).
	Kubernetes bool
	// Deploy is the manifest whose CRDs and agent RBAC Kubernetes mode
	// applies (default: DefaultDeploy, looked for above the working
	// directory, then above Tabbyctl).
	Deploy string
}

// ConfigError is bad input: invalid manifests, placement or options.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return "lab: " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(format string, a ...any) error { return &ConfigError{fmt.Errorf(format, a...)} }

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// withDefaults validates the options (not the manifests) and fills defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	switch {
	case !nameRE.MatchString(c.Name) || len(c.Name) > 32:
		return c, configErr("name %q: want lower-case letters, digits and single dashes, at most 32 bytes", c.Name)
	case c.Nodes < 1 || c.Nodes > MaxNodes:
		return c, configErr("%d nodes: want 1..%d", c.Nodes, MaxNodes)
	case len(c.Files) == 0 && len(c.Objects) == 0:
		return c, configErr("no manifests")
	}
	abs, err := filepath.Abs(c.StateDir)
	if err != nil {
		return c, configErr("state dir %q: %w", c.StateDir, err)
	}
	c.StateDir = abs
	return c, nil
}

// NodeName is the Kubernetes node name of node i (1-based): what the agent
// gets as --node and pods carry as spec.nodeName.
func NodeName(i int) string { return "node-" + strconv.Itoa(i) }

// nodeIndex parses NodeName's output; 0 when s is not a lab node name.
func nodeIndex(s string, nodes int) int {
	rest, ok := strings.CutPrefix(s, "node-")
	if !ok {
		return 0
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 1 || i > nodes || strconv.Itoa(i) != rest {
		return 0
	}
	return i
}

func nodeNetnsName(name string, i int) string { return fmt.Sprintf("%s-node-%d", name, i) }
func underlayNetnsName(name string) string    { return name + "-underlay" }

// maxNetnsName keeps pod namespace names readable in `ip netns` listings;
// longer ones keep a prefix and get a hash of the full pod name.
const maxNetnsName = 64

// podNetnsName is <name>-pod-<ns>-<pod>, or a shortened form with a hash
// of "ns/pod" so that distinct pods never share a namespace.
func podNetnsName(name, ns, pod string) string {
	full := name + "-pod-" + ns + "-" + pod
	if len(full) <= maxNetnsName {
		return full
	}
	sum := sha256.Sum256([]byte(ns + "/" + pod))
	h := hex.EncodeToString(sum[:5])
	return strings.TrimRight(full[:maxNetnsName-len(h)-1], "-.") + "-" + h
}

// leftoverRE matches the namespace names a lab called name creates, and
// nothing else: Down deletes these even when no state file records them.
func leftoverRE(name string) *regexp.Regexp {
	q := regexp.QuoteMeta(name)
	return regexp.MustCompile(`^` + q + `-(underlay|cp|node-[1-9][0-9]*|pod-.+)$`)
}

// nodeAddr is node i's underlay address in the prefix (bridge = .1 / ::1).
func nodeAddr(p netip.Prefix, i int) netip.Addr {
	a := p.Addr()
	for range 10 + i {
		a = a.Next()
	}
	return a
}

func bridgeAddr(p netip.Prefix) netip.Addr { return p.Addr().Next() }

// nodePodCIDR is 10.244.<i>.0/24: where pods without an address on node i
// get one.
func nodePodCIDR(i int) netip.Prefix {
	b := podCIDRsBase.Addr().As4()
	b[2] = byte(i)
	return netip.PrefixFrom(netip.AddrFrom4(b), 24)
}

// podPlan is one pod as the lab builds it.
type podPlan struct {
	Ref   policy.Ref
	Node  int
	IPs   []netip.Addr // primary first, as policy.Endpoint has them
	Ports []policy.ContainerPort
}

// plan is the placement of every pod.
type plan struct {
	pods  []podPlan // in object order
	byRef map[policy.Ref]int
	v6    bool // some pod has IPv6: the underlay gets IPv6 too
}

// makePlan normalises objs, places every pod and gives address-less pods
// one from their node's CIDR. Every problem is a *ConfigError.
func makePlan(objs []policy.Object, nodes int) (*plan, error) {
	m, errs := policy.Normalize(objs)
	if len(errs) > 0 {
		return nil, &ConfigError{fmt.Errorf("manifests: %w", errors.Join(errs...))}
	}
	eps := map[policy.Ref]*policy.Endpoint{}
	for i := range m.Endpoints {
		eps[m.Endpoints[i].Ref] = &m.Endpoints[i]
	}
	p := &plan{byRef: map[policy.Ref]int{}}
	used := map[netip.Addr]string{}
	rr := 0
	for _, o := range objs {
		ep, ok := eps[o.Ref]
		if o.Ref.Kind != policy.KindPod || !ok {
			continue // not a pod, or a pod that is no endpoint (finished, host network)
		}
		if _, dup := p.byRef[o.Ref]; dup {
			continue
		}
		name := sim.PodName(o.Ref)
		pp := podPlan{Ref: o.Ref, IPs: append([]netip.Addr(nil), ep.IPs...), Ports: ep.Ports}
		if ep.Node != "" {
			if pp.Node = nodeIndex(ep.Node, nodes); pp.Node == 0 {
				return nil, configErr("pod %s: spec.nodeName %q is not a lab node (want node-1..node-%d)", name, ep.Node, nodes)
			}
		} else {
			pp.Node = rr%nodes + 1
			rr++
		}
		for _, ip := range pp.IPs {
			if underlayV4.Contains(ip) || underlayV6.Contains(ip) {
				return nil, configErr("pod %s: IP %s is in the lab's underlay %s / %s", name, ip, underlayV4, underlayV6)
			}
			if other, dup := used[ip]; dup {
				return nil, configErr("pods %s and %s have the same IP %s", other, name, ip)
			}
			used[ip] = name
			p.v6 = p.v6 || ip.Is6()
		}
		p.byRef[o.Ref] = len(p.pods)
		p.pods = append(p.pods, pp)
	}
	// Addresses are assigned after every explicit one is known, so an
	// assigned address never collides with a later pod's own.
	next := map[int]netip.Addr{}
	for i := range p.pods {
		pp := &p.pods[i]
		if len(pp.IPs) > 0 {
			continue
		}
		cidr := nodePodCIDR(pp.Node)
		a, ok := next[pp.Node]
		if !ok {
			a = nodeAddr(cidr, 0) // .10: leaves the low addresses alone
		}
		for used[a] != "" {
			a = a.Next()
		}
		if !cidr.Contains(a) {
			return nil, configErr("node %s: pod CIDR %s is full", NodeName(pp.Node), cidr)
		}
		used[a] = sim.PodName(pp.Ref)
		pp.IPs = []netip.Addr{a}
		next[pp.Node] = a.Next()
	}
	return p, nil
}

// hostIf is the host-side veth name of a pod.
func (pp podPlan) hostIf() string { return compiler.InterfaceName(pp.Ref.Namespace, pp.Ref.Name) }

// name is "ns/pod".
func (pp podPlan) name() string { return sim.PodName(pp.Ref) }

// servedPorts are the pod's distinct (number, protocol) pairs, "80/TCP".
func (pp podPlan) servedPorts() []string {
	var out []string
	seen := map[string]bool{}
	for _, cp := range pp.Ports { // sorted by number, then protocol
		s := fmt.Sprintf("%d/%s", cp.Port, cp.Protocol)
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
