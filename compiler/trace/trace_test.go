package trace

import (
	"errors"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

func TestJumpReturnsToNextRule(t *testing.T) {
	tr := mustNew(t, table(
		base("forward", ir.HookForward, 0, ir.VerdictDrop,
			rl(jump("a")),
			setMark(0, 7, accept),
		),
		regular("a",
			rl(ret),
			setMark(0, 99, accept), // never reached: return ended the chain
		),
	))
	r := mustTrace(t, tr, tcp4(80))
	if r.Verdict != ir.VerdictAccept || r.Mark != 7 {
		t.Fatalf("verdict %v mark %d, want accept 7", r.Verdict, r.Mark)
	}
	if got, want := path(r), []string{"forward:0", "a:0", "forward:1"}; !eqStrings(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
}

func TestFallThroughReturnsToCaller(t *testing.T) {
	tr := mustNew(t, table(
		base("forward", ir.HookForward, 0, ir.VerdictAccept,
			rl(jump("a")),
			rl(drop),
		),
		regular("a", rl(accept, ir.MatchMark{Mask: 1, Value: 1})),
	))
	r := mustTrace(t, tr, tcp4(80))
	if r.Verdict != ir.VerdictDrop {
		t.Fatalf("verdict %v, want drop", r.Verdict)
	}
	if got, want := path(r), []string{"forward:0", "a:end", "forward:1"}; !eqStrings(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
	if end := r.Steps[1]; end.Matched || end.Rule != nil || end.Verdict.Kind != ir.VerdictReturn {
		t.Errorf("end step %+v, want unmatched return", end)
	}
}

func TestGotoReturnsToCallersCaller(t *testing.T) {
	tr := mustNew(t, table(
		base("forward", ir.HookForward, 0, ir.VerdictDrop,
			rl(jump("a")),
			setMark(0xffffffff, 0x100, accept),
		),
		regular("a",
			rl(gotoV("b")),
			setMark(0xffffffff, 0x1, ret), // skipped: goto does not come back
		),
		regular("b", setMark(0xffffffff, 0x10, ir.Verdict{})),
	))
	r := mustTrace(t, tr, tcp4(80))
	if r.Verdict != ir.VerdictAccept || r.Mark != 0x110 {
		t.Fatalf("verdict %v mark %#x, want accept 0x110", r.Verdict, r.Mark)
	}
	if got, want := path(r), []string{"forward:0", "a:0", "b:0", "b:end", "forward:1"}; !eqStrings(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
}

func TestGotoFromBaseEndsInPolicy(t *testing.T) {
	tr := mustNew(t, table(
		base("forward", ir.HookForward, 0, ir.VerdictDrop,
			rl(gotoV("b")),
			rl(accept), // never reached
		),
		regular("b"),
	))
	r := mustTrace(t, tr, tcp4(80))
	if r.Verdict != ir.VerdictDrop {
		t.Fatalf("verdict %v, want drop by policy", r.Verdict)
	}
	last := r.Steps[len(r.Steps)-1]
	if last.Chain != "forward" || last.RuleIndex != -1 || last.Verdict.Kind != ir.VerdictDrop {
		t.Errorf("last step %+v, want forward's policy", last)
	}
}

func TestReturnInBaseChainAppliesPolicy(t *testing.T) {
	tr := mustNew(t, table(base("forward", ir.HookForward, 0, ir.VerdictDrop, rl(ret), rl(accept))))
	r := mustTrace(t, tr, tcp4(80))
	if r.Verdict != ir.VerdictDrop {
		t.Fatalf("verdict %v, want drop", r.Verdict)
	}
	if got, want := path(r), []string{"forward:0", "forward:end"}; !eqStrings(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
}

func TestBaseChainsRunInPriorityOrder(t *testing.T) {
	tr := mustNew(t, table(
		base("late", ir.HookForward, 5, ir.VerdictAccept, logRule("late"), rl(drop, ir.MatchMark{Mask: 1, Value: 1})),
		base("early", ir.HookForward, -5, ir.VerdictDrop, logRule("early"), setMark(0xffffffff, 1, accept)),
		base("input", ir.HookInput, -10, ir.VerdictDrop, logRule("input")),
	))
	r := mustTrace(t, tr, tcp4(80))
	// early accepts (accept is not final across base chains), late sees the
	// mark early set and drops.
	if r.Verdict != ir.VerdictDrop {
		t.Errorf("verdict %v, want drop in the later chain", r.Verdict)
	}
	if got, want := r.Logs, []string{"early", "late"}; !eqStrings(got, want) {
		t.Errorf("logs %v, want %v", got, want)
	}
	r, err := tr.Trace(tcp4(80), ir.HookPostrouting)
	if err != nil || r.Verdict != ir.VerdictAccept || len(r.Steps) != 0 {
		t.Errorf("hook without chains: %v %+v, want accept with no steps", err, r)
	}
}

func TestVerdictMap(t *testing.T) {
	tab := table(
		base("forward", ir.HookForward, 0, ir.VerdictAccept,
			rl(ir.Verdict{Kind: ir.VerdictMap, Map: "from", MapKey: ir.FieldIIFName}),
			rl(ir.Verdict{Kind: ir.VerdictMap, Map: "to", MapKey: ir.FieldOIFName}),
			setMark(0, 0x5, ir.Verdict{}),
		),
		regular("eg", setMark(0xffffffff, 0x10, ir.Verdict{})),
	)
	ifn := func(s string) ir.Key { return ir.Key{{Str: s}} }
	tab.Maps = []*ir.Map{
		{Name: "from", Type: []ir.KeyType{ir.TypeIfname}, Entries: []ir.MapEntry{{Key: ifn("tab-a"), Verdict: jump("eg")}}},
		{Name: "to", Type: []ir.KeyType{ir.TypeIfname}, Entries: []ir.MapEntry{{Key: ifn("tab-drop"), Verdict: drop}}},
	}
	tr := mustNew(t, tab)

	r := mustTrace(t, tr, tcp4(80)) // from tab-a (hit: jump), to tab-b (miss: continue)
	if r.Verdict != ir.VerdictAccept || r.Mark != 0x5 {
		t.Fatalf("verdict %v mark %#x, want accept 0x5", r.Verdict, r.Mark)
	}
	if got, want := path(r), []string{"forward:0", "eg:0", "eg:end", "forward:1", "forward:2", "forward:end"}; !eqStrings(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
	if v := r.Steps[0].Verdict; v.Kind != ir.VerdictJump || v.Chain != "eg" {
		t.Errorf("vmap hit step verdict %v, want jump eg", v)
	}
	if v := r.Steps[3].Verdict; v.Kind != ir.VerdictNone {
		t.Errorf("vmap miss step verdict %v, want none", v)
	}

	p := tcp4(80)
	p.IIF, p.OIF = "tab-x", "tab-drop"
	if r := mustTrace(t, tr, p); r.Verdict != ir.VerdictDrop || r.Mark != 0 {
		t.Errorf("to tab-drop: verdict %v mark %#x, want drop 0", r.Verdict, r.Mark)
	}
}

func TestMarks(t *testing.T) {
	tr := mustNew(t, table(
		base("forward", ir.HookForward, 0, ir.VerdictDrop,
			setMark(0xfffcffff, 0, ir.Verdict{}),                                              // clear both bits
			setMark(0xffffffff, 0x10000, ir.Verdict{}, ir.MatchMark{Mask: 0xff, Value: 0x42}), // low byte 0x42
			rl(drop, ir.MatchMark{Mask: 0x10000, Value: 0x10000, Negate: true}),               // accept bit not set
			rl(accept, ir.MatchMark{Mask: 0xffffffff, Value: 0x10042}),
		),
	))
	p := tcp4(80)
	p.Mark = 0x30042
	r := mustTrace(t, tr, p)
	if r.Verdict != ir.VerdictAccept || r.Mark != 0x10042 {
		t.Errorf("mark 0x30042: verdict %v mark %#x, want accept 0x10042", r.Verdict, r.Mark)
	}
	p.Mark = 0x30041
	if r := mustTrace(t, tr, p); r.Verdict != ir.VerdictDrop || r.Mark != 0x41 {
		t.Errorf("mark 0x30041: verdict %v mark %#x, want drop 0x41", r.Verdict, r.Mark)
	}
}

func TestMatches(t *testing.T) {
	code := uint8(1)
	tab := table(base("forward", ir.HookForward, 0, ir.VerdictDrop))
	tab.Sets = []*ir.Set{
		{Name: "v4", Type: []ir.KeyType{ir.TypeIPv4Addr}, Interval: true, Elements: []ir.Element{
			{Key: ir.Key{av("10.0.0.0")}, End: ir.Key{av("10.0.0.1")}}}},
		{Name: "v6", Type: []ir.KeyType{ir.TypeIPv6Addr}, Elements: []ir.Element{{Key: ir.Key{av("fd00::2")}}}},
	}
	tests := []struct {
		name string
		m    ir.Match
		p    Packet
		want bool
	}{
		{"nfproto v4", ir.MatchNfproto{Family: ir.IPv4}, tcp4(80), true},
		{"nfproto v6 on v4", ir.MatchNfproto{Family: ir.IPv6}, tcp4(80), false},
		{"ip saddr in set", ir.MatchAddr{Field: ir.FieldIPSaddr, Set: "v4"}, tcp4(80), true},
		{"ip daddr in set (range end)", ir.MatchAddr{Field: ir.FieldIPDaddr, Set: "v4"}, tcp4(80), false},
		{"ip daddr not in set", ir.MatchAddr{Field: ir.FieldIPDaddr, Set: "v4", Negate: true}, tcp4(80), true},
		{"ip saddr != on v6: guard fails", ir.MatchAddr{Field: ir.FieldIPSaddr, Set: "v4", Negate: true}, tcp6(80), false},
		{"ip6 daddr in set", ir.MatchAddr{Field: ir.FieldIP6Daddr, Set: "v6"}, tcp6(80), true},
		{"ip6 saddr != set", ir.MatchAddr{Field: ir.FieldIP6Saddr, Set: "v6", Negate: true}, tcp6(80), true},
		{"ip6 on v4", ir.MatchAddr{Field: ir.FieldIP6Saddr, Prefixes: []netipPrefix{pfx("::/0")}}, tcp4(80), false},
		{"prefixes", ir.MatchAddr{Field: ir.FieldIPDaddr, Prefixes: []netipPrefix{pfx("192.168.0.0/16"), pfx("10.0.0.2/32")}}, tcp4(80), true},
		{"prefixes negated", ir.MatchAddr{Field: ir.FieldIPDaddr, Prefixes: []netipPrefix{pfx("10.0.0.0/30")}, Negate: true}, tcp4(80), false},
		{"l4proto set", ir.MatchL4Proto{Protos: []uint8{6, 17}}, tcp4(80), true},
		{"l4proto negated", ir.MatchL4Proto{Protos: []uint8{6}, Negate: true}, tcp4(80), false},
		{"l4proto 255", ir.MatchL4Proto{Protos: []uint8{255}}, Packet{Src: addr("1.1.1.1"), Dst: addr("2.2.2.2"), Proto: 255}, true},
		{"th dport range", ir.MatchPort{Field: ir.FieldTHDport, Ranges: []policyRange{{First: 79, Last: 81}}}, tcp4(80), true},
		{"th sport", ir.MatchPort{Field: ir.FieldTHSport, Ranges: []policyRange{{First: 40000, Last: 40000}}}, tcp4(80), true},
		{"udp dport on tcp", ir.MatchPort{Field: ir.FieldTHDport, Proto: 17, Ranges: []policyRange{{First: 80, Last: 80}}}, tcp4(80), false},
		{"udp dport != on tcp", ir.MatchPort{Field: ir.FieldTHDport, Proto: 17, Ranges: []policyRange{{First: 1, Last: 1}}, Negate: true}, tcp4(80), false},
		{"th dport != on icmp", ir.MatchPort{Field: ir.FieldTHDport, Ranges: []policyRange{{First: 1, Last: 1}}, Negate: true}, icmp4(8, 0), false},
		{"icmp type", ir.MatchICMP{Type: 8}, icmp4(8, 0), true},
		{"icmp type != on tcp", ir.MatchICMP{Type: 8, Negate: true}, tcp4(80), false},
		{"icmp type+code", ir.MatchICMP{Type: 3, Code: &code}, icmp4(3, 1), true},
		{"icmp type+code other code", ir.MatchICMP{Type: 3, Code: &code}, icmp4(3, 2), false},
		{"icmp pair negated, other code", ir.MatchICMP{Type: 3, Code: &code, Negate: true}, icmp4(3, 2), true},
		{"icmp pair negated, same pair", ir.MatchICMP{Type: 3, Code: &code, Negate: true}, icmp4(3, 1), false},
		{"icmpv6 on icmp", ir.MatchICMP{V6: true, Type: 8}, icmp4(8, 0), false},
		{"ct state default new", ir.MatchCtState{States: ir.CtNew}, tcp4(80), true},
		{"ct state est,rel", ir.MatchCtState{States: ir.CtEstablished | ir.CtRelated}, tcp4(80), false},
		{"iifname", ir.MatchIface{Field: ir.FieldIIFName, Name: "tab-a"}, tcp4(80), true},
		{"oifname !=", ir.MatchIface{Field: ir.FieldOIFName, Name: "tab-b", Negate: true}, tcp4(80), false},
	}
	for _, tc := range tests {
		tab.Chains[0].Rules = []*ir.Rule{rl(accept, tc.m)}
		tr := mustNew(t, tab)
		r := mustTrace(t, tr, tc.p)
		if got := r.Verdict == ir.VerdictAccept; got != tc.want {
			t.Errorf("%s: %s matched %v, want %v", tc.name, tc.m, got, tc.want)
		}
	}
}

func icmp4(typ, code uint8) Packet {
	return Packet{Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), Proto: 1, ICMPType: typ, ICMPCode: code, IIF: "tab-a", OIF: "tab-b"}
}

func TestConcatenatedSets(t *testing.T) {
	tab := table(base("forward", ir.HookForward, 0, ir.VerdictDrop,
		rl(accept, ir.MatchConcat{Fields: []ir.Field{ir.FieldIPDaddr, ir.FieldL4Proto, ir.FieldTHDport}, Set: "c4"}),
		rl(accept, ir.MatchConcat{Fields: []ir.Field{ir.FieldIP6Daddr, ir.FieldL4Proto, ir.FieldTHDport}, Set: "c6", Negate: true}),
	))
	tab.Sets = []*ir.Set{
		{Name: "c4", Type: []ir.KeyType{ir.TypeIPv4Addr, ir.TypeInetProto, ir.TypeInetService}, Interval: true, Elements: []ir.Element{
			// Same first field, different ports; a nested network with another port.
			{Key: ir.Key{av("10.0.0.0"), nv(6), nv(80)}, End: ir.Key{av("10.255.255.255"), nv(6), nv(80)}},
			{Key: ir.Key{av("10.0.0.0"), nv(17), nv(53)}, End: ir.Key{av("10.255.255.255"), nv(17), nv(53)}},
			{Key: ir.Key{av("10.0.0.0"), nv(6), nv(8000)}, End: ir.Key{av("10.0.0.255"), nv(6), nv(8080)}},
		}},
		{Name: "c6", Type: []ir.KeyType{ir.TypeIPv6Addr, ir.TypeInetProto, ir.TypeInetService}, Elements: []ir.Element{
			{Key: ir.Key{av("fd00::2"), nv(6), nv(443)}},
		}},
	}
	tr := mustNew(t, tab)
	udp := tcp4(53)
	udp.Proto = 17
	wide := tcp4(8000)
	wide.Dst = addr("10.1.0.2")
	for _, tc := range []struct {
		name string
		p    Packet
		want ir.VerdictKind
	}{
		{"tcp 80 in /8", tcp4(80), ir.VerdictAccept},
		{"udp 53 in /8", udp, ir.VerdictAccept},
		{"tcp 53: proto field out", tcp4(53), ir.VerdictDrop},
		{"tcp 8080 in nested /24", tcp4(8080), ir.VerdictAccept},
		{"tcp 8000 outside nested /24", wide, ir.VerdictDrop},
		{"v6 not in c6: negated match", tcp6(80), ir.VerdictAccept},
		{"v6 in c6", tcp6(443), ir.VerdictDrop},
		{"icmp has no ports: both fail", icmp4(8, 0), ir.VerdictDrop},
	} {
		if r := mustTrace(t, tr, tc.p); r.Verdict != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, r.Verdict, tc.want)
		}
	}
}

func TestJumpStackLimit(t *testing.T) {
	build := func(depth int) *Tracer {
		chains := []*ir.Chain{base("forward", ir.HookForward, 0, ir.VerdictDrop, rl(jump("c1")))}
		for i := 1; i < depth; i++ {
			chains = append(chains, regular("c"+itoa(i), rl(jump("c"+itoa(i+1)))))
		}
		chains = append(chains, regular("c"+itoa(depth), rl(accept)))
		return mustNew(t, table(chains...))
	}
	if r := mustTrace(t, build(MaxJumpStack), tcp4(80)); r.Verdict != ir.VerdictAccept {
		t.Errorf("%d nested jumps: %v, want accept", MaxJumpStack, r.Verdict)
	}
	r, err := build(MaxJumpStack+1).Trace(tcp4(80), ir.HookForward)
	var js *JumpStackError
	if !errors.As(err, &js) {
		t.Fatalf("%d nested jumps: err %v, want *JumpStackError", MaxJumpStack+1, err)
	}
	if r.Verdict != ir.VerdictDrop || js.Chain != "c16" || len(js.Path) != MaxJumpStack+1 {
		t.Errorf("verdict %v, error %+v", r.Verdict, js)
	}
	// goto does not push: a long goto chain is fine.
	chains := []*ir.Chain{base("forward", ir.HookForward, 0, ir.VerdictDrop, rl(jump("g1")))}
	for i := 1; i < 40; i++ {
		chains = append(chains, regular("g"+itoa(i), rl(gotoV("g"+itoa(i+1)))))
	}
	chains = append(chains, regular("g40", rl(accept)))
	if r := mustTrace(t, mustNew(t, table(chains...)), tcp4(80)); r.Verdict != ir.VerdictAccept {
		t.Errorf("40 gotos: %v, want accept", r.Verdict)
	}
}

func TestPacketErrors(t *testing.T) {
	tr := mustNew(t, table(base("forward", ir.HookForward, 0, ir.VerdictAccept)))
	var pe *PacketError
	mixed := Packet{Src: addr("10.0.0.1"), Dst: addr("fd00::1")}
	if _, err := tr.Trace(mixed, ir.HookForward); !errors.As(err, &pe) {
		t.Errorf("mixed families: err %v, want *PacketError", err)
	}
	two := tcp4(80)
	two.Ct = ir.CtNew | ir.CtEstablished
	if _, err := tr.Trace(two, ir.HookForward); !errors.As(err, &pe) {
		t.Errorf("two ct states: err %v, want *PacketError", err)
	}
	if _, err := tr.Trace(Packet{}, ir.HookForward); !errors.As(err, &pe) {
		t.Errorf("no addresses: err %v, want *PacketError", err)
	}
}

func TestValidation(t *testing.T) {
	v4set := func(name string, elems ...ir.Element) *ir.Set {
		return &ir.Set{Name: name, Type: []ir.KeyType{ir.TypeIPv4Addr}, Interval: true, Elements: elems}
	}
	fwd := func(rules ...*ir.Rule) *ir.Chain {
		return base("forward", ir.HookForward, 0, ir.VerdictAccept, rules...)
	}
	tests := []struct {
		name     string
		tab      *ir.Table
		sentinel error
		object   string
	}{
		{"missing chain", table(fwd(rl(jump("nope")))), ErrUnknownChain, "chain forward rule 0"},
		{"jump to base chain", table(fwd(rl(gotoV("other"))), base("other", ir.HookInput, 0, ir.VerdictAccept)), ErrMalformed, "chain forward rule 0"},
		{"missing set", table(fwd(rl(drop, ir.MatchAddr{Field: ir.FieldIPSaddr, Set: "nope"}))), ErrUnknownSet, "chain forward rule 0 match 0"},
		{"missing map", table(fwd(rl(ir.Verdict{Kind: ir.VerdictMap, Map: "m", MapKey: ir.FieldIIFName}))), ErrUnknownMap, "chain forward rule 0"},
		{"v6 field on v4 set", &ir.Table{Sets: []*ir.Set{v4set("s")},
			Chains: []*ir.Chain{fwd(rl(drop, ir.MatchAddr{Field: ir.FieldIP6Saddr, Set: "s"}))}}, ErrKeyType, "chain forward rule 0 match 0"},
		{"concat arity", &ir.Table{Sets: []*ir.Set{v4set("s")},
			Chains: []*ir.Chain{fwd(rl(drop, ir.MatchConcat{Fields: []ir.Field{ir.FieldIPSaddr, ir.FieldTHDport}, Set: "s"}))}}, ErrKeyType, "chain forward rule 0 match 0"},
		{"overlapping intervals", &ir.Table{Sets: []*ir.Set{v4set("s",
			ir.Element{Key: ir.Key{av("10.0.0.0")}, End: ir.Key{av("10.0.0.255")}},
			ir.Element{Key: ir.Key{av("10.0.0.128")}})}}, ErrMalformed, "set s"},
		{"element of the wrong family", &ir.Table{Sets: []*ir.Set{v4set("s", ir.Element{Key: ir.Key{av("::1")}})}}, ErrMalformed, "set s"},
		{"range in a hash set", &ir.Table{Sets: []*ir.Set{{Name: "s", Type: []ir.KeyType{ir.TypeInetService},
			Elements: []ir.Element{{Key: ir.Key{nv(1)}, End: ir.Key{nv(2)}}}}}}, ErrMalformed, "set s"},
		{"loop", table(fwd(rl(jump("a"))), regular("a", rl(jump("b"))), regular("b", rl(gotoV("a")))), ErrLoop, "chain a"},
		{"loop through a map", &ir.Table{
			Maps:   []*ir.Map{{Name: "m", Type: []ir.KeyType{ir.TypeIfname}, Entries: []ir.MapEntry{{Key: ir.Key{{Str: "x"}}, Verdict: jump("a")}}}},
			Chains: []*ir.Chain{fwd(rl(jump("a"))), regular("a", rl(ir.Verdict{Kind: ir.VerdictMap, Map: "m", MapKey: ir.FieldOIFName}))}},
			ErrLoop, "chain a"},
		{"duplicate chain", table(fwd(), regular("a"), regular("a")), ErrDuplicate, "chain a"},
		{"bad policy", table(base("forward", ir.HookForward, 0, ir.VerdictReturn)), ErrMalformed, "chain forward"},
		{"empty prefix and set", table(fwd(rl(drop, ir.MatchAddr{Field: ir.FieldIPSaddr}))), ErrMalformed, "chain forward rule 0 match 0"},
		{"prefix family", table(fwd(rl(drop, ir.MatchAddr{Field: ir.FieldIPSaddr, Prefixes: []netipPrefix{pfx("::/0")}}))), ErrKeyType, "chain forward rule 0 match 0"},
		{"port proto", table(fwd(rl(drop, ir.MatchPort{Field: ir.FieldTHDport, Proto: 1, Ranges: []policyRange{{First: 1, Last: 1}}}))), ErrMalformed, "chain forward rule 0 match 0"},
		{"nil match", table(fwd(rl(drop, nil))), ErrMalformed, "chain forward rule 0 match 0"},
	}
	for _, tc := range tests {
		_, err := New(tc.tab)
		if !errors.Is(err, tc.sentinel) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.sentinel)
			continue
		}
		var ie *InvalidTableError
		if !errors.As(err, &ie) || ie.Object != tc.object {
			t.Errorf("%s: err %v, want object %q", tc.name, err, tc.object)
		}
	}
}

func TestValidationReportsEveryProblem(t *testing.T) {
	_, err := New(table(base("forward", ir.HookForward, 0, ir.VerdictAccept,
		rl(jump("x")), rl(jump("y")), rl(drop, ir.MatchAddr{Field: ir.FieldIPSaddr, Set: "z"}))))
	msg := err.Error()
	for _, want := range []string{`"x"`, `"y"`, "@z"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %s", msg, want)
		}
	}
}

func TestDecisionsRecorded(t *testing.T) {
	allow := &ir.Origin{Kind: ir.OriginPolicyRule, Tier: "kubernetes", Direction: policy.Ingress, Policy: refWeb, Action: policy.ActionAllow}
	logO := &ir.Origin{Kind: ir.OriginPolicyRule, Tier: "kubernetes", Direction: policy.Ingress, Policy: refWeb, RuleIndex: 1, Action: policy.ActionLog}
	ct := &ir.Origin{Kind: ir.OriginConntrack, Action: policy.ActionAllow}
	r1 := &ir.Rule{Matches: []ir.Match{ir.MatchCtState{States: ir.CtEstablished}}, Verdict: accept, Origin: ct}
	r2 := &ir.Rule{Stmts: []ir.Stmt{ir.StmtLog{Prefix: "seen "}}, Origin: logO}
	r3 := &ir.Rule{Stmts: []ir.Stmt{ir.StmtSetMark{And: 0xffffffff, Or: 0x10000}}, Verdict: ret, Origin: allow}
	tr := mustNew(t, table(
		base("forward", ir.HookForward, 0, ir.VerdictDrop, r1, rl(jump("p")), rl(accept, ir.MatchMark{Mask: 0x10000, Value: 0x10000})),
		regular("p", r2, r3),
	))
	r := mustTrace(t, tr, tcp4(80))
	if len(r.Decisions) != 2 {
		t.Fatalf("decisions %+v, want the log and the allow", r.Decisions)
	}
	d0, d1 := r.Decisions[0], r.Decisions[1]
	if d0.Origin != logO || d0.Mark != 0 || d0.Chain != "p" || d0.RuleIndex != 0 || r.Steps[d0.Step].Rule != r2 {
		t.Errorf("first decision %+v", d0)
	}
	if d1.Origin != allow || d1.Mark != 0x10000 || d1.Verdict.Kind != ir.VerdictReturn || r.Steps[d1.Step].Rule != r3 {
		t.Errorf("second decision %+v", d1)
	}
	if !eqStrings(r.Logs, []string{"seen "}) || r.Verdict != ir.VerdictAccept {
		t.Errorf("logs %v verdict %v", r.Logs, r.Verdict)
	}
	est := tcp4(80)
	est.Ct = ir.CtEstablished
	r = mustTrace(t, tr, est)
	if len(r.Decisions) != 1 || r.Decisions[0].Origin != ct || r.Verdict != ir.VerdictAccept {
		t.Errorf("established: %+v", r.Decisions)
	}
}
