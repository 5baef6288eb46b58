package compiler

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/compiler/trace"
	"github.com/tabbynet/tabby/e2e/synth"
	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selectors"
)

// TestSemantics is the compiler's independent check: an oracle evaluates the
// policy model directly, as policy/README.md defines evaluation, and the
// tracer runs the same packets through the compiled table. They must agree
// on every probe: every pod to every pod and to outside addresses, every
// declared port plus some undeclared ones, ICMP, both families.

type probe struct {
	src, dst         netip.Addr
	srcEP, dstEP     *policy.Endpoint // nil: outside the cluster
	proto            uint8
	sport, dport     uint16
	icmpType, icmpCo uint8
}

func (p probe) String() string {
	name := func(ep *policy.Endpoint, a netip.Addr) string {
		if ep == nil {
			return a.String()
		}
		return ep.Ref.Namespace + "/" + ep.Ref.Name + "(" + a.String() + ")"
	}
	return fmt.Sprintf("%s -> %s proto %d port %d icmp %d/%d", name(p.srcEP, p.src), name(p.dstEP, p.dst),
		p.proto, p.dport, p.icmpType, p.icmpCo)
}

type oracle struct {
	m     *policy.Model
	local func(*policy.Endpoint) bool
}

func (o *oracle) allowed(p probe) bool {
	if p.srcEP != nil && o.local(p.srcEP) && !o.direction(p.srcEP, policy.Egress, p) {
		return false
	}
	if p.dstEP != nil && o.local(p.dstEP) && !o.direction(p.dstEP, policy.Ingress, p) {
		return false
	}
	return true
}

// direction evaluates the tiers for endpoint ep in direction d.
func (o *oracle) direction(ep *policy.Endpoint, d policy.Direction, p probe) bool {
tiers:
	for _, tier := range o.m.Tiers {
		var pols []*policy.Policy
		for i := range o.m.Policies {
			pol := &o.m.Policies[i]
			if pol.Tier == tier.Name && pol.Governs(d) && pol.Subject.Matches(ep.Labels) {
				pols = append(pols, pol)
			}
		}
		if len(pols) == 0 {
			continue
		}
		slices.SortFunc(pols, func(a, b *policy.Policy) int {
			if c := cmp.Compare(a.Order, b.Order); c != 0 {
				return c
			}
			return compareRefs(a.Ref, b.Ref)
		})
		for _, pol := range pols {
			for i := range pol.Rules(d) {
				r := &pol.Rules(d)[i]
				if !o.ruleMatches(pol, d, r, p) {
					continue
				}
				switch r.Action {
				case policy.ActionAllow:
					return true
				case policy.ActionDeny:
					return false
				case policy.ActionPass:
					continue tiers
				}
			}
		}
		if tier.DefaultAction != policy.ActionPass {
			return false
		}
	}
	return true
}

func (o *oracle) ruleMatches(pol *policy.Policy, d policy.Direction, r *policy.Rule, p probe) bool {
	fam := 6
	if p.src.Is4() {
		fam = 4
	}
	if r.IPFamily != 0 && r.IPFamily != fam {
		return false
	}
	if r.Protocol != policy.ProtoAny && uint8(r.Protocol) != p.proto {
		return false
	}
	if r.NotProtocol != policy.ProtoAny && uint8(r.NotProtocol) == p.proto {
		return false
	}
	isICMP := p.proto == 1 || p.proto == 58
	icmpMatch := func(m *policy.ICMPMatch) bool {
		return isICMP && m.Type == p.icmpType && (m.Code == nil || *m.Code == p.icmpCo)
	}
	if r.ICMP != nil && !icmpMatch(r.ICMP) {
		return false
	}
	if r.NotICMP != nil && (!isICMP || icmpMatch(r.NotICMP)) {
		return false
	}
	// The endpoint a side's named ports are resolved on: the policy's own
	// endpoint must be selected by Subject; a peer by its selector.
	srcOwn, dstOwn := d == policy.Egress, d == policy.Ingress
	return o.peerMatches(pol, &r.Source, p.src, p.srcEP, p.sport, p.proto, srcOwn) &&
		o.peerMatches(pol, &r.Destination, p.dst, p.dstEP, p.dport, p.proto, dstOwn)
}

func (o *oracle) peerMatches(pol *policy.Policy, peer *policy.Peer, addr netip.Addr, ep *policy.Endpoint, port uint16, proto uint8, own bool) bool {
	if len(peer.Nets) > 0 && !slices.ContainsFunc(peer.Nets, func(n netip.Prefix) bool { return n.Contains(addr) }) {
		return false
	}
	if slices.ContainsFunc(peer.NotNets, func(n netip.Prefix) bool { return n.Contains(addr) }) {
		return false
	}
	if peer.Selector != nil && !o.selected(peer.Selector.Matches, addr) {
		return false
	}
	if peer.NotSelector != nil && o.selected(peer.NotSelector.Matches, addr) {
		return false
	}
	hasPorts := proto == 6 || proto == 17 || proto == 132
	if len(peer.Ports)+len(peer.NamedPorts)+len(peer.NotPorts)+len(peer.NotNamedPorts) > 0 && !hasPorts {
		return false
	}
	inRanges := func(rs []policy.PortRange) bool {
		return slices.ContainsFunc(rs, func(r policy.PortRange) bool { return r.First <= port && port <= r.Last })
	}
	named := func(nps []policy.NamedPort) bool {
		// Some endpoint at this address, selected on this side, declares
		// the port under one of the names.
		for i := range o.m.Endpoints {
			e := &o.m.Endpoints[i]
			if !slices.Contains(e.IPs, addr) {
				continue
			}
			if own && !pol.Subject.Matches(e.Labels) || !own && peer.Selector != nil && !peer.Selector.Matches(e.Labels) {
				continue
			}
			for _, cp := range e.Ports {
				for _, np := range nps {
					if cp.Name == np.Name && cp.Port == port && uint8(cp.Protocol) == proto &&
						(np.Protocol == policy.ProtoAny || np.Protocol == cp.Protocol) {
						return true
					}
				}
			}
		}
		return false
	}
	if len(peer.Ports)+len(peer.NamedPorts) > 0 && !inRanges(peer.Ports) && !named(peer.NamedPorts) {
		return false
	}
	if inRanges(peer.NotPorts) || len(peer.NotNamedPorts) > 0 && named(peer.NotNamedPorts) {
		return false
	}
	return true
}

// selected reports whether addr belongs to an endpoint or network set the
// selector matches.
func (o *oracle) selected(matches func(selectors.Labels) bool, addr netip.Addr) bool {
	for _, e := range o.m.Endpoints {
		if slices.Contains(e.IPs, addr) && matches(e.Labels) {
			return true
		}
	}
	for _, ns := range o.m.NetworkSets {
		if slices.ContainsFunc(ns.Nets, func(n netip.Prefix) bool { return n.Contains(addr) }) && matches(ns.Labels) {
			return true
		}
	}
	return false
}

// probes lists every pod pair (and pod/outside pair) of one family with the
// destination's declared ports, some undeclared ports, and ICMP.
func probes(m *policy.Model) []probe {
	outside := []netip.Addr{
		netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("8.8.8.8"),
		netip.MustParseAddr("198.18.0.5"), netip.MustParseAddr("2001:db8:bad::1"), netip.MustParseAddr("fd00::99"),
		netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("2001:db8::1"),
	}
	for _, ns := range m.NetworkSets {
		for _, n := range ns.Nets {
			outside = append(outside, n.Addr().Next())
		}
	}
	type end struct {
		addr netip.Addr
		ep   *policy.Endpoint
	}
	var ends []end
	for i := range m.Endpoints {
		for _, a := range m.Endpoints[i].IPs {
			ends = append(ends, end{a, &m.Endpoints[i]})
		}
	}
	for _, a := range outside {
		ends = append(ends, end{a, nil})
	}
	var out []probe
	for _, s := range ends {
		for _, d := range ends {
			if s.ep == d.ep || s.addr.Is4() != d.addr.Is4() {
				continue
			}
			base := probe{src: s.addr, dst: d.addr, srcEP: s.ep, dstEP: d.ep, sport: 40000}
			type pp struct {
				proto uint8
				port  uint16
			}
			ports := []pp{{6, 80}, {6, 443}, {17, 53}, {6, 9090}, {132, 80}}
			if d.ep != nil {
				for _, cp := range d.ep.Ports {
					ports = append(ports, pp{uint8(cp.Protocol), cp.Port})
				}
			}
			for _, x := range ports {
				p := base
				p.proto, p.dport = x.proto, x.port
				out = append(out, p)
			}
			icmp := base
			if s.addr.Is4() {
				icmp.proto, icmp.icmpType = 1, 8
			} else {
				icmp.proto, icmp.icmpType = 58, 128
			}
			out = append(out, icmp)
			unreach := icmp
			unreach.icmpType = 0
			out = append(out, unreach)
		}
	}
	return out
}

func TestSemantics(t *testing.T) {
	models := goldenModels()
	for seed := uint64(1); seed <= 6; seed++ {
		models[fmt.Sprintf("synth%d", seed)] = synth.Generate(synth.Small(seed))
	}
	for name, m := range models {
		for _, opts := range []Options{{Node: "node-1"}, {AllLocal: true}} {
			t.Run(fmt.Sprintf("%s/all-local=%v", name, opts.AllLocal), func(t *testing.T) {
				tab, err := Compile(m, opts)
				if err != nil {
					t.Fatal(err)
				}
				tr, err := trace.New(tab)
				if err != nil {
					t.Fatalf("tracer refuses the table: %v", err)
				}
				e := NewEngine(opts)
				o := &oracle{m: m, local: e.isLocal}
				iface := func(ep *policy.Endpoint) string {
					if ep == nil {
						return "eth0"
					}
					return InterfaceName(ep.Ref.Namespace, ep.Ref.Name)
				}
				allowed, failures := 0, 0
				ps := probes(m)
				for _, p := range ps {
					res, err := tr.Trace(trace.Packet{
						Src: p.src, Dst: p.dst, Proto: p.proto, SrcPort: p.sport, DstPort: p.dport,
						ICMPType: p.icmpType, ICMPCode: p.icmpCo, IIF: iface(p.srcEP), OIF: iface(p.dstEP),
					}, ir.HookForward)
					if err != nil {
						t.Fatalf("%v: %v", p, err)
					}
					got, want := res.Verdict == ir.VerdictAccept, o.allowed(p)
					if got {
						allowed++
					}
					if got != want {
						failures++
						if failures <= 5 {
							var path []string
							for _, d := range res.Decisions {
								path = append(path, d.Origin.String())
							}
							t.Errorf("%v: table says allowed=%v, model says %v\n  decisions: %v", p, got, want, path)
						}
					}
				}
				if allowed == 0 || allowed == len(ps) {
					t.Errorf("degenerate: %d of %d probes allowed", allowed, len(ps))
				}
			})
		}
	}
}
