package trace

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

// bigTable is a cluster-sized ruleset in the compiler's layout: 1,000
// endpoints, 2,000 policy chains of four rules, a 10,000-network interval set
// and a 10,000-element concatenated interval set that every policy uses, and
// per endpoint a tier chain that runs 20 of the policies.
const (
	benchEndpoints = 1000
	benchPolicies  = 2000
	benchElements  = 10000
	benchPerTier   = 20
)

func benchIfname(i int) string { return fmt.Sprintf("tab%011x", i) }

// benchNet is the i-th /28 in 10.0.0.0/8, spaced so consecutive ones are
// disjoint and non-adjacent.
func benchNet(i int) netip.Addr {
	v := uint32(10)<<24 | uint32(i)<<5
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func bigTable() *ir.Table {
	end := func(a netip.Addr) netip.Addr {
		b := a.As4()
		b[3] |= 0x0f
		return netip.AddrFrom4(b)
	}
	nets := &ir.Set{Name: "net-big", Type: []ir.KeyType{ir.TypeIPv4Addr}, Interval: true}
	conc := &ir.Set{Name: "np-big", Type: []ir.KeyType{ir.TypeIPv4Addr, ir.TypeInetProto, ir.TypeInetService}, Interval: true}
	for i := 0; i < benchElements; i++ {
		a := benchNet(i)
		nets.Elements = append(nets.Elements, ir.Element{Key: ir.Key{{Addr: a}}, End: ir.Key{{Addr: end(a)}}})
		conc.Elements = append(conc.Elements, ir.Element{
			Key: ir.Key{{Addr: a}, {Num: 6}, {Num: 8000}}, End: ir.Key{{Addr: end(a)}, {Num: 6}, {Num: 8100}}})
	}
	tab := &ir.Table{Name: "tabby", Sets: []*ir.Set{nets, conc}}
	toMap := &ir.Map{Name: "to-endpoint", Type: []ir.KeyType{ir.TypeIfname}}
	tab.Maps = []*ir.Map{{Name: "from-endpoint", Type: []ir.KeyType{ir.TypeIfname}}, toMap}
	tab.Chains = append(tab.Chains, base("forward", ir.HookForward, 0, ir.VerdictAccept,
		rl(accept, ir.MatchCtState{States: ir.CtEstablished | ir.CtRelated}),
		rl(drop, ir.MatchCtState{States: ir.CtInvalid}),
		rl(ir.Verdict{Kind: ir.VerdictMap, Map: "from-endpoint", MapKey: ir.FieldIIFName}),
		rl(ir.Verdict{Kind: ir.VerdictMap, Map: "to-endpoint", MapKey: ir.FieldOIFName}),
	))
	ing := policy.Ingress
	for p := 0; p < benchPolicies; p++ {
		ref := policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "bench", Name: fmt.Sprintf("p%04d", p)}
		allow := func(idx int, ms ...ir.Match) *ir.Rule {
			return withOrigin(setMark(0xffffffff, bitAllow, ret, ms...),
				origin(ir.OriginPolicyRule, policy.TierKubernetes, ing, ref, idx, policy.ActionAllow))
		}
		tab.Chains = append(tab.Chains, regular(policyChain(ref, ing),
			allow(0, ir.MatchNfproto{Family: ir.IPv4}, ir.MatchAddr{Field: ir.FieldIPSaddr, Set: "net-big"}, tcpPort(uint16(p))),
			allow(1, ir.MatchNfproto{Family: ir.IPv4}, ir.MatchConcat{Fields: []ir.Field{ir.FieldIPSaddr, ir.FieldL4Proto, ir.FieldTHDport}, Set: "np-big"}),
			allow(2, ir.MatchNfproto{Family: ir.IPv4}, ir.MatchAddr{Field: ir.FieldIPSaddr,
				Prefixes: []netip.Prefix{netip.PrefixFrom(benchNet(p), 28), netip.MustParsePrefix("192.168.0.0/16")}},
				ir.MatchL4Proto{Protos: []uint8{17}}, ir.MatchPort{Field: ir.FieldTHDport, Proto: 17, Ranges: []policy.PortRange{{First: 53, Last: 53}}}),
			allow(3, ir.MatchNfproto{Family: ir.IPv4}, ir.MatchL4Proto{Protos: []uint8{1}}, ir.MatchICMP{Type: 8}),
		))
	}
	for e := 0; e < benchEndpoints; e++ {
		name := fmt.Sprintf("in-%04d", e)
		var pols []policy.Ref
		for k := 0; k < benchPerTier; k++ {
			pols = append(pols, policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "bench",
				Name: fmt.Sprintf("p%04d", (e*benchPerTier+k)%benchPolicies)})
		}
		tab.Chains = append(tab.Chains, profile(name, ing, policy.TierKubernetes),
			tierChain(name+"/kubernetes", policy.TierKubernetes, ing, policy.ActionDeny, pols...))
		toMap.Entries = append(toMap.Entries, ir.MapEntry{Key: ir.Key{{Str: benchIfname(e)}}, Verdict: jump(name)})
	}
	return tab
}

func BenchmarkTrace(b *testing.B) {
	tr := mustNew(b, bigTable())
	cases := []struct {
		name string
		p    Packet
		want ir.VerdictKind
	}{
		// Matches nothing: all 20 policies, 80 rules and their set lookups run,
		// then the tier default drops.
		{"deny-after-20-policies", Packet{Src: addr("172.16.0.1"), Dst: addr("10.200.0.2"), Proto: 6, SrcPort: 40000, DstPort: 9000,
			IIF: "eth0", OIF: benchIfname(500)}, ir.VerdictDrop},
		// Allowed by the concatenated set in the first policy.
		{"allow-by-concat-set", Packet{Src: benchNet(7777).Next(), Dst: addr("10.200.0.2"), Proto: 6, SrcPort: 40000, DstPort: 8080,
			IIF: "eth0", OIF: benchIfname(500)}, ir.VerdictAccept},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r, err := tr.Trace(c.p, ir.HookForward)
			if err != nil || r.Verdict != c.want {
				b.Fatalf("verdict %v err %v, want %v", r.Verdict, err, c.want)
			}
			b.ReportMetric(float64(len(r.Steps)), "steps/op")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tr.Trace(c.p, ir.HookForward); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	tab := bigTable()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(tab); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBigTableVerdicts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a large table")
	}
	tr := mustNew(t, bigTable())
	// An address in the network set on the port of one of the endpoint's 20
	// policies: allowed by that policy's rule 0.
	p := Packet{Src: benchNet(3).Next(), Dst: addr("10.200.0.2"), Proto: 6, SrcPort: 40000, DstPort: (500*benchPerTier + 5) % benchPolicies,
		IIF: "eth0", OIF: benchIfname(500)}
	r := mustTrace(t, tr, p)
	ex := Explain(r, "bench/src", "bench/e500")
	if !ex.Allowed || ex.Ingress.Origin == nil || ex.Ingress.Origin.Policy.Name != "p0005" || ex.Ingress.Origin.RuleIndex != 0 {
		t.Errorf("explanation %+v", ex.Ingress)
	}
	p.DstPort = benchPolicies - 1 // the port of a policy that does not select the endpoint
	if r := mustTrace(t, tr, p); r.Verdict != ir.VerdictDrop {
		t.Errorf("port %d: %v, want drop", p.DstPort, r.Verdict)
	}
}
