package enforcer

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/e2e/kerneltest"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

var verbose = flag.Bool("enforcer.verbose", false, "log enforcer debug output")

// netns is a throwaway network namespace, deleted when the test ends (also
// on failure). Kernel tests never touch the root namespace.
type netns struct {
	name, path string
}

func newNetns(t testing.TB) netns {
	t.Helper()
	name := kerneltest.NewNetns(t, "tabby-enf")
	return netns{name: name, path: "/run/netns/" + name}
}

// nft runs nft in the namespace (tests only: production never execs nft).
func (n netns) nft(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := n.nftErr(stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (n netns) nftErr(stdin string, args ...string) (string, error) {
	out, err := kerneltest.Nft(n.name, []byte(stdin), args...)
	return string(out), err
}

// listing is nft's stateless listing of the table, elements normalised.
func (n netns) listing(t testing.TB, table string) string {
	t.Helper()
	return kerneltest.NormaliseElements(n.nft(t, "", "--stateless", "list", "table", "inet", table))
}

// newEnforcer opens an Enforcer on the namespace and counts its
// transactions (the batches it sends) in *txs.
func newEnforcer(t testing.TB, n netns, txs *int) *Enforcer {
	t.Helper()
	opts := Options{NetNSPath: n.path}
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if txs != nil {
		e.onCommit = func(*batch) { *txs++ }
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// checkKernel asserts that nft's listing of the namespace's table is the
// table's rendering, up to order: nft lists elements of hash sets in hash
// order, and sets and chains in the order they were created, so objects
// added by a delta come last.
func checkKernel(t testing.TB, n netns, tab *ir.Table) {
	t.Helper()
	got, want := normaliseBlocks(n.listing(t, tab.Name)), normaliseBlocks(kerneltest.NormaliseElements(tab.String()))
	if got != want {
		t.Fatalf("kernel listing differs from the table\n%s", lineDiff(want, got))
	}
}

// normaliseBlocks sorts the set and map blocks of a table listing by name,
// then its chain blocks by name.
func normaliseBlocks(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) < 2 {
		return s
	}
	head, tail := lines[0], lines[len(lines)-1]
	var sets, chains []string
	var cur []string
	flush := func() {
		if len(cur) == 0 {
			return
		}
		b := strings.Join(cur, "\n")
		if strings.HasPrefix(cur[0], "\tchain ") {
			chains = append(chains, b)
		} else {
			sets = append(sets, b)
		}
		cur = nil
	}
	for _, l := range lines[1 : len(lines)-1] {
		if l == "" {
			flush()
			continue
		}
		cur = append(cur, l)
	}
	flush()
	sort.Strings(sets)
	sort.Strings(chains)
	return head + "\n" + strings.Join(append(sets, chains...), "\n\n") + "\n" + tail + "\n"
}

// lineDiff shows the lines of want missing from got (-) and extra (+), in
// order, with a little context.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	i, j := 0, 0
	shown := 0
	for (i < len(w) || j < len(g)) && shown < 40 {
		switch {
		case i < len(w) && j < len(g) && w[i] == g[j]:
			i++
			j++
		case j < len(g) && !contains(w[i:], g[j]):
			fmt.Fprintf(&b, "+ %s\n", g[j])
			j++
			shown++
		case i < len(w):
			fmt.Fprintf(&b, "- %s\n", w[i])
			i++
			shown++
		default:
			fmt.Fprintf(&b, "+ %s\n", g[j])
			j++
			shown++
		}
	}
	return b.String()
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func v4(s string) ir.Value             { return ir.Value{Addr: netip.MustParseAddr(s)} }
func num(n uint32) ir.Value            { return ir.Value{Num: n} }
func str(s string) ir.Value            { return ir.Value{Str: s} }
func pfx(s string) netip.Prefix        { return netip.MustParsePrefix(s) }
func u8(v uint8) *uint8                { return &v }
func jump(c string) ir.Verdict         { return ir.Verdict{Kind: ir.VerdictJump, Chain: c} }
func kind(k ir.VerdictKind) ir.Verdict { return ir.Verdict{Kind: k} }

// everyTypeTable exercises every IR type (it mirrors ir's render golden
// table). Its one unnamed protocol is 253, which /etc/protocols does not
// name, so nft prints it as a number too.
func everyTypeTable() *ir.Table {
	ref := policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "x", Name: "allow-web"}
	cnp := policy.Ref{Kind: policy.KindClusterNetworkPolicy, Name: "admin-" + strings.Repeat("long", 30)}
	ports := make([]ir.Element, 20)
	for i := range ports {
		ports[i] = ir.Element{Key: ir.Key{num(uint32(1000 + i))}}
	}
	th := func(f ir.Field, proto uint8, neg bool, rs ...policy.PortRange) ir.MatchPort {
		return ir.MatchPort{Field: f, Proto: proto, Ranges: rs, Negate: neg}
	}
	pr := func(a, b uint16) policy.PortRange { return policy.PortRange{First: a, Last: b} }
	nf4, nf6 := ir.MatchNfproto{Family: ir.IPv4}, ir.MatchNfproto{Family: ir.IPv6}
	return &ir.Table{
		Name: "tabby",
		Sets: []*ir.Set{
			{Name: "np-a", Type: []ir.KeyType{ir.TypeIPv4Addr}, Interval: true, Comment: `peers of "web"`, Elements: []ir.Element{
				{Key: ir.Key{v4("1.1.1.1")}},
				{Key: ir.Key{v4("10.0.0.0")}, End: ir.Key{v4("10.255.255.255")}},
				{Key: ir.Key{v4("11.1.0.1")}, End: ir.Key{v4("11.1.0.5")}},
				{Key: ir.Key{v4("172.16.0.0")}, End: ir.Key{v4("172.31.255.255")}},
				{Key: ir.Key{v4("192.168.1.1")}, End: ir.Key{v4("192.168.1.1")}},
				{Key: ir.Key{v4("192.168.2.0")}, End: ir.Key{v4("192.168.2.255")}},
				{Key: ir.Key{v4("200.0.0.0")}, End: ir.Key{v4("255.255.255.255")}},
			}},
			{Name: "np-c", Type: []ir.KeyType{ir.TypeIPv4Addr, ir.TypeInetProto, ir.TypeInetService}, Interval: true, Elements: []ir.Element{
				{Key: ir.Key{v4("10.0.0.0"), num(6), num(80)}, End: ir.Key{v4("10.255.255.255"), num(6), num(90)}},
				{Key: ir.Key{v4("10.1.0.1"), num(17), num(53)}},
				{Key: ir.Key{v4("10.2.0.0"), num(132), num(1000)}, End: ir.Key{v4("10.2.0.5"), num(132), num(1000)}},
				{Key: ir.Key{v4("10.3.0.1"), num(253), num(0)}},
			}},
			{Name: "np-h", Type: []ir.KeyType{ir.TypeIPv4Addr}, Elements: []ir.Element{
				{Key: ir.Key{v4("10.9.0.1")}}, {Key: ir.Key{v4("10.9.0.2")}}, {Key: ir.Key{v4("10.9.0.3")}},
			}},
			{Name: "np-if", Type: []ir.KeyType{ir.TypeIfname}, Elements: []ir.Element{{Key: ir.Key{str("tab0")}}}},
			{Name: "np-p", Type: []ir.KeyType{ir.TypeInetService}, Elements: ports},
			{Name: "np-proto", Type: []ir.KeyType{ir.TypeInetProto}, Elements: []ir.Element{{Key: ir.Key{num(6)}}, {Key: ir.Key{num(17)}}}},
			{Name: "np-v6", Type: []ir.KeyType{ir.TypeIPv6Addr}, Interval: true, Elements: []ir.Element{
				{Key: ir.Key{v4("::1")}},
				{Key: ir.Key{v4("2001:db8::")}, End: ir.Key{v4("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")}},
				{Key: ir.Key{v4("fe80::1")}, End: ir.Key{v4("fe80::5")}},
			}},
			{Name: "np-v6c", Type: []ir.KeyType{ir.TypeIPv6Addr, ir.TypeInetProto, ir.TypeInetService}, Elements: []ir.Element{
				{Key: ir.Key{v4("2001:db8::1"), num(6), num(443)}},
			}},
		},
		Maps: []*ir.Map{
			{Name: "from-endpoint", Type: []ir.KeyType{ir.TypeIfname}, Comment: "egress profiles", Entries: []ir.MapEntry{
				{Key: ir.Key{str("tab0123456789a")}, Verdict: jump("eg-abc")},
			}},
			{Name: "to-endpoint", Type: []ir.KeyType{ir.TypeIfname}},
		},
		Chains: []*ir.Chain{
			{Name: "input", Base: &ir.BaseChain{Hook: ir.HookInput, Priority: -5, Policy: ir.VerdictAccept}},
			{Name: "forward", Base: &ir.BaseChain{Hook: ir.HookForward, Priority: 0, Policy: ir.VerdictAccept}, Rules: []*ir.Rule{
				{Matches: []ir.Match{ir.MatchCtState{States: ir.CtEstablished | ir.CtRelated}}, Counter: true,
					Verdict: kind(ir.VerdictAccept), Origin: &ir.Origin{Kind: ir.OriginConntrack, Action: policy.ActionAllow}},
				{Matches: []ir.Match{ir.MatchCtState{States: ir.CtInvalid}}, Counter: true,
					Verdict: kind(ir.VerdictDrop), Origin: &ir.Origin{Kind: ir.OriginConntrack, Action: policy.ActionDeny}},
				{Verdict: ir.Verdict{Kind: ir.VerdictMap, Map: "from-endpoint", MapKey: ir.FieldIIFName}},
				{Verdict: ir.Verdict{Kind: ir.VerdictMap, Map: "to-endpoint", MapKey: ir.FieldOIFName}},
			}},
			{Name: "forward-late", Base: &ir.BaseChain{Hook: ir.HookForward, Priority: 5, Policy: ir.VerdictDrop}, Comment: "late"},
			{Name: "output", Base: &ir.BaseChain{Hook: ir.HookOutput, Priority: -150, Policy: ir.VerdictAccept}},
			{Name: "eg-abc", Comment: "egress x/a", Rules: []*ir.Rule{
				{Stmts: []ir.Stmt{ir.StmtSetMark{And: 0xfffcffff}}},
				{Verdict: jump("eg-abc-kubernetes")},
				{Matches: []ir.Match{ir.MatchMark{Mask: 0x10000, Value: 0x10000}}, Verdict: kind(ir.VerdictReturn)},
				{Stmts: []ir.Stmt{ir.StmtSetMark{And: 0xffffffff, Or: 0x10000}}, Verdict: kind(ir.VerdictReturn),
					Origin: &ir.Origin{Kind: ir.OriginNoTier, Direction: policy.Egress, Action: policy.ActionAllow}},
			}},
			{Name: "eg-abc-kubernetes", Rules: []*ir.Rule{
				{Verdict: jump("pol-web"),
					Origin: &ir.Origin{Kind: ir.OriginPolicyRule, Tier: "kubernetes", Direction: policy.Egress, Policy: ref, RuleIndex: -1}},
				{Matches: []ir.Match{ir.MatchMark{Mask: 0xffffffff, Value: 5, Negate: true}}, Verdict: ir.Verdict{Kind: ir.VerdictGoto, Chain: "pol-web"}},
				{Verdict: kind(ir.VerdictDrop), Origin: &ir.Origin{Kind: ir.OriginTierDefault, Tier: "kubernetes",
					Direction: policy.Egress, Action: policy.ActionDeny}},
			}},
			{Name: "pol-web", Rules: []*ir.Rule{
				{Matches: []ir.Match{nf4, ir.MatchAddr{Field: ir.FieldIPDaddr, Set: "np-a"},
					ir.MatchL4Proto{Protos: []uint8{6}}, th(ir.FieldTHDport, 6, false, pr(80, 80), pr(8000, 8080))},
					Stmts:   []ir.Stmt{ir.StmtSetMark{And: 0xfffcffff, Or: 0x10000}},
					Verdict: kind(ir.VerdictReturn),
					Origin: &ir.Origin{Kind: ir.OriginPolicyRule, Tier: "kubernetes", Direction: policy.Egress, Policy: ref,
						RuleIndex: 0, Action: policy.ActionAllow}},
				{Matches: []ir.Match{nf4, ir.MatchAddr{Field: ir.FieldIPSaddr, Prefixes: []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.168.0.0/16")}, Negate: true}},
					Verdict: kind(ir.VerdictDrop),
					Origin: &ir.Origin{Kind: ir.OriginPolicyRule, Tier: "cnp-admin", Direction: policy.Ingress, Policy: cnp,
						RuleIndex: 3, RuleName: "deny-\"outsiders\"", Action: policy.ActionDeny}},
				{Matches: []ir.Match{nf6, ir.MatchAddr{Field: ir.FieldIP6Saddr, Prefixes: []netip.Prefix{pfx("2001:db8::1/128")}}}},
				{Matches: []ir.Match{nf4, ir.MatchAddr{Field: ir.FieldIPSaddr, Prefixes: []netip.Prefix{pfx("10.0.0.0/8")}}}},
				{Matches: []ir.Match{nf4, ir.MatchAddr{Field: ir.FieldIPSaddr, Prefixes: []netip.Prefix{pfx("10.16.0.0/12")}, Negate: true}}},
				{Matches: []ir.Match{ir.MatchAddr{Field: ir.FieldIPDaddr, Prefixes: []netip.Prefix{pfx("0.0.0.0/0")}}}},
				{Matches: []ir.Match{nf6, ir.MatchAddr{Field: ir.FieldIP6Daddr, Prefixes: []netip.Prefix{pfx("2001:db8::/33"), pfx("fd00::/8")}}}},
				{Matches: []ir.Match{ir.MatchAddr{Field: ir.FieldIP6Daddr, Set: "np-v6", Negate: true}}},
				{Matches: []ir.Match{nf4, ir.MatchConcat{Fields: []ir.Field{ir.FieldIPDaddr, ir.FieldL4Proto, ir.FieldTHDport}, Set: "np-c"}},
					Verdict: kind(ir.VerdictAccept)},
				{Matches: []ir.Match{nf6, ir.MatchConcat{Fields: []ir.Field{ir.FieldIP6Daddr, ir.FieldL4Proto, ir.FieldTHDport}, Set: "np-v6c", Negate: true}},
					Verdict: kind(ir.VerdictAccept)},
				{Matches: []ir.Match{ir.MatchL4Proto{Protos: []uint8{17}}, th(ir.FieldTHSport, 0, false, pr(53, 53))}},
				{Matches: []ir.Match{ir.MatchL4Proto{Protos: []uint8{6, 17}}, th(ir.FieldTHDport, 0, true, pr(1, 1023))}},
				{Matches: []ir.Match{ir.MatchL4Proto{Protos: []uint8{6}}, th(ir.FieldTHDport, 6, false, pr(1024, 65535))}},
				{Matches: []ir.Match{th(ir.FieldTHDport, 17, true, pr(80, 81), pr(443, 443))}},
				{Matches: []ir.Match{th(ir.FieldTHDport, 0, false, pr(80, 80))}},
				{Matches: []ir.Match{th(ir.FieldTHDport, 0, false, pr(80, 81), pr(82, 90))}},
				{Matches: []ir.Match{ir.MatchL4Proto{Protos: []uint8{6, 17, 132}, Negate: true}, ir.MatchL4Proto{Protos: []uint8{253}}}},
				{Matches: []ir.Match{ir.MatchL4Proto{Protos: []uint8{6}, Negate: true}}},
				{Matches: []ir.Match{nf4, ir.MatchL4Proto{Protos: []uint8{1}}, ir.MatchICMP{Type: 8}}, Verdict: kind(ir.VerdictAccept)},
				{Matches: []ir.Match{nf4, ir.MatchICMP{Type: 3, Code: u8(1)}}, Verdict: kind(ir.VerdictAccept)},
				{Matches: []ir.Match{nf4, ir.MatchICMP{Type: 3, Code: u8(4), Negate: true}}, Verdict: kind(ir.VerdictAccept)},
				{Matches: []ir.Match{ir.MatchICMP{Type: 8, Negate: true}}},
				{Matches: []ir.Match{nf6, ir.MatchL4Proto{Protos: []uint8{58}}, ir.MatchICMP{V6: true, Type: 200, Negate: true}}, Verdict: kind(ir.VerdictAccept)},
				{Matches: []ir.Match{ir.MatchICMP{V6: true, Type: 1, Code: u8(4)}}},
				{Matches: []ir.Match{ir.MatchICMP{V6: true, Type: 1, Code: u8(4), Negate: true}}},
				{Matches: []ir.Match{nf6, ir.MatchL4Proto{Protos: []uint8{58}}}},
				{Matches: []ir.Match{nf4, ir.MatchL4Proto{Protos: []uint8{6}}, th(ir.FieldTHDport, 6, false, pr(443, 443))}},
				{Matches: []ir.Match{ir.MatchIface{Field: ir.FieldIIFName, Name: "tab0"}, ir.MatchIface{Field: ir.FieldOIFName, Name: "tab1", Negate: true},
					ir.MatchMark{Mask: 0x20000, Value: 0, Negate: true}}, Counter: true,
					Stmts: []ir.Stmt{ir.StmtLog{Prefix: "tabby deny "}, ir.StmtSetMark{Or: 0x20000}}},
				{Matches: []ir.Match{ir.MatchMark{Mask: 0xff, Value: 1}, ir.MatchMark{Mask: 0xffffffff, Value: 5}}},
				{Stmts: []ir.Stmt{ir.StmtSetMark{And: 0xffffffff}}},
				{Stmts: []ir.Stmt{ir.StmtSetMark{}}},
				{Stmts: []ir.Stmt{ir.StmtSetMark{And: 0x0000ffff, Or: 0xffff0000}}},
				{Matches: []ir.Match{ir.MatchCtState{States: ir.CtNew | ir.CtUntracked | ir.CtInvalid}}, Verdict: kind(ir.VerdictReturn)},
				{Matches: []ir.Match{ir.MatchIface{Field: ir.FieldIIFName, Name: "tab0"}}, Verdict: ir.Verdict{Kind: ir.VerdictMap, Map: "to-endpoint", MapKey: ir.FieldOIFName}},
			}},
		},
	}
}

// runIn runs a command inside the namespace.
func runIn(n netns, cmd ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name}, cmd...)...).CombinedOutput()
	return string(out), err
}
