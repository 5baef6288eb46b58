package trace

import (
	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

// matcher is a compiled ir.Match. Negation follows nft: `!=` inverts the
// comparison only; when the packet lacks the field (the kernel's protocol
// dependency or payload guard fails) the rule does not match either way.
type matcher interface{ match(p *pkt) bool }

type mNfproto struct{ fam ir.Family }

func (m mNfproto) match(p *pkt) bool { return p.fam == m.fam }

type mCt struct{ states ir.CtState }

func (m mCt) match(p *pkt) bool { return p.ct&m.states != 0 }

type mL4 struct {
	bits [4]uint64
	neg  bool
}

func (m mL4) match(p *pkt) bool {
	return (m.bits[p.proto/64]&(1<<(p.proto%64)) != 0) != m.neg
}

// mAddr is `ip saddr …`: the family guard (meta nfproto) must hold before
// the comparison, negated or not.
type mAddr struct {
	field ir.Field
	set   *set
	neg   bool
}

func (m mAddr) match(p *pkt) bool {
	k, ok := p.field(m.field)
	if !ok {
		return false
	}
	return m.set.contains([]u128{k}) != m.neg
}

// mPort is `th dport …` or `tcp dport …`: the packet's protocol must carry
// ports, and be the one named.
type mPort struct {
	src    bool
	proto  uint8
	ranges []policy.PortRange
	neg    bool
}

func (m mPort) match(p *pkt) bool {
	if !p.ports || (m.proto != 0 && p.proto != m.proto) {
		return false
	}
	port := p.dport
	if m.src {
		port = p.sport
	}
	in := false
	for _, r := range m.ranges {
		if port >= r.First && port <= r.Last {
			in = true
			break
		}
	}
	return in != m.neg
}

// mICMP is `icmp type …` (l4proto icmp) or `icmpv6 type …` (l4proto
// ipv6-icmp). With a code, the (type, code) pair is compared, and negated, as
// one.
type mICMP struct {
	proto uint8
	typ   uint8
	code  int // -1: any
	neg   bool
}

func (m mICMP) match(p *pkt) bool {
	if p.proto != m.proto {
		return false
	}
	eq := p.icmpType == m.typ && (m.code < 0 || int(p.icmpCode) == m.code)
	return eq != m.neg
}

type mConcat struct {
	fields []ir.Field
	set    *set
	neg    bool
}

func (m mConcat) match(p *pkt) bool {
	var buf [8]u128
	key := buf[:0]
	for _, f := range m.fields {
		k, ok := p.field(f)
		if !ok {
			return false
		}
		key = append(key, k)
	}
	return m.set.contains(key) != m.neg
}

type mMark struct {
	mask, value uint32
	neg         bool
}

func (m mMark) match(p *pkt) bool { return (p.mark&m.mask == m.value) != m.neg }

type mIface struct {
	out  bool
	name string
	neg  bool
}

func (m mIface) match(p *pkt) bool {
	n := p.iif
	if m.out {
		n = p.oif
	}
	return (n == m.name) != m.neg
}
