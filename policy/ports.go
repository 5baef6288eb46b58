package policy

import (
	"cmp"
	"slices"
)

// A normalised Rule has one Protocol, while a Kubernetes or ClusterNetworkPolicy
// rule lists ports of several protocols. portSet collects a rule's port
// matches per protocol; expandRules then emits one Rule per (peer, protocol).
// Splitting is exact: every emitted rule carries the source rule's action, so
// the first one a packet matches decides what the source rule would have.

// portGroup is what one protocol of a rule matches.
type portGroup struct {
	proto   Protocol
	anyPort bool // no port constraint; overrides ranges and named
	ranges  []PortRange
	named   []NamedPort
}

// portSet is the port matches of one rule, by protocol.
type portSet map[Protocol]*portGroup

func (s portSet) group(p Protocol) *portGroup {
	g := s[p]
	if g == nil {
		g = &portGroup{proto: p}
		s[p] = g
	}
	return g
}

// addAny matches every port of protocol p.
func (s portSet) addAny(p Protocol) { s.group(p).anyPort = true }

// addRange matches ports r of protocol p.
func (s portSet) addRange(p Protocol, r PortRange) {
	g := s.group(p)
	g.ranges = append(g.ranges, r)
}

// addNamed matches the named port np, filed under protocol p (np.Protocol for
// Kubernetes, ProtoAny for ClusterNetworkPolicy).
func (s portSet) addNamed(p Protocol, np NamedPort) {
	g := s.group(p)
	g.named = append(g.named, np)
}

// groups returns the set's groups by protocol number, ranges sorted and
// merged, named ports sorted and deduplicated. An empty set (a rule without
// ports) is one group matching any protocol and port.
func (s portSet) groups() []portGroup {
	if len(s) == 0 {
		return []portGroup{{proto: ProtoAny, anyPort: true}}
	}
	out := make([]portGroup, 0, len(s))
	for _, g := range s {
		if g.anyPort {
			out = append(out, portGroup{proto: g.proto, anyPort: true})
			continue
		}
		out = append(out, portGroup{proto: g.proto, ranges: MergePortRanges(g.ranges), named: sortNamed(g.named)})
	}
	slices.SortFunc(out, func(a, b portGroup) int { return cmp.Compare(a.proto, b.proto) })
	return out
}

// MergePortRanges returns ranges sorted, with reversed ones (First > Last)
// turned round and overlapping or adjacent ones merged. The input is not
// modified. The compiler uses it too, so there is one definition.
func MergePortRanges(in []PortRange) []PortRange {
	if len(in) == 0 {
		return nil
	}
	rs := make([]PortRange, len(in))
	for i, r := range in {
		if r.First > r.Last {
			r.First, r.Last = r.Last, r.First
		}
		rs[i] = r
	}
	slices.SortFunc(rs, func(a, b PortRange) int {
		return cmp.Or(cmp.Compare(a.First, b.First), cmp.Compare(a.Last, b.Last))
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if int(r.First) <= int(last.Last)+1 {
			last.Last = max(last.Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

func sortNamed(ns []NamedPort) []NamedPort {
	if len(ns) == 0 {
		return nil
	}
	ns = slices.Clone(ns)
	slices.SortFunc(ns, func(a, b NamedPort) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Protocol, b.Protocol))
	})
	return slices.Compact(ns)
}

// expandRules emits the rules of one source rule: one per peer and protocol
// group, in peer order then protocol order. The peer is the source of an
// ingress rule and the destination of an egress rule; ports always constrain
// the destination.
func expandRules(index int, name string, action Action, dir Direction, peers []Peer, ps portSet) []Rule {
	groups := ps.groups()
	out := make([]Rule, 0, len(peers)*len(groups))
	for _, peer := range peers {
		for _, g := range groups {
			r := Rule{Index: index, Name: name, Action: action, Protocol: g.proto}
			dst := Peer{}
			if dir == Egress {
				dst = clonePeer(peer)
			} else {
				r.Source = clonePeer(peer)
			}
			dst.Ports = slices.Clone(g.ranges)
			dst.NamedPorts = slices.Clone(g.named)
			r.Destination = dst
			out = append(out, r)
		}
	}
	return out
}

// clonePeer copies the slices of p so that rules never share backing arrays.
func clonePeer(p Peer) Peer {
	p.Nets = slices.Clone(p.Nets)
	p.NotNets = slices.Clone(p.NotNets)
	p.Ports = slices.Clone(p.Ports)
	p.NamedPorts = slices.Clone(p.NamedPorts)
	p.NotPorts = slices.Clone(p.NotPorts)
	p.NotNamedPorts = slices.Clone(p.NotNamedPorts)
	return p
}
