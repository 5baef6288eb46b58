package enforcer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/compiler/ir"
)

// Rule encoding: ir.Rule to nftables expressions, instruction for
// instruction what nft 1.0.x generates for the rule ir renders, so the
// kernel's listing of a written table equals its String(). Like nft, the
// encoder adds the payload dependencies a match needs when the rule does not
// already match them (meta nfproto before an address, meta l4proto before
// tcp/udp/sctp ports and ICMP); nft's listing hides such dependencies, as
// ir's rendering does.

// Registers: the verdict register, the first 16-byte register and the first
// 4-byte register (concatenations continue in 4-byte steps).
const (
	regVerdict = unix.NFT_REG_VERDICT
	reg1       = unix.NFT_REG_1
	reg32First = unix.NFT_REG32_00
)

const (
	nfprotoIPv4 = unix.NFPROTO_IPV4
	nfprotoIPv6 = unix.NFPROTO_IPV6
	protoICMP   = 1
	protoICMPv6 = 58
)

// anonSet is an anonymous set a rule looks up. The batch creates it just
// before the rule and fills in lookup's set ID.
type anonSet struct {
	def    setDef
	elems  []elem
	lookup *expr.Lookup
}

// encodedRule is one rule ready for the batch.
type encodedRule struct {
	exprs []expr.Any
	anons []*anonSet
	udata []byte
}

type ruleEncoder struct {
	tab      *ir.Table
	out      encodedRule
	nf4, nf6 bool    // meta nfproto matched so far
	l4       []uint8 // single meta l4proto values matched so far
}

// encodeRule translates r. tab resolves (and validates) named sets, maps and
// chains the rule refers to.
func encodeRule(tab *ir.Table, r *ir.Rule) (encodedRule, error) {
	e := &ruleEncoder{tab: tab}
	for _, m := range r.Matches {
		if err := e.match(m); err != nil {
			return encodedRule{}, fmt.Errorf("rule %q: %w", r.String(), err)
		}
	}
	if r.Counter {
		e.add(&expr.Counter{})
	}
	for _, s := range r.Stmts {
		if err := e.stmt(s); err != nil {
			return encodedRule{}, fmt.Errorf("rule %q: %w", r.String(), err)
		}
	}
	if err := e.verdict(r.Verdict); err != nil {
		return encodedRule{}, fmt.Errorf("rule %q: %w", r.String(), err)
	}
	if r.Origin != nil {
		e.out.udata = userdata.AppendString(nil, userdata.TypeComment, sanitize(r.Origin.String(), ir.MaxCommentLen))
	}
	return e.out, nil
}

func (e *ruleEncoder) add(xs ...expr.Any) { e.out.exprs = append(e.out.exprs, xs...) }

func (e *ruleEncoder) match(m ir.Match) error {
	switch m := m.(type) {
	case ir.MatchNfproto:
		return e.nfproto(m.Family)
	case ir.MatchCtState:
		e.add(&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(ctBits(m.States)), Xor: u32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: u32(0)})
	case ir.MatchL4Proto:
		return e.l4proto(m)
	case ir.MatchAddr:
		return e.addr(m)
	case ir.MatchPort:
		return e.port(m)
	case ir.MatchICMP:
		return e.icmp(m)
	case ir.MatchConcat:
		return e.concat(m)
	case ir.MatchMark:
		e.add(&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1})
		if m.Mask != 0xffffffff {
			e.add(&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(m.Mask), Xor: u32(0)})
		}
		e.add(&expr.Cmp{Op: cmpOp(m.Negate), Register: reg1, Data: u32(m.Value)})
	case ir.MatchIface:
		key, err := ifaceKey(m.Field)
		if err != nil {
			return err
		}
		name, err := putIfname(nil, m.Name)
		if err != nil {
			return err
		}
		e.add(&expr.Meta{Key: key, Register: reg1}, &expr.Cmp{Op: cmpOp(m.Negate), Register: reg1, Data: name})
	default:
		return invalidf("unknown match %T", m)
	}
	return nil
}

func (e *ruleEncoder) nfproto(f ir.Family) error {
	var v byte
	switch f {
	case ir.IPv4:
		v, e.nf4 = nfprotoIPv4, true
	case ir.IPv6:
		v, e.nf6 = nfprotoIPv6, true
	default:
		return invalidf("unknown family %d", f)
	}
	e.add(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1}, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{v}})
	return nil
}

// needFamily adds `meta nfproto f` unless the rule already matched it.
func (e *ruleEncoder) needFamily(f ir.Family) error {
	if (f == ir.IPv4 && e.nf4) || (f == ir.IPv6 && e.nf6) {
		return nil
	}
	return e.nfproto(f)
}

func (e *ruleEncoder) hasL4(p uint8) bool {
	for _, q := range e.l4 {
		if q == p {
			return true
		}
	}
	return false
}

// needL4 adds `meta l4proto p` unless the rule already matched it.
func (e *ruleEncoder) needL4(p uint8) {
	if !e.hasL4(p) {
		e.l4proto(ir.MatchL4Proto{Protos: []uint8{p}})
	}
}

func (e *ruleEncoder) l4proto(m ir.MatchL4Proto) error {
	if len(m.Protos) == 0 {
		return invalidf("meta l4proto without protocols")
	}
	e.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1})
	if len(m.Protos) == 1 {
		if !m.Negate {
			e.l4 = append(e.l4, m.Protos[0])
		}
		e.add(&expr.Cmp{Op: cmpOp(m.Negate), Register: reg1, Data: []byte{m.Protos[0]}})
		return nil
	}
	d, _ := newSetDef("", []ir.KeyType{ir.TypeInetProto})
	elems := make([]elem, len(m.Protos))
	for i, p := range m.Protos {
		elems[i] = elem{key: []byte{p}}
	}
	e.lookupAnon(d, elems, m.Negate)
	return nil
}

// lookupAnon adds a lookup of register 1 in a new anonymous set.
func (e *ruleEncoder) lookupAnon(d setDef, elems []elem, negate bool) {
	d.anon, d.size = true, uint32(len(elems))
	l := &expr.Lookup{SourceRegister: reg1, Invert: negate}
	e.out.anons = append(e.out.anons, &anonSet{def: d, elems: elems, lookup: l})
	e.add(l)
}

func (e *ruleEncoder) addr(m ir.MatchAddr) error {
	load, typ, err := fieldLoad(m.Field, reg1)
	if err != nil {
		return err
	}
	if typ != ir.TypeIPv4Addr && typ != ir.TypeIPv6Addr {
		return invalidf("%s is not an address field", m.Field)
	}
	if err := e.needFamily(fieldFamily(m.Field)); err != nil {
		return err
	}
	if m.Set != "" {
		s := e.tab.Set(m.Set)
		if s == nil {
			return invalidf("no set %s", m.Set)
		}
		if len(s.Type) != 1 || s.Type[0] != typ {
			return invalidf("set %s has type %v, %s needs %s", m.Set, s.Type, m.Field, typ)
		}
		e.add(load, &expr.Lookup{SourceRegister: reg1, SetName: m.Set, Invert: m.Negate})
		return nil
	}
	switch len(m.Prefixes) {
	case 0:
		return invalidf("address match without set or prefixes")
	case 1:
		return e.prefix(load, typ, m.Prefixes[0], m.Negate)
	}
	d, _ := newSetDef("", []ir.KeyType{typ})
	d.interval = true
	var elems []elem
	var prev []byte
	for _, p := range m.Prefixes {
		first, last, err := prefixRange(p, typ)
		if err != nil {
			return err
		}
		if prev != nil && bytes.Compare(prev, first) >= 0 {
			return invalidf("prefix %v overlaps or is out of order", p)
		}
		prev = last
		elems = append(elems, rangeElems(&d, first, last)...)
	}
	e.add(load)
	e.lookupAnon(d, elems, m.Negate)
	return nil
}

// prefix matches one prefix as nft does: a whole address compares directly,
// a byte-aligned prefix loads only its bytes, any other masks the address.
func (e *ruleEncoder) prefix(load *expr.Payload, typ ir.KeyType, p netip.Prefix, negate bool) error {
	first, _, err := prefixRange(p, typ)
	if err != nil {
		return err
	}
	bits := p.Bits()
	switch {
	case bits == len(first)*8:
		e.add(load)
	case bits > 0 && bits%8 == 0:
		load.Len = uint32(bits / 8)
		first = first[:bits/8]
		e.add(load)
	default:
		mask := make([]byte, len(first))
		for i := 0; i < bits; i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		e.add(load, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: uint32(len(first)), Mask: mask, Xor: make([]byte, len(first))})
	}
	e.add(&expr.Cmp{Op: cmpOp(negate), Register: reg1, Data: first})
	return nil
}

// prefixRange is the first and last address of p, encoded as typ.
func prefixRange(p netip.Prefix, typ ir.KeyType) (first, last []byte, err error) {
	if !p.IsValid() {
		return nil, nil, invalidf("invalid prefix %v", p)
	}
	p = p.Masked()
	if first, err = putValue(nil, ir.Value{Addr: p.Addr()}, typ); err != nil {
		return nil, nil, err
	}
	last = append([]byte(nil), first...)
	for i := p.Bits(); i < len(last)*8; i++ {
		last[i/8] |= 0x80 >> (i % 8)
	}
	return first, last, nil
}

func (e *ruleEncoder) port(m ir.MatchPort) error {
	load, typ, err := fieldLoad(m.Field, reg1)
	if err != nil {
		return err
	}
	if typ != ir.TypeInetService {
		return invalidf("%s is not a port field", m.Field)
	}
	if m.Proto != 0 {
		e.needL4(m.Proto)
	}
	e.add(load)
	be := func(p uint16) []byte { return []byte{byte(p >> 8), byte(p)} }
	switch {
	case len(m.Ranges) == 0:
		return invalidf("port match without ports")
	case len(m.Ranges) == 1 && m.Ranges[0].First > m.Ranges[0].Last:
		return invalidf("empty port range %d-%d", m.Ranges[0].First, m.Ranges[0].Last)
	case len(m.Ranges) == 1 && m.Ranges[0].First == m.Ranges[0].Last:
		e.add(&expr.Cmp{Op: cmpOp(m.Negate), Register: reg1, Data: be(m.Ranges[0].First)})
	case len(m.Ranges) == 1 && m.Negate:
		r := m.Ranges[0]
		e.add(&expr.Range{Op: expr.CmpOpNeq, Register: reg1, FromData: be(r.First), ToData: be(r.Last)})
	case len(m.Ranges) == 1:
		r := m.Ranges[0]
		e.add(&expr.Cmp{Op: expr.CmpOpGte, Register: reg1, Data: be(r.First)},
			&expr.Cmp{Op: expr.CmpOpLte, Register: reg1, Data: be(r.Last)})
	default:
		d, _ := newSetDef("", []ir.KeyType{ir.TypeInetService})
		d.interval = true
		var elems []elem
		for i, r := range m.Ranges {
			if r.First > r.Last || (i > 0 && r.First <= m.Ranges[i-1].Last) {
				return invalidf("port range %d-%d is empty, overlaps or is out of order", r.First, r.Last)
			}
			elems = append(elems, rangeElems(&d, be(r.First), be(r.Last))...)
		}
		e.lookupAnon(d, elems, m.Negate)
	}
	return nil
}

func (e *ruleEncoder) icmp(m ir.MatchICMP) error {
	fam, proto := ir.IPv4, uint8(protoICMP)
	if m.V6 {
		fam, proto = ir.IPv6, protoICMPv6
	}
	if !e.hasL4(proto) {
		// nft's dependency for icmp in the inet family: the family, then
		// the protocol.
		if err := e.needFamily(fam); err != nil {
			return err
		}
		e.needL4(proto)
	}
	th := func(off, n uint32, reg uint32) *expr.Payload {
		return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: n}
	}
	switch {
	case m.Code == nil:
		e.add(th(0, 1, reg1), &expr.Cmp{Op: cmpOp(m.Negate), Register: reg1, Data: []byte{m.Type}})
	case !m.Negate:
		// Type and code are adjacent: nft merges them into one load.
		e.add(th(0, 2, reg1), &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{m.Type, *m.Code}})
	default:
		// A negated pair is a lookup of the concatenation type . code.
		types := []ir.KeyType{ir.TypeInetProto, ir.TypeInetProto} // sizes only
		d, _ := newSetDef("", types)
		d.keyType = icmpPairType(m.V6)
		d.byteorder = byteorderInvalid
		e.add(th(0, 1, reg1), th(1, 1, reg32First+1))
		e.lookupAnon(d, []elem{{key: []byte{m.Type, 0, 0, 0, *m.Code, 0, 0, 0}}}, true)
	}
	return nil
}

// icmpPairType is the datatype magic of icmp_type . icmp_code (or the
// ICMPv6 equivalents), so that nft names the values.
func icmpPairType(v6 bool) uint32 {
	const icmpType, icmpCode, icmp6Type, icmp6Code = 14, 32, 29, 33
	if v6 {
		return icmp6Type<<6 | icmp6Code
	}
	return icmpType<<6 | icmpCode
}

func (e *ruleEncoder) concat(m ir.MatchConcat) error {
	s := e.tab.Set(m.Set)
	if s == nil {
		return invalidf("no set %s", m.Set)
	}
	if len(s.Type) != len(m.Fields) || len(m.Fields) < 2 {
		return invalidf("set %s has type %v, the match has %d fields", m.Set, s.Type, len(m.Fields))
	}
	for _, f := range m.Fields {
		if fam := fieldFamily(f); fam != 0 {
			if err := e.needFamily(fam); err != nil {
				return err
			}
		}
	}
	words := uint32(0) // position in 4-byte registers
	for i, f := range m.Fields {
		// nft names a register by its 16-byte number when it is aligned.
		reg := reg32First + words
		if words%4 == 0 {
			reg = reg1 + words/4
		}
		load, typ, err := loadExpr(f, reg)
		if err != nil {
			return err
		}
		if typ != s.Type[i] {
			return invalidf("set %s field %d is %s, %s is %s", m.Set, i, s.Type[i], f, typ)
		}
		e.add(load)
		n, _ := datatype(typ)
		words += (n.Bytes + 3) / 4
	}
	e.add(&expr.Lookup{SourceRegister: reg1, SetName: m.Set, Invert: m.Negate})
	return nil
}

func (e *ruleEncoder) stmt(s ir.Stmt) error {
	switch s := s.(type) {
	case ir.StmtSetMark:
		// The kernel computes mark & mask ^ xor; nft stores an or as such.
		mask, xor := s.And&^s.Or, s.Or
		switch {
		case mask == 0 && xor != 0:
			e.add(&expr.Immediate{Register: reg1, Data: u32(xor)})
		case mask == 0xffffffff && xor == 0:
			e.add(&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1})
		default:
			e.add(&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(mask), Xor: u32(xor)})
		}
		e.add(&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1})
	case ir.StmtLog:
		e.add(&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(sanitize(s.Prefix, 127))})
	default:
		return invalidf("unknown statement %T", s)
	}
	return nil
}

func (e *ruleEncoder) verdict(v ir.Verdict) error {
	switch v.Kind {
	case ir.VerdictNone:
		return nil
	case ir.VerdictMap:
		key, err := ifaceKey(v.MapKey)
		if err != nil {
			return err
		}
		m := e.tab.Map(v.Map)
		if m == nil {
			return invalidf("no map %s", v.Map)
		}
		if len(m.Type) != 1 || m.Type[0] != ir.TypeIfname {
			return invalidf("map %s is not keyed by ifname", v.Map)
		}
		e.add(&expr.Meta{Key: key, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, DestRegister: regVerdict, IsDestRegSet: true, SetName: v.Map})
		return nil
	case ir.VerdictJump, ir.VerdictGoto:
		if err := checkTarget(e.tab, v.Chain); err != nil {
			return err
		}
	}
	kv, err := verdictOf(v)
	if err != nil {
		return err
	}
	e.add(kv)
	return nil
}

// checkTarget validates the target of a jump or goto: a regular chain of the
// table.
func checkTarget(tab *ir.Table, name string) error {
	c := tab.Chain(name)
	switch {
	case c == nil:
		return invalidf("no chain %s", name)
	case c.Base != nil:
		return invalidf("cannot jump to base chain %s", name)
	}
	return nil
}

// fieldLoad is the expression loading f into reg, and f's key type.
func fieldLoad(f ir.Field, reg uint32) (*expr.Payload, ir.KeyType, error) {
	p := func(base expr.PayloadBase, off, n uint32) *expr.Payload {
		return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: base, Offset: off, Len: n}
	}
	switch f {
	case ir.FieldIPSaddr:
		return p(expr.PayloadBaseNetworkHeader, 12, 4), ir.TypeIPv4Addr, nil
	case ir.FieldIPDaddr:
		return p(expr.PayloadBaseNetworkHeader, 16, 4), ir.TypeIPv4Addr, nil
	case ir.FieldIP6Saddr:
		return p(expr.PayloadBaseNetworkHeader, 8, 16), ir.TypeIPv6Addr, nil
	case ir.FieldIP6Daddr:
		return p(expr.PayloadBaseNetworkHeader, 24, 16), ir.TypeIPv6Addr, nil
	case ir.FieldTHSport:
		return p(expr.PayloadBaseTransportHeader, 0, 2), ir.TypeInetService, nil
	case ir.FieldTHDport:
		return p(expr.PayloadBaseTransportHeader, 2, 2), ir.TypeInetService, nil
	}
	return nil, 0, invalidf("field %s is not a payload field", f)
}

// loadExpr is the expression loading any field into reg, and its key type.
func loadExpr(f ir.Field, reg uint32) (expr.Any, ir.KeyType, error) {
	switch f {
	case ir.FieldL4Proto:
		return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}, ir.TypeInetProto, nil
	case ir.FieldIIFName:
		return &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg}, ir.TypeIfname, nil
	case ir.FieldOIFName:
		return &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg}, ir.TypeIfname, nil
	}
	return fieldLoad(f, reg)
}

// fieldFamily is the IP family of an address field (0 for others).
func fieldFamily(f ir.Field) ir.Family {
	switch f {
	case ir.FieldIPSaddr, ir.FieldIPDaddr:
		return ir.IPv4
	case ir.FieldIP6Saddr, ir.FieldIP6Daddr:
		return ir.IPv6
	}
	return 0
}

func ifaceKey(f ir.Field) (expr.MetaKey, error) {
	switch f {
	case ir.FieldIIFName:
		return expr.MetaKeyIIFNAME, nil
	case ir.FieldOIFName:
		return expr.MetaKeyOIFNAME, nil
	}
	return 0, invalidf("%s is not an interface field", f)
}

// ctBits maps ir conntrack states to the kernel's NF_CT_STATE bits.
func ctBits(s ir.CtState) uint32 {
	var b uint32
	for _, m := range []struct {
		ir  ir.CtState
		bit uint32
	}{{ir.CtInvalid, expr.CtStateBitINVALID}, {ir.CtEstablished, expr.CtStateBitESTABLISHED},
		{ir.CtRelated, expr.CtStateBitRELATED}, {ir.CtNew, expr.CtStateBitNEW}, {ir.CtUntracked, expr.CtStateBitUNTRACKED}} {
		if s&m.ir != 0 {
			b |= m.bit
		}
	}
	return b
}

func cmpOp(negate bool) expr.CmpOp {
	if negate {
		return expr.CmpOpNeq
	}
	return expr.CmpOpEq
}

// u32 encodes host-endian 32-bit register data (marks, ct state bits).
func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// sanitize makes s what ir's renderer prints between quotes: nft strings
// have no escapes, so quotes and control characters become spaces, and long
// text is cut on a UTF-8 boundary.
func sanitize(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
