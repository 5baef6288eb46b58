package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const cnpHeader = "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: cnp}\n"

func cnpDoc(spec string) string {
	return cnpHeader + "spec:\n  " + strings.ReplaceAll(spec, "\n", "\n  ") + "\n"
}

func TestClusterNetworkPolicyNormalisation(t *testing.T) {
	tests := []struct {
		name            string
		spec            string
		tier            string
		order           float64
		subject         string
		ingress, egress bool
		in, out         []string
	}{
		{
			name:    "admin, namespaces subject, no rules governs nothing",
			spec:    "tier: Admin\npriority: 0\nsubject: {namespaces: {matchLabels: {team: a}}}",
			tier:    TierAdmin,
			subject: `ns:team == "a" && tabby:kind == "pod"`,
		},
		{
			name:    "baseline, pods subject",
			spec:    "tier: Baseline\npriority: 1000\nsubject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: x}}}}\ningress: [{action: Deny, from: [{namespaces: {}}]}]",
			tier:    TierBaseline,
			order:   1000,
			subject: `app == "x" && tabby:kind == "pod"`,
			ingress: true,
			in:      []string{`#0 Deny proto=any from{sel tabby:kind == "pod"} to{any}`},
		},
		{
			name:    "actions, names, indices",
			spec:    "tier: Admin\npriority: 7\nsubject: {namespaces: {}}\ningress:\n- {name: a, action: Accept, from: [{namespaces: {}}]}\n- {name: p, action: Pass, from: [{pods: {namespaceSelector: {matchLabels: {t: x}}, podSelector: {}}}]}\n- {action: Deny, from: [{namespaces: {}}]}",
			tier:    TierAdmin,
			order:   7,
			subject: `tabby:kind == "pod"`,
			ingress: true,
			in: []string{
				`#0 "a" Allow proto=any from{sel tabby:kind == "pod"} to{any}`,
				`#1 "p" Pass proto=any from{sel ns:t == "x" && tabby:kind == "pod"} to{any}`,
				`#2 Deny proto=any from{sel tabby:kind == "pod"} to{any}`,
			},
		},
		{
			name:    "protocols: numbers, ranges, named ports, per protocol",
			spec:    "tier: Admin\npriority: 1\nsubject: {namespaces: {}}\negress:\n- action: Accept\n  to: [{pods: {namespaceSelector: {}, podSelector: {}}}]\n  protocols:\n  - {tcp: {destinationPort: {number: 80}}}\n  - {udp: {destinationPort: {range: {start: 1000, end: 2000}}}}\n  - {destinationNamedPort: web}\n  - {tcp: {destinationPort: {number: 81}}}\n  - {sctp: {destinationPort: {number: 5}}}",
			tier:    TierAdmin,
			order:   1,
			subject: `tabby:kind == "pod"`,
			egress:  true,
			out: []string{
				`#0 Allow proto=any from{any} to{sel tabby:kind == "pod"; named web/any}`,
				`#0 Allow proto=TCP from{any} to{sel tabby:kind == "pod"; ports 80-81}`,
				`#0 Allow proto=UDP from{any} to{sel tabby:kind == "pod"; ports 1000-2000}`,
				`#0 Allow proto=SCTP from{any} to{sel tabby:kind == "pod"; ports 5}`,
			},
		},
		{
			name:    "networks peer, dual-stack, host bits masked, next to a namespaces peer",
			spec:    "tier: Baseline\npriority: 3\nsubject: {namespaces: {}}\negress:\n- action: Deny\n  to: [{networks: [\"fd00::1/8\", 10.1.2.3/8]}, {namespaces: {matchLabels: {a: b}}}]",
			tier:    TierBaseline,
			order:   3,
			subject: `tabby:kind == "pod"`,
			egress:  true,
			out: []string{
				"#0 Deny proto=any from{any} to{nets 10.0.0.0/8 fd00::/8}",
				`#0 Deny proto=any from{any} to{sel ns:a == "b" && tabby:kind == "pod"}`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, errs := modelOf(t, cnpDoc(tt.spec))
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			p := findPolicy(t, m, "cnp")
			if p.Tier != tt.tier || p.Order != tt.order || p.Subject.String() != tt.subject {
				t.Errorf("tier %s order %v subject %s, want %s %v %s", p.Tier, p.Order, p.Subject, tt.tier, tt.order, tt.subject)
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

func TestClusterNetworkPolicyErrors(t *testing.T) {
	const pre = "test.yaml (document 1): ClusterNetworkPolicy cnp: "
	base := "tier: Admin\npriority: 1\nsubject: {namespaces: {}}\n"
	tests := []struct {
		name        string
		spec        string
		want        []string
		unsupported bool // every error wraps ErrUnsupported
	}{
		{
			name:        "nodes peer is not supported yet",
			spec:        base + "egress: [{action: Accept, to: [{nodes: {}}]}]",
			want:        []string{"spec.egress[0].to[0].nodes: nodes peers are not supported by Tabby yet"},
			unsupported: true,
		},
		{
			name:        "domainNames peer is not supported yet",
			spec:        base + "egress: [{action: Accept, to: [{domainNames: [example.com]}]}]",
			want:        []string{"spec.egress[0].to[0].domainNames: domainNames peers are not supported by Tabby yet"},
			unsupported: true,
		},
		{
			name: "subject with both or neither",
			spec: "tier: Admin\npriority: 1\nsubject: {}",
			want: []string{"spec.subject: Invalid value: exactly one of namespaces or pods must be set"},
		},
		{
			name: "peer with two shapes",
			spec: base + "egress: [{action: Deny, to: [{namespaces: {}, networks: [10.0.0.0/8]}]}]",
			want: []string{"spec.egress[0].to[0]: Invalid value: exactly one of namespaces, pods, nodes, networks or domainNames must be set"},
		},
		{
			name: "priority out of range",
			spec: "tier: Admin\npriority: -1\nsubject: {namespaces: {}}",
			want: []string{"spec.priority: Invalid value: -1: must be between 0 and 1000, inclusive"},
		},
		{
			name: "empty protocols list",
			spec: base + "ingress: [{action: Accept, from: [{namespaces: {}}], protocols: []}]",
			want: []string{"spec.ingress[0].protocols: Required value: must have at least 1 item"},
		},
		{
			name: "port number and range together",
			spec: base + "ingress: [{action: Accept, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 80, range: {start: 1, end: 2}}}}]}]",
			want: []string{"spec.ingress[0].protocols[0].tcp.destinationPort: Invalid value: exactly one of number or range must be set"},
		},
		{
			name: "range end out of range, start == end",
			spec: base + "ingress: [{action: Accept, from: [{namespaces: {}}], protocols: [{udp: {destinationPort: {range: {start: 5, end: 70000}}}}, {sctp: {destinationPort: {range: {start: 5, end: 5}}}}]}]",
			want: []string{
				"spec.ingress[0].protocols[0].udp.destinationPort.range.end: Invalid value: 70000: must be between 1 and 65535, inclusive",
				"spec.ingress[0].protocols[1].sctp.destinationPort.range: Invalid value: Start port must be less than End port",
			},
		},
		{
			name: "named port with a networks peer",
			spec: base + "egress: [{action: Accept, to: [{networks: [10.0.0.0/8]}], protocols: [{destinationNamedPort: http}]}]",
			want: []string{"spec.egress[0]: Invalid value: networks/nodes/domainNames peer cannot be set with namedPorts since there are no namedPorts for networks/nodes/domainNames"},
		},
		{
			name: "bad CIDR, too long, empty list",
			spec: base + "egress: [{action: Accept, to: [{networks: [\"::ffff:10.0.0.0/104\", \"0000:0000:0000:0000:0000:0000:0000:0000/128x\"]}, {networks: []}]}]",
			want: []string{
				`spec.egress[0].to[0].networks[0]: Invalid value: "::ffff:10.0.0.0/104": must not have an IPv4-mapped IPv6 address`,
				"spec.egress[0].to[0].networks[1]: Too long: may not be more than 43 bytes",
				"spec.egress[0].to[1].networks: Required value: must have at least 1 item",
			},
		},
		{
			name: "rule name too long, too many rules",
			spec: base + "ingress: [{name: " + strings.Repeat("n", 101) + ", action: Accept, from: [{namespaces: {}}]}" +
				strings.Repeat(", {action: Accept, from: [{namespaces: {}}]}", 25) + "]",
			want: []string{
				"spec.ingress: Too many: 26: must have at most 25 items",
				"spec.ingress[0].name: Too long: may not be more than 100 bytes",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, errs := modelOf(t, cnpDoc(tt.spec))
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = pre + w
			}
			if got := errorStrings(errs); !slices.Equal(got, want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			for _, e := range errs {
				if errors.Is(e, ErrUnsupported) != tt.unsupported {
					t.Errorf("errors.Is(%v, ErrUnsupported) = %v, want %v", e, !tt.unsupported, tt.unsupported)
				}
			}
			if len(m.Policies) != 0 {
				t.Errorf("invalid policy kept: %+v", m.Policies)
			}
		})
	}
}
