package enforcer

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables/expr"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

// These tests need no root: they check encodings and the delta logic.

func TestRangeElems(t *testing.T) {
	b := func(xs ...byte) []byte { return xs }
	single := setDef{interval: true}
	concat := setDef{interval: true, fieldLens: []uint32{4, 1}}
	hash := setDef{}
	tests := []struct {
		name        string
		d           *setDef
		first, last []byte
		want        []elem
	}{
		{"interval", &single, b(10, 0, 0, 0), b(10, 255, 255, 255), []elem{{key: b(10, 0, 0, 0)}, {key: b(11, 0, 0, 0), end: true}}},
		{"interval single value", &single, b(0, 80), b(0, 80), []elem{{key: b(0, 80)}, {key: b(0, 81), end: true}}},
		{"carry", &single, b(0, 0), b(0, 255), []elem{{key: b(0, 0)}, {key: b(1, 0), end: true}}},
		{"open at the top", &single, b(200, 0, 0, 0), b(255, 255, 255, 255), []elem{{key: b(200, 0, 0, 0), open: true}}},
		{"top port", &single, b(0xff, 0xff), b(0xff, 0xff), []elem{{key: b(0xff, 0xff), open: true}}},
		{"concatenation", &concat, b(1, 2, 3, 4, 6, 0, 0, 0), b(1, 2, 3, 9, 6, 0, 0, 0),
			[]elem{{key: b(1, 2, 3, 4, 6, 0, 0, 0), keyEnd: b(1, 2, 3, 9, 6, 0, 0, 0)}}},
		{"hash", &hash, b(1, 2, 3, 4), b(1, 2, 3, 4), []elem{{key: b(1, 2, 3, 4)}}},
	}
	for _, tc := range tests {
		got := rangeElems(tc.d, tc.first, tc.last)
		if !equalElems(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
		// An element ID decodes to the same kernel elements.
		if back := elemsOfID(tc.d, elemID(tc.first, tc.last)); !equalElems(back, got) {
			t.Errorf("%s: elemsOfID gives %+v", tc.name, back)
		}
	}
}

func equalElems(a, b []elem) bool {
	return slices.EqualFunc(a, b, func(x, y elem) bool {
		return bytes.Equal(x.key, y.key) && bytes.Equal(x.keyEnd, y.keyEnd) && x.end == y.end && x.open == y.open
	})
}

func TestKeyEncoding(t *testing.T) {
	types := []ir.KeyType{ir.TypeIPv4Addr, ir.TypeInetProto, ir.TypeInetService}
	got, err := putKey(nil, ir.Key{v4("10.1.2.3"), num(6), num(443)}, types)
	if err != nil {
		t.Fatal(err)
	}
	// Each field of a concatenation is padded to 4 bytes; ports big-endian.
	if want := []byte{10, 1, 2, 3, 6, 0, 0, 0, 1, 187, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf("concatenated key %v, want %v", got, want)
	}
	got, _ = putKey(nil, ir.Key{str("tab0")}, []ir.KeyType{ir.TypeIfname})
	if len(got) != ifnameLen || !bytes.HasPrefix(got, []byte("tab0\x00")) {
		t.Errorf("ifname key %q", got)
	}
	bad := []struct {
		k ir.Key
		t []ir.KeyType
	}{
		{ir.Key{v4("::1")}, []ir.KeyType{ir.TypeIPv4Addr}},
		{ir.Key{v4("10.0.0.1")}, []ir.KeyType{ir.TypeIPv6Addr}},
		{ir.Key{num(256)}, []ir.KeyType{ir.TypeInetProto}},
		{ir.Key{num(65536)}, []ir.KeyType{ir.TypeInetService}},
		{ir.Key{str("a-name-that-is-too-long")}, []ir.KeyType{ir.TypeIfname}},
		{ir.Key{str("")}, []ir.KeyType{ir.TypeIfname}},
		{ir.Key{num(1), num(2)}, []ir.KeyType{ir.TypeInetProto}},
	}
	for _, tc := range bad {
		if _, err := putKey(nil, tc.k, tc.t); !errors.Is(err, ErrInvalidTable) {
			t.Errorf("putKey(%v, %v) = %v, want ErrInvalidTable", tc.k, tc.t, err)
		}
	}
	// A range needs an interval set.
	e := ir.Element{Key: ir.Key{v4("10.0.0.1")}, End: ir.Key{v4("10.0.0.9")}}
	if _, _, err := elementRange(e, []ir.KeyType{ir.TypeIPv4Addr}, false); !errors.Is(err, ErrInvalidTable) {
		t.Errorf("range in a hash set: %v", err)
	}
	e = ir.Element{Key: ir.Key{v4("10.0.0.9")}, End: ir.Key{v4("10.0.0.1")}}
	if _, _, err := elementRange(e, []ir.KeyType{ir.TypeIPv4Addr}, true); !errors.Is(err, ErrInvalidTable) {
		t.Errorf("empty range: %v", err)
	}
}

func TestPrefixEncoding(t *testing.T) {
	tests := []struct {
		prefix string
		want   []string // expression kinds with their key field
	}{
		{"10.1.2.3/32", []string{"payload len=4", "cmp data=0a010203"}},
		{"10.0.0.0/8", []string{"payload len=1", "cmp data=0a"}},
		{"10.16.0.0/12", []string{"payload len=4", "bitwise mask=fff00000", "cmp data=0a100000"}},
		{"0.0.0.0/0", []string{"payload len=4", "bitwise mask=00000000", "cmp data=00000000"}},
		{"2001:db8::/32", []string{"payload len=4", "cmp data=20010db8"}},
	}
	for _, tc := range tests {
		p := netip.MustParsePrefix(tc.prefix)
		f := ir.FieldIPSaddr
		if p.Addr().Is6() {
			f = ir.FieldIP6Saddr
		}
		enc, err := encodeRule(&ir.Table{}, &ir.Rule{Matches: []ir.Match{ir.MatchAddr{Field: f, Prefixes: []netip.Prefix{p}}}})
		if err != nil {
			t.Fatal(err)
		}
		// The rule starts with the nfproto dependency the encoder adds.
		if got := kinds(enc.exprs[2:]); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.prefix, got, tc.want)
		}
	}
}

func kinds(xs []expr.Any) []string {
	var out []string
	for _, x := range xs {
		switch x := x.(type) {
		case *expr.Payload:
			out = append(out, "payload len="+itoa(x.Len))
		case *expr.Bitwise:
			out = append(out, "bitwise mask="+hexs(x.Mask))
		case *expr.Cmp:
			out = append(out, "cmp data="+hexs(x.Data))
		case *expr.Meta:
			out = append(out, "meta "+itoa(uint32(x.Key)))
		case *expr.Lookup:
			out = append(out, "lookup "+x.SetName)
		default:
			out = append(out, "other")
		}
	}
	return out
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func hexs(b []byte) string { return hex.EncodeToString(b) }

// TestDependencies checks that the encoder adds a match's dependency only
// when the rule does not already match it.
func TestDependencies(t *testing.T) {
	nfproto, l4proto := "meta "+itoa(uint32(expr.MetaKeyNFPROTO)), "meta "+itoa(uint32(expr.MetaKeyL4PROTO))
	count := func(ms ...ir.Match) (nf, l4 int) {
		enc, err := encodeRule(&ir.Table{}, &ir.Rule{Matches: ms})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range kinds(enc.exprs) {
			switch k {
			case nfproto:
				nf++
			case l4proto:
				l4++
			}
		}
		return nf, l4
	}
	addr := ir.MatchAddr{Field: ir.FieldIPSaddr, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	tcp := ir.MatchPort{Field: ir.FieldTHDport, Proto: 6, Ranges: []policy.PortRange{{First: 80, Last: 80}}}
	tests := []struct {
		name   string
		ms     []ir.Match
		nf, l4 int
	}{
		{"address adds nfproto", []ir.Match{addr}, 1, 0},
		{"nfproto kept once", []ir.Match{ir.MatchNfproto{Family: ir.IPv4}, addr, addr}, 1, 0},
		{"tcp port adds l4proto", []ir.Match{tcp}, 0, 1},
		{"l4proto present", []ir.Match{ir.MatchL4Proto{Protos: []uint8{6}}, tcp}, 0, 1},
		{"negated l4proto is no dependency", []ir.Match{ir.MatchL4Proto{Protos: []uint8{6}, Negate: true}, tcp}, 0, 2},
		{"icmp adds both", []ir.Match{ir.MatchICMP{Type: 8}}, 1, 1},
		{"icmp after l4proto", []ir.Match{ir.MatchL4Proto{Protos: []uint8{1}}, ir.MatchICMP{Type: 8}}, 0, 1},
		{"th port needs nothing", []ir.Match{ir.MatchPort{Field: ir.FieldTHDport, Ranges: []policy.PortRange{{First: 1, Last: 2}}}}, 0, 0},
	}
	for _, tc := range tests {
		if nf, l4 := count(tc.ms...); nf != tc.nf || l4 != tc.l4 {
			t.Errorf("%s: %d nfproto, %d l4proto; want %d, %d", tc.name, nf, l4, tc.nf, tc.l4)
		}
	}
}

// TestOverlapsRefused checks that what the kernel would abort a transaction
// for (overlapping intervals) is refused before anything is sent.
func TestOverlapsRefused(t *testing.T) {
	pr := func(a, b uint16) policy.PortRange { return policy.PortRange{First: a, Last: b} }
	bad := []ir.Match{
		ir.MatchPort{Field: ir.FieldTHDport, Ranges: []policy.PortRange{pr(80, 90), pr(85, 95)}},
		ir.MatchPort{Field: ir.FieldTHDport, Ranges: []policy.PortRange{pr(443, 443), pr(80, 80)}},
		ir.MatchPort{Field: ir.FieldTHDport, Ranges: []policy.PortRange{pr(90, 80)}},
		ir.MatchAddr{Field: ir.FieldIPSaddr, Prefixes: []netip.Prefix{pfx("10.0.0.0/8"), pfx("10.1.0.0/16")}},
	}
	for _, m := range bad {
		if _, err := encodeRule(&ir.Table{}, &ir.Rule{Matches: []ir.Match{m}}); !errors.Is(err, ErrInvalidTable) {
			t.Errorf("%s: %v, want ErrInvalidTable", m, err)
		}
	}
	// Adjacent ranges are fine: the kernel holds an end and a start with
	// the same key.
	ok := ir.MatchPort{Field: ir.FieldTHDport, Ranges: []policy.PortRange{pr(80, 81), pr(82, 90)}}
	if _, err := encodeRule(&ir.Table{}, &ir.Rule{Matches: []ir.Match{ok}}); err != nil {
		t.Error(err)
	}
	s := &ir.Set{Name: "s", Type: []ir.KeyType{ir.TypeIPv4Addr}, Interval: true, Elements: []ir.Element{
		{Key: ir.Key{v4("10.0.0.0")}, End: ir.Key{v4("10.0.0.9")}},
		{Key: ir.Key{v4("10.0.0.5")}},
	}}
	d, _ := namedSetDef(s)
	if _, err := setElements(&d, s); !errors.Is(err, ErrInvalidTable) {
		t.Errorf("overlapping set elements: %v", err)
	}
}

func TestSanitize(t *testing.T) {
	if got := sanitize("a\"b\nc\x7f", 100); got != "a b c " {
		t.Errorf("sanitize = %q", got)
	}
	long := strings.Repeat("€", 50) // 3 bytes a rune
	if got := sanitize(long, ir.MaxCommentLen); len(got) != 126 || !strings.HasPrefix(long, got) {
		t.Errorf("cut to %d bytes", len(got))
	}
}

// TestDelta checks the work a delta holds for each kind of change, and the
// order of the batch.
func TestDelta(t *testing.T) {
	old := everyTypeTable()
	_, rec, err := diff(nil, old, false)
	if err != nil {
		t.Fatal(err)
	}
	next := everyTypeTable()
	// Share unchanged objects, as the compiler does.
	for i := range next.Sets {
		next.Sets[i] = old.Sets[i]
	}
	copy(next.Chains, old.Chains)
	h := *old.Set("np-h")
	h.Elements = []ir.Element{h.Elements[0], h.Elements[2], {Key: ir.Key{v4("10.9.0.4")}}}
	next.Sets[slices.Index(next.Sets, old.Set("np-h"))] = &h
	web := *old.Chain("pol-web")
	web.Rules = web.Rules[1:]
	next.Chains[slices.Index(next.Chains, old.Chain("pol-web"))] = &web
	// eg-abc is replaced by eg-new: the map entry moves to it.
	i := slices.Index(next.Chains, old.Chain("eg-abc"))
	next.Chains[i] = &ir.Chain{Name: "eg-new", Rules: []*ir.Rule{{Verdict: jump("eg-abc-kubernetes")}}}
	slices.SortFunc(next.Chains[4:], func(a, b *ir.Chain) int { return strings.Compare(a.Name, b.Name) })
	next.Maps[0].Entries[0].Verdict = jump("eg-new")

	d, _, err := diff(rec, next, false)
	if err != nil {
		t.Fatal(err)
	}
	names := func(cs []*ir.Chain) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	switch {
	case d.full:
		t.Fatal("full replace")
	case len(d.newSets)+len(d.newMaps) != 0 || len(d.goneSets) != 0:
		t.Errorf("sets added/removed: %+v", d)
	case len(d.elemDels) != 1 || len(d.elemDels[0].elems) != 1 || len(d.elemAdds) != 1 || len(d.elemAdds[0].elems) != 1:
		t.Errorf("element changes: -%v +%v", d.elemDels, d.elemAdds)
	case !slices.Equal(names(d.refill), []string{"pol-web"}) || !slices.Equal(names(d.fill), []string{"eg-new"}):
		t.Errorf("refill %v, fill %v", names(d.refill), names(d.fill))
	case !slices.Equal(d.gone, []string{"eg-abc"}):
		t.Errorf("gone %v", d.gone)
	case len(d.entryDels) != 1 || len(d.entryAdds) != 1:
		t.Errorf("map entries: -%v +%v", d.entryDels, d.entryAdds)
	}

	b := newBatch("tabby")
	if err := program(b, d, next); err != nil {
		t.Fatal(err)
	}
	pos := func(op string) int {
		i := slices.Index(b.ops, op)
		if i < 0 {
			t.Fatalf("no %q in %q", op, b.ops)
		}
		return i
	}
	order := []string{
		"add chain eg-new", "delete elements of set np-h", "add elements of set np-h", "flush chain pol-web",
		"add rule to chain pol-web", "add rule to chain eg-new", "delete elements of set from-endpoint",
		"add elements of set from-endpoint", "flush chain eg-abc", "delete chain eg-abc",
	}
	for k := 1; k < len(order); k++ {
		if pos(order[k-1]) > pos(order[k]) {
			t.Errorf("%q comes after %q", order[k-1], order[k])
		}
	}

	// A change the kernel cannot make in place replaces the table.
	moved := everyTypeTable()
	moved.Chains[0].Base.Priority = 10
	if d, _, _ := diff(rec, moved, false); !d.full {
		t.Error("a changed priority did not replace the table")
	}
	commented := everyTypeTable()
	commented.Sets[0].Comment = "other"
	if d, _, _ := diff(rec, commented, false); !d.full {
		t.Error("a changed set comment did not replace the table")
	}
	// Removing a set an unchanged chain still uses is refused.
	dangling := everyTypeTable()
	copy(dangling.Chains, old.Chains)
	dangling.Sets = slices.DeleteFunc(slices.Clone(old.Sets), func(s *ir.Set) bool { return s.Name == "np-a" })
	if _, _, err := diff(rec, dangling, false); !errors.Is(err, ErrInvalidTable) {
		t.Errorf("removing a used set: %v", err)
	}
}

func TestErrorPredicates(t *testing.T) {
	ke := &KernelError{Op: "add rule to chain x", Err: errors.New("boom")}
	err := &SyncError{Err: errors.Join(ke)}
	var got *KernelError
	if !IsKernel(err) || !errors.Is(err, ErrKernel) || !errors.As(err, &got) || got != ke {
		t.Errorf("predicates fail on %v", err)
	}
	if IsKernel(&SyncError{Err: ErrTransport}) || errors.Is(invalidf("x"), ErrKernel) {
		t.Error("non-kernel error is a kernel error")
	}
}
