package policy

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/selectors"
)

// tabbyRule normalises a NetworkPolicy shop/web ("np") or GlobalNetworkPolicy
// web ("gnp") with one ingress rule (a YAML flow mapping without braces).
func tabbyRule(t *testing.T, which, rule string) Rule {
	t.Helper()
	p := tabbyMustPolicy(t, which, "ingress: [{"+rule+"}]")
	if len(p.IngressRules) != 1 {
		t.Fatalf("%d ingress rules", len(p.IngressRules))
	}
	return p.IngressRules[0]
}

func u8(v uint8) *uint8 { return &v }

func TestTabbyRuleFields(t *testing.T) {
	pfx := netip.MustParsePrefix
	cases := []struct {
		name, rule string
		check      func(r Rule) bool
	}{
		{"allow", "action: Allow", func(r Rule) bool { return r.Action == ActionAllow && r.Index == 0 }},
		{"deny", "action: Deny", func(r Rule) bool { return r.Action == ActionDeny }},
		{"pass", "action: Pass", func(r Rule) bool { return r.Action == ActionPass }},
		{"log", "action: Log", func(r Rule) bool { return r.Action == ActionLog }},
		{"no protocol", "action: Allow", func(r Rule) bool {
			return r.Protocol == ProtoAny && r.NotProtocol == ProtoAny && r.IPFamily == 0
		}},
		{"TCP", "action: Allow, protocol: TCP", func(r Rule) bool { return r.Protocol == ProtoTCP }},
		{"UDP", "action: Allow, protocol: UDP", func(r Rule) bool { return r.Protocol == ProtoUDP }},
		{"SCTP", "action: Allow, protocol: SCTP", func(r Rule) bool { return r.Protocol == ProtoSCTP }},
		{"UDPLite", "action: Allow, protocol: UDPLite", func(r Rule) bool { return r.Protocol == 136 }},
		{"number", "action: Allow, protocol: 47", func(r Rule) bool { return r.Protocol == 47 }},
		{"number 255", "action: Allow, protocol: 255", func(r Rule) bool { return r.Protocol == 255 }},
		{"number as string", `action: Allow, protocol: "6"`, func(r Rule) bool { return r.Protocol == ProtoTCP }},
		{"notProtocol", "action: Allow, notProtocol: UDP", func(r Rule) bool {
			return r.Protocol == ProtoAny && r.NotProtocol == ProtoUDP
		}},
		{"ICMP implies IPv4", "action: Allow, protocol: ICMP", func(r Rule) bool {
			return r.Protocol == ProtoICMP && r.IPFamily == 4
		}},
		{"ICMPv6 implies IPv6", "action: Allow, protocol: ICMPv6", func(r Rule) bool {
			return r.Protocol == ProtoICMPv6 && r.IPFamily == 6
		}},
		{"ICMP number implies IPv4", "action: Allow, protocol: 1", func(r Rule) bool { return r.IPFamily == 4 }},
		{"ipVersion 4", "action: Allow, ipVersion: 4", func(r Rule) bool { return r.IPFamily == 4 }},
		{"ipVersion 6 agrees with ICMPv6", "action: Allow, ipVersion: 6, protocol: ICMPv6", func(r Rule) bool {
			return r.IPFamily == 6
		}},
		{"icmp type and code", "action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}", func(r Rule) bool {
			return reflect.DeepEqual(r.ICMP, &ICMPMatch{Type: 8, Code: u8(0)}) && r.NotICMP == nil
		}},
		{"icmp type only", "action: Allow, protocol: ICMPv6, icmp: {type: 128}", func(r Rule) bool {
			return reflect.DeepEqual(r.ICMP, &ICMPMatch{Type: 128})
		}},
		{"notICMP", "action: Allow, protocol: ICMP, notICMP: {type: 3, code: 255}", func(r Rule) bool {
			return reflect.DeepEqual(r.NotICMP, &ICMPMatch{Type: 3, Code: u8(255)}) && r.ICMP == nil
		}},
		{"ports", `action: Allow, protocol: TCP, destination: {ports: [80, "8000:8080", http, "443", "1:1"]}`, func(r Rule) bool {
			return reflect.DeepEqual(r.Destination.Ports, []PortRange{{80, 80}, {8000, 8080}, {443, 443}, {1, 1}}) &&
				reflect.DeepEqual(r.Destination.NamedPorts, []NamedPort{{Name: "http", Protocol: ProtoTCP}})
		}},
		{"notPorts", `action: Allow, protocol: UDP, destination: {notPorts: [53, dns, "65535"]}`, func(r Rule) bool {
			return reflect.DeepEqual(r.Destination.NotPorts, []PortRange{{53, 53}, {65535, 65535}}) &&
				reflect.DeepEqual(r.Destination.NotNamedPorts, []NamedPort{{Name: "dns", Protocol: ProtoUDP}}) &&
				r.Destination.Ports == nil
		}},
		{"SCTP named port", `action: Allow, protocol: SCTP, destination: {ports: [diameter]}`, func(r Rule) bool {
			return reflect.DeepEqual(r.Destination.NamedPorts, []NamedPort{{Name: "diameter", Protocol: ProtoSCTP}})
		}},
		{"numeric source ports", `action: Allow, protocol: TCP, source: {ports: ["1024:65535"], notPorts: [2049]}`, func(r Rule) bool {
			return reflect.DeepEqual(r.Source.Ports, []PortRange{{1024, 65535}}) &&
				reflect.DeepEqual(r.Source.NotPorts, []PortRange{{2049, 2049}}) && r.Destination.Ports == nil
		}},
		{"nets masked", `action: Allow, source: {nets: [10.1.2.3/8, 192.0.2.1, "2001:db8::1/32"], notNets: [10.1.0.0/16]}`, func(r Rule) bool {
			return reflect.DeepEqual(r.Source.Nets, []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.0.2.1/32"), pfx("2001:db8::/32")}) &&
				reflect.DeepEqual(r.Source.NotNets, []netip.Prefix{pfx("10.1.0.0/16")})
		}},
		{"mixed families with ipVersion", `action: Allow, ipVersion: 6, destination: {nets: [10.0.0.0/8, "fd00::/8"]}`, func(r Rule) bool {
			return r.IPFamily == 6 && len(r.Destination.Nets) == 2
		}},
		{"nets only: no selector", `action: Allow, source: {nets: [10.0.0.0/8]}`, func(r Rule) bool {
			return r.Source.Selector == nil && r.Source.NotSelector == nil
		}},
		{"empty sides", `action: Allow`, func(r Rule) bool {
			return reflect.DeepEqual(r.Source, Peer{}) && reflect.DeepEqual(r.Destination, Peer{})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, which := range []string{"np", "gnp"} {
				r := tabbyRule(t, which, c.rule)
				if !c.check(r) {
					t.Errorf("%s {%s}: unexpected rule %+v", which, c.rule, r)
				}
			}
		})
	}
}

func TestTabbyPolicyErrors(t *testing.T) {
	cases := []struct {
		name, which, spec string
		field, reason     string
	}{
		{"unknown tier", "np", "tier: nope", "spec.tier", `tier "nope" does not exist`},
		{"bad policy selector", "np", `selector: app = "x"`, "spec.selector", ""},
		{"bad namespaceSelector", "gnp", `namespaceSelector: "team =="`, "spec.namespaceSelector", ""},
		{"bad type", "np", "types: [ingress]", "spec.types[0]", `"ingress" is not Ingress or Egress`},
		{"duplicate type", "np", "types: [Ingress, Ingress]", "spec.types[1]", `duplicate type "Ingress"`},
		{"egress rules without Egress type", "np", "types: [Ingress], egress: [{action: Allow}]",
			"spec.egress", "has rules but spec.types does not include Egress"},
		{"ingress rules without Ingress type", "gnp", "types: [Egress], ingress: [{action: Allow}]",
			"spec.ingress", "has rules but spec.types does not include Ingress"},
		{"missing action", "np", "ingress: [{protocol: TCP}]", "spec.ingress[0].action", "is required (Allow, Deny, Pass or Log)"},
		{"bad action", "np", "egress: [{action: Accept}]", "spec.egress[0].action", `"Accept" is not Allow, Deny, Pass or Log`},
		{"unknown protocol", "np", "ingress: [{action: Allow, protocol: tcp}]", "spec.ingress[0].protocol",
			`unknown protocol "tcp" (want TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or a number 1-255)`},
		{"protocol 0", "np", "ingress: [{action: Allow, protocol: 0}]", "spec.ingress[0].protocol", "protocol 0 is out of range 1-255"},
		{"protocol 256", "np", "ingress: [{action: Allow, notProtocol: 256}]", "spec.ingress[0].notProtocol", "protocol 256 is out of range 1-255"},
		{"notProtocol equals protocol", "np", "ingress: [{action: Allow, protocol: TCP, notProtocol: 6}]",
			"spec.ingress[0].notProtocol", "equals protocol TCP: the rule could never match"},
		{"bad ipVersion", "np", "ingress: [{action: Allow, ipVersion: 5}]", "spec.ingress[0].ipVersion", "5 is not 4 or 6"},
		{"ipVersion contradicts ICMP", "np", "ingress: [{action: Allow, ipVersion: 6, protocol: ICMP}]",
			"spec.ingress[0].ipVersion", "6 contradicts protocol ICMP, which is IPv4 only"},
		{"ipVersion contradicts ICMPv6", "np", "ingress: [{action: Allow, ipVersion: 4, protocol: ICMPv6}]",
			"spec.ingress[0].ipVersion", "4 contradicts protocol ICMPv6, which is IPv6 only"},
		{"icmp without protocol", "np", "ingress: [{action: Allow, icmp: {type: 8}}]", "spec.ingress[0].icmp",
			"needs protocol ICMP or ICMPv6"},
		{"notICMP with TCP", "np", "ingress: [{action: Allow, protocol: TCP, notICMP: {type: 8}}]", "spec.ingress[0].notICMP",
			"needs protocol ICMP or ICMPv6"},
		{"icmp code without type", "np", "ingress: [{action: Allow, protocol: ICMP, icmp: {code: 0}}]",
			"spec.ingress[0].icmp.code", "needs type"},
		{"icmp without type", "np", "ingress: [{action: Allow, protocol: ICMP, icmp: {}}]",
			"spec.ingress[0].icmp.type", "is required"},
		{"icmp type range", "np", "ingress: [{action: Allow, protocol: ICMP, icmp: {type: 256}}]",
			"spec.ingress[0].icmp.type", "256 is out of range 0-255"},
		{"icmp code range", "np", "ingress: [{action: Allow, protocol: ICMP, icmp: {type: 3, code: -1}}]",
			"spec.ingress[0].icmp.code", "-1 is out of range 0-255"},
		{"ports without protocol", "np", "ingress: [{action: Allow, destination: {ports: [80]}}]",
			"spec.ingress[0].destination.ports", "needs protocol TCP, UDP or SCTP (protocol is not set)"},
		{"ports with ICMP", "np", "egress: [{action: Allow, protocol: ICMP, source: {notPorts: [80]}}]",
			"spec.egress[0].source.notPorts", "needs protocol TCP, UDP or SCTP, not ICMP"},
		{"ports with UDPLite", "np", "ingress: [{action: Allow, protocol: UDPLite, destination: {ports: [80]}}]",
			"spec.ingress[0].destination.ports", "needs protocol TCP, UDP or SCTP, not 136"},
		{"port 0", "np", "ingress: [{action: Allow, protocol: TCP, destination: {ports: [80, 0]}}]",
			"spec.ingress[0].destination.ports[1]", "port 0 is out of range 1-65535"},
		{"port 65536", "np", `ingress: [{action: Allow, protocol: TCP, destination: {ports: ["65536"]}}]`,
			"spec.ingress[0].destination.ports[0]", `port "65536" is out of range 1-65535`},
		{"reversed range", "np", `ingress: [{action: Allow, protocol: TCP, destination: {ports: ["90:80"]}}]`,
			"spec.ingress[0].destination.ports[0]", `port "90:80" is a reversed range (first > last)`},
		{"range from 0", "np", `ingress: [{action: Allow, protocol: TCP, destination: {ports: ["0:80"]}}]`,
			"spec.ingress[0].destination.ports[0]", `port "0:80" is out of range 1-65535`},
		{"malformed range", "np", `ingress: [{action: Allow, protocol: TCP, destination: {ports: ["80:"]}}]`,
			"spec.ingress[0].destination.ports[0]", `port "80:" is not a range "first:last" of numbers`},
		{"bad port name", "np", `ingress: [{action: Allow, protocol: TCP, destination: {ports: ["80-90"]}}]`,
			"spec.ingress[0].destination.ports[0]",
			`port "80-90" is not a number, a range "a:b" or a port name: must contain at least one letter (a-z)`},
		{"named source port", "np", `ingress: [{action: Allow, protocol: TCP, source: {ports: [http]}}]`,
			"spec.ingress[0].source.ports[0]",
			`named port "http" is only valid on the destination (names refer to the destination's containerPorts)`},
		{"bad net", "np", `ingress: [{action: Allow, source: {notNets: [10.0.0.0/8, "10.0.0.300"]}}]`,
			"spec.ingress[0].source.notNets[1]", `invalid network "10.0.0.300": want a CIDR (10.0.0.0/8) or an address`},
		{"ipVersion 4 with IPv6 nets", "np", `ingress: [{action: Allow, ipVersion: 4, destination: {nets: ["2001:db8::/32"]}}]`,
			"spec.ingress[0].destination.nets", "ipVersion is 4 but no network is IPv4"},
		{"ICMPv6 with IPv4 nets", "np", `ingress: [{action: Allow, protocol: ICMPv6, source: {nets: [10.0.0.0/8]}}]`,
			"spec.ingress[0].source.nets", "protocol ICMPv6 is IPv6 only but no network is IPv6"},
		{"nets share no family", "np", `ingress: [{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {nets: ["fd00::/8"]}}]`,
			"spec.ingress[0].destination.nets", "source.nets and destination.nets share no IP family: the rule could never match"},
		{"bad rule selector", "np", `ingress: [{action: Allow, source: {selector: "app in (a)"}}]`,
			"spec.ingress[0].source.selector", ""},
		{"bad rule notSelector", "gnp", `egress: [{action: Allow, destination: {notSelector: "has(a"}}]`,
			"spec.egress[0].destination.notSelector", ""},
		{"empty serviceAccounts", "np", `ingress: [{action: Allow, source: {serviceAccounts: {}}}]`,
			"spec.ingress[0].source.serviceAccounts", "needs names or selector"},
		{"bad serviceAccount name", "np", `ingress: [{action: Allow, source: {serviceAccounts: {names: [ok, "Bad_Name"]}}}]`,
			"spec.ingress[0].source.serviceAccounts.names[1]",
			`"Bad_Name" is not a service account name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
		{"bad serviceAccount selector", "np", `ingress: [{action: Allow, source: {serviceAccounts: {selector: "=="}}}]`,
			"spec.ingress[0].source.serviceAccounts.selector", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tabbyPolicy(t, c.which, c.spec)
			fes := tabbyFieldErrors(t, err)
			if len(fes) != 1 {
				t.Fatalf("want exactly one error, got %d: %v", len(fes), err)
			}
			fe := fes[0]
			if fe.Field != c.field {
				t.Errorf("Field = %q, want %q (%v)", fe.Field, c.field, fe)
			}
			if fe.Source != tabbyTestSource || fe.Object.Name != "web" {
				t.Errorf("error not located: %+v", fe)
			}
			if c.reason != "" && fe.Reason != c.reason {
				t.Errorf("Reason = %q\n        want %q", fe.Reason, c.reason)
			}
			if c.reason == "" { // selector errors: the parser's column, and errors.As reaches it
				var pe *selectors.ParseError
				if !errors.As(err, &pe) || pe.Col < 1 || !strings.HasPrefix(fe.Reason, "invalid selector ") ||
					!strings.Contains(fe.Reason, "column ") {
					t.Errorf("selector error without its column: %q (%v)", fe.Reason, pe)
				}
			}
		})
	}
}

func TestTabbyErrorsExact(t *testing.T) {
	_, err := tabbyPolicy(t, "np", `selector: app = "x", ingress: [{action: Allow, protocol: TCP, destination: {ports: [0]}}]`)
	fes := tabbyFieldErrors(t, err)
	var got []string
	for _, fe := range fes {
		got = append(got, fe.Error())
	}
	want := []string{
		`t.yaml (document 1): tabby.dev/NetworkPolicy shop/web: spec.selector: invalid selector "app = \"x\"": column 5: expected operator (==, !=, in, not in, contains, starts with, ends with), found "="`,
		`t.yaml (document 1): tabby.dev/NetworkPolicy shop/web: spec.ingress[0].destination.ports[0]: port 0 is out of range 1-65535`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n got %q\nwant %q", got, want)
	}
	var pe *selectors.ParseError
	if !errors.As(err, &pe) || pe.Col != 5 {
		t.Errorf("ParseError = %+v, want column 5", pe)
	}
	if !strings.Contains(err.Error(), "\n") {
		t.Errorf("several errors are not joined: %q", err)
	}
}

// tabbyPeerMatches is what the compiler does with a Peer's selectors for an
// address that belongs to a subject with labels l.
func tabbyPeerMatches(p Peer, l selectors.Labels) bool {
	return (p.Selector == nil || p.Selector.Matches(l)) && (p.NotSelector == nil || !p.NotSelector.Matches(l))
}

func TestTabbyEntitySelectors(t *testing.T) {
	type subj struct {
		name   string
		labels selectors.Map
	}
	dbShop := subj{"db pod in shop", tabbyPod("shop", "default", nil, "role", "db")}
	dbOther := subj{"db pod in other", tabbyPod("other", "default", nil, "role", "db")}
	apiShop := subj{"api pod in shop", tabbyPod("shop", "api", map[string]string{"tier": "backend"}, "role", "web")}
	apiOther := subj{"api pod in other", tabbyPod("other", "api", map[string]string{"tier": "backend"}, "role", "web")}
	frontOther := subj{"frontend pod in other", tabbyPod("other", "front", map[string]string{"tier": "frontend"}, "role", "web")}
	setShop := subj{"NetworkSet in shop", tabbyTestSet(t, "NetworkSet", "name: p, namespace: shop, labels: {role: partner}")}
	setOther := subj{"NetworkSet in other", tabbyTestSet(t, "NetworkSet", "name: p, namespace: other, labels: {role: partner}")}
	gset := subj{"GlobalNetworkSet", tabbyTestSet(t, "GlobalNetworkSet", "name: p, labels: {role: partner}")}
	saSet := subj{"NetworkSet labelled like a service account",
		selectors.Map{"tabby:kind": "networkset", "tabby:namespace": "shop", "ns:team": "a", "tabby:serviceaccount": "api"}}
	all := []subj{dbShop, dbOther, apiShop, apiOther, frontOther, setShop, setOther, gset, saSet}

	cases := []struct {
		which, source string
		match         []subj // every other subject of all must not match
		nilSelector   bool
	}{
		// Namespaced policy: selector stays in the policy's namespace.
		{"np", `selector: role == "db"`, []subj{dbShop}, false},
		{"np", `selector: role == "partner"`, []subj{setShop}, false},
		{"np", `selector: all()`, []subj{dbShop, apiShop, setShop, saSet}, false},
		// ... unless namespaceSelector widens it.
		{"np", `selector: role == "db", namespaceSelector: team == "b"`, []subj{dbOther}, false},
		{"np", `namespaceSelector: team == "b"`, []subj{dbOther, apiOther, frontOther, setOther}, false},
		{"np", `namespaceSelector: all()`, []subj{dbShop, dbOther, apiShop, apiOther, frontOther, setShop, setOther, saSet}, false},
		{"np", `namespaceSelector: "!has(team)"`, nil, false}, // never a GlobalNetworkSet without global()
		{"np", `namespaceSelector: global()`, []subj{gset}, false},
		{"np", `namespaceSelector: global(), selector: role == "partner"`, []subj{gset}, false},
		{"np", `namespaceSelector: global() || team == "a", selector: role == "partner"`, []subj{gset, setShop}, false},
		// notSelector: Calico scopes the positive side to the namespace.
		{"np", `notSelector: role == "db"`, []subj{apiShop, setShop, saSet}, false},
		// Global policy: every namespace and global sets.
		{"gnp", `selector: role == "partner"`, []subj{setShop, setOther, gset}, false},
		{"gnp", `selector: role == "db"`, []subj{dbShop, dbOther}, false},
		{"gnp", `namespaceSelector: team == "a"`, []subj{dbShop, apiShop, setShop, saSet}, false},
		{"gnp", `notSelector: role == "db"`, []subj{apiShop, apiOther, frontOther, setShop, setOther, gset, saSet}, true},
		// Service accounts: pods only, scoped like selector.
		{"np", `serviceAccounts: {names: [api]}`, []subj{apiShop}, false},
		{"gnp", `serviceAccounts: {names: [api, front]}`, []subj{apiShop, apiOther, frontOther}, false},
		{"gnp", `serviceAccounts: {selector: tier == "backend"}`, []subj{apiShop, apiOther}, false},
		{"gnp", `serviceAccounts: {names: [api, front], selector: tier == "frontend"}`, []subj{frontOther}, false},
		{"np", `serviceAccounts: {names: [api]}, namespaceSelector: all()`, []subj{apiShop, apiOther}, false},
		{"np", `serviceAccounts: {names: [api]}, selector: role == "db"`, nil, false},
		// Nets alone constrain no selector.
		{"np", `nets: [10.0.0.0/8]`, []subj{dbShop, dbOther, apiShop, apiOther, frontOther, setShop, setOther, gset, saSet}, true},
	}
	for _, c := range cases {
		for _, side := range []string{"source", "destination"} {
			p := tabbyMustPolicy(t, c.which, "ingress: [{action: Allow, "+side+": {"+c.source+"}}]")
			peer := p.IngressRules[0].Source
			if side == "destination" {
				peer = p.IngressRules[0].Destination
			}
			if (peer.Selector == nil) != c.nilSelector {
				t.Errorf("%s %s {%s}: Selector = %v, want nil: %v", c.which, side, c.source, peer.Selector, c.nilSelector)
			}
			want := map[string]bool{}
			for _, s := range c.match {
				want[s.name] = true
			}
			for _, s := range all {
				if got := tabbyPeerMatches(peer, s.labels); got != want[s.name] {
					t.Errorf("%s %s {%s}: %s matched %v, want %v (selector %v, not %v)",
						c.which, side, c.source, s.name, got, want[s.name], peer.Selector, peer.NotSelector)
				}
			}
		}
	}
}

func tabbyTestSet(t *testing.T, kind, meta string) selectors.Map {
	t.Helper()
	o, err := tabbyDecode(t, kind, tabbyDoc(kind, meta, "nets: [192.0.2.0/24]"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := normalizeNetworkSet(o, tabbyTestCluster())
	if err != nil {
		t.Fatal(err)
	}
	return s.Labels
}

func TestTabbyRuleIndexAcrossErrors(t *testing.T) {
	// A valid rule keeps its source index even when its neighbours are valid
	// too; several rules map one to one.
	p := tabbyMustPolicy(t, "np", "ingress: [{action: Allow}, {action: Deny}, {action: Pass}]")
	for i, r := range p.IngressRules {
		if r.Index != i {
			t.Errorf("rule %d has Index %d", i, r.Index)
		}
	}
	if got := []Action{p.IngressRules[0].Action, p.IngressRules[1].Action, p.IngressRules[2].Action}; !reflect.DeepEqual(got,
		[]Action{ActionAllow, ActionDeny, ActionPass}) {
		t.Errorf("actions = %v", got)
	}
}

func TestTabbyPolicyNotAPolicy(t *testing.T) {
	_, err := normalizeTabbyPolicy(Object{Source: tabbyTestSource}, tabbyTestCluster())
	fes := tabbyFieldErrors(t, err)
	if len(fes) != 1 || fes[0].Reason != "object is not a tabby.dev NetworkPolicy or GlobalNetworkPolicy" {
		t.Errorf("err = %v", err)
	}
	// A nil cluster still knows the implicit default tier.
	o, err := tabbyDecode(t, "GlobalNetworkPolicy", tabbyDoc("GlobalNetworkPolicy", "name: web", ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := normalizeTabbyPolicy(o, nil); err != nil {
		t.Errorf("nil cluster: %v", err)
	}
}
