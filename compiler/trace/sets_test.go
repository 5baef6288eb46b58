package trace

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/compiler/ir"
)

// TestSetLookupAgainstBruteForce compares the interval tree with a linear
// scan on random concatenated sets whose fields overlap freely.
func TestSetLookupAgainstBruteForce(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	types := []ir.KeyType{ir.TypeInetService, ir.TypeInetProto, ir.TypeInetService}
	for round := 0; round < 200; round++ {
		n := rnd.IntN(60)
		var flat []rng
		for i := 0; i < n; i++ {
			for range types {
				lo := rnd.Uint64N(100)
				hi := lo + rnd.Uint64N(30)
				if rnd.IntN(3) == 0 {
					hi = lo
				}
				flat = append(flat, rng{u128{lo: lo}, u128{lo: hi}})
			}
		}
		s := newSet("r", types, flat)
		for q := 0; q < 200; q++ {
			key := []u128{{lo: rnd.Uint64N(140)}, {lo: rnd.Uint64N(140)}, {lo: rnd.Uint64N(140)}}
			want := false
			for i := 0; i < n && !want; i++ {
				e := flat[i*3 : i*3+3]
				want = true
				for f := range e {
					if key[f].cmp(e[f].lo) < 0 || key[f].cmp(e[f].hi) > 0 {
						want = false
					}
				}
			}
			if got := s.contains(key); got != want {
				t.Fatalf("round %d: contains(%v) = %v, want %v", round, key, got, want)
			}
		}
	}
}

func TestIntervalSetBoundaries(t *testing.T) {
	s, err := compileSet(&ir.Set{Name: "s", Type: []ir.KeyType{ir.TypeIPv4Addr}, Interval: true, Elements: []ir.Element{
		{Key: ir.Key{av("10.0.0.0")}, End: ir.Key{av("10.255.255.255")}},
		{Key: ir.Key{av("11.0.0.5")}},
		{Key: ir.Key{av("192.168.0.0")}, End: ir.Key{av("192.168.0.9")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{
		"9.255.255.255": false, "10.0.0.0": true, "10.255.255.255": true, "11.0.0.0": false,
		"11.0.0.4": false, "11.0.0.5": true, "11.0.0.6": false, "192.168.0.9": true, "192.168.0.10": false,
		"0.0.0.0": false, "255.255.255.255": false,
	} {
		if got := s.contains([]u128{addrKey(netip.MustParseAddr(a))}); got != want {
			t.Errorf("%s: %v, want %v", a, got, want)
		}
	}
}

func TestIPv6KeysOrder(t *testing.T) {
	// The 128-bit key must order like the address, across the hi/lo halves.
	addrs := []string{"::", "::1", "::ffff:ffff:ffff:ffff", "0:0:0:1::", "fd00::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}
	for i := 1; i < len(addrs); i++ {
		a, b := addrKey(netip.MustParseAddr(addrs[i-1])), addrKey(netip.MustParseAddr(addrs[i]))
		if a.cmp(b) >= 0 {
			t.Errorf("%s !< %s", addrs[i-1], addrs[i])
		}
	}
	s, err := prefixSet([]netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}, ir.IPv6)
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{"2001:db8::": true, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff": true,
		"2001:db9::": false, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff": false} {
		if got := s.contains([]u128{addrKey(netip.MustParseAddr(a))}); got != want {
			t.Errorf("%s in 2001:db8::/32: %v, want %v", a, got, want)
		}
	}
}

func TestIfnameKeys(t *testing.T) {
	s, err := compileSet(&ir.Set{Name: "i", Type: []ir.KeyType{ir.TypeIfname, ir.TypeInetService}, Elements: []ir.Element{
		{Key: ir.Key{{Str: "tab0"}, nv(80)}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !s.contains([]u128{ifnameKey("tab0"), {lo: 80}}) || s.contains([]u128{ifnameKey("tab01"), {lo: 80}}) {
		t.Error("ifname key lookups wrong")
	}
	if _, err := compileSet(&ir.Set{Name: "i", Type: []ir.KeyType{ir.TypeIfname},
		Elements: []ir.Element{{Key: ir.Key{{Str: "a-name-of-16-byt"}}}}}); err == nil {
		t.Error("16-byte interface name accepted")
	}
}
