package policy

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// modelOf decodes and normalises YAML, failing the test on decoding errors.
func modelOf(t *testing.T, doc string) (*Model, []error) {
	t.Helper()
	objs, err := Decode("test.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return Normalize(objs)
}

func findPolicy(t *testing.T, m *Model, name string) *Policy {
	t.Helper()
	for i := range m.Policies {
		if m.Policies[i].Ref.Name == name {
			return &m.Policies[i]
		}
	}
	t.Fatalf("no policy %q in\n%s", name, m.Dump())
	return nil
}

func ruleStrings(rs []Rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = formatRule(r)
	}
	return out
}

func errorStrings(errs []error) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

const npHeader = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: shop}\n"

func TestNetworkPolicyNormalisation(t *testing.T) {
	sameNS := `sel tabby:kind == "pod" && tabby:namespace == "shop"`
	tests := []struct {
		name            string
		spec            string
		ingress, egress bool
		in, out         []string
	}{
		{
			name:    "no policyTypes, no rules: ingress isolation only",
			spec:    "podSelector: {}",
			ingress: true,
		},
		{
			name:    "no policyTypes, egress rules imply Egress",
			spec:    "podSelector: {}\negress: [{}]",
			ingress: true, egress: true,
			out: []string{"#0 Allow proto=any from{any} to{any}"},
		},
		{
			name:   "explicit policyTypes win: ingress rules ignored",
			spec:   "podSelector: {}\npolicyTypes: [Egress]\ningress: [{}]",
			egress: true,
		},
		{
			name:    "explicit Ingress only: egress rules ignored",
			spec:    "podSelector: {}\npolicyTypes: [Ingress]\negress: [{}]",
			ingress: true,
		},
		{
			name:    "empty from is any peer; empty ports is any protocol",
			spec:    "podSelector: {}\ningress: [{from: []}, {ports: []}]",
			ingress: true,
			in:      []string{"#0 Allow proto=any from{any} to{any}", "#1 Allow proto=any from{any} to{any}"},
		},
		{
			name:    "protocol defaults to TCP; port alone",
			spec:    "podSelector: {}\ningress: [{ports: [{port: 80}]}]",
			ingress: true,
			in:      []string{"#0 Allow proto=TCP from{any} to{ports 80}"},
		},
		{
			name:    "protocol without port is every port of it",
			spec:    "podSelector: {}\ningress: [{ports: [{protocol: UDP}, {protocol: UDP, port: 53}]}]",
			ingress: true,
			in:      []string{"#0 Allow proto=UDP from{any} to{any}"},
		},
		{
			name:    "named port keeps its protocol",
			spec:    "podSelector: {}\ningress: [{ports: [{port: http}, {protocol: UDP, port: dns}]}]",
			ingress: true,
			in:      []string{"#0 Allow proto=TCP from{any} to{named http/TCP}", "#0 Allow proto=UDP from{any} to{named dns/UDP}"},
		},
		{
			name:    "endPort makes a range; overlapping ranges merge",
			spec:    "podSelector: {}\ningress: [{ports: [{port: 8000, endPort: 8080}, {port: 8080, endPort: 8090}, {port: 22}, {port: 23, endPort: 23}]}]",
			ingress: true,
			in:      []string{"#0 Allow proto=TCP from{any} to{ports 22-23 8000-8090}"},
		},
		{
			name:    "SCTP",
			spec:    "podSelector: {}\ningress: [{ports: [{protocol: SCTP, port: 3868}]}]",
			ingress: true,
			in:      []string{"#0 Allow proto=SCTP from{any} to{ports 3868}"},
		},
		{
			name:    "podSelector peer: same namespace",
			spec:    "podSelector: {}\ningress: [{from: [{podSelector: {matchLabels: {app: a}}}]}]",
			ingress: true,
			in:      []string{`#0 Allow proto=any from{sel app == "a" && tabby:kind == "pod" && tabby:namespace == "shop"} to{any}`},
		},
		{
			name:    "empty podSelector peer: every pod of the namespace",
			spec:    "podSelector: {}\ningress: [{from: [{podSelector: {}}]}]",
			ingress: true,
			in:      []string{"#0 Allow proto=any from{" + sameNS + "} to{any}"},
		},
		{
			name:    "namespaceSelector peer: every pod of matching namespaces",
			spec:    "podSelector: {}\negress: [{to: [{namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [x]}]}}]}]",
			ingress: true, egress: true,
			out: []string{`#0 Allow proto=any from{any} to{sel ns:team not in {"x"} && tabby:kind == "pod"}`},
		},
		{
			name:    "both selectors in one peer: AND",
			spec:    "podSelector: {}\ningress: [{from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: app, operator: DoesNotExist}]}}]}]",
			ingress: true,
			in:      []string{`#0 Allow proto=any from{sel !has(app) && tabby:kind == "pod"} to{any}`},
		},
		{
			name:    "ipBlock with except, IPv6, host bits masked",
			spec:    "podSelector: {}\ningress: [{from: [{ipBlock: {cidr: \"2001:db8::1/32\", except: [\"2001:db8:ff::/48\", \"2001:db8:1::/48\"]}}]}]",
			ingress: true,
			in:      []string{"#0 Allow proto=any from{nets 2001:db8::/32; !nets 2001:db8:1::/48 2001:db8:ff::/48} to{any}"},
		},
		{
			name:    "peers x protocols, all with the rule's index",
			spec:    "podSelector: {}\ningress: [{}, {from: [{ipBlock: {cidr: 10.0.0.0/8}}, {podSelector: {}}], ports: [{protocol: UDP, port: 53}, {port: 53}]}]",
			ingress: true,
			in: []string{
				"#0 Allow proto=any from{any} to{any}",
				"#1 Allow proto=TCP from{nets 10.0.0.0/8} to{ports 53}",
				"#1 Allow proto=UDP from{nets 10.0.0.0/8} to{ports 53}",
				"#1 Allow proto=TCP from{" + sameNS + "} to{ports 53}",
				"#1 Allow proto=UDP from{" + sameNS + "} to{ports 53}",
			},
		},
		{
			name:   "egress: peer and ports both on the destination",
			spec:   "podSelector: {}\npolicyTypes: [Egress]\negress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 443}]}]",
			egress: true,
			out:    []string{"#0 Allow proto=TCP from{any} to{nets 0.0.0.0/0; ports 443}"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := npHeader + "spec:\n  " + strings.ReplaceAll(tt.spec, "\n", "\n  ") + "\n"
			m, errs := modelOf(t, doc)
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			p := findPolicy(t, m, "np")
			if p.Tier != TierKubernetes || p.Order != 0 || p.Ref != (Ref{KindK8sNetworkPolicy, "shop", "np"}) {
				t.Errorf("tier/order/ref = %s/%v/%v", p.Tier, p.Order, p.Ref)
			}
			if p.Ingress != tt.ingress || p.Egress != tt.egress {
				t.Errorf("governs ingress=%v egress=%v, want %v %v", p.Ingress, p.Egress, tt.ingress, tt.egress)
			}
			if got := ruleStrings(p.IngressRules); !slices.Equal(got, tt.in) {
				t.Errorf("ingress rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.in, "\n"))
			}
			if got := ruleStrings(p.EgressRules); !slices.Equal(got, tt.out) {
				t.Errorf("egress rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.out, "\n"))
			}
		})
	}
}

// TestNetworkPolicyTypedFields checks the model values themselves, not their
// rendering.
func TestNetworkPolicyTypedFields(t *testing.T) {
	m, errs := modelOf(t, npHeader+`spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
      ports: [{port: http}, {protocol: SCTP, port: 100, endPort: 200}]
`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	p := findPolicy(t, m, "np")
	want := []Rule{
		{Index: 0, Action: ActionAllow, Protocol: ProtoTCP,
			Source:      Peer{Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, NotNets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
			Destination: Peer{NamedPorts: []NamedPort{{Name: "http", Protocol: ProtoTCP}}}},
		{Index: 0, Action: ActionAllow, Protocol: ProtoSCTP,
			Source:      Peer{Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, NotNets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
			Destination: Peer{Ports: []PortRange{{First: 100, Last: 200}}}},
	}
	if !reflect.DeepEqual(p.IngressRules, want) {
		t.Errorf("rules = %+v\nwant %+v", p.IngressRules, want)
	}
	if s := p.Subject.String(); s != `app == "web" && tabby:kind == "pod" && tabby:namespace == "shop"` {
		t.Errorf("subject = %s", s)
	}
	// Rules must not share backing arrays: a consumer editing one rule must
	// not change another.
	p.IngressRules[0].Source.Nets[0] = netip.MustParsePrefix("1.0.0.0/8")
	if p.IngressRules[1].Source.Nets[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Error("rules share their Nets slice")
	}
}

// TestNetworkPolicyPeerSemantics evaluates each peer shape's selector against
// real endpoints: which pods does it admit?
func TestNetworkPolicyPeerSemantics(t *testing.T) {
	world := `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: retail}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {team: ops}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: ops, labels: {app: web}}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: ops, labels: {app: agent}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: undeclared, labels: {app: web}}
---
`
	tests := []struct {
		peer string
		want []string // endpoints the rule's source selector matches
	}{
		{"{podSelector: {matchLabels: {app: web}}}", []string{"shop/web"}},
		{"{podSelector: {}}", []string{"shop/db", "shop/web"}},
		{"{namespaceSelector: {matchLabels: {team: ops}}}", []string{"ops/agent", "ops/web"}},
		{"{namespaceSelector: {}}", []string{"ops/agent", "ops/web", "shop/db", "shop/web", "undeclared/web"}},
		{"{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}", []string{"ops/web", "shop/web", "undeclared/web"}},
		{"{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: undeclared}}}", []string{"undeclared/web"}},
		{"{namespaceSelector: {matchExpressions: [{key: team, operator: DoesNotExist}]}}", []string{"undeclared/web"}},
	}
	for _, tt := range tests {
		t.Run(tt.peer, func(t *testing.T) {
			m, errs := modelOf(t, world+npHeader+"spec: {podSelector: {}, ingress: [{from: ["+tt.peer+"]}]}\n")
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			sel := findPolicy(t, m, "np").IngressRules[0].Source.Selector
			var got []string
			for _, e := range m.Endpoints {
				if sel.Matches(e.Labels) {
					got = append(got, e.Ref.Namespace+"/"+e.Ref.Name)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("selector %s matches %v, want %v", sel, got, tt.want)
			}
		})
	}
}

func TestNetworkPolicyErrors(t *testing.T) {
	// Document 1 is a valid Pod that must survive; the policy is document 2.
	pre := "test.yaml (document 2): NetworkPolicy shop/np: "
	tests := []struct {
		name string
		spec string
		want []string
	}{
		{
			name: "endPort below port",
			spec: "podSelector: {}\ningress: [{ports: [{port: 80}, {port: 90, endPort: 89}]}]",
			want: []string{"spec.ingress[0].ports[1].endPort: Invalid value: 90: must be greater than or equal to `port`"},
		},
		{
			name: "endPort out of range",
			spec: "podSelector: {}\negress: [{ports: [{port: 90, endPort: 65536}]}]",
			want: []string{"spec.egress[0].ports[0].endPort: Invalid value: 65536: must be between 1 and 65535, inclusive"},
		},
		{
			name: "bad port name",
			spec: "podSelector: {}\ningress: [{ports: [{port: \"80\"}]}]",
			want: []string{`spec.ingress[0].ports[0].port: Invalid value: "80": must contain at least one letter (a-z)`},
		},
		{
			name: "unsupported protocol",
			spec: "podSelector: {}\ningress: [{ports: [{protocol: tcp}]}]",
			want: []string{`spec.ingress[0].ports[0].protocol: Unsupported value: "tcp": supported values: "TCP", "UDP", "SCTP"`},
		},
		{
			name: "too many policyTypes",
			spec: "podSelector: {}\npolicyTypes: [Ingress, Egress, Ingress]",
			want: []string{`spec.policyTypes: Invalid value: ["Ingress","Egress","Ingress"]: may not specify more than two policyTypes`},
		},
		{
			name: "rules of an ignored direction are still validated",
			spec: "podSelector: {}\npolicyTypes: [Ingress]\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]",
			want: []string{`spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)`},
		},
		{
			name: "ipBlock without cidr",
			spec: "podSelector: {}\ningress: [{from: [{ipBlock: {except: [10.0.0.0/8]}}]}]",
			want: []string{"spec.ingress[0].from[0].ipBlock.cidr: Required value"},
		},
		{
			name: "except of the other family",
			spec: "podSelector: {}\ningress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [\"::/64\"]}}]}]",
			want: []string{"spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: \"::/64\": must be a strict subset of `cidr`"},
		},
		{
			name: "label selector problems, all reported",
			spec: "podSelector: {matchLabels: {\"bad key\": v, k: \"bad value\"}, matchExpressions: [{key: a, operator: Exists, values: [x]}, {key: b, operator: Like}]}",
			want: []string{
				`spec.podSelector.matchLabels: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
				`spec.podSelector.matchLabels: Invalid value: "bad value": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`,
				"spec.podSelector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
				`spec.podSelector.matchExpressions[1].operator: Invalid value: "Like": not a valid selector operator`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "apiVersion: v1\nkind: Pod\nmetadata: {name: survivor, namespace: shop}\n---\n" + npHeader +
				"spec:\n  " + strings.ReplaceAll(tt.spec, "\n", "\n  ") + "\n"
			m, errs := modelOf(t, doc)
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = pre + w
			}
			if got := errorStrings(errs); !slices.Equal(got, want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if len(m.Policies) != 0 {
				t.Errorf("the invalid policy was kept: %+v", m.Policies)
			}
			if len(m.Endpoints) != 1 {
				t.Errorf("the valid pod was lost: %+v", m.Endpoints)
			}
			for _, e := range errs {
				var fe *FieldError
				var ferr *field.Error
				if !errors.As(e, &fe) || !errors.As(e, &ferr) {
					t.Errorf("%v is not a *FieldError wrapping a *field.Error", e)
				}
			}
		})
	}
}
