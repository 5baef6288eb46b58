package compiler

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selectors"
)

func rangesString(rs []addrRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r.lo == r.hi {
			parts[i] = r.lo.String()
		} else {
			parts[i] = r.lo.String() + "-" + r.hi.String()
		}
	}
	return strings.Join(parts, " ")
}

func TestMergeRanges(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		v4   string
		v6   string
	}{
		{"adjacent", []string{"10.0.0.0/25", "10.0.0.128/25"}, "10.0.0.0-10.0.0.255", ""},
		{"adjacent single addresses", []string{"10.0.0.2/32", "10.0.0.1/32", "10.0.0.3/32"}, "10.0.0.1-10.0.0.3", ""},
		{"gap of one stays apart", []string{"10.0.0.1/32", "10.0.0.3/32"}, "10.0.0.1 10.0.0.3", ""},
		{"overlapping", []string{"10.0.0.0/24", "10.0.0.128/24", "10.0.0.200/29"}, "10.0.0.0-10.0.0.255", ""},
		{"contained", []string{"10.0.0.0/8", "10.1.2.0/24", "10.255.255.255/32"}, "10.0.0.0-10.255.255.255", ""},
		{"partly overlapping chain", []string{"10.0.0.0/30", "10.0.0.2/31", "10.0.0.4/30", "10.0.0.16/28"},
			"10.0.0.0-10.0.0.7 10.0.0.16-10.0.0.31", ""},
		{"v6", []string{"2001:db8::/64", "2001:db8:0:1::/64", "2001:db8::5/128", "fd00::1/128"},
			"", "2001:db8::-2001:db8:0:1:ffff:ffff:ffff:ffff fd00::1"},
		{"v4 /0", []string{"0.0.0.0/0", "10.0.0.0/8"}, "0.0.0.0-255.255.255.255", ""},
		{"v6 /0", []string{"::/0", "fd00::/8"}, "", ":: - ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{"top of the space", []string{"255.255.255.255/32", "255.255.255.254/32"}, "255.255.255.254-255.255.255.255", ""},
		{"families apart, v4-mapped unmapped", []string{"::ffff:10.0.0.1/128", "10.0.0.2/32", "::1/128"},
			"10.0.0.1-10.0.0.2", "::1"},
		{"host bits masked", []string{"10.0.0.77/24"}, "10.0.0.0-10.0.0.255", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ps []netip.Prefix
			for _, s := range tc.in {
				ps = append(ps, netip.MustParsePrefix(s))
			}
			v4, v6 := mergePrefixes(ps)
			want6 := strings.ReplaceAll(tc.v6, " - ", "-")
			if got := rangesString(v4); got != tc.v4 {
				t.Errorf("v4 = %q, want %q", got, tc.v4)
			}
			if got := rangesString(v6); got != want6 {
				t.Errorf("v6 = %q, want %q", got, want6)
			}
		})
	}
}

func TestCanonicalPrefixes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.0/25 10.0.0.128/25", "10.0.0.0/24"},
		{"10.0.0.1/32 10.0.0.2/32 10.0.0.3/32 10.0.0.4/32", "10.0.0.1/32 10.0.0.2/31 10.0.0.4/32"},
		{"0.0.0.0/0 10.0.0.0/8", "0.0.0.0/0"},
		{"::/0", "::/0"},
		{"2001:db8::/33 2001:db8:8000::/33", "2001:db8::/32"},
		{"255.255.255.255/32", "255.255.255.255/32"},
	} {
		var ps []netip.Prefix
		for _, s := range strings.Fields(tc.in) {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		v4, v6 := mergePrefixes(ps)
		got := canonicalPrefixes(append(v4, v6...))
		var parts []string
		for _, p := range got {
			parts = append(parts, p.String())
		}
		if s := strings.Join(parts, " "); s != tc.want {
			t.Errorf("canonicalPrefixes(%s) = %s, want %s", tc.in, s, tc.want)
		}
	}
}

// TestRangePrefixesExact checks on random ranges that the prefixes cover
// exactly the range, in order, without overlap.
func TestRangePrefixesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		a, b := rng.Uint32(), rng.Uint32()
		if i%3 == 0 {
			b = a + rng.Uint32N(300)
			if b < a {
				b = a
			}
		}
		if a > b {
			a, b = b, a
		}
		r := addrRange{fromU128(u128{lo: uint64(a)}, true), fromU128(u128{lo: uint64(b)}, true)}
		next := uint64(a)
		for _, p := range rangePrefixes(nil, r) {
			pr := prefixRange(p)
			if lo := toU128(pr.lo).lo; lo != next {
				t.Fatalf("range %v: prefix %v starts at %d, want %d", r, p, lo, next)
			}
			next = toU128(pr.hi).lo + 1
		}
		if next != uint64(b)+1 {
			t.Fatalf("range %v: prefixes end at %d, want %d", r, next-1, b)
		}
	}
}

// TestSetPatchMatchesRebuild drives a selector set with random small batches
// of overlapping contributions (single addresses and prefixes, added and
// removed, some twice) and checks after every batch that the patched element
// list equals a from-scratch merge of what is contributed, and that the
// reported changes carry the old list to the new one.
func TestSetPatchMatchesRebuild(t *testing.T) {
	for _, fam := range []int{4, 6} {
		t.Run(fmt.Sprintf("v%d", fam), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(fam), 3))
			s := newSetState(setSpec{name: "t", kind: setSel, fam: fam, sel: selectors.All()})
			s.cur = s.build()
			live := map[addrRange]int{}
			var order []addrRange
			for step := 0; step < 3000; step++ {
				batch := 1 + rng.IntN(bulkOps+3) // both the patch and the bulk path
				for range batch {
					if len(order) > 0 && rng.IntN(5) < 2 {
						k := rng.IntN(len(order))
						r := order[k]
						s.pending = append(s.pending, op{r: r, delta: -1})
						if live[r]--; live[r] == 0 {
							delete(live, r)
						}
						order = slices.Delete(order, k, k+1)
						continue
					}
					r := randomRange(rng, fam)
					s.pending = append(s.pending, op{r: r, delta: 1})
					live[r]++
					order = append(order, r)
				}
				old := s.cur
				ch := s.flush()
				var want []addrRange
				for r := range live {
					want = append(want, r)
				}
				want = mergeRanges(want)
				if got := elemsString(s.cur.Elements); got != rangesString(want) {
					t.Fatalf("step %d: elements\n%s\nwant\n%s", step, got, rangesString(want))
				}
				if ch == nil {
					if old != s.cur {
						t.Fatalf("step %d: set replaced without a change", step)
					}
					continue
				}
				added, removed := diffElements(old.Elements, s.cur.Elements)
				if elemsString(added) != elemsString(ch.added) || elemsString(removed) != elemsString(ch.removed) {
					t.Fatalf("step %d: reported +%s -%s, actual +%s -%s", step,
						elemsString(ch.added), elemsString(ch.removed), elemsString(added), elemsString(removed))
				}
			}
		})
	}
}

func randomRange(rng *rand.Rand, fam int) addrRange {
	base := netip.MustParseAddr("10.0.0.0")
	if fam == 6 {
		base = netip.MustParseAddr("fd00::")
	}
	a := base
	for range rng.IntN(64) {
		a = a.Next()
	}
	if rng.IntN(4) > 0 {
		return addrRange{a, a}
	}
	bits := 32 - 1 - rng.IntN(4)
	if fam == 6 {
		bits = 128 - 1 - rng.IntN(4)
	}
	return prefixRange(netip.PrefixFrom(a, bits))
}

func elemsString(es []ir.Element) string {
	rs := make([]addrRange, len(es))
	for i, e := range es {
		rs[i] = elemRange(e)
	}
	return rangesString(rs)
}

// TestNamedPortSetChanges checks named-port sets against a recount, with
// endpoints sharing addresses (counts must keep shared elements alive).
func TestNamedPortSetChanges(t *testing.T) {
	ports := []policy.NamedPort{{Name: "http", Protocol: policy.ProtoTCP}, {Name: "dns", Protocol: policy.ProtoAny}}
	s := newSetState(setSpec{name: "np", kind: setNamedPort, fam: 4, ports: ports, sel: selectors.All()})
	s.cur = s.build()
	rng := rand.New(rand.NewPCG(5, 6))
	var eps []*policy.Endpoint
	for step := 0; step < 2000; step++ {
		for range 1 + rng.IntN(bulkOps+3) {
			if len(eps) > 0 && rng.IntN(2) == 0 {
				k := rng.IntN(len(eps))
				s.contributeEndpoint(eps[k], -1)
				eps = slices.Delete(eps, k, k+1)
				continue
			}
			ep := &policy.Endpoint{
				IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(8))}), netip.MustParseAddr("fd00::1")},
				Ports: []policy.ContainerPort{
					{Name: "http", Port: uint16(80 + rng.IntN(2)), Protocol: policy.ProtoTCP},
					{Name: "http", Port: 81, Protocol: policy.ProtoUDP}, // wrong protocol
					{Name: "dns", Port: 53, Protocol: policy.Protocol([]uint8{6, 17}[rng.IntN(2)])},
					{Name: "other", Port: 99, Protocol: policy.ProtoTCP},
				},
			}
			s.contributeEndpoint(ep, 1)
			eps = append(eps, ep)
		}
		old := s.cur
		ch := s.flush()
		want := map[string]bool{}
		for _, ep := range eps {
			for _, cp := range ep.Ports {
				if namedPortMatches(ports, cp) {
					want[fmt.Sprintf("%v . %d . %d", ep.IPs[0], cp.Protocol, cp.Port)] = true
				}
			}
		}
		var got []string
		for _, e := range s.cur.Elements {
			got = append(got, fmt.Sprintf("%v . %d . %d", e.Key[0].Addr, e.Key[1].Num, e.Key[2].Num))
		}
		if len(got) != len(want) || !slices.IsSortedFunc(s.cur.Elements, CompareElements) {
			t.Fatalf("step %d: elements %v, want %v", step, got, want)
		}
		for _, g := range got {
			if !want[g] {
				t.Fatalf("step %d: unexpected element %s", step, g)
			}
		}
		if ch != nil {
			added, removed := diffElements(old.Elements, s.cur.Elements)
			if fmt.Sprint(added) != fmt.Sprint(ch.added) || fmt.Sprint(removed) != fmt.Sprint(ch.removed) {
				t.Fatalf("step %d: reported changes differ from the actual ones", step)
			}
		}
	}
}

func TestPortRanges(t *testing.T) {
	got := policy.MergePortRanges([]policy.PortRange{{First: 80, Last: 80}, {First: 81, Last: 90}, {First: 100, Last: 100}, {First: 95, Last: 99}, {First: 443, Last: 443}, {First: 85, Last: 86}, {First: 65535, Last: 65535}})
	want := []policy.PortRange{{First: 80, Last: 90}, {First: 95, Last: 100}, {First: 443, Last: 443}, {First: 65535, Last: 65535}}
	if !slices.Equal(got, want) {
		t.Errorf("portRanges = %v, want %v", got, want)
	}
}

// FuzzMergePrefixes checks, for prefixes decoded from arbitrary bytes, that
// the merged ranges are sorted, disjoint and not adjacent, that they contain
// exactly the addresses the prefixes contain (probed at every prefix's edges
// and one address beyond them), and that the canonical prefixes cover the
// same addresses.
func FuzzMergePrefixes(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0, 8, 10, 1, 0, 0, 16})
	f.Add([]byte{0, 0, 0, 0, 0, 255, 255, 255, 255, 32})
	f.Add([]byte{192, 0, 2, 0, 25, 192, 0, 2, 128, 25, 192, 0, 3, 0, 24})
	f.Fuzz(func(t *testing.T, data []byte) {
		var ps []netip.Prefix
		for len(data) >= 5 {
			a := netip.AddrFrom4([4]byte{data[0], data[1], data[2], data[3]})
			ps = append(ps, netip.PrefixFrom(a, int(data[4])%33))
			data = data[5:]
		}
		v4, _ := mergePrefixes(ps)
		for i := 1; i < len(v4); i++ {
			if touches(v4[i-1].hi, v4[i].lo) {
				t.Fatalf("ranges %v and %v overlap or touch", v4[i-1], v4[i])
			}
		}
		canon := canonicalPrefixes(v4)
		in := func(a netip.Addr) bool {
			return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Masked().Contains(a) })
		}
		for _, p := range ps {
			r := prefixRange(p)
			for _, a := range []netip.Addr{r.lo, r.hi, r.lo.Prev(), r.hi.Next()} {
				if !a.IsValid() {
					continue
				}
				inRanges := slices.ContainsFunc(v4, func(r addrRange) bool { return r.lo.Compare(a) <= 0 && a.Compare(r.hi) <= 0 })
				inCanon := slices.ContainsFunc(canon, func(p netip.Prefix) bool { return p.Contains(a) })
				if want := in(a); inRanges != want || inCanon != want {
					t.Fatalf("%v: in prefixes %v, in ranges %v, in canonical prefixes %v", a, want, inRanges, inCanon)
				}
			}
		}
	})
}
