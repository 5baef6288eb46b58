package synth

import (
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selectors"
)

// Policy templates, shaped like what policy/ normalises real objects into:
// namespaced peers are ANDed with the namespace, namespaceSelectors become
// ns:* labels, Kubernetes rules with several peers become several rules.

func nsSel(ns string) *selectors.Selector { return selectors.Eq(selectors.KeyNamespace, ns) }

func podSel(ns, app string) *selectors.Selector {
	return selectors.And(nsSel(ns), selectors.Eq("app", app))
}

func nsLabelSel(k, v string) *selectors.Selector {
	return selectors.And(selectors.Eq(selectors.KeyKind, "pod"), selectors.Eq(selectors.NamespaceLabelPrefix+k, v))
}

func allPods() *selectors.Selector { return selectors.Eq(selectors.KeyKind, "pod") }

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func (g *gen) policies() {
	for i := 0; i < g.cfg.Policies; i++ {
		var p policy.Policy
		switch r := g.rng.IntN(100); {
		case r < 70:
			p = g.k8sPolicy(i)
		case r < 80:
			p = g.adminPolicy(i)
		case r < 85:
			p = g.baselinePolicy(i)
		default:
			p = g.tabbyPolicy(i)
		}
		g.m.Policies = append(g.m.Policies, p)
	}
}

func (g *gen) userNS() *nsInfo {
	if len(g.nss) == 1 {
		return &g.nss[0]
	}
	return &g.nss[1+g.rng.IntN(len(g.nss)-1)]
}

func allow(idx int, proto policy.Protocol) policy.Rule {
	return policy.Rule{Index: idx, Action: policy.ActionAllow, Protocol: proto}
}

func (g *gen) k8sPolicy(i int) policy.Policy {
	ns := g.userNS()
	app := g.pick(ns.apps)
	p := policy.Policy{
		Ref:     policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: ns.name},
		Tier:    policy.TierKubernetes,
		Subject: podSel(ns.name, app),
		Ingress: true,
	}
	switch g.rng.IntN(7) {
	case 0:
		p.Ref.Name = fmt.Sprintf("default-deny-ingress-%d", i)
		p.Subject = nsSel(ns.name)
	case 1:
		p.Ref.Name = fmt.Sprintf("allow-%s-from-app-%d", app, i)
		r := allow(0, policy.ProtoTCP)
		r.Source.Selector = podSel(ns.name, g.pick(ns.apps))
		if g.rng.IntN(2) == 0 {
			r.Destination.Ports = []policy.PortRange{{First: 8080, Last: 8080}}
		} else {
			r.Destination.NamedPorts = []policy.NamedPort{{Name: "http", Protocol: policy.ProtoTCP}}
		}
		p.IngressRules = []policy.Rule{r}
	case 2:
		p.Ref.Name = fmt.Sprintf("allow-%s-from-team-%d", app, i)
		r := allow(0, policy.ProtoTCP)
		r.Source.Selector = nsLabelSel("team", g.pick(teams))
		r.Destination.NamedPorts = []policy.NamedPort{{Name: "metrics", Protocol: policy.ProtoTCP}, {Name: "http", Protocol: policy.ProtoTCP}}
		r2 := allow(1, policy.ProtoTCP)
		r2.Source.Selector = podSel(ns.name, g.pick(ns.apps))
		r2.Destination.Ports = []policy.PortRange{{First: 9090, Last: 9090}}
		p.IngressRules = []policy.Rule{r, r2}
	case 3:
		p.Ref.Name = fmt.Sprintf("allow-%s-ipblock-%d", app, i)
		r := allow(0, policy.ProtoTCP)
		r.Source.Nets = []netip.Prefix{pfx("10.0.0.0/8")}
		r.Source.NotNets = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(1 + g.rng.IntN(200)), 0, 0}), 16)}
		r.Destination.Ports = []policy.PortRange{{First: 443, Last: 443}, {First: 8443, Last: 8443}}
		r6 := allow(1, policy.ProtoTCP)
		r6.Source.Nets = []netip.Prefix{pfx("fd00::/8")}
		r6.Destination.Ports = r.Destination.Ports
		p.IngressRules = []policy.Rule{r, r6}
	case 4:
		p.Ref.Name = fmt.Sprintf("allow-egress-dns-%d", i)
		p.Subject = nsSel(ns.name)
		p.Ingress, p.Egress = false, true
		dns := selectors.And(nsSel("kube-system"), selectors.Eq("k8s-app", "kube-dns"))
		u := allow(0, policy.ProtoUDP)
		u.Destination.Selector = dns
		u.Destination.Ports = []policy.PortRange{{First: 53, Last: 53}}
		t := allow(0, policy.ProtoTCP)
		t.Destination.Selector = dns
		t.Destination.NamedPorts = []policy.NamedPort{{Name: "dns-tcp", Protocol: policy.ProtoTCP}}
		db := allow(1, policy.ProtoTCP)
		db.Destination.Selector = podSel(ns.name, g.pick(ns.apps))
		db.Destination.NamedPorts = []policy.NamedPort{{Name: "postgres", Protocol: policy.ProtoTCP}}
		p.EgressRules = []policy.Rule{u, t, db}
	case 5:
		p.Ref.Name = fmt.Sprintf("default-deny-all-%d", i)
		p.Subject = nsSel(ns.name)
		p.Egress = true
	default:
		p.Ref.Name = fmt.Sprintf("allow-%s-from-all-%d", app, i)
		r := allow(0, policy.ProtoTCP)
		r.Source.Selector = allPods()
		r.Destination.Ports = []policy.PortRange{{First: 8080, Last: 8090}}
		p.IngressRules = []policy.Rule{r}
	}
	return p
}

func (g *gen) adminPolicy(i int) policy.Policy {
	p := policy.Policy{
		Ref:     policy.Ref{Kind: policy.KindClusterNetworkPolicy, Name: fmt.Sprintf("admin-%d", i)},
		Tier:    policy.TierAdmin,
		Order:   float64(g.rng.IntN(1000)),
		Subject: nsLabelSel("team", g.pick(teams)),
		Ingress: true,
		Egress:  g.rng.IntN(2) == 0,
	}
	if g.rng.IntN(3) == 0 {
		p.Subject = nsLabelSel("env", "prod")
	}
	mon := allow(0, policy.ProtoAny)
	mon.Name = "allow-monitoring"
	mon.Source.Selector = nsSel("kube-system")
	dev := policy.Rule{Index: 1, Name: "deny-dev", Action: policy.ActionDeny, Source: policy.Peer{Selector: nsLabelSel("env", "dev")}}
	pass := policy.Rule{Index: 2, Name: "pass-team", Action: policy.ActionPass, Source: policy.Peer{Selector: nsLabelSel("team", g.pick(teams))}}
	p.IngressRules = []policy.Rule{mon, dev, pass}
	if p.Egress {
		md := policy.Rule{Index: 0, Name: "deny-metadata", Action: policy.ActionDeny,
			Destination: policy.Peer{Nets: []netip.Prefix{pfx("169.254.169.254/32"), pfx("fd00:ec2::254/128")}}}
		p.EgressRules = []policy.Rule{md}
	}
	return p
}

func (g *gen) baselinePolicy(i int) policy.Policy {
	team := g.pick(teams)
	same := allow(0, policy.ProtoAny)
	same.Name = "allow-same-team"
	same.Source.Selector = nsLabelSel("team", team)
	deny := policy.Rule{Index: 1, Name: "deny-rest", Action: policy.ActionDeny, Source: policy.Peer{Selector: allPods()}}
	return policy.Policy{
		Ref:          policy.Ref{Kind: policy.KindClusterNetworkPolicy, Name: fmt.Sprintf("baseline-%d", i)},
		Tier:         policy.TierBaseline,
		Order:        float64(g.rng.IntN(1000)),
		Subject:      nsLabelSel("team", team),
		Ingress:      true,
		IngressRules: []policy.Rule{same, deny},
	}
}

func (g *gen) tabbyPolicy(i int) policy.Policy {
	p := policy.Policy{Tier: TierSecurity, Order: float64(g.rng.IntN(100)) / 4, Ingress: true, Egress: true}
	if g.rng.IntN(2) == 0 {
		p.Ref = policy.Ref{Kind: policy.KindGlobalNetworkPolicy, Name: fmt.Sprintf("security-%d", i)}
		p.Subject = selectors.And(allPods(), selectors.Eq(selectors.NamespaceLabelPrefix+"env", g.pick(envs)), selectors.Eq("tier", g.pick(podTiers)))
	} else {
		ns := g.userNS()
		p.Ref = policy.Ref{Kind: policy.KindTabbyNetworkPolicy, Namespace: ns.name, Name: fmt.Sprintf("security-%d", i)}
		p.Subject = podSel(ns.name, g.pick(ns.apps))
	}
	logIn := policy.Rule{Index: 0, Name: "log-blocked", Action: policy.ActionLog, LogPrefix: "tabby blocked: ",
		Source: policy.Peer{Selector: selectors.Eq("role", "blocklist")}}
	denyIn := policy.Rule{Index: 1, Name: "deny-blocked", Action: policy.ActionDeny,
		Source: policy.Peer{Selector: selectors.Eq("role", "blocklist")}}
	code := uint8(0)
	ping := policy.Rule{Index: 2, Name: "allow-ping", Action: policy.ActionAllow, Protocol: policy.ProtoICMP,
		ICMP: &policy.ICMPMatch{Type: 8, Code: &code}}
	passIn := policy.Rule{Index: 3, Name: "pass", Action: policy.ActionPass}
	p.IngressRules = []policy.Rule{logIn, denyIn, ping, passIn}
	var bad []netip.Prefix
	for j := 0; j < 12; j++ {
		bad = append(bad, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(198 + j%2), byte(18 + j), 0, 0}), 24))
	}
	denyOut := policy.Rule{Index: 0, Name: "deny-bad-nets", Action: policy.ActionDeny, Destination: policy.Peer{Nets: bad}}
	partners := policy.Rule{Index: 1, Name: "allow-partners", Action: policy.ActionAllow, Protocol: policy.ProtoTCP,
		Destination: policy.Peer{Selector: selectors.Eq("role", "partners"), Ports: []policy.PortRange{{First: 443, Last: 443}}}}
	passOut := policy.Rule{Index: 2, Name: "pass", Action: policy.ActionPass}
	p.EgressRules = []policy.Rule{denyOut, partners, passOut}
	return p
}
