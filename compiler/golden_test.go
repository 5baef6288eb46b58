package compiler

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selectors"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// Hand-built models whose rendered tables are checked by eye once and then
// pinned in testdata/<name>.golden.

func k8sPolicy(ns, name string, subject string) policy.Policy {
	return policy.Policy{
		Ref:     policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: ns, Name: name},
		Tier:    policy.TierKubernetes,
		Subject: sel(subject),
	}
}

func tcp(ports ...uint16) policy.Peer {
	var p policy.Peer
	for _, n := range ports {
		p.Ports = append(p.Ports, policy.PortRange{First: n, Last: n})
	}
	return p
}

func goldenModels() map[string]*policy.Model {
	ms := map[string]*policy.Model{}

	// Pods a and b of x on this node, c elsewhere; x denies all ingress.
	deny := k8sPolicy("x", "default-deny", `tabby:namespace == "x"`)
	deny.Ingress = true
	ms["default-deny"] = &policy.Model{
		Tiers:    builtinTiers(),
		Policies: []policy.Policy{deny},
		Endpoints: []policy.Endpoint{
			pod("x", "a", "node-1", map[string]string{"app": "a"}, "10.0.0.1"),
			pod("x", "b", "node-1", map[string]string{"app": "b"}, "10.0.0.2"),
			pod("x", "c", "node-2", map[string]string{"app": "c"}, "10.0.0.3"),
			pod("y", "d", "node-1", nil, "10.0.0.4"),
		},
	}

	// x accepts TCP 80, 443 and 8000-8080 from every pod of y.
	fromNS := k8sPolicy("x", "allow-from-y", `tabby:namespace == "x"`)
	fromNS.Ingress = true
	r := policy.Rule{Index: 0, Action: policy.ActionAllow, Protocol: policy.ProtoTCP}
	r.Source.Selector = sel(`ns:kubernetes.io/metadata.name == "y" && tabby:kind == "pod"`)
	r.Destination = tcp(443, 80)
	r.Destination.Ports = append(r.Destination.Ports, policy.PortRange{First: 8000, Last: 8080})
	fromNS.IngressRules = []policy.Rule{r}
	ms["allow-from-namespace"] = &policy.Model{
		Tiers:    builtinTiers(),
		Policies: []policy.Policy{fromNS},
		Endpoints: []policy.Endpoint{
			pod("x", "a", "node-1", nil, "10.0.0.1"),
			pod("y", "b", "node-1", nil, "10.0.0.2"),
			pod("y", "c", "node-2", nil, "10.0.0.3", "fd00::3"),
			pod("y", "e", "node-3", nil, "10.0.0.4"),
			pod("z", "d", "node-2", nil, "10.0.0.5"),
		},
	}

	// ipBlock with except (inline), and a long egress list (a net-* set).
	ipb := k8sPolicy("x", "ipblock", `app == "a" && tabby:namespace == "x"`)
	ipb.Ingress, ipb.Egress = true, true
	in := policy.Rule{Index: 0, Action: policy.ActionAllow, Protocol: policy.ProtoUDP, Destination: tcp(53)}
	in.Source.Nets = prefixes("10.0.0.0/8")
	in.Source.NotNets = prefixes("10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16")
	out := policy.Rule{Index: 0, Action: policy.ActionAllow, Protocol: policy.ProtoTCP, Destination: tcp(443)}
	out.Destination.Nets = prefixes("192.0.2.0/25", "192.0.2.128/25", "198.51.100.0/24", "198.51.100.7/32",
		"203.0.113.0/26", "203.0.113.64/26", "203.0.113.192/26", "100.64.0.0/24", "100.64.2.0/24", "100.64.4.0/24",
		"100.64.6.0/24", "100.64.8.0/24", "100.64.10.0/24", "100.64.12.0/24")
	ipb.EgressRules = []policy.Rule{out}
	ipb.IngressRules = []policy.Rule{in}
	ms["ipblock-except"] = &policy.Model{
		Tiers:     builtinTiers(),
		Policies:  []policy.Policy{ipb},
		Endpoints: []policy.Endpoint{pod("x", "a", "node-1", map[string]string{"app": "a"}, "10.0.0.1")},
	}

	// Named ports: ingress to own http (plus numeric 9090: two rules), egress
	// to the DNS pods' "dns" port of any protocol, and to any pod's metrics.
	web := pod("x", "web", "node-1", map[string]string{"app": "web"}, "10.0.0.1", "fd00::1")
	web.Ports = []policy.ContainerPort{{Name: "http", Port: 8080, Protocol: policy.ProtoTCP}, {Name: "metrics", Port: 9100, Protocol: policy.ProtoTCP}}
	web2 := pod("x", "web2", "node-2", map[string]string{"app": "web"}, "10.0.0.2")
	web2.Ports = []policy.ContainerPort{{Name: "http", Port: 8081, Protocol: policy.ProtoTCP}}
	dns := pod("y", "dns", "node-2", map[string]string{"k8s-app": "dns"}, "10.0.0.53")
	dns.Ports = []policy.ContainerPort{{Name: "dns", Port: 53, Protocol: policy.ProtoUDP}, {Name: "dns", Port: 53, Protocol: policy.ProtoTCP}}
	np := k8sPolicy("x", "named", `app == "web" && tabby:namespace == "x"`)
	np.Ingress, np.Egress = true, true
	npIn := policy.Rule{Index: 0, Action: policy.ActionAllow, Protocol: policy.ProtoTCP, Destination: tcp(9090)}
	npIn.Source.Selector = sel(`tabby:kind == "pod"`)
	npIn.Destination.NamedPorts = []policy.NamedPort{{Name: "http", Protocol: policy.ProtoTCP}}
	npDNS := policy.Rule{Index: 0, Action: policy.ActionAllow}
	npDNS.Destination.Selector = sel(`k8s-app == "dns"`)
	npDNS.Destination.NamedPorts = []policy.NamedPort{{Name: "dns", Protocol: policy.ProtoAny}}
	npMetrics := policy.Rule{Index: 1, Action: policy.ActionAllow, Protocol: policy.ProtoTCP}
	npMetrics.Destination.NamedPorts = []policy.NamedPort{{Name: "metrics", Protocol: policy.ProtoTCP}}
	np.IngressRules = []policy.Rule{npIn}
	np.EgressRules = []policy.Rule{npDNS, npMetrics}
	ms["named-ports"] = &policy.Model{
		Tiers:     builtinTiers(),
		Policies:  []policy.Policy{np},
		Endpoints: []policy.Endpoint{web, web2, dns},
	}

	// Admin tier passes monitoring on to Kubernetes, which allows it; the
	// admin tier denies everything else from x's dev sibling z; baseline
	// denies all ingress to pods no other tier decided.
	admin := policy.Policy{
		Ref:     policy.Ref{Kind: policy.KindClusterNetworkPolicy, Name: "pass-monitoring"},
		Tier:    policy.TierAdmin,
		Order:   10,
		Subject: sel(`ns:team == "shop" && tabby:kind == "pod"`),
		Ingress: true,
		IngressRules: []policy.Rule{
			{Index: 0, Name: "pass-monitoring", Action: policy.ActionPass,
				Source: policy.Peer{Selector: sel(`ns:kubernetes.io/metadata.name == "monitoring" && tabby:kind == "pod"`)}},
			{Index: 1, Name: "deny-dev", Action: policy.ActionDeny,
				Source: policy.Peer{Selector: sel(`ns:env == "dev" && tabby:kind == "pod"`)}},
		},
	}
	k8sMon := k8sPolicy("x", "allow-monitoring", `tabby:namespace == "x"`)
	k8sMon.Ingress = true
	mr := policy.Rule{Index: 0, Action: policy.ActionAllow, Protocol: policy.ProtoTCP, Destination: tcp(9090)}
	mr.Source.Selector = sel(`ns:kubernetes.io/metadata.name == "monitoring" && tabby:kind == "pod"`)
	k8sMon.IngressRules = []policy.Rule{mr}
	baseline := policy.Policy{
		Ref:          policy.Ref{Kind: policy.KindClusterNetworkPolicy, Name: "default-deny"},
		Tier:         policy.TierBaseline,
		Order:        1000,
		Subject:      sel(`tabby:kind == "pod"`),
		Ingress:      true,
		IngressRules: []policy.Rule{{Index: 0, Name: "deny-all", Action: policy.ActionDeny}},
	}
	ms["cnp-admin-pass"] = &policy.Model{
		Tiers:    builtinTiers(),
		Policies: []policy.Policy{baseline, k8sMon, admin},
		Endpoints: []policy.Endpoint{
			pod("x", "a", "node-1", nil, "10.0.0.1"),
			pod("z", "b", "node-1", nil, "10.0.0.2"),
			pod("y", "c", "node-1", nil, "10.0.0.3"),
			pod("monitoring", "prom", "node-2", nil, "10.0.9.1"),
		},
	}

	// A Tabby tier (default Deny) with Log and Deny against a network set,
	// ICMP, not-protocol and not-ICMP, and two policies ordered by Order.
	tiers := []policy.Tier{builtinTiers()[0],
		{Name: "security", Ref: policy.Ref{Kind: policy.KindTier, Name: "security"}, Order: 100, DefaultAction: policy.ActionDeny},
		builtinTiers()[1], builtinTiers()[2]}
	code := uint8(0)
	gnp := policy.Policy{
		Ref:     policy.Ref{Kind: policy.KindGlobalNetworkPolicy, Name: "blocklist"},
		Tier:    "security",
		Order:   1,
		Subject: sel(`has(app)`),
		Ingress: true, Egress: true,
		IngressRules: []policy.Rule{
			{Index: 0, Name: "log", Action: policy.ActionLog, LogPrefix: "blocked: ", Source: policy.Peer{Selector: sel(`role == "blocklist"`)}},
			{Index: 1, Name: "deny", Action: policy.ActionDeny, Source: policy.Peer{Selector: sel(`role == "blocklist"`)}},
			{Index: 2, Name: "ping", Action: policy.ActionAllow, Protocol: policy.ProtoICMP, ICMP: &policy.ICMPMatch{Type: 8, Code: &code}},
			{Index: 3, Name: "not-udp", Action: policy.ActionPass, NotProtocol: policy.ProtoUDP,
				Source: policy.Peer{NotSelector: sel(`app == "db"`)}},
		},
		EgressRules: []policy.Rule{
			{Index: 0, Name: "no-unreachable", Action: policy.ActionDeny, Protocol: policy.ProtoICMP, NotICMP: &policy.ICMPMatch{Type: 0}},
			{Index: 1, Name: "pass", Action: policy.ActionPass},
		},
	}
	tnp := policy.Policy{
		Ref:     policy.Ref{Kind: policy.KindTabbyNetworkPolicy, Namespace: "x", Name: "web"},
		Tier:    "security",
		Order:   0.5,
		Subject: sel(`app == "web" && tabby:namespace == "x"`),
		Ingress: true,
		IngressRules: []policy.Rule{
			{Index: 0, Name: "from-lb", Action: policy.ActionAllow, Protocol: policy.ProtoTCP,
				Source:      policy.Peer{Nets: prefixes("192.168.0.0/16"), Ports: []policy.PortRange{{First: 1024, Last: 65535}}},
				Destination: tcp(80)},
		},
	}
	ms["tabby-tier"] = &policy.Model{
		Tiers:    tiers,
		Policies: []policy.Policy{gnp, tnp},
		Endpoints: []policy.Endpoint{
			pod("x", "web", "node-1", map[string]string{"app": "web"}, "10.0.0.1"),
			pod("x", "db", "node-1", map[string]string{"app": "db"}, "10.0.0.2"),
			pod("x", "plain", "node-1", nil, "10.0.0.3"),
		},
		NetworkSets: []policy.NetworkSet{{
			Ref:    policy.Ref{Kind: policy.KindGlobalNetworkSet, Name: "bad"},
			Labels: selectors.Map{selectors.KeyKind: "globalnetworkset", "role": "blocklist"},
			Nets:   prefixes("198.18.0.0/15", "198.18.5.0/24", "2001:db8:bad::/48", "203.0.113.9/32"),
		}},
	}

	// IPv6: an IPv6-only rule, IPv6 nets, and v4-only, v6-only and dual-stack pods.
	v6 := k8sPolicy("x", "v6", `tabby:namespace == "x"`)
	v6.Ingress, v6.Egress = true, true
	v6.IngressRules = []policy.Rule{
		{Index: 0, Action: policy.ActionAllow, IPFamily: 6, Protocol: policy.ProtoICMPv6, ICMP: &policy.ICMPMatch{Type: 128}},
		{Index: 1, Action: policy.ActionAllow, Protocol: policy.ProtoTCP, Destination: tcp(80),
			Source: policy.Peer{Selector: sel(`tabby:namespace == "y"`)}},
	}
	v6.EgressRules = []policy.Rule{
		{Index: 0, Action: policy.ActionAllow, Destination: policy.Peer{Nets: prefixes("2001:db8::/32", "2001:db8:1::/48", "fd00::/8")}},
		{Index: 1, Action: policy.ActionAllow, IPFamily: 4},
	}
	ms["ipv6"] = &policy.Model{
		Tiers:    builtinTiers(),
		Policies: []policy.Policy{v6},
		Endpoints: []policy.Endpoint{
			pod("x", "dual", "node-1", nil, "10.0.0.1", "fd00::1"),
			pod("x", "six", "node-1", nil, "fd00::2"),
			pod("y", "a", "node-2", nil, "fd00::10"),
			pod("y", "b", "node-2", nil, "fd00::11", "10.0.0.11"),
			pod("y", "c", "node-2", nil, "fd00::12"),
		},
	}
	return ms
}

func TestGolden(t *testing.T) {
	for name, m := range goldenModels() {
		t.Run(name, func(t *testing.T) {
			tab, err := Compile(m, Options{Node: "node-1"})
			if err != nil {
				t.Fatal(err)
			}
			checkTable(t, tab)
			got := tab.String()
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./compiler -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the golden file:\n%s", name, lineDiff(got, string(want)))
			}
		})
	}
}
