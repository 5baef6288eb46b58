package enforcer

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The canonical form of a table for drift checks: one line per set
// definition, set element, chain and rule, at the level of what the kernel
// stores (datatypes, flags, key bytes, expressions, userdata). The desired
// side is computed from the record by the same encoders that write it, the
// kernel side from a dump; the two are equal exactly when the kernel holds
// what was written. Element and object order does not matter (sorted); rule
// order does. Anonymous sets appear inside the lookup that uses them.

func canonSet(name string, flags, keyType, keyLen, dataType uint32, udata []byte) string {
	return fmt.Sprintf("set %s flags=%#x key=%#x/%d data=%#x udata=%x", name, flags, keyType, keyLen, dataType, udata)
}

func canonElem(key, keyEnd []byte, end bool, v *expr.Verdict, udata []byte) string {
	s := fmt.Sprintf("%x", key)
	if keyEnd != nil {
		s += fmt.Sprintf("-%x", keyEnd)
	}
	if end {
		s += " end"
	}
	if v != nil {
		s += fmt.Sprintf(" : %d %s", v.Kind, v.Chain)
	}
	if udata != nil {
		s += fmt.Sprintf(" udata=%x", udata)
	}
	return s
}

func dataTypeOf(d *setDef) uint32 {
	if d.isMap {
		return unix.NFT_DATA_VERDICT
	}
	return 0
}

// canonAnon is an anonymous set as a lookup names it.
func canonAnon(flags, keyType, keyLen uint32, udata []byte, elems []string) string {
	slices.Sort(elems)
	return fmt.Sprintf("{flags=%#x key=%#x/%d udata=%x elems=%s}", flags, keyType, keyLen, udata, strings.Join(elems, ","))
}

func canonChain(name string, base bool, hook, prio, policy uint32, typ string, udata []byte) string {
	if !base {
		return fmt.Sprintf("chain %s udata=%x", name, udata)
	}
	return fmt.Sprintf("chain %s hook=%d prio=%d policy=%d type=%s udata=%x", name, hook, int32(prio), policy, typ, udata)
}

// canonExpr formats the fields of an expression that the kernel stores;
// anon resolves the name of an anonymous set in a lookup.
func canonExpr(x any, anon func(*expr.Lookup) (string, bool)) string {
	switch x := x.(type) {
	case *expr.Meta:
		if x.SourceRegister {
			return fmt.Sprintf("meta set key=%d sreg=%d", x.Key, x.Register)
		}
		return fmt.Sprintf("meta key=%d dreg=%d", x.Key, x.Register)
	case *expr.Payload:
		return fmt.Sprintf("payload base=%d off=%d len=%d dreg=%d", x.Base, x.Offset, x.Len, x.DestRegister)
	case *expr.Cmp:
		return fmt.Sprintf("cmp op=%d reg=%d data=%x", x.Op, x.Register, x.Data)
	case *expr.Range:
		return fmt.Sprintf("range op=%d reg=%d from=%x to=%x", x.Op, x.Register, x.FromData, x.ToData)
	case *expr.Bitwise:
		return fmt.Sprintf("bitwise sreg=%d dreg=%d len=%d mask=%x xor=%x", x.SourceRegister, x.DestRegister, x.Len, x.Mask, x.Xor)
	case *expr.Ct:
		return fmt.Sprintf("ct key=%d dreg=%d", x.Key, x.Register)
	case *expr.Lookup:
		set := x.SetName
		if s, ok := anon(x); ok {
			set = s
		}
		dreg := ""
		if x.IsDestRegSet {
			dreg = fmt.Sprintf(" dreg=%d", x.DestRegister)
		}
		return fmt.Sprintf("lookup sreg=%d%s inv=%t set=%s", x.SourceRegister, dreg, x.Invert, set)
	case *expr.Immediate:
		return fmt.Sprintf("immediate reg=%d data=%x", x.Register, x.Data)
	case *expr.Verdict:
		return fmt.Sprintf("verdict %d %s", x.Kind, x.Chain)
	case *expr.Counter:
		return "counter" // the values are state, not configuration
	case *expr.Log:
		return fmt.Sprintf("log prefix=%q group=%d", x.Data, x.Group)
	case *opaque:
		return fmt.Sprintf("%s %x", x.name, x.data)
	}
	return fmt.Sprintf("%T %+v", x, x)
}

// canonRecord is the canonical form of what the record says was written.
func canonRecord(r *record) ([]string, error) {
	out := []string{"table"}
	// Sets and maps share one namespace, as in the kernel's dump.
	names := slices.Sorted(maps.Keys(r.sets))
	for name := range r.maps {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		var elems []string
		if s := r.sets[name]; s != nil {
			d := &s.def
			out = append(out, canonSet(name, d.flags(), d.keyType, d.keyLen, 0, d.udata()))
			for id := range s.elems {
				for _, e := range elemsOfID(d, id) {
					elems = append(elems, "set "+name+" elem "+canonElem(e.key, e.keyEnd, e.end, nil, e.udata()))
				}
			}
		} else {
			m := r.maps[name]
			d := &m.def
			out = append(out, canonSet(name, d.flags(), d.keyType, d.keyLen, dataTypeOf(d), d.udata()))
			for _, e := range entryElems(m.entries, slices.Collect(maps.Keys(m.entries))) {
				elems = append(elems, "set "+name+" elem "+canonElem(e.key, nil, false, e.verdict, nil))
			}
		}
		slices.Sort(elems)
		out = append(out, elems...)
	}
	var chains []string
	for _, name := range slices.Sorted(maps.Keys(r.chains)) {
		c := r.chains[name].src
		var hook, prio, policy uint32
		typ := ""
		if c.Base != nil {
			hook, _ = hookNum(c.Base.Hook)
			policy, _ = chainPolicy(c.Base.Policy)
			prio, typ = uint32(int32(c.Base.Priority)), "filter"
		}
		chains = append(chains, canonChain(name, c.Base != nil, hook, prio, policy, typ, chainUdata(c)))
		for _, rule := range c.Rules {
			enc, err := encodeRule(r.src, rule)
			if err != nil {
				return nil, err
			}
			anon := func(l *expr.Lookup) (string, bool) {
				for _, a := range enc.anons {
					if a.lookup == l {
						var elems []string
						for _, e := range a.elems {
							elems = append(elems, canonElem(e.key, e.keyEnd, e.end, nil, e.udata()))
						}
						return canonAnon(a.def.flags(), a.def.keyType, a.def.keyLen, a.def.udata(), elems), true
					}
				}
				return "", false
			}
			chains = append(chains, canonRule(name, enc.exprs, enc.udata, anon))
		}
	}
	return append(out, chains...), nil
}

func canonRule[E any](chain string, exprs []E, udata []byte, anon func(*expr.Lookup) (string, bool)) string {
	parts := make([]string, len(exprs))
	for i, x := range exprs {
		parts[i] = canonExpr(x, anon)
	}
	return fmt.Sprintf("chain %s rule %s udata=%x", chain, strings.Join(parts, "; "), udata)
}

// readCanon reads the kernel's table in canonical form.
func readCanon(c *conn, table string) ([]string, error) {
	t, err := readTable(c, table)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return []string{"no table " + table}, nil
	}
	out := []string{"table"}
	anonSets := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(t.sets)) {
		s := t.sets[name]
		var elems []string
		for _, e := range s.elems {
			elems = append(elems, canonElem(e.key, e.keyEnd, e.end, e.verdict, e.udata))
		}
		if s.flags&unix.NFT_SET_ANONYMOUS != 0 {
			anonSets[name] = canonAnon(s.flags, s.keyType, s.keyLen, s.udata, elems)
			continue
		}
		out = append(out, canonSet(name, s.flags, s.keyType, s.keyLen, s.dataType, s.udata))
		for i := range elems {
			elems[i] = "set " + name + " elem " + elems[i]
		}
		slices.Sort(elems)
		out = append(out, elems...)
	}
	anon := func(l *expr.Lookup) (string, bool) {
		s, ok := anonSets[l.SetName]
		return s, ok
	}
	chains := slices.Clone(t.chains)
	slices.SortFunc(chains, func(a, b *kChain) int { return strings.Compare(a.name, b.name) })
	for _, ch := range chains {
		out = append(out, canonChain(ch.name, ch.base, ch.hook, ch.prio, ch.policy, ch.typ, ch.udata))
		for _, r := range ch.rules {
			out = append(out, canonRule(ch.name, r.exprs, r.udata, anon))
		}
	}
	return out, nil
}

// firstDiff describes the first difference between two canonical forms, or
// returns "" when they are equal.
func firstDiff(want, got []string) string {
	for i := 0; i < len(want) || i < len(got); i++ {
		switch {
		case i >= len(want):
			return fmt.Sprintf("kernel has extra %q", got[i])
		case i >= len(got):
			return fmt.Sprintf("kernel lacks %q", want[i])
		case want[i] != got[i]:
			return fmt.Sprintf("kernel has %q where %q was written", got[i], want[i])
		}
	}
	return ""
}

func ruleComment(udata []byte) string {
	s, _ := userdata.GetString(udata, userdata.TypeComment)
	return s
}
