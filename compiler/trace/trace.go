package trace

import (
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/compiler/ir"
)

// Packet is what the tracer evaluates: one packet's headers and metadata.
type Packet struct {
	Src, Dst netip.Addr // same family; 4in6 addresses count as IPv6
	Proto    uint8      // IP protocol (meta l4proto)
	// SrcPort and DstPort are read only when Proto carries ports (tcp, udp,
	// sctp); ICMPType and ICMPCode only for ICMP (1) and ICMPv6 (58).
	SrcPort, DstPort   uint16
	ICMPType, ICMPCode uint8
	IIF, OIF           string // input and output interface names
	// Ct is the packet's conntrack state, exactly one bit; zero means CtNew,
	// the first packet of a connection, which is what policy questions ask.
	Ct   ir.CtState
	Mark uint32 // meta mark on entry
}

// Step is one executed rule: a rule whose matches all held, or the end of a
// chain that no rule ended (RuleIndex -1, Rule nil: fall-through in a regular
// chain, the policy of a base chain).
type Step struct {
	Chain     string
	RuleIndex int
	Rule      *ir.Rule
	Matched   bool // false only for end-of-chain steps
	// Verdict is what the step did: the rule's verdict, for a verdict map the
	// entry's (VerdictNone on a miss), Return at a chain's end, the policy at
	// a base chain's end.
	Verdict ir.Verdict
	Mark    uint32 // the mark after the step
}

// Decision is an executed rule that has an Origin: what the compiler said the
// rule means, in the order the packet met them.
type Decision struct {
	Origin    *ir.Origin
	Chain     string
	RuleIndex int
	Step      int        // index of the rule's Step in Result.Steps
	Verdict   ir.Verdict // as in Step
	Mark      uint32     // the mark after the rule
}

// Result is the outcome of a trace.
type Result struct {
	Verdict   ir.VerdictKind // VerdictAccept or VerdictDrop
	Mark      uint32         // the mark after the last base chain
	Steps     []Step
	Logs      []string // log prefixes, in order
	Decisions []Decision
}

// MaxJumpStack is the kernel's jump stack (NFT_JUMP_STACK_SIZE): a packet
// may be 16 jumps deep; goto does not push.
const MaxJumpStack = 16

// JumpStackError is returned by Trace when a jump would exceed MaxJumpStack.
// The kernel drops the packet then; so does the Result.
type JumpStackError struct {
	Chain string // the chain holding the jump
	Rule  int
	Path  []string // the chains on the stack, outermost first
}

func (e *JumpStackError) Error() string {
	return fmt.Sprintf("jump stack exceeded (%d) at chain %s rule %d via %v", MaxJumpStack, e.Chain, e.Rule, e.Path)
}

// PacketError is returned by Trace for a packet it cannot evaluate.
type PacketError struct{ Reason string }

func (e *PacketError) Error() string { return "invalid packet: " + e.Reason }

// pkt is a Packet prepared for matching.
type pkt struct {
	fam          ir.Family
	src, dst     u128
	proto        uint8
	ports        bool
	sport, dport uint16
	icmpType     uint8
	icmpCode     uint8
	iif, oif     string
	ct           ir.CtState
	mark         uint32
}

func prepare(p Packet) (pkt, error) {
	if !p.Src.IsValid() || !p.Dst.IsValid() {
		return pkt{}, &PacketError{"source and destination addresses are required"}
	}
	if p.Src.Is4() != p.Dst.Is4() {
		return pkt{}, &PacketError{fmt.Sprintf("source %v and destination %v are of different families", p.Src, p.Dst)}
	}
	ct := p.Ct
	if ct == 0 {
		ct = ir.CtNew
	}
	if ct&(ct-1) != 0 {
		return pkt{}, &PacketError{fmt.Sprintf("conntrack state %v is not a single state", ct)}
	}
	k := pkt{
		fam: ir.IPv6, src: addrKey(p.Src), dst: addrKey(p.Dst), proto: p.Proto,
		ports: hasPorts(p.Proto), sport: p.SrcPort, dport: p.DstPort,
		icmpType: p.ICMPType, icmpCode: p.ICMPCode, iif: p.IIF, oif: p.OIF, ct: ct, mark: p.Mark,
	}
	if p.Src.Is4() {
		k.fam = ir.IPv4
	}
	return k, nil
}

func hasPorts(p uint8) bool { return p == 6 || p == 17 || p == 132 }

// field returns the packet's value of f, and false when the packet has no
// such field (an address of the other family, a port of a portless
// protocol): the kernel's payload guard fails, so the match fails whatever
// its negation.
func (p *pkt) field(f ir.Field) (u128, bool) {
	switch f {
	case ir.FieldIPSaddr:
		return p.src, p.fam == ir.IPv4
	case ir.FieldIPDaddr:
		return p.dst, p.fam == ir.IPv4
	case ir.FieldIP6Saddr:
		return p.src, p.fam == ir.IPv6
	case ir.FieldIP6Daddr:
		return p.dst, p.fam == ir.IPv6
	case ir.FieldL4Proto:
		return u128{lo: uint64(p.proto)}, true
	case ir.FieldTHSport:
		return u128{lo: uint64(p.sport)}, p.ports
	case ir.FieldTHDport:
		return u128{lo: uint64(p.dport)}, p.ports
	case ir.FieldIIFName:
		return ifnameKey(p.iif), true
	case ir.FieldOIFName:
		return ifnameKey(p.oif), true
	}
	return u128{}, false
}

// Trace runs p through the base chains of hook in priority order, as
// netfilter does: an accept moves on to the next base chain, a drop ends
// everything. With no base chain on the hook the packet is accepted. The
// error is a *PacketError (empty Result) or a *JumpStackError (the Result so
// far, with Verdict drop).
func (t *Tracer) Trace(p Packet, hook ir.Hook) (Result, error) {
	k, err := prepare(p)
	if err != nil {
		return Result{}, err
	}
	// Typical paths are tens of steps; starting there saves the growth copies.
	res := Result{Verdict: ir.VerdictAccept, Mark: k.mark, Steps: make([]Step, 0, 32)}
	for _, base := range t.hooks[hook] {
		v, err := t.run(&k, base, &res)
		res.Mark = k.mark
		if err != nil {
			res.Verdict = ir.VerdictDrop
			return res, err
		}
		if v == ir.VerdictDrop {
			res.Verdict = ir.VerdictDrop
			return res, nil
		}
	}
	return res, nil
}

type frame struct{ chain, rule int }

// run evaluates one base chain (nft_do_chain) and returns accept or drop.
func (t *Tracer) run(p *pkt, base int, res *Result) (ir.VerdictKind, error) {
	var stack [MaxJumpStack]frame
	sp := 0
	ci, ri := base, 0
	for {
		c := t.chains[ci]
		next, returned := -1, false
		for ; ri < len(c.rules); ri++ {
			r := &c.rules[ri]
			if !r.matches(p) {
				continue
			}
			for _, s := range r.stmts {
				if s.log {
					res.Logs = append(res.Logs, s.prefix)
				} else {
					p.mark = p.mark&s.and | s.or
				}
			}
			v := r.verdict
			if r.vmap != nil {
				v = r.vmap.lookup(p, r.vkey)
			}
			res.Steps = append(res.Steps, Step{Chain: c.name, RuleIndex: ri, Rule: r.src, Matched: true, Verdict: v.v, Mark: p.mark})
			if r.src.Origin != nil {
				res.Decisions = append(res.Decisions, Decision{Origin: r.src.Origin, Chain: c.name, RuleIndex: ri,
					Step: len(res.Steps) - 1, Verdict: v.v, Mark: p.mark})
			}
			switch v.v.Kind {
			case ir.VerdictAccept, ir.VerdictDrop:
				return v.v.Kind, nil
			case ir.VerdictJump:
				if sp >= MaxJumpStack {
					path := make([]string, 0, sp+1)
					for _, f := range stack[:sp] {
						path = append(path, t.chains[f.chain].name)
					}
					return ir.VerdictDrop, &JumpStackError{Chain: c.name, Rule: ri, Path: append(path, c.name)}
				}
				stack[sp] = frame{ci, ri + 1}
				sp++
				next = v.target
			case ir.VerdictGoto:
				next = v.target
			case ir.VerdictReturn:
				returned = true
			}
			if next >= 0 || returned {
				break
			}
		}
		if next >= 0 {
			ci, ri = next, 0
			continue
		}
		if !returned { // fell off the end
			end := ir.Verdict{Kind: ir.VerdictReturn}
			if ci == base {
				end.Kind = t.policyOf(base)
			}
			res.Steps = append(res.Steps, Step{Chain: c.name, RuleIndex: -1, Verdict: end, Mark: p.mark})
		}
		if sp == 0 {
			// Back at the base chain's level with nothing to return to: its
			// policy decides. Record it unless the base chain's own end did.
			if returned || ci != base {
				res.Steps = append(res.Steps, Step{Chain: t.chains[base].name, RuleIndex: -1,
					Verdict: ir.Verdict{Kind: t.policyOf(base)}, Mark: p.mark})
			}
			return t.policyOf(base), nil
		}
		sp--
		ci, ri = stack[sp].chain, stack[sp].rule
	}
}

func (t *Tracer) policyOf(ci int) ir.VerdictKind {
	if b := t.chains[ci].base; b != nil {
		return b.Policy
	}
	return ir.VerdictReturn
}
