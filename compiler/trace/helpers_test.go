package trace

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

// Small constructors for hand-built tables.

func addr(s string) netip.Addr         { return netip.MustParseAddr(s) }
func pfx(s string) netip.Prefix        { return netip.MustParsePrefix(s) }
func av(s string) ir.Value             { return ir.Value{Addr: addr(s)} }
func nv(n uint32) ir.Value             { return ir.Value{Num: n} }
func jump(c string) ir.Verdict         { return ir.Verdict{Kind: ir.VerdictJump, Chain: c} }
func gotoV(c string) ir.Verdict        { return ir.Verdict{Kind: ir.VerdictGoto, Chain: c} }
func kind(k ir.VerdictKind) ir.Verdict { return ir.Verdict{Kind: k} }

var (
	accept = kind(ir.VerdictAccept)
	drop   = kind(ir.VerdictDrop)
	ret    = kind(ir.VerdictReturn)
)

func base(name string, hook ir.Hook, prio int, pol ir.VerdictKind, rules ...*ir.Rule) *ir.Chain {
	return &ir.Chain{Name: name, Base: &ir.BaseChain{Hook: hook, Priority: prio, Policy: pol}, Rules: rules}
}

func regular(name string, rules ...*ir.Rule) *ir.Chain { return &ir.Chain{Name: name, Rules: rules} }

func rl(v ir.Verdict, ms ...ir.Match) *ir.Rule { return &ir.Rule{Matches: ms, Verdict: v} }

// setMark is `meta mark set meta mark & and | or` with a verdict.
func setMark(and, or uint32, v ir.Verdict, ms ...ir.Match) *ir.Rule {
	return &ir.Rule{Matches: ms, Stmts: []ir.Stmt{ir.StmtSetMark{And: and, Or: or}}, Verdict: v}
}

func logRule(prefix string) *ir.Rule {
	return &ir.Rule{Stmts: []ir.Stmt{ir.StmtLog{Prefix: prefix}}}
}

func table(chains ...*ir.Chain) *ir.Table { return &ir.Table{Name: "tabby", Chains: chains} }

func mustNew(t testing.TB, tab *ir.Table) *Tracer {
	t.Helper()
	tr, err := New(tab)
	if err != nil {
		t.Fatalf("New: %v\n%s", err, tab)
	}
	return tr
}

func mustTrace(t testing.TB, tr *Tracer, p Packet) Result {
	t.Helper()
	r, err := tr.Trace(p, ir.HookForward)
	if err != nil {
		t.Fatalf("Trace: %v", err)
	}
	return r
}

// tcp4 is a new TCP connection from 10.0.0.1:40000 to 10.0.0.2:port.
func tcp4(port uint16) Packet {
	return Packet{Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), Proto: 6, SrcPort: 40000, DstPort: port,
		IIF: "tab-a", OIF: "tab-b"}
}

func tcp6(port uint16) Packet {
	return Packet{Src: addr("fd00::1"), Dst: addr("fd00::2"), Proto: 6, SrcPort: 40000, DstPort: port,
		IIF: "tab-a", OIF: "tab-b"}
}

// path renders the steps as "chain:rule" (rule -1 for a chain's end).
func path(r Result) []string {
	out := make([]string, len(r.Steps))
	for i, s := range r.Steps {
		out[i] = s.Chain + ":" + itoa(s.RuleIndex)
	}
	return out
}

func itoa(i int) string {
	if i < 0 {
		return "end"
	}
	return strconv.Itoa(i)
}

func eqStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var refWeb = policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "y", Name: "allow-x"}

// Short aliases for table-driven tests.
type (
	netipPrefix = netip.Prefix
	policyRange = policy.PortRange
)
