package ir

import (
	"fmt"
	"strconv"
	"strings"
)

// This file (with render_names.go and render_values.go) renders the IR as
// canonical nft syntax: what `nft --stateless list table inet <name>` prints
// for the same ruleset on nftables 1.0.x (checked against the kernel by TestRenderMatchesKernel), so
// rendered tables diff cleanly against a live one and load with `nft -f`.
// Deliberate differences: elements of hash (non-interval) sets and maps print
// in IR order where the kernel lists them in hash order, and protocols other
// than icmp, tcp, udp, ipv6-icmp and sctp print as numbers where nft would
// name them from the machine's /etc/protocols.

// MaxCommentLen bounds rendered rule, chain, set and map comments, in bytes.
const MaxCommentLen = 128

// String renders the whole table as `nft list table` prints it.
func (t *Table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", t.Name)
	first := true
	sep := func() {
		if !first {
			b.WriteByte('\n')
		}
		first = false
	}
	for _, s := range t.Sets {
		sep()
		s.write(&b, "\t")
	}
	for _, m := range t.Maps {
		sep()
		m.write(&b, "\t")
	}
	for _, c := range t.Chains {
		sep()
		c.write(&b, "\t")
	}
	b.WriteString("}\n")
	return b.String()
}

// String renders the set declaration block (unindented).
func (s *Set) String() string {
	var b strings.Builder
	s.write(&b, "")
	return b.String()
}

func (s *Set) write(b *strings.Builder, ind string) {
	fmt.Fprintf(b, "%sset %s {\n", ind, s.Name)
	fmt.Fprintf(b, "%s\ttype %s\n", ind, typeString(s.Type))
	if s.Interval {
		fmt.Fprintf(b, "%s\tflags interval\n", ind)
	}
	writeComment(b, ind, s.Comment)
	if len(s.Elements) > 0 {
		items := make([]string, len(s.Elements))
		for i, e := range s.Elements {
			items[i] = e.Format(s.Type)
		}
		writeElements(b, ind, items, perLine(s.Type))
	}
	fmt.Fprintf(b, "%s}\n", ind)
}

// String renders the map declaration block (unindented).
func (m *Map) String() string {
	var b strings.Builder
	m.write(&b, "")
	return b.String()
}

func (m *Map) write(b *strings.Builder, ind string) {
	fmt.Fprintf(b, "%smap %s {\n", ind, m.Name)
	fmt.Fprintf(b, "%s\ttype %s : verdict\n", ind, typeString(m.Type))
	writeComment(b, ind, m.Comment)
	if len(m.Entries) > 0 {
		items := make([]string, len(m.Entries))
		for i, e := range m.Entries {
			items[i] = e.Key.Format(m.Type) + " : " + e.Verdict.String()
		}
		// A map's key/value pairs are never packed several to a line.
		writeElements(b, ind, items, 1)
	}
	fmt.Fprintf(b, "%s}\n", ind)
}

// String renders the chain block (unindented).
func (c *Chain) String() string {
	var b strings.Builder
	c.write(&b, "")
	return b.String()
}

func (c *Chain) write(b *strings.Builder, ind string) {
	fmt.Fprintf(b, "%schain %s {\n", ind, c.Name)
	// nft prints a chain's comment before its hook line.
	writeComment(b, ind, c.Comment)
	if c.Base != nil {
		fmt.Fprintf(b, "%s\t%s\n", ind, c.Base)
	}
	for _, r := range c.Rules {
		fmt.Fprintf(b, "%s\t%s\n", ind, r)
	}
	fmt.Fprintf(b, "%s}\n", ind)
}

func writeComment(b *strings.Builder, ind, c string) {
	if c != "" {
		fmt.Fprintf(b, "%s\tcomment %s\n", ind, quote(c, MaxCommentLen))
	}
}

// writeElements reproduces nft's element layout: a fixed number of elements
// per line, continuation lines aligned under the first element.
func writeElements(b *strings.Builder, ind string, items []string, per int) {
	fmt.Fprintf(b, "%s\telements = { ", ind)
	for i, it := range items {
		if i > 0 {
			if i%per == 0 {
				fmt.Fprintf(b, ",\n%s\t\t     ", ind)
			} else {
				b.WriteString(", ")
			}
		}
		b.WriteString(it)
	}
	b.WriteString(" }\n")
}

// perLine is how many elements nft prints per line for a set of this type:
// two for single addresses, sixteen for protocols and services, else one.
func perLine(t []KeyType) int {
	if len(t) != 1 {
		return 1
	}
	switch t[0] {
	case TypeIPv4Addr: // nft's TYPE_IPADDR; ipv6_addr gets one per line
		return 2
	case TypeInetProto, TypeInetService:
		return 16
	}
	return 1
}

func typeString(t []KeyType) string {
	parts := make([]string, len(t))
	for i, k := range t {
		parts[i] = k.String()
	}
	return strings.Join(parts, " . ")
}

// String renders the base chain line, e.g.
// `type filter hook forward priority filter; policy accept;`.
func (bc *BaseChain) String() string {
	return fmt.Sprintf("type filter hook %s priority %s; policy %s;", bc.Hook, priorityString(bc.Hook, bc.Priority), bc.Policy)
}

// priorityString names a priority as nft does: the first standard priority
// valid for the hook within ±10, with an offset, else the bare number.
func priorityString(h Hook, prio int) string {
	std := []struct {
		name string
		val  int
		hook Hook // 0: every hook
	}{
		{"raw", -300, 0}, {"mangle", -150, 0}, {"dstnat", -100, HookPrerouting},
		{"filter", 0, 0}, {"security", 50, 0}, {"srcnat", 100, HookPostrouting},
	}
	for _, s := range std {
		if s.hook != 0 && s.hook != h {
			continue
		}
		switch off := prio - s.val; {
		case off == 0:
			return s.name
		case off > 0 && off <= 10:
			return fmt.Sprintf("%s + %d", s.name, off)
		case off < 0 && off >= -10:
			return fmt.Sprintf("%s - %d", s.name, -off)
		}
	}
	return strconv.Itoa(prio)
}

// String renders the rule as one line. Like nft's listing, it leaves out a
// `meta nfproto` or `meta l4proto` match that a later match implies (the
// kernel holds both; nft hides the dependency), and it prints `th` ports
// guarded by a single `meta l4proto tcp|udp|sctp` as `tcp dport` etc.
func (r *Rule) String() string {
	parts := renderMatches(r.Matches)
	if r.Counter {
		parts = append(parts, "counter")
	}
	for _, s := range r.Stmts {
		parts = append(parts, s.String())
	}
	if v := r.Verdict.String(); v != "" {
		parts = append(parts, v)
	}
	if r.Origin != nil {
		parts = append(parts, "comment "+quote(r.Origin.String(), MaxCommentLen))
	}
	return strings.Join(parts, " ")
}

// renderMatches mirrors nft's payload dependency elimination: a stored
// `meta nfproto` is consumed by a later address or ICMP match of that family
// (or by `meta l4proto icmp|ipv6-icmp`), a stored single `meta l4proto` by a
// later transport match of that protocol.
func renderMatches(ms []Match) []string {
	out := make([]string, len(ms))
	drop := make([]bool, len(ms))
	nf, l4 := -1, -1 // index of the pending dependency, -1 if none
	var nfFam Family
	var l4Proto uint8
	killNF := func(f Family) {
		if nf >= 0 && nfFam == f {
			drop[nf] = true
			nf = -1
		}
	}
	// killL4 consumes a pending l4proto p and reports whether it did.
	killL4 := func(p uint8) bool {
		if l4 >= 0 && l4Proto == p {
			drop[l4] = true
			l4 = -1
			return true
		}
		return false
	}
	for i, m := range ms {
		out[i] = m.String()
		switch m := m.(type) {
		case MatchNfproto:
			nf, nfFam = i, m.Family
		case MatchL4Proto:
			if len(m.Protos) != 1 || m.Negate {
				continue
			}
			switch m.Protos[0] {
			case protoICMP:
				killNF(IPv4)
			case protoICMPv6:
				killNF(IPv6)
			}
			l4, l4Proto = i, m.Protos[0]
		case MatchAddr:
			killNF(m.Field.family())
		case MatchICMP:
			if m.V6 {
				killNF(IPv6)
				killL4(protoICMPv6)
			} else {
				killNF(IPv4)
				killL4(protoICMP)
			}
		case MatchPort:
			switch {
			case m.Proto != 0:
				killL4(m.Proto)
			case l4 >= 0 && hasPorts(l4Proto):
				m.Proto = l4Proto
				killL4(l4Proto)
				out[i] = m.String()
			}
		case MatchConcat:
			for _, f := range m.Fields {
				killNF(f.family())
			}
			if l4 >= 0 && hasPorts(l4Proto) && m.hasPorts() {
				out[i] = m.render(l4Proto)
				killL4(l4Proto)
			}
		}
	}
	kept := out[:0]
	for i, s := range out {
		if !drop[i] {
			kept = append(kept, s)
		}
	}
	return kept
}

// family is the IP family an address field belongs to (0 for others).
func (f Field) family() Family {
	switch f {
	case FieldIPSaddr, FieldIPDaddr:
		return IPv4
	case FieldIP6Saddr, FieldIP6Daddr:
		return IPv6
	}
	return 0
}

func (m MatchConcat) hasPorts() bool {
	for _, f := range m.Fields {
		if f == FieldTHSport || f == FieldTHDport {
			return true
		}
	}
	return false
}

func neg(n bool) string {
	if n {
		return "!= "
	}
	return ""
}

func (m MatchNfproto) String() string { return "meta nfproto " + m.Family.String() }

func (m MatchCtState) String() string { return "ct state " + m.States.String() }

func (m MatchL4Proto) String() string {
	items := make([]string, len(m.Protos))
	for i, p := range m.Protos {
		items[i] = ProtoName(p)
	}
	return "meta l4proto " + neg(m.Negate) + anon(items)
}

func (m MatchAddr) String() string {
	if m.Set != "" {
		return m.Field.String() + " " + neg(m.Negate) + "@" + m.Set
	}
	items := make([]string, len(m.Prefixes))
	for i, p := range m.Prefixes {
		items[i] = prefixString(p)
	}
	return m.Field.String() + " " + neg(m.Negate) + anon(items)
}

func (m MatchPort) String() string {
	items := make([]string, len(m.Ranges))
	for i, r := range m.Ranges {
		items[i] = portRange(r.First, r.Last)
	}
	return portField(m.Field, m.Proto) + " " + neg(m.Negate) + anon(items)
}

func portField(f Field, proto uint8) string {
	name := "th"
	switch proto {
	case protoTCP:
		name = "tcp"
	case protoUDP:
		name = "udp"
	case protoSCTP:
		name = "sctp"
	}
	if f == FieldTHSport {
		return name + " sport"
	}
	return name + " dport"
}

func portRange(first, last uint16) string {
	if first == last {
		return strconv.Itoa(int(first))
	}
	return fmt.Sprintf("%d-%d", first, last)
}

func (m MatchICMP) String() string {
	proto := "icmp"
	if m.V6 {
		proto = "icmpv6"
	}
	typ := ICMPTypeName(m.V6, m.Type)
	switch {
	case m.Code == nil:
		return proto + " type " + neg(m.Negate) + typ
	case m.Negate:
		// A negated (type, code) pair needs a concatenation: negating each
		// half separately would be a different match.
		return fmt.Sprintf("%s type . %s code != { %s . %s }", proto, proto, typ, ICMPCodeName(m.V6, *m.Code))
	}
	return fmt.Sprintf("%s type %s %s code %s", proto, typ, proto, ICMPCodeName(m.V6, *m.Code))
}

func (m MatchConcat) String() string { return m.render(0) }

// render prints the concatenation; with l4 set, th ports print as that
// protocol's ports (nft's view when a `meta l4proto` guards them).
func (m MatchConcat) render(l4 uint8) string {
	parts := make([]string, len(m.Fields))
	for i, f := range m.Fields {
		if f == FieldTHSport || f == FieldTHDport {
			parts[i] = portField(f, l4)
		} else {
			parts[i] = f.String()
		}
	}
	return strings.Join(parts, " . ") + " " + neg(m.Negate) + "@" + m.Set
}

func (m MatchMark) String() string {
	if m.Mask == 0xffffffff {
		return fmt.Sprintf("meta mark %s0x%08x", neg(m.Negate), m.Value)
	}
	op := "=="
	if m.Negate {
		op = "!="
	}
	return fmt.Sprintf("meta mark & 0x%08x %s 0x%08x", m.Mask, op, m.Value)
}

func (m MatchIface) String() string {
	return m.Field.String() + " " + neg(m.Negate) + quote(m.Name, 0)
}

// String renders as nft lists it: the kernel holds `mark & (And &^ Or) ^ Or`,
// which nft prints in its simplest form.
func (s StmtSetMark) String() string {
	mask, xor := s.And&^s.Or, s.Or
	switch {
	case xor == 0 && mask == 0xffffffff:
		return "meta mark set meta mark"
	case xor == 0:
		return fmt.Sprintf("meta mark set meta mark & 0x%08x", mask)
	case mask == 0:
		return fmt.Sprintf("meta mark set 0x%08x", xor)
	case mask|xor == 0xffffffff:
		return fmt.Sprintf("meta mark set meta mark | 0x%08x", xor)
	}
	return fmt.Sprintf("meta mark set meta mark & 0x%08x | 0x%08x", mask|xor, xor)
}

func (s StmtLog) String() string { return "log prefix " + quote(s.Prefix, 127) }

// String renders the verdict ("" for VerdictNone).
func (v Verdict) String() string {
	switch v.Kind {
	case VerdictJump:
		return "jump " + v.Chain
	case VerdictGoto:
		return "goto " + v.Chain
	case VerdictMap:
		return v.MapKey.String() + " vmap @" + v.Map
	}
	return v.Kind.String()
}
