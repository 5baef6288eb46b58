package crdcheck

import (
	"fmt"
	"strings"
	"testing"
)

// A case is one object. crd is "" when the API server must accept it, or a
// substring of the error it must give. The normaliser must agree (reject
// exactly when crd is set), unless
//   - policyOnly names a check only Tabby can make: then the CRD accepts and
//     the normaliser rejects;
//   - crdOnly names a bound the CRD needs and Tabby does not have (the CEL
//     cost budget needs maxItems and maxLength): then the CRD rejects and the
//     normaliser accepts. deploy/crds/README.md lists these.
type tcase struct {
	name       string
	doc        string
	crd        string
	policyOnly string
	crdOnly    string
}

// many is n copies of item, comma-separated, for the list-size cases.
func many(item string, n int) string {
	return strings.TrimSuffix(strings.Repeat(item+", ", n), ", ")
}

// caseContext is given to the normaliser with every case: the Tier the
// cases name, so that "tier does not exist" is never the reason a case fails.
const caseContext = `{apiVersion: tabby.dev/v1alpha1, kind: Tier, metadata: {name: security}, spec: {order: 100}}`

func tier(name, spec string) string {
	return fmt.Sprintf("{apiVersion: tabby.dev/v1alpha1, kind: Tier, metadata: {name: %q}, spec: %s}", name, spec)
}

func np(spec string) string {
	return "{apiVersion: tabby.dev/v1alpha1, kind: NetworkPolicy, metadata: {name: p, namespace: shop}, spec: " + spec + "}"
}

func gnp(spec string) string {
	return "{apiVersion: tabby.dev/v1alpha1, kind: GlobalNetworkPolicy, metadata: {name: g}, spec: " + spec + "}"
}

// rule is a NetworkPolicy with one ingress rule.
func rule(r string) string { return np("{ingress: [" + r + "]}") }

func netset(kind, extraMeta, spec string) string {
	ns := ""
	if kind == "NetworkSet" {
		ns = ", namespace: shop"
	}
	return fmt.Sprintf("{apiVersion: tabby.dev/v1alpha1, kind: %s, metadata: {name: s%s%s}, spec: %s}", kind, ns, extraMeta, spec)
}

// Messages of the CEL rules (policy/api/v1alpha1), matched as substrings.
const (
	msgPortsProto    = "ports and notPorts need protocol TCP, UDP or SCTP"
	msgSourceNames   = "source ports and notPorts take numbers and ranges only"
	msgICMPProto     = "icmp and notICMP need protocol ICMP or ICMPv6"
	msgIPVersion     = "ipVersion contradicts the protocol"
	msgNotProtocol   = "notProtocol equals protocol"
	msgOnly4         = "the rule is IPv4 only"
	msgOnly6         = "the rule is IPv6 only"
	msgNoFamily      = "share no IP family"
	msgPort          = "must be a port 1-65535"
	msgProtocol      = "must be TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or a number 1-255"
	msgNet           = "must be a CIDR (10.0.0.0/8) or an IP address"
	msgSA            = "serviceAccounts needs names or selector"
	msgTypesIngress  = "spec.ingress has rules but spec.types does not include Ingress"
	msgTypesEgress   = "spec.egress has rules but spec.types does not include Egress"
	msgTierLabel     = "a Tier name must be a DNS-1123 label"
	msgTierReserved  = "the tier name is reserved"
	msgTierOrder     = "spec.order is required"
	msgDefaultOrder  = "the order of tier default is fixed at 1000000"
	msgBuiltinTier   = "names a built-in tier"
	msgUnknownField  = "unknown field"
	msgRequired      = "Required value"
	msgUnsupported   = "Unsupported value"
	msgDuplicate     = "Duplicate value"
	msgTypeIntOrStr  = "must be of type integer"
	msgTierPattern   = "should match"
	msgSubdomainName = "RFC 1123"
)

var cases = []tcase{
	// Tier.
	{name: "tier", doc: tier("ops", "{order: 100}")},
	{name: "tier pass", doc: tier("t", "{order: 1.5, defaultAction: Pass}")},
	{name: "tier action", doc: tier("t", "{order: 1, defaultAction: Allow}"), crd: msgUnsupported},
	{name: "tier without order", doc: tier("t", "{defaultAction: Pass}"), crd: msgTierOrder},
	{name: "tier without spec", doc: "{apiVersion: tabby.dev/v1alpha1, kind: Tier, metadata: {name: t}}", crd: msgTierOrder},
	{name: "tier default without order", doc: tier("default", "{defaultAction: Pass}")},
	{name: "tier default without spec", doc: "{apiVersion: tabby.dev/v1alpha1, kind: Tier, metadata: {name: default}}"},
	{name: "tier default at its order", doc: tier("default", "{order: 1000000}")},
	{name: "tier default moved", doc: tier("default", "{order: 5}"), crd: msgDefaultOrder},
	{name: "tier reserved kubernetes", doc: tier("kubernetes", "{order: 5}"), crd: msgTierReserved},
	{name: "tier reserved cnp-admin", doc: tier("cnp-admin", "{order: 5}"), crd: msgTierReserved},
	{name: "tier reserved cnp-baseline", doc: tier("cnp-baseline", "{order: 5}"), crd: msgTierReserved},
	{name: "tier name subdomain", doc: tier("a.b", "{order: 5}"), crd: msgTierLabel},
	{name: "tier name uppercase", doc: tier("Sec", "{order: 5}"), crd: msgSubdomainName},
	{name: "tier name 64", doc: tier(strings.Repeat("a", 64), "{order: 5}"), crd: msgTierLabel},
	{name: "tier unknown field", doc: tier("t", "{order: 5, color: red}"), crd: msgUnknownField},
	{name: "tier order string", doc: tier("t", "{order: '5'}"), crd: "must be of type number"},

	// NetworkPolicy and GlobalNetworkPolicy specs.
	{name: "np empty", doc: np("{}")},
	{name: "np no spec", doc: "{apiVersion: tabby.dev/v1alpha1, kind: NetworkPolicy, metadata: {name: p, namespace: shop}}"},
	{name: "np all fields", doc: np(`{tier: security, order: 10.5, selector: 'app == "web"', serviceAccountSelector: 'role == "x"',
		types: [Ingress, Egress], ingress: [{action: Allow}], egress: [{action: Deny}]}`)},
	{name: "np empty tier", doc: np("{tier: ''}")},
	{name: "np tier not a label", doc: np("{tier: Bad_Tier}"), crd: msgTierPattern},
	{name: "np tier too long", doc: np("{tier: " + strings.Repeat("a", 64) + "}"), crd: "Too long"},
	{name: "np tier built-in", doc: np("{tier: kubernetes}"), crd: msgBuiltinTier},
	{name: "np tier built-in cnp", doc: gnp("{tier: cnp-admin}"), crd: msgBuiltinTier},
	{name: "np tier missing", doc: np("{tier: nosuchtier}"), policyOnly: "a Tier is another object"},
	{name: "np selector grammar", doc: np("{selector: 'app =='}"), policyOnly: "selector grammar"},
	{name: "np rule selector grammar", doc: rule("{action: Allow, source: {selector: '!!('}}"), policyOnly: "selector grammar"},
	{name: "np types dup", doc: np("{types: [Ingress, Ingress]}"), crd: msgDuplicate},
	{name: "np types unknown", doc: np("{types: [Sideways]}"), crd: msgUnsupported},
	{name: "np types empty", doc: np("{types: [], ingress: [{action: Allow}], egress: [{action: Allow}]}")},
	{name: "np egress only with ingress rules", doc: np("{types: [Egress], ingress: [{action: Allow}]}"), crd: msgTypesIngress},
	{name: "np ingress only with egress rules", doc: np("{types: [Ingress], egress: [{action: Allow}]}"), crd: msgTypesEgress},
	{name: "gnp ingress only with egress rules", doc: gnp("{types: [Ingress], egress: [{action: Allow}]}"), crd: msgTypesEgress},
	{name: "np egress only", doc: np("{types: [Egress], egress: [{action: Allow}]}")},
	{name: "np namespaceSelector", doc: np("{namespaceSelector: all()}"), crd: msgUnknownField},
	{name: "gnp namespaceSelector", doc: gnp(`{namespaceSelector: 'team == "a"', selector: all(), order: 1}`)},
	{name: "np order string", doc: np("{order: high}"), crd: "must be of type number"},
	{name: "np unknown field", doc: np("{ingres: []}"), crd: msgUnknownField},

	// Rules: action, ipVersion.
	{name: "rule action missing", doc: rule("{protocol: TCP}"), crd: msgRequired},
	{name: "rule action unknown", doc: rule("{action: Accept}"), crd: msgUnsupported},
	{name: "rule log", doc: rule("{action: Log}")},
	{name: "rule pass", doc: rule("{action: Pass}")},
	{name: "rule ipVersion 6", doc: rule("{action: Allow, ipVersion: 6}")},
	{name: "rule ipVersion 5", doc: rule("{action: Allow, ipVersion: 5}"), crd: msgUnsupported},

	// Protocols.
	{name: "protocol TCP", doc: rule("{action: Allow, protocol: TCP}")},
	{name: "protocol UDPLite", doc: rule("{action: Allow, protocol: UDPLite}")},
	{name: "protocol number", doc: rule("{action: Allow, protocol: 47}")},
	{name: "protocol 255", doc: rule("{action: Allow, protocol: 255}")},
	{name: "protocol number string", doc: rule("{action: Allow, protocol: '6'}")},
	{name: "protocol number string plus", doc: rule("{action: Allow, protocol: '+6'}")},
	{name: "protocol number string zeros", doc: rule("{action: Allow, protocol: '006'}")},
	{name: "protocol 0", doc: rule("{action: Allow, protocol: 0}"), crd: msgProtocol},
	{name: "protocol 256", doc: rule("{action: Allow, protocol: 256}"), crd: msgProtocol},
	{name: "protocol string 0", doc: rule("{action: Allow, protocol: '0'}"), crd: msgProtocol},
	{name: "protocol string 300", doc: rule("{action: Allow, protocol: '300'}"), crd: msgProtocol},
	{name: "protocol lowercase", doc: rule("{action: Allow, protocol: tcp}"), crd: msgProtocol},
	{name: "protocol unknown", doc: rule("{action: Allow, protocol: GRE}"), crd: msgProtocol},
	{name: "protocol bool", doc: rule("{action: Allow, protocol: true}"), crd: msgTypeIntOrStr},
	{name: "protocol float", doc: rule("{action: Allow, protocol: 6.5}"), crd: msgTypeIntOrStr},
	{name: "notProtocol", doc: rule("{action: Allow, protocol: TCP, notProtocol: UDP}")},
	{name: "notProtocol alone", doc: rule("{action: Allow, notProtocol: 17}")},
	{name: "notProtocol invalid", doc: rule("{action: Allow, notProtocol: Foo}"), crd: msgProtocol},
	{name: "notProtocol same name", doc: rule("{action: Allow, protocol: UDP, notProtocol: UDP}"), crd: msgNotProtocol},
	{name: "notProtocol same resolved", doc: rule("{action: Allow, protocol: TCP, notProtocol: 6}"), crd: msgNotProtocol},
	{name: "notProtocol same string number", doc: rule("{action: Allow, protocol: '58', notProtocol: ICMPv6}"), crd: msgNotProtocol},

	// Ports.
	{name: "ports", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [80, "8000:8080", http, "443", "+81", "1:65535", 80a]}}`)},
	{name: "ports udp number", doc: rule(`{action: Allow, protocol: 17, destination: {ports: [53]}}`)},
	{name: "ports sctp string number", doc: rule(`{action: Allow, protocol: '132', destination: {ports: [9000]}}`)},
	{name: "ports sctp", doc: rule(`{action: Allow, protocol: SCTP, source: {ports: [9000]}}`)},
	{name: "ports empty without protocol", doc: rule(`{action: Allow, destination: {ports: []}}`)},
	{name: "ports without protocol", doc: rule(`{action: Allow, destination: {ports: [80]}}`), crd: msgPortsProto},
	{name: "notPorts without protocol", doc: rule(`{action: Allow, source: {notPorts: [80]}}`), crd: msgPortsProto},
	{name: "ports with ICMP", doc: rule(`{action: Allow, protocol: ICMP, destination: {ports: [80]}}`), crd: msgPortsProto},
	{name: "ports with UDPLite", doc: rule(`{action: Allow, protocol: UDPLite, destination: {ports: [80]}}`), crd: msgPortsProto},
	{name: "ports with notProtocol only", doc: rule(`{action: Allow, notProtocol: TCP, destination: {ports: [80]}}`), crd: msgPortsProto},
	{name: "port 0", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [0]}}`), crd: msgPort},
	{name: "port 65536", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [65536]}}`), crd: msgPort},
	{name: "port string 0", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: ["0"]}}`), crd: msgPort},
	{name: "port string 70000", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: ["70000"]}}`), crd: msgPort},
	{name: "port negative", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [-1]}}`), crd: msgPort},
	{name: "port range reversed", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: ["9000:8000"]}}`), crd: msgPort},
	{name: "port range from 0", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: ["0:10"]}}`), crd: msgPort},
	{name: "port range to 70000", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: ["10:70000"]}}`), crd: msgPort},
	{name: "port range letters", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: ["a:b"]}}`), crd: msgPort},
	{name: "port range three", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: ["1:2:3"]}}`), crd: msgPort},
	{name: "port range open", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [":80"]}}`), crd: msgPort},
	{name: "port range signs", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: ["+1:+2"]}}`)},
	{name: "port name uppercase", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [HTTP]}}`), crd: msgPort},
	{name: "port name leading hyphen", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [-http]}}`), crd: msgPort},
	{name: "port name double hyphen", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [a--b]}}`), crd: msgPort},
	{name: "port name 16", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [abcdefghijklmnop]}}`), crd: msgPort},
	{name: "port name 15", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [abcdefghijklmno]}}`)},
	{name: "port name empty", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [""]}}`), crd: msgPort},
	{name: "port float", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: [80.5]}}`), crd: msgTypeIntOrStr},
	{name: "destination notPorts name", doc: rule(`{action: Allow, protocol: TCP, destination: {notPorts: [http]}}`)},
	{name: "source ports numbers", doc: rule(`{action: Allow, protocol: TCP, source: {ports: [1024, "2000:3000", "53"]}}`)},
	{name: "source port name", doc: rule(`{action: Allow, protocol: TCP, source: {ports: [http]}}`), crd: msgSourceNames},
	{name: "source notPorts name", doc: rule(`{action: Allow, protocol: UDP, source: {notPorts: [dns]}}`), crd: msgSourceNames},

	// ICMP.
	{name: "icmp", doc: rule(`{action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}}`)},
	{name: "icmpv6", doc: rule(`{action: Allow, protocol: ICMPv6, icmp: {type: 128}}`)},
	{name: "icmp by number", doc: rule(`{action: Allow, protocol: 1, notICMP: {type: 3}}`)},
	{name: "icmpv6 by string number", doc: rule(`{action: Allow, protocol: '58', icmp: {type: 135, code: 0}}`)},
	{name: "icmp without protocol", doc: rule(`{action: Allow, icmp: {type: 8}}`), crd: msgICMPProto},
	{name: "icmp with TCP", doc: rule(`{action: Allow, protocol: TCP, icmp: {type: 8}}`), crd: msgICMPProto},
	{name: "notICMP with UDP", doc: rule(`{action: Allow, protocol: UDP, notICMP: {type: 8}}`), crd: msgICMPProto},
	{name: "icmp empty", doc: rule(`{action: Allow, protocol: ICMP, icmp: {}}`), crd: msgRequired},
	{name: "icmp code without type", doc: rule(`{action: Allow, protocol: ICMP, icmp: {code: 0}}`), crd: msgRequired},
	{name: "icmp type 256", doc: rule(`{action: Allow, protocol: ICMP, icmp: {type: 256}}`), crd: "less than or equal to 255"},
	{name: "icmp code negative", doc: rule(`{action: Allow, protocol: ICMP, icmp: {type: 3, code: -1}}`), crd: "greater than or equal to 0"},
	{name: "icmp ipVersion 4", doc: rule(`{action: Allow, protocol: ICMP, ipVersion: 4}`)},
	{name: "icmp ipVersion 6", doc: rule(`{action: Allow, protocol: ICMP, ipVersion: 6}`), crd: msgIPVersion},
	{name: "icmpv6 ipVersion 4", doc: rule(`{action: Allow, protocol: 58, ipVersion: 4}`), crd: msgIPVersion},
	{name: "tcp ipVersion 6", doc: rule(`{action: Allow, protocol: TCP, ipVersion: 6}`)},

	// Nets.
	{name: "nets", doc: rule(`{action: Allow, source: {nets: [10.0.0.0/8, 10.1.2.3, 10.1.2.3/8, 0.0.0.0/0]}, destination: {notNets: ["2001:db8::/32", "::1"]}}`)},
	{name: "nets v6", doc: rule(`{action: Allow, source: {nets: ["2001:db8::/32", "::/0", "fe80::1"]}}`)},
	{name: "net prefix 33", doc: rule(`{action: Allow, source: {nets: [10.0.0.0/33]}}`), crd: msgNet},
	{name: "net octet 256", doc: rule(`{action: Allow, source: {nets: [10.0.0.256]}}`), crd: msgNet},
	{name: "net leading zero", doc: rule(`{action: Allow, source: {nets: [010.0.0.1]}}`), crd: msgNet},
	{name: "net zone", doc: rule(`{action: Allow, source: {nets: ["fe80::1%eth0"]}}`), crd: msgNet},
	{name: "net zone prefix", doc: rule(`{action: Allow, source: {nets: ["fe80::1%eth0/64"]}}`), crd: msgNet},
	{name: "net v4-mapped", doc: rule(`{action: Allow, source: {nets: ["::ffff:10.0.0.1"]}}`), crd: msgNet},
	{name: "net v4-mapped prefix", doc: rule(`{action: Allow, destination: {notNets: ["::ffff:10.0.0.0/104"]}}`), crd: msgNet},
	{name: "net empty", doc: rule(`{action: Allow, source: {nets: [""]}}`), crd: msgNet},
	{name: "net space", doc: rule(`{action: Allow, source: {nets: ["10.0.0.0/8 "]}}`), crd: msgNet},
	{name: "net hostname", doc: rule(`{action: Allow, source: {notNets: [example.com]}}`), crd: msgNet},
	{name: "net too long", doc: rule(`{action: Allow, source: {nets: ["` + strings.Repeat("0", 70) + `"]}}`), crd: "Too long"},

	// IP families.
	{name: "ipVersion 4 with v6 nets", doc: rule(`{action: Allow, ipVersion: 4, source: {nets: ["2001:db8::/32"]}}`), crd: msgOnly4},
	{name: "ipVersion 4 with mixed nets", doc: rule(`{action: Allow, ipVersion: 4, source: {nets: [10.0.0.0/8, "2001:db8::/32"]}}`)},
	{name: "ipVersion 6 with v4 destination", doc: rule(`{action: Allow, ipVersion: 6, destination: {nets: [10.0.0.0/8]}}`), crd: msgOnly6},
	{name: "ipVersion 6 with v6 nets", doc: rule(`{action: Allow, ipVersion: 6, source: {nets: ["::/0"]}, destination: {nets: ["2001:db8::1"]}}`)},
	{name: "icmpv6 with v4 nets", doc: rule(`{action: Allow, protocol: ICMPv6, destination: {nets: [10.0.0.0/8]}}`), crd: msgOnly6},
	{name: "icmp with v6 nets", doc: rule(`{action: Allow, protocol: '1', source: {nets: ["::1"]}}`), crd: msgOnly4},
	{name: "icmp with v4 nets", doc: rule(`{action: Allow, protocol: ICMP, source: {nets: [10.0.0.1]}}`)},
	{name: "ipVersion 4 with v6 notNets", doc: rule(`{action: Allow, ipVersion: 4, source: {notNets: ["2001:db8::/32"]}}`)},
	{name: "families disjoint", doc: rule(`{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {nets: ["2001:db8::/32"]}}`), crd: msgNoFamily},
	{name: "families shared", doc: rule(`{action: Allow, source: {nets: [10.0.0.0/8, "::/0"]}, destination: {nets: ["2001:db8::/32"]}}`)},
	{name: "families one side", doc: rule(`{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {notNets: ["2001:db8::/32"]}}`)},

	// Selectors and service accounts.
	{name: "rule selectors", doc: rule(`{action: Allow, source: {selector: 'role == "db"', notSelector: 'env == "test"', namespaceSelector: global()}}`)},
	{name: "serviceAccounts names", doc: rule(`{action: Allow, source: {serviceAccounts: {names: [api, "web.v1"]}}}`)},
	{name: "serviceAccounts selector", doc: rule(`{action: Allow, destination: {serviceAccounts: {selector: 'tier == "backend"'}}}`)},
	{name: "serviceAccounts empty", doc: rule(`{action: Allow, source: {serviceAccounts: {}}}`), crd: msgSA},
	{name: "serviceAccounts empty fields", doc: rule(`{action: Allow, source: {serviceAccounts: {names: [], selector: ''}}}`), crd: msgSA},
	{name: "serviceAccounts bad name", doc: rule(`{action: Allow, source: {serviceAccounts: {names: [Bad_Name]}}}`), crd: msgTierPattern},
	{name: "serviceAccounts long name", doc: rule(`{action: Allow, source: {serviceAccounts: {names: [` + strings.Repeat("a", 254) + `]}}}`), crd: "Too long"},
	{name: "gnp rule", doc: gnp(`{egress: [{action: Deny, protocol: UDP, destination: {ports: [http]}}]}`)},
	{name: "gnp source port name", doc: gnp(`{egress: [{action: Deny, protocol: UDP, source: {ports: [http]}}]}`), crd: msgSourceNames},

	// Network sets.
	{name: "netset", doc: netset("NetworkSet", ", labels: {role: partner}", `{nets: [192.0.2.0/24, "2001:db8::/32", 10.0.0.1]}`)},
	{name: "netset empty", doc: netset("NetworkSet", "", "{}")},
	{name: "gnetset", doc: netset("GlobalNetworkSet", "", `{nets: [0.0.0.0/0]}`)},
	{name: "netset bad net", doc: netset("NetworkSet", "", `{nets: [192.0.2.0/40]}`), crd: msgNet},
	{name: "gnetset mapped", doc: netset("GlobalNetworkSet", "", `{nets: ["::ffff:192.0.2.1"]}`), crd: msgNet},
	{name: "netset reserved label", doc: netset("NetworkSet", `, labels: {"tabby:kind": pod}`, "{}"), crd: "name part must consist of"},
	{name: "netset bad label value", doc: netset("GlobalNetworkSet", `, labels: {a: "-x"}`, "{}"), crd: "a valid label must be"},
	{name: "netset unknown field", doc: netset("NetworkSet", "", `{nets: [], selector: all()}`), crd: msgUnknownField},

	// The bounds the CEL cost budget needs: at the limit accepted, past it
	// rejected by the CRD only.
	{name: "256 rules", doc: np("{ingress: [" + many("{action: Allow}", 256) + "]}")},
	{name: "257 rules", doc: np("{egress: [" + many("{action: Allow}", 257) + "]}"), crd: "Too many", crdOnly: "maxItems 256"},
	{name: "64 ports", doc: rule("{action: Allow, protocol: TCP, destination: {ports: [" + many("80", 64) + "]}}")},
	{name: "65 ports", doc: rule("{action: Allow, protocol: TCP, destination: {notPorts: [" + many("80", 65) + "]}}"), crd: "Too many", crdOnly: "maxItems 64"},
	{name: "128 nets", doc: rule("{action: Allow, source: {nets: [" + many("10.0.0.0/8", 128) + "]}}")},
	{name: "129 nets", doc: rule("{action: Allow, source: {notNets: [" + many("10.0.0.0/8", 129) + "]}}"), crd: "Too many", crdOnly: "maxItems 128"},
	{name: "64 service accounts", doc: rule("{action: Allow, source: {serviceAccounts: {names: [" + many("api", 64) + "]}}}")},
	{name: "65 service accounts", doc: rule("{action: Allow, source: {serviceAccounts: {names: [" + many("api", 65) + "]}}}"), crd: "Too many", crdOnly: "maxItems 64"},
	{name: "port 32 chars", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: ["` + strings.Repeat("0", 30) + `80"]}}`)},
	{name: "port 33 chars", doc: rule(`{action: Allow, protocol: TCP, destination: {ports: ["` + strings.Repeat("0", 31) + `80"]}}`), crd: "Too long", crdOnly: "maxLength 32"},
	{name: "protocol 33 chars", doc: rule(`{action: Allow, protocol: "` + strings.Repeat("0", 32) + `6"}`), crd: "Too long", crdOnly: "maxLength 32"},
	// The largest policy the bounds allow must fit the API server's runtime
	// CEL budget (10^7 per object), or it would be rejected at run time.
	{name: "largest policy", doc: np("{ingress: [" + many("{action: Allow, protocol: TCP, source: {nets: ["+many("10.1.2.3/32", 128)+
		"], notNets: ["+many("10.1.2.4", 128)+"], ports: ["+many(`"1000:2000"`, 64)+"], notPorts: ["+many("1500", 64)+
		"]}, destination: {nets: ["+many(`"2001:db8::/32"`, 127)+", 10.0.0.0/8], notNets: ["+many(`"2001:db8::1"`, 128)+
		"], ports: ["+many("http-alt", 64)+"], notPorts: ["+many(`"80"`, 64)+"]}}", 256) + "]}")},
	{name: "set 65536 nets", doc: netset("GlobalNetworkSet", "", "{nets: ["+many("10.0.0.1", 65536)+"]}")},
	{name: "set 65537 nets", doc: netset("NetworkSet", "", "{nets: ["+many("10.0.0.1", 65537)+"]}"), crd: "Too many", crdOnly: "maxItems 65536"},
}

// TestCases runs every case through the API server's create path and the
// normaliser and compares each with the expectation and with the other.
func TestCases(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Fatalf("duplicate case name %q", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			_, errs := create(t, c.doc)
			switch {
			case c.crd == "" && len(errs) > 0:
				t.Errorf("API server rejects:\n  %s\n%s", strings.Join(errs, "\n  "), c.doc)
			case c.crd != "" && len(errs) == 0:
				t.Errorf("API server accepts, want an error with %q\n%s", c.crd, c.doc)
			case c.crd != "" && !strings.Contains(strings.Join(errs, "\n"), c.crd):
				t.Errorf("API server rejects, but not with %q:\n  %s\n%s", c.crd, strings.Join(errs, "\n  "), c.doc)
			}

			_, byRef := normalise(t, "case.yaml", []string{caseContext, c.doc})
			for ref, es := range byRef {
				// Errors raised before typed decoding name the kind
				// without its group ("Tier security"), the others with it.
				if strings.HasSuffix(ref, "Tier security") {
					t.Fatalf("normaliser rejects the context object %s: %v", ref, es)
				}
			}
			rejected := len(byRef) > 0
			wantRejected := (c.crd != "" && c.crdOnly == "") || c.policyOnly != ""
			if (c.policyOnly != "" && c.crd != "") || (c.crdOnly != "" && c.crd == "") {
				t.Fatal("policyOnly cases are accepted by the CRD; crdOnly cases are rejected by it")
			}
			if rejected != wantRejected {
				t.Errorf("normaliser rejected=%v, want %v (policyOnly %q): %v\n%s", rejected, wantRejected, c.policyOnly, byRef, c.doc)
			}
		})
	}
}
