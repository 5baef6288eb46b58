package ir

import (
	"flag"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/e2e/kerneltest"

	"github.com/tabbynet/tabby/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func v4(s string) Value         { return Value{Addr: netip.MustParseAddr(s)} }
func num(n uint32) Value        { return Value{Num: n} }
func str(s string) Value        { return Value{Str: s} }
func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func u8(v uint8) *uint8         { return &v }

// goldenTable exercises every type of the IR once or more. Its one
// unnamed protocol is 253, which no /etc/protocols names, so the kernel
// listing prints it as a number too.
func goldenTable() *Table {
	ref := policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "x", Name: "allow-web"}
	cnp := policy.Ref{Kind: policy.KindClusterNetworkPolicy, Name: "admin-" + strings.Repeat("long", 30)}
	ports := make([]Element, 20)
	for i := range ports {
		ports[i] = Element{Key: Key{num(uint32(1000 + i))}}
	}
	return &Table{
		Name: "tabby",
		Sets: []*Set{
			{Name: "np-a", Type: []KeyType{TypeIPv4Addr}, Interval: true, Comment: `peers of "web"`, Elements: []Element{
				{Key: Key{v4("1.1.1.1")}},
				{Key: Key{v4("10.0.0.0")}, End: Key{v4("10.255.255.255")}},
				{Key: Key{v4("11.1.0.1")}, End: Key{v4("11.1.0.5")}},
				{Key: Key{v4("172.16.0.0")}, End: Key{v4("172.31.255.255")}},
				{Key: Key{v4("192.168.1.1")}, End: Key{v4("192.168.1.1")}},
				{Key: Key{v4("192.168.2.0")}, End: Key{v4("192.168.2.255")}},
			}},
			{Name: "np-c", Type: []KeyType{TypeIPv4Addr, TypeInetProto, TypeInetService}, Interval: true, Elements: []Element{
				{Key: Key{v4("10.0.0.0"), num(6), num(80)}, End: Key{v4("10.255.255.255"), num(6), num(90)}},
				{Key: Key{v4("10.1.0.1"), num(17), num(53)}},
				{Key: Key{v4("10.2.0.0"), num(132), num(1000)}, End: Key{v4("10.2.0.5"), num(132), num(1000)}},
				{Key: Key{v4("10.3.0.1"), num(253), num(0)}},
			}},
			{Name: "np-h", Type: []KeyType{TypeIPv4Addr}, Elements: []Element{
				{Key: Key{v4("10.9.0.1")}}, {Key: Key{v4("10.9.0.2")}}, {Key: Key{v4("10.9.0.3")}},
			}},
			{Name: "np-if", Type: []KeyType{TypeIfname}, Elements: []Element{{Key: Key{str("tab0")}}}},
			{Name: "np-p", Type: []KeyType{TypeInetService}, Elements: ports},
			{Name: "np-proto", Type: []KeyType{TypeInetProto}, Elements: []Element{{Key: Key{num(6)}}, {Key: Key{num(17)}}}},
			{Name: "np-v6", Type: []KeyType{TypeIPv6Addr}, Interval: true, Elements: []Element{
				{Key: Key{v4("::1")}},
				{Key: Key{v4("2001:db8::")}, End: Key{v4("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")}},
				{Key: Key{v4("fe80::1")}, End: Key{v4("fe80::5")}},
			}},
			{Name: "np-v6c", Type: []KeyType{TypeIPv6Addr, TypeInetProto, TypeInetService}, Elements: []Element{
				{Key: Key{v4("2001:db8::1"), num(6), num(443)}},
			}},
		},
		Maps: []*Map{
			{Name: "from-endpoint", Type: []KeyType{TypeIfname}, Comment: "egress profiles", Entries: []MapEntry{
				{Key: Key{str("tab0123456789a")}, Verdict: Verdict{Kind: VerdictJump, Chain: "eg-abc"}},
			}},
			{Name: "to-endpoint", Type: []KeyType{TypeIfname}},
		},
		Chains: []*Chain{
			{Name: "input", Base: &BaseChain{Hook: HookInput, Priority: -5, Policy: VerdictAccept}},
			{Name: "forward", Base: &BaseChain{Hook: HookForward, Priority: 0, Policy: VerdictAccept}, Rules: []*Rule{
				{Matches: []Match{MatchCtState{States: CtEstablished | CtRelated}}, Counter: true,
					Verdict: Verdict{Kind: VerdictAccept}, Origin: &Origin{Kind: OriginConntrack, Action: policy.ActionAllow}},
				{Matches: []Match{MatchCtState{States: CtInvalid}}, Counter: true,
					Verdict: Verdict{Kind: VerdictDrop}, Origin: &Origin{Kind: OriginConntrack, Action: policy.ActionDeny}},
				{Verdict: Verdict{Kind: VerdictMap, Map: "from-endpoint", MapKey: FieldIIFName}},
				{Verdict: Verdict{Kind: VerdictMap, Map: "to-endpoint", MapKey: FieldOIFName}},
			}},
			{Name: "forward-late", Base: &BaseChain{Hook: HookForward, Priority: 5, Policy: VerdictDrop}, Comment: "late"},
			{Name: "output", Base: &BaseChain{Hook: HookOutput, Priority: -150, Policy: VerdictAccept}},
			{Name: "eg-abc", Comment: "egress x/a", Rules: []*Rule{
				{Stmts: []Stmt{StmtSetMark{And: 0xfffcffff}}},
				{Verdict: Verdict{Kind: VerdictJump, Chain: "eg-abc-kubernetes"}},
				{Matches: []Match{MatchMark{Mask: 0x10000, Value: 0x10000}}, Verdict: Verdict{Kind: VerdictReturn}},
				{Stmts: []Stmt{StmtSetMark{And: 0xffffffff, Or: 0x10000}}, Verdict: Verdict{Kind: VerdictReturn},
					Origin: &Origin{Kind: OriginNoTier, Direction: policy.Egress, Action: policy.ActionAllow}},
			}},
			{Name: "eg-abc-kubernetes", Rules: []*Rule{
				{Verdict: Verdict{Kind: VerdictJump, Chain: "pol-web"},
					Origin: &Origin{Kind: OriginPolicyRule, Tier: "kubernetes", Direction: policy.Egress, Policy: ref, RuleIndex: -1}},
				{Matches: []Match{MatchMark{Mask: 0xffffffff, Value: 5, Negate: true}}, Verdict: Verdict{Kind: VerdictGoto, Chain: "pol-web"}},
				{Verdict: Verdict{Kind: VerdictDrop}, Origin: &Origin{Kind: OriginTierDefault, Tier: "kubernetes",
					Direction: policy.Egress, Action: policy.ActionDeny}},
			}},
			{Name: "pol-web", Rules: []*Rule{
				{Matches: []Match{MatchNfproto{Family: IPv4}, MatchAddr{Field: FieldIPDaddr, Set: "np-a"},
					MatchL4Proto{Protos: []uint8{6}}, MatchPort{Field: FieldTHDport, Proto: 6, Ranges: []policy.PortRange{{First: 80, Last: 80}, {First: 8000, Last: 8080}}}},
					Stmts:   []Stmt{StmtSetMark{And: 0xfffcffff, Or: 0x10000}},
					Verdict: Verdict{Kind: VerdictReturn},
					Origin: &Origin{Kind: OriginPolicyRule, Tier: "kubernetes", Direction: policy.Egress, Policy: ref,
						RuleIndex: 0, Action: policy.ActionAllow}},
				{Matches: []Match{MatchNfproto{Family: IPv4}, MatchAddr{Field: FieldIPSaddr, Prefixes: []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.168.0.0/16")}, Negate: true}},
					Verdict: Verdict{Kind: VerdictDrop},
					Origin: &Origin{Kind: OriginPolicyRule, Tier: "cnp-admin", Direction: policy.Ingress, Policy: cnp,
						RuleIndex: 3, RuleName: "deny-\"outsiders\"", Action: policy.ActionDeny}},
				{Matches: []Match{MatchNfproto{Family: IPv6}, MatchAddr{Field: FieldIP6Saddr, Prefixes: []netip.Prefix{pfx("2001:db8::1/128")}}}},
				{Matches: []Match{MatchNfproto{Family: IPv4}, MatchConcat{Fields: []Field{FieldIPDaddr, FieldL4Proto, FieldTHDport}, Set: "np-c"}},
					Verdict: Verdict{Kind: VerdictAccept}},
				{Matches: []Match{MatchNfproto{Family: IPv6}, MatchConcat{Fields: []Field{FieldIP6Daddr, FieldL4Proto, FieldTHDport}, Set: "np-v6c", Negate: true}},
					Verdict: Verdict{Kind: VerdictAccept}},
				{Matches: []Match{MatchL4Proto{Protos: []uint8{17}}, MatchPort{Field: FieldTHSport, Ranges: []policy.PortRange{{First: 53, Last: 53}}}}},
				{Matches: []Match{MatchL4Proto{Protos: []uint8{6, 17}}, MatchPort{Field: FieldTHDport, Ranges: []policy.PortRange{{First: 1, Last: 1023}}, Negate: true}}},
				{Matches: []Match{MatchL4Proto{Protos: []uint8{6, 17, 132}, Negate: true}, MatchL4Proto{Protos: []uint8{253}}}},
				{Matches: []Match{MatchNfproto{Family: IPv4}, MatchL4Proto{Protos: []uint8{1}}, MatchICMP{Type: 8}}, Verdict: Verdict{Kind: VerdictAccept}},
				{Matches: []Match{MatchNfproto{Family: IPv4}, MatchICMP{Type: 3, Code: u8(1)}}, Verdict: Verdict{Kind: VerdictAccept}},
				{Matches: []Match{MatchNfproto{Family: IPv4}, MatchICMP{Type: 3, Code: u8(4), Negate: true}}, Verdict: Verdict{Kind: VerdictAccept}},
				{Matches: []Match{MatchNfproto{Family: IPv6}, MatchL4Proto{Protos: []uint8{58}}, MatchICMP{V6: true, Type: 200, Negate: true}}, Verdict: Verdict{Kind: VerdictAccept}},
				{Matches: []Match{MatchNfproto{Family: IPv6}, MatchL4Proto{Protos: []uint8{58}}}},
				{Matches: []Match{MatchNfproto{Family: IPv4}, MatchL4Proto{Protos: []uint8{6}}, MatchPort{Field: FieldTHDport, Proto: 6, Ranges: []policy.PortRange{{First: 443, Last: 443}}}}},
				{Matches: []Match{MatchIface{Field: FieldIIFName, Name: "tab0"}, MatchIface{Field: FieldOIFName, Name: "tab1", Negate: true},
					MatchMark{Mask: 0x20000, Value: 0, Negate: true}}, Counter: true,
					Stmts: []Stmt{StmtLog{Prefix: "tabby deny "}, StmtSetMark{Or: 0x20000}}},
				{Stmts: []Stmt{StmtSetMark{And: 0xffffffff}}},
				{Stmts: []Stmt{StmtSetMark{And: 0x0000ffff, Or: 0xffff0000}}},
				{Matches: []Match{MatchCtState{States: CtNew | CtUntracked | CtInvalid}}, Verdict: Verdict{Kind: VerdictReturn}},
			}},
		},
	}
}

func TestRenderGolden(t *testing.T) {
	got := goldenTable().String()
	path := "testdata/render.golden"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("render differs from %s (run with -update after checking):\n%s", path, got)
	}
}

// TestRenderMatchesKernel loads the golden table into a throwaway network
// namespace and checks that `nft --stateless list` prints exactly what
// String() renders, except for the order of elements in hash sets.
func TestRenderMatchesKernel(t *testing.T) {
	ns := kerneltest.NewNetns(t, "tabby-render")
	rendered := goldenTable().String()
	if _, err := kerneltest.Nft(ns, []byte(rendered), "-f", "-"); err != nil {
		t.Fatal(err)
	}
	out, err := kerneltest.Nft(ns, nil, "--stateless", "list", "table", "inet", "tabby")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kerneltest.NormaliseElements(string(out)), kerneltest.NormaliseElements(rendered); got != want {
		t.Errorf("kernel listing differs from the rendering\nkernel:\n%s\nrendered:\n%s", got, want)
	}
}

func TestRenderRules(t *testing.T) {
	// Expectations are nft 1.0.6's own listing of the same rules.
	tests := []struct {
		name string
		rule Rule
		want string
	}{
		{"nfproto kept without payload", Rule{Matches: []Match{MatchNfproto{Family: IPv4}, MatchL4Proto{Protos: []uint8{17}},
			MatchPort{Field: FieldTHDport, Proto: 17, Ranges: []policy.PortRange{{First: 53, Last: 53}}}}},
			"meta nfproto ipv4 udp dport 53"},
		{"nfproto consumed across other matches", Rule{Matches: []Match{MatchNfproto{Family: IPv4}, MatchCtState{States: CtNew},
			MatchAddr{Field: FieldIPSaddr, Prefixes: []netip.Prefix{pfx("1.1.1.1/32")}}}},
			"ct state new ip saddr 1.1.1.1"},
		{"wrong family keeps nfproto", Rule{Matches: []Match{MatchNfproto{Family: IPv6}, MatchL4Proto{Protos: []uint8{1}}}},
			"meta nfproto ipv6 meta l4proto icmp"},
		{"l4proto icmp consumes nfproto", Rule{Matches: []Match{MatchNfproto{Family: IPv4}, MatchL4Proto{Protos: []uint8{1}}}},
			"meta l4proto icmp"},
		{"th after l4proto prints as tcp", Rule{Matches: []Match{MatchL4Proto{Protos: []uint8{6}},
			MatchPort{Field: FieldTHDport, Ranges: []policy.PortRange{{First: 80, Last: 90}}}}},
			"tcp dport 80-90"},
		{"concat th after l4proto", Rule{Matches: []Match{MatchNfproto{Family: IPv4}, MatchL4Proto{Protos: []uint8{6}},
			MatchConcat{Fields: []Field{FieldIPSaddr, FieldL4Proto, FieldTHDport}, Set: "s4"}}},
			"ip saddr . meta l4proto . tcp dport @s4"},
		{"set of protos is no dependency", Rule{Matches: []Match{MatchL4Proto{Protos: []uint8{6, 17}},
			MatchPort{Field: FieldTHDport, Ranges: []policy.PortRange{{First: 53, Last: 53}}}}},
			"meta l4proto { tcp, udp } th dport 53"},
		{"mark or", Rule{Stmts: []Stmt{StmtSetMark{And: 0xfffeffff, Or: 0x10000}}}, "meta mark set meta mark | 0x00010000"},
		{"mark and-or", Rule{Stmts: []Stmt{StmtSetMark{And: 0xfffcffff, Or: 0x10000}}}, "meta mark set meta mark & 0xfffdffff | 0x00010000"},
		{"mark constant", Rule{Stmts: []Stmt{StmtSetMark{Or: 0x10000}}}, "meta mark set 0x00010000"},
		{"mark zero", Rule{Stmts: []Stmt{StmtSetMark{}}}, "meta mark set meta mark & 0x00000000"},
		{"vmap", Rule{Verdict: Verdict{Kind: VerdictMap, Map: "m", MapKey: FieldOIFName}}, "oifname vmap @m"},
	}
	for _, tc := range tests {
		if got := tc.rule.String(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPriorityString(t *testing.T) {
	tests := []struct {
		hook Hook
		prio int
		want string
	}{
		{HookForward, 0, "filter"}, {HookForward, 5, "filter + 5"}, {HookForward, -5, "filter - 5"},
		{HookForward, 40, "security - 10"}, {HookForward, 61, "61"}, {HookForward, -11, "-11"},
		{HookForward, -100, "-100"}, {HookPrerouting, -100, "dstnat"}, {HookInput, 100, "100"},
		{HookPostrouting, 95, "srcnat - 5"}, {HookOutput, -150, "mangle"}, {HookForward, -290, "raw + 10"},
	}
	for _, tc := range tests {
		if got := priorityString(tc.hook, tc.prio); got != tc.want {
			t.Errorf("priority %d on %s: got %q, want %q", tc.prio, tc.hook, got, tc.want)
		}
	}
}

func TestRangePrefix(t *testing.T) {
	tests := []struct {
		first, last string
		want        string // "" for none
	}{
		{"10.0.0.0", "10.255.255.255", "10.0.0.0/8"},
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"10.0.0.1", "10.0.0.1", "10.0.0.1/32"},
		{"10.0.0.1", "10.0.0.2", ""},
		{"10.0.0.0", "10.0.0.2", ""},
		{"10.0.0.2", "10.0.0.1", ""},
		{"2001:db8::", "2001:db8::ffff", "2001:db8::/112"},
		{"10.0.0.0", "::1", ""},
	}
	for _, tc := range tests {
		p, ok := RangePrefix(netip.MustParseAddr(tc.first), netip.MustParseAddr(tc.last))
		got := ""
		if ok {
			got = p.String()
		}
		if got != tc.want {
			t.Errorf("RangePrefix(%s, %s) = %q, want %q", tc.first, tc.last, got, tc.want)
		}
	}
}

func TestCommentTruncatedOnRuneBoundary(t *testing.T) {
	long := strings.Repeat("€", 50) // 150 bytes, 3 per rune
	body := strings.Trim(quote(long, MaxCommentLen), `"`)
	if len(body) != 126 || !strings.HasPrefix(long, body) {
		t.Errorf("truncated to %d bytes: %q", len(body), body)
	}
}

func TestLookups(t *testing.T) {
	tab := goldenTable()
	for _, c := range tab.Chains {
		if got := tab.Chain(c.Name); got != c {
			t.Errorf("Chain(%q) = %v", c.Name, got)
		}
	}
	for _, s := range tab.Sets {
		if got := tab.Set(s.Name); got != s {
			t.Errorf("Set(%q) = %v", s.Name, got)
		}
	}
	for _, m := range tab.Maps {
		if got := tab.Map(m.Name); got != m {
			t.Errorf("Map(%q) = %v", m.Name, got)
		}
	}
	if tab.Chain("nope") != nil || tab.Set("nope") != nil || tab.Map("nope") != nil {
		t.Error("lookup of a missing name returned something")
	}
	// An unsorted table still answers.
	tab.Sets[0], tab.Sets[len(tab.Sets)-1] = tab.Sets[len(tab.Sets)-1], tab.Sets[0]
	if tab.Set("np-a") == nil || tab.Set("np-v6c") == nil {
		t.Error("lookup in an unsorted table failed")
	}
}
