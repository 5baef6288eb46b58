package compiler

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selectors"
)

// Rendering of one policy's chain in one direction. The output depends only
// on the policy (never on which endpoints exist), so a policy chain changes
// only when its policy does.

// Tabby's bits in the packet mark.
const (
	markAllow uint32 = 0x00010000
	markPass  uint32 = 0x00020000
	markBoth         = markAllow | markPass
)

// maxAnonNets is the largest number of prefixes (per family, after merging) a
// rule carries inline as an anonymous set; more go to a named net-* set,
// shared by every rule with the same networks. Typical ipBlocks stay inline
// and readable; long lists are written once and updated as elements.
const maxAnonNets = 8

// maxLogPrefix is the kernel's log prefix size (NF_LOG_PREFIXLEN) minus the NUL.
const maxLogPrefix = 127

// renderer renders the chains of one policy and collects the sets they use.
type renderer struct {
	p     *policy.Policy
	d     policy.Direction
	specs map[string]setSpec
	errs  []error
}

// renderPolicyChain renders p's chain for direction d, returning the sets it
// references. Rules that cannot be rendered are reported and left out.
func renderPolicyChain(p *policy.Policy, d policy.Direction) (*ir.Chain, []setSpec, []error) {
	r := &renderer{p: p, d: d, specs: map[string]setSpec{}}
	ch := &ir.Chain{Name: PolicyChainName(p.Ref, d), Comment: comment(p.Ref.String() + " " + d.String())}
	for i := range p.Rules(d) {
		ch.Rules = append(ch.Rules, r.rule(&p.Rules(d)[i])...)
	}
	specs := make([]setSpec, 0, len(r.specs))
	for _, s := range r.specs {
		specs = append(specs, s)
	}
	slices.SortFunc(specs, func(a, b setSpec) int { return strings.Compare(a.name, b.name) })
	return ch, specs, r.errs
}

// side is one end of a packet: the rule's Source or Destination.
type side struct {
	peer *policy.Peer
	src  bool
}

// portAlt is one alternative of a side's port constraint: numeric ports OR
// named ports (each becomes its own nft rule), with the negations in both.
type portAlt struct {
	ports []policy.PortRange
	named []policy.NamedPort
}

func (r *renderer) rule(rule *policy.Rule) []*ir.Rule {
	counter, stmts, verdict, err := actionTail(rule.Action)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("rule %d: %w", rule.Index, err))
		return nil
	}
	if rule.Action == policy.ActionLog {
		stmts = []ir.Stmt{ir.StmtLog{Prefix: r.logPrefix(rule)}}
	}
	origin := ir.Origin{
		Kind: ir.OriginPolicyRule, Tier: r.p.Tier, Direction: r.d, Policy: r.p.Ref,
		RuleIndex: rule.Index, RuleName: rule.Name, Action: rule.Action,
	}
	src, dst := side{&rule.Source, true}, side{&rule.Destination, false}
	fams, split := families(rule)
	var out []*ir.Rule
	for _, fam := range fams {
		for _, sa := range portAlts(src.peer) {
			for _, da := range portAlts(dst.peer) {
				var ms []ir.Match
				switch {
				case split:
					ms = append(ms, ir.MatchNfproto{Family: ir.Family(fam)})
				case rule.IPFamily == 4 || rule.IPFamily == 6:
					ms = append(ms, ir.MatchNfproto{Family: ir.Family(rule.IPFamily)})
				}
				if rule.Protocol != policy.ProtoAny {
					ms = append(ms, ir.MatchL4Proto{Protos: []uint8{uint8(rule.Protocol)}})
				}
				if rule.Protocol == policy.ProtoAny && (numericPorts(src.peer, sa) || numericPorts(dst.peer, da)) {
					// th reads whatever follows the IP header: guard it, or an
					// ICMP packet's bytes would be taken for ports.
					ms = append(ms, ir.MatchL4Proto{Protos: []uint8{uint8(policy.ProtoTCP), uint8(policy.ProtoUDP), uint8(policy.ProtoSCTP)}})
				}
				if rule.NotProtocol != policy.ProtoAny {
					ms = append(ms, ir.MatchL4Proto{Protos: []uint8{uint8(rule.NotProtocol)}, Negate: true})
				}
				if split {
					ms = r.addrMatches(ms, src, fam, r.impliedBy(src, sa))
					ms = r.addrMatches(ms, dst, fam, r.impliedBy(dst, da))
				}
				v6 := rule.Protocol == policy.ProtoICMPv6
				if rule.ICMP != nil {
					ms = append(ms, ir.MatchICMP{V6: v6, Type: rule.ICMP.Type, Code: rule.ICMP.Code})
				}
				if rule.NotICMP != nil {
					ms = append(ms, ir.MatchICMP{V6: v6, Type: rule.NotICMP.Type, Code: rule.NotICMP.Code, Negate: true})
				}
				ms = r.portMatches(ms, src, sa, rule.Protocol, fam)
				ms = r.portMatches(ms, dst, da, rule.Protocol, fam)
				o := origin
				out = append(out, &ir.Rule{Matches: ms, Counter: counter, Stmts: stmts, Verdict: verdict, Origin: &o})
			}
		}
	}
	return out
}

// actionTail is the counter, statements and verdict of an action.
func actionTail(a policy.Action) (bool, []ir.Stmt, ir.Verdict, error) {
	switch a {
	case policy.ActionAllow:
		return true, []ir.Stmt{ir.StmtSetMark{And: ^uint32(0), Or: markAllow}}, ir.Verdict{Kind: ir.VerdictReturn}, nil
	case policy.ActionDeny:
		return true, nil, ir.Verdict{Kind: ir.VerdictDrop}, nil
	case policy.ActionPass:
		return true, []ir.Stmt{ir.StmtSetMark{And: ^uint32(0), Or: markPass}}, ir.Verdict{Kind: ir.VerdictReturn}, nil
	case policy.ActionLog:
		return true, nil, ir.Verdict{}, nil
	}
	return false, nil, ir.Verdict{}, fmt.Errorf("%w: %v", ErrInvalidAction, a)
}

func (r *renderer) logPrefix(rule *policy.Rule) string {
	p := rule.LogPrefix
	if p == "" {
		p = "tabby " + r.p.Ref.Name + " " + r.d.String() + ": "
	}
	if len(p) > maxLogPrefix {
		p = p[:maxLogPrefix]
	}
	return p
}

// families returns the address families the rule has variants for, and
// whether it is split into per-family variants at all (it is when it matches
// addresses, which nft can only do under a family guard). A family in which
// the rule can never match gets no variant.
func families(rule *policy.Rule) (fams []int, split bool) {
	ok := [7]bool{4: true, 6: true}
	switch rule.IPFamily {
	case 4:
		ok[6] = false
	case 6:
		ok[4] = false
	}
	switch rule.Protocol {
	case policy.ProtoICMP:
		ok[6] = false
	case policy.ProtoICMPv6:
		ok[4] = false
	}
	for _, p := range []*policy.Peer{&rule.Source, &rule.Destination} {
		if p.Selector != nil || p.NotSelector != nil || len(p.Nets) > 0 || len(p.NotNets) > 0 ||
			len(p.NamedPorts) > 0 || len(p.NotNamedPorts) > 0 {
			split = true
		}
		if len(p.Nets) > 0 {
			has := [7]bool{}
			for _, n := range p.Nets {
				if n.IsValid() {
					has[famOf(unmap(n.Addr()))] = true
				}
			}
			ok[4], ok[6] = ok[4] && has[4], ok[6] && has[6]
		}
	}
	if !split {
		if !ok[4] && !ok[6] {
			return nil, false
		}
		return []int{0}, false
	}
	for _, f := range []int{4, 6} {
		if ok[f] {
			fams = append(fams, f)
		}
	}
	return fams, true
}

func addrField(src bool, fam int) ir.Field {
	switch {
	case src && fam == 4:
		return ir.FieldIPSaddr
	case src:
		return ir.FieldIP6Saddr
	case fam == 4:
		return ir.FieldIPDaddr
	}
	return ir.FieldIP6Daddr
}

// impliedBy reports whether alternative a's named-port match already
// restricts the side's address to its peer selector: the np-* set of a peer
// holds only addresses of endpoints that selector matches, so matching the
// sel-* set as well would be redundant.
func (r *renderer) impliedBy(s side, a portAlt) bool {
	own := s.src == (r.d == policy.Egress)
	return len(a.named) > 0 && !own && s.peer.Selector != nil
}

// addrMatches appends the address matches of one side in one family:
// selector (unless implied by a named-port match), not-selector, nets,
// not-nets.
func (r *renderer) addrMatches(ms []ir.Match, s side, fam int, selImplied bool) []ir.Match {
	f := addrField(s.src, fam)
	if s.peer.Selector != nil && !selImplied {
		ms = append(ms, ir.MatchAddr{Field: f, Set: r.selSet(s.peer.Selector, fam)})
	}
	if s.peer.NotSelector != nil {
		ms = append(ms, ir.MatchAddr{Field: f, Set: r.selSet(s.peer.NotSelector, fam), Negate: true})
	}
	if m, ok := r.netMatch(s.peer.Nets, f, fam, false); ok {
		ms = append(ms, m)
	}
	if m, ok := r.netMatch(s.peer.NotNets, f, fam, true); ok {
		ms = append(ms, m)
	}
	return ms
}

func (r *renderer) selSet(sel *selectors.Selector, fam int) string {
	name := SelectorSetName(sel.ID(), fam)
	r.specs[name] = setSpec{name: name, kind: setSel, fam: fam, sel: sel}
	return name
}

// netMatch matches the family-fam part of nets, inline or through a net-* set.
func (r *renderer) netMatch(nets []netip.Prefix, f ir.Field, fam int, negate bool) (ir.Match, bool) {
	if len(nets) == 0 {
		return nil, false
	}
	valid := make([]netip.Prefix, 0, len(nets))
	for _, n := range nets {
		if n.IsValid() {
			valid = append(valid, n)
		}
	}
	v4, v6 := mergePrefixes(valid)
	rs := v4
	if fam == 6 {
		rs = v6
	}
	if len(rs) == 0 {
		return nil, false
	}
	prefixes := canonicalPrefixes(rs)
	if len(prefixes) <= maxAnonNets {
		return ir.MatchAddr{Field: f, Prefixes: prefixes, Negate: negate}, true
	}
	var b strings.Builder
	for i, p := range prefixes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	name := NetSetName(b.String(), fam)
	r.specs[name] = setSpec{name: name, kind: setNet, fam: fam, ranges: rs}
	return ir.MatchAddr{Field: f, Set: name, Negate: negate}, true
}

// numericPorts reports whether alternative a of a side matches numeric ports
// (named ports are looked up together with meta l4proto, so they need no
// guard).
func numericPorts(p *policy.Peer, a portAlt) bool { return len(a.ports) > 0 || len(p.NotPorts) > 0 }

// portAlts splits a side's port constraint into its OR alternatives.
func portAlts(p *policy.Peer) []portAlt {
	switch {
	case len(p.Ports) > 0 && len(p.NamedPorts) > 0:
		return []portAlt{{ports: p.Ports}, {named: p.NamedPorts}}
	case len(p.Ports) > 0:
		return []portAlt{{ports: p.Ports}}
	case len(p.NamedPorts) > 0:
		return []portAlt{{named: p.NamedPorts}}
	}
	return []portAlt{{}}
}

// portMatches appends one side's port matches for alternative a.
func (r *renderer) portMatches(ms []ir.Match, s side, a portAlt, proto policy.Protocol, fam int) []ir.Match {
	f := ir.FieldTHDport
	if s.src {
		f = ir.FieldTHSport
	}
	var p uint8
	if proto.HasPorts() {
		p = uint8(proto)
	}
	if rs := policy.MergePortRanges(a.ports); len(rs) > 0 {
		ms = append(ms, ir.MatchPort{Field: f, Proto: p, Ranges: rs})
	}
	if rs := policy.MergePortRanges(s.peer.NotPorts); len(rs) > 0 {
		ms = append(ms, ir.MatchPort{Field: f, Proto: p, Ranges: rs, Negate: true})
	}
	if len(a.named) > 0 {
		ms = append(ms, r.namedPortMatch(s, a.named, f, fam, false))
	}
	if len(s.peer.NotNamedPorts) > 0 {
		ms = append(ms, r.namedPortMatch(s, s.peer.NotNamedPorts, f, fam, true))
	}
	return ms
}

// namedPortMatch matches `<addr> . meta l4proto . th <port>` against the
// named-port set of the endpoint on that side: on the side of the policy's own
// endpoint that is its Subject, on the peer's side the peer's selector (all
// endpoints when the peer has none).
func (r *renderer) namedPortMatch(s side, ports []policy.NamedPort, f ir.Field, fam int, negate bool) ir.Match {
	own := s.src == (r.d == policy.Egress)
	sel := s.peer.Selector
	if own {
		sel = r.p.Subject
	}
	if sel == nil {
		sel = selectors.All()
	}
	ps := normNamedPorts(ports)
	name := NamedPortSetName(sel.ID()+"|"+namedPortsString(ps), fam)
	r.specs[name] = setSpec{name: name, kind: setNamedPort, fam: fam, sel: sel, ports: ps}
	return ir.MatchConcat{Fields: []ir.Field{addrField(s.src, fam), ir.FieldL4Proto, f}, Set: name, Negate: negate}
}

func normNamedPorts(ports []policy.NamedPort) []policy.NamedPort {
	ps := slices.Clone(ports)
	slices.SortFunc(ps, func(a, b policy.NamedPort) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return int(a.Protocol) - int(b.Protocol)
	})
	return slices.Compact(ps)
}

func namedPortsString(ps []policy.NamedPort) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Name + "/" + p.Protocol.String()
	}
	return strings.Join(parts, ",")
}
