package synth

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selectors"
)

// Config sizes a synthetic cluster.
type Config struct {
	Seed        uint64
	Namespaces  int // the first is kube-system, with the cluster DNS
	Pods        int
	Policies    int
	NetworkSets int
	// Node is the name of the first node; PodsPerNode pods are placed per
	// node (so Node gets PodsPerNode of them, when there are enough pods).
	Node        string
	PodsPerNode int
	// DualStackPercent of pods also get an IPv6 address.
	DualStackPercent int
}

// Default is the benchmark cluster: 10,000 pods in 500 namespaces, 2,000
// policies, 110 pods on node-1.
func Default() Config {
	return Config{Seed: 1, Namespaces: 500, Pods: 10000, Policies: 2000, NetworkSets: 8,
		Node: "node-1", PodsPerNode: 110, DualStackPercent: 20}
}

// Small is a cluster small enough to check exhaustively in tests.
func Small(seed uint64) Config {
	return Config{Seed: seed, Namespaces: 5, Pods: 40, Policies: 24, NetworkSets: 3,
		Node: "node-1", PodsPerNode: 10, DualStackPercent: 30}
}

// Tier names the generator uses (besides policy's built-in ones).
const TierSecurity = "security"

var (
	teams    = []string{"payments", "search", "identity", "growth", "data", "infra", "mobile", "ads", "video", "ml"}
	envs     = []string{"prod", "staging", "dev"}
	appNames = []string{"web", "api", "auth", "cart", "checkout", "catalog", "search", "worker", "cache", "db",
		"queue", "billing", "mailer", "gateway", "profile", "feed", "media", "ingest", "report", "admin"}
	podTiers = []string{"frontend", "backend", "db", "cache"}
	versions = []string{"v1", "v2", "v3"}
)

type gen struct {
	cfg   Config
	rng   *rand.Rand
	m     *policy.Model
	nss   []nsInfo
	nodes int
}

type nsInfo struct {
	name   string
	labels map[string]string
	apps   []string
}

// Generate builds the cluster.
func Generate(cfg Config) *policy.Model {
	if cfg.PodsPerNode <= 0 {
		cfg.PodsPerNode = 110
	}
	if cfg.Namespaces <= 0 {
		cfg.Namespaces = 1
	}
	if cfg.Node == "" {
		cfg.Node = "node-1"
	}
	g := &gen{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), m: &policy.Model{}}
	g.nodes = max(1, (cfg.Pods+cfg.PodsPerNode-1)/cfg.PodsPerNode)
	g.m.Tiers = []policy.Tier{
		{Name: policy.TierAdmin, DefaultAction: policy.ActionPass},
		{Name: TierSecurity, Ref: policy.Ref{Kind: policy.KindTier, Name: TierSecurity}, Order: 100, DefaultAction: policy.ActionPass},
		{Name: policy.TierKubernetes, DefaultAction: policy.ActionDeny},
		{Name: policy.TierBaseline, DefaultAction: policy.ActionPass},
	}
	g.namespaces()
	g.pods()
	g.networkSets()
	g.policies()
	return g.m
}

func (g *gen) pick(xs []string) string { return xs[g.rng.IntN(len(xs))] }

// NodeName is the name of node i (0-based): node-1, node-2, ... with the
// configured first name for node 0.
func (g *gen) nodeName(i int) string {
	if i == 0 {
		return g.cfg.Node
	}
	return fmt.Sprintf("node-%d", i+1)
}

func (g *gen) namespaces() {
	for i := 0; i < g.cfg.Namespaces; i++ {
		name := fmt.Sprintf("ns-%03d", i)
		if i == 0 {
			name = "kube-system"
		}
		labels := map[string]string{
			"kubernetes.io/metadata.name": name,
			"team":                        g.pick(teams),
			"env":                         g.pick(envs),
		}
		apps := []string{"kube-dns"}
		if i > 0 {
			apps = nil
			perm := g.rng.Perm(len(appNames))
			for _, j := range perm[:2+g.rng.IntN(5)] {
				apps = append(apps, appNames[j])
			}
		}
		g.nss = append(g.nss, nsInfo{name: name, labels: labels, apps: apps})
	}
}

// PodIP is the address of the pod in slot s of node n: each node owns a /24
// (or larger) block of 10.0.0.0/8, as a node IPAM would hand out.
func podIP(n, s, perNode int) (netip.Addr, netip.Addr) {
	block := 256
	for block < perNode+2 {
		block *= 2
	}
	v := uint32(10)<<24 + uint32(n+1)*uint32(block) + uint32(s+2)
	v4 := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	var b [16]byte
	b[0], b[1], b[3] = 0xfd, 0x00, 0x10
	b[10], b[11] = byte((n+1)>>8), byte(n+1)
	b[14], b[15] = byte(s>>8), byte(s)
	return v4, netip.AddrFrom16(b)
}

func (g *gen) pods() {
	// Place pods on nodes in a random order, so a node's pods come from many
	// namespaces, like a scheduler spreading replicas.
	order := g.rng.Perm(g.cfg.Pods)
	counts := map[string]int{}
	for i := 0; i < g.cfg.Pods; i++ {
		ns := &g.nss[g.rng.IntN(len(g.nss))]
		if i < len(g.nss) {
			ns = &g.nss[i] // every namespace gets at least one pod
		}
		app := g.pick(ns.apps)
		counts[ns.name+"/"+app]++
		name := fmt.Sprintf("%s-%d", app, counts[ns.name+"/"+app])
		slot := order[i]
		node, s := slot%g.nodes, slot/g.nodes
		v4, v6 := podIP(node, s, g.cfg.PodsPerNode)
		ep := policy.Endpoint{
			Ref:  policy.Ref{Kind: policy.KindPod, Namespace: ns.name, Name: name},
			IPs:  []netip.Addr{v4},
			Node: g.nodeName(node),
		}
		if g.rng.IntN(100) < g.cfg.DualStackPercent {
			ep.IPs = append(ep.IPs, v6)
		}
		tier := g.pick(podTiers)
		labels := map[string]string{"app": app, "tier": tier, "version": g.pick(versions)}
		if app == "kube-dns" {
			labels["k8s-app"] = "kube-dns"
			ep.Ports = []policy.ContainerPort{{Name: "dns", Port: 53, Protocol: policy.ProtoUDP}, {Name: "dns-tcp", Port: 53, Protocol: policy.ProtoTCP}}
		} else {
			ep.Ports = portsFor(tier)
		}
		ep.Labels = EndpointLabels(ns.name, ns.labels, app, labels)
		g.m.Endpoints = append(g.m.Endpoints, ep)
	}
}

func portsFor(tier string) []policy.ContainerPort {
	metrics := policy.ContainerPort{Name: "metrics", Port: 9090, Protocol: policy.ProtoTCP}
	switch tier {
	case "frontend":
		return []policy.ContainerPort{{Name: "http", Port: 8080, Protocol: policy.ProtoTCP}, metrics}
	case "backend":
		return []policy.ContainerPort{{Name: "http", Port: 8000, Protocol: policy.ProtoTCP}, {Name: "grpc", Port: 9000, Protocol: policy.ProtoTCP}, metrics}
	case "db":
		return []policy.ContainerPort{{Name: "postgres", Port: 5432, Protocol: policy.ProtoTCP}, metrics}
	}
	return []policy.ContainerPort{{Name: "redis", Port: 6379, Protocol: policy.ProtoTCP}, {Name: "stats", Port: 8125, Protocol: policy.ProtoUDP}}
}

// EndpointLabels returns a pod's labels with the reserved keys policy/ adds.
func EndpointLabels(ns string, nsLabels map[string]string, sa string, labels map[string]string) selectors.Map {
	m := selectors.Map{
		selectors.KeyKind:           "pod",
		selectors.KeyNamespace:      ns,
		selectors.KeyServiceAccount: sa,
	}
	for k, v := range nsLabels {
		m[selectors.NamespaceLabelPrefix+k] = v
	}
	for k, v := range labels {
		m[k] = v
	}
	return m
}

func (g *gen) networkSets() {
	roles := []string{"blocklist", "partners", "monitoring"}
	for i := 0; i < g.cfg.NetworkSets; i++ {
		role := roles[i%len(roles)]
		var nets []netip.Prefix
		for j := 0; j < 3+g.rng.IntN(20); j++ {
			a := netip.AddrFrom4([4]byte{byte(100 + g.rng.IntN(100)), byte(g.rng.IntN(256)), byte(g.rng.IntN(256)), 0})
			nets = append(nets, netip.PrefixFrom(a, 16+g.rng.IntN(9)).Masked())
		}
		if i%2 == 0 {
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i), byte(g.rng.IntN(256))})
			nets = append(nets, netip.PrefixFrom(a, 48))
		}
		ns := policy.NetworkSet{Nets: nets}
		if i%3 == 2 && len(g.nss) > 1 {
			n := g.nss[1+g.rng.IntN(len(g.nss)-1)]
			ns.Ref = policy.Ref{Kind: policy.KindNetworkSet, Namespace: n.name, Name: fmt.Sprintf("%s-%d", role, i)}
			ns.Labels = selectors.Map{selectors.KeyKind: "networkset", selectors.KeyNamespace: n.name, "role": role}
			for k, v := range n.labels {
				ns.Labels[selectors.NamespaceLabelPrefix+k] = v
			}
		} else {
			ns.Ref = policy.Ref{Kind: policy.KindGlobalNetworkSet, Name: fmt.Sprintf("%s-%d", role, i)}
			ns.Labels = selectors.Map{selectors.KeyKind: "globalnetworkset", "role": role}
		}
		g.m.NetworkSets = append(g.m.NetworkSets, ns)
	}
}
