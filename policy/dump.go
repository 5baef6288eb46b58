package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tabbynet/tabby/selectors"
)

// Dump renders the model as deterministic, human-readable text: tiers in
// evaluation order, then endpoints, network sets and policies, each sorted
// (policies by tier, order, Ref, whatever order m.Policies has). It is for
// debugging and golden tests, not a format to parse.
func (m *Model) Dump() string {
	var b strings.Builder
	b.WriteString("tiers:\n")
	tierIndex := map[string]int{}
	for i, t := range m.Tiers {
		tierIndex[t.Name] = i
		fmt.Fprintf(&b, "  %s default=%s", t.Name, t.DefaultAction)
		if t.Order != 0 || t.Ref != (Ref{}) {
			fmt.Fprintf(&b, " order=%s", formatOrder(t.Order))
		}
		if t.Ref != (Ref{}) {
			fmt.Fprintf(&b, " ref=%q", t.Ref.String())
		}
		b.WriteString("\n")
	}

	b.WriteString("endpoints:\n")
	for _, e := range sortedBy(m.Endpoints, func(a, b Endpoint) int { return compareRef(a.Ref, b.Ref) }) {
		fmt.Fprintf(&b, "  %s\n", e.Ref)
		if e.Node != "" {
			fmt.Fprintf(&b, "    node: %s\n", e.Node)
		}
		if len(e.IPs) > 0 {
			fmt.Fprintf(&b, "    ips: %s\n", joinStrings(e.IPs, netip.Addr.String))
		}
		if len(e.Ports) > 0 {
			fmt.Fprintf(&b, "    ports: %s\n", joinStrings(e.Ports, func(p ContainerPort) string {
				s := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
				if p.Name != "" {
					s += "(" + p.Name + ")"
				}
				return s
			}))
		}
		fmt.Fprintf(&b, "    labels: %s\n", formatLabels(e.Labels))
	}

	b.WriteString("networksets:\n")
	for _, s := range sortedBy(m.NetworkSets, func(a, b NetworkSet) int { return compareRef(a.Ref, b.Ref) }) {
		fmt.Fprintf(&b, "  %s\n", s.Ref)
		fmt.Fprintf(&b, "    nets: %s\n", joinStrings(s.Nets, netip.Prefix.String))
		fmt.Fprintf(&b, "    labels: %s\n", formatLabels(s.Labels))
	}

	b.WriteString("policies:\n")
	pols := sortedBy(m.Policies, func(a, b Policy) int {
		return cmp.Or(cmp.Compare(tierIndex[a.Tier], tierIndex[b.Tier]), cmp.Compare(a.Order, b.Order), compareRef(a.Ref, b.Ref))
	})
	for i := range pols {
		p := &pols[i]
		fmt.Fprintf(&b, "  %s tier=%s order=%s\n", p.Ref, p.Tier, formatOrder(p.Order))
		fmt.Fprintf(&b, "    subject: %s\n", formatSelector(p.Subject))
		for _, d := range []Direction{Ingress, Egress} {
			if !p.Governs(d) {
				fmt.Fprintf(&b, "    %s: not governed\n", d)
				continue
			}
			fmt.Fprintf(&b, "    %s:\n", d)
			rules := p.Rules(d)
			if len(rules) == 0 {
				b.WriteString("      (no rules)\n")
			}
			for _, r := range rules {
				fmt.Fprintf(&b, "      %s\n", formatRule(r))
			}
		}
	}
	return b.String()
}

// sortedBy returns a sorted copy: Dump never reorders the model it renders.
func sortedBy[T any](s []T, f func(a, b T) int) []T {
	out := slices.Clone(s)
	slices.SortStableFunc(out, f)
	return out
}

func joinStrings[T any](s []T, f func(T) string) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = f(v)
	}
	return strings.Join(parts, " ")
}

func formatOrder(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func formatSelector(s *selectors.Selector) string {
	if s == nil {
		return "<nil>"
	}
	return s.String()
}

func formatLabels(l selectors.Map) string {
	if len(l) == 0 {
		return "(none)"
	}
	keys := sortedKeys(l)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(l[k])
	}
	return strings.Join(parts, " ")
}

// formatRule renders one rule on one line:
// #index "name" Action [ipv4] proto ... from{...} to{...}.
func formatRule(r Rule) string {
	parts := []string{"#" + strconv.Itoa(r.Index)}
	if r.Name != "" {
		parts = append(parts, strconv.Quote(r.Name))
	}
	parts = append(parts, r.Action.String())
	if r.IPFamily != 0 {
		parts = append(parts, "ipv"+strconv.Itoa(r.IPFamily))
	}
	parts = append(parts, "proto="+r.Protocol.String())
	if r.NotProtocol != ProtoAny {
		parts = append(parts, "!proto="+r.NotProtocol.String())
	}
	if r.ICMP != nil {
		parts = append(parts, "icmp="+formatICMP(r.ICMP))
	}
	if r.NotICMP != nil {
		parts = append(parts, "!icmp="+formatICMP(r.NotICMP))
	}
	parts = append(parts, "from{"+formatPeer(r.Source)+"}", "to{"+formatPeer(r.Destination)+"}")
	if r.LogPrefix != "" {
		parts = append(parts, "log="+strconv.Quote(r.LogPrefix))
	}
	return strings.Join(parts, " ")
}

func formatICMP(m *ICMPMatch) string {
	s := "type " + strconv.Itoa(int(m.Type))
	if m.Code != nil {
		s += " code " + strconv.Itoa(int(*m.Code))
	}
	return s
}

func formatPeer(p Peer) string {
	var parts []string
	add := func(name, v string) { parts = append(parts, name+" "+v) }
	if len(p.Nets) > 0 {
		add("nets", joinStrings(p.Nets, netip.Prefix.String))
	}
	if len(p.NotNets) > 0 {
		add("!nets", joinStrings(p.NotNets, netip.Prefix.String))
	}
	if p.Selector != nil {
		add("sel", p.Selector.String())
	}
	if p.NotSelector != nil {
		add("!sel", p.NotSelector.String())
	}
	if len(p.Ports) > 0 {
		add("ports", joinStrings(p.Ports, formatRange))
	}
	if len(p.NamedPorts) > 0 {
		add("named", joinStrings(p.NamedPorts, formatNamed))
	}
	if len(p.NotPorts) > 0 {
		add("!ports", joinStrings(p.NotPorts, formatRange))
	}
	if len(p.NotNamedPorts) > 0 {
		add("!named", joinStrings(p.NotNamedPorts, formatNamed))
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, "; ")
}

func formatRange(r PortRange) string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + "-" + strconv.Itoa(int(r.Last))
}

func formatNamed(n NamedPort) string { return n.Name + "/" + n.Protocol.String() }
