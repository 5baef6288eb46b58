package trace

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

// Tracer evaluates packets against one table. It is immutable after New and
// safe for concurrent use.
type Tracer struct {
	table  *ir.Table
	chains []*chain
	byName map[string]int
	hooks  map[ir.Hook][]int // base chains by priority, then table order
	sets   map[string]*set
	maps   map[string]*vmap
}

type chain struct {
	name  string
	base  *ir.BaseChain
	rules []rule
}

type rule struct {
	src     *ir.Rule
	ms      []matcher
	stmts   []stmt
	verdict verdict
	vmap    *vmap
	vkey    ir.Field
}

func (r *rule) matches(p *pkt) bool {
	for _, m := range r.ms {
		if !m.match(p) {
			return false
		}
	}
	return true
}

type stmt struct {
	log     bool
	prefix  string
	and, or uint32
}

// verdict is an ir.Verdict with its target chain resolved.
type verdict struct {
	v      ir.Verdict
	target int
}

type vmap struct {
	name    string
	entries map[string]verdict
}

func (m *vmap) lookup(p *pkt, key ir.Field) verdict {
	name := p.iif
	if key == ir.FieldOIFName {
		name = p.oif
	}
	if v, ok := m.entries[name]; ok {
		return v
	}
	return verdict{target: -1} // a miss: the rule continues
}

// Validation errors. Each problem is an *InvalidTableError wrapping one of
// these; New returns all problems joined (errors.Join), in table order.
var (
	ErrUnknownChain = errors.New("unknown chain")
	ErrUnknownSet   = errors.New("unknown set")
	ErrUnknownMap   = errors.New("unknown map")
	ErrKeyType      = errors.New("key type does not fit the match")
	ErrLoop         = errors.New("chain loop")
	ErrDuplicate    = errors.New("duplicate name")
	ErrMalformed    = errors.New("malformed")
)

// InvalidTableError is one problem that makes the kernel refuse the table or
// leaves its meaning undefined.
type InvalidTableError struct {
	Object string // e.g. `set np-a`, `chain forward rule 2`
	Err    error
}

func (e *InvalidTableError) Error() string { return e.Object + ": " + e.Err.Error() }
func (e *InvalidTableError) Unwrap() error { return e.Err }

type builder struct {
	t    *Tracer
	errs []error
}

func (b *builder) fail(obj string, sentinel error, format string, args ...any) {
	err := sentinel
	if format != "" {
		err = fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
	}
	b.errs = append(b.errs, &InvalidTableError{Object: obj, Err: err})
}

// New validates t and prepares its lookup structures. It refuses what the
// kernel would refuse (unknown or base-chain jump targets, chain loops,
// overlapping intervals, malformed elements) and what has no defined meaning
// (a set whose type does not fit the fields matched against it).
func New(t *ir.Table) (*Tracer, error) {
	tr := &Tracer{table: t, byName: map[string]int{}, hooks: map[ir.Hook][]int{},
		sets: map[string]*set{}, maps: map[string]*vmap{}}
	b := &builder{t: tr}
	for _, s := range t.Sets {
		obj := "set " + s.Name
		if _, dup := tr.sets[s.Name]; dup {
			b.fail(obj, ErrDuplicate, "")
			continue
		}
		cs, err := compileSet(s)
		if err != nil {
			b.errs = append(b.errs, &InvalidTableError{Object: obj, Err: fmt.Errorf("%w: %w", ErrMalformed, err)})
			continue
		}
		tr.sets[s.Name] = cs
	}
	for _, c := range t.Chains {
		if _, dup := tr.byName[c.Name]; dup {
			b.fail("chain "+c.Name, ErrDuplicate, "")
			continue
		}
		tr.byName[c.Name] = len(tr.chains)
		tr.chains = append(tr.chains, &chain{name: c.Name, base: c.Base})
	}
	for _, m := range t.Maps {
		b.compileMap(m)
	}
	for i, c := range t.Chains {
		if tr.byName[c.Name] != i {
			continue // a duplicate, reported above
		}
		b.compileChain(c, tr.chains[i])
	}
	b.checkLoops()
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	for h := range tr.hooks {
		slices.SortStableFunc(tr.hooks[h], func(x, y int) int {
			return cmp.Compare(tr.chains[x].base.Priority, tr.chains[y].base.Priority)
		})
	}
	return tr, nil
}

// Table is the table the tracer evaluates.
func (t *Tracer) Table() *ir.Table { return t.table }

// target resolves a jump or goto target.
func (b *builder) target(obj string, v ir.Verdict) (int, bool) {
	i, ok := b.t.byName[v.Chain]
	if !ok {
		b.fail(obj, ErrUnknownChain, "%s %q", v.Kind, v.Chain)
		return 0, false
	}
	if b.t.chains[i].base != nil {
		// The kernel refuses jumps to base chains (EOPNOTSUPP).
		b.fail(obj, ErrMalformed, "%s to base chain %s", v.Kind, v.Chain)
		return 0, false
	}
	return i, true
}

func (b *builder) compileMap(m *ir.Map) {
	obj := "map " + m.Name
	if _, dup := b.t.maps[m.Name]; dup {
		b.fail(obj, ErrDuplicate, "")
		return
	}
	if len(m.Type) != 1 || m.Type[0] != ir.TypeIfname {
		b.fail(obj, ErrKeyType, "verdict maps are keyed by ifname, not %v", m.Type)
		return
	}
	vm := &vmap{name: m.Name, entries: make(map[string]verdict, len(m.Entries))}
	for i, e := range m.Entries {
		eobj := fmt.Sprintf("%s element %d", obj, i)
		if len(e.Key) != 1 {
			b.fail(eobj, ErrKeyType, "key has %d fields", len(e.Key))
			continue
		}
		if _, err := valueKey(e.Key[0], ir.TypeIfname); err != nil {
			b.fail(eobj, ErrMalformed, "%v", err)
			continue
		}
		if _, dup := vm.entries[e.Key[0].Str]; dup {
			b.fail(eobj, ErrDuplicate, "key %q", e.Key[0].Str)
			continue
		}
		v := verdict{v: e.Verdict, target: -1}
		switch e.Verdict.Kind {
		case ir.VerdictAccept, ir.VerdictDrop, ir.VerdictReturn:
		case ir.VerdictJump, ir.VerdictGoto:
			t, ok := b.target(eobj, e.Verdict)
			if !ok {
				continue
			}
			v.target = t
		default:
			b.fail(eobj, ErrMalformed, "verdict %q in a verdict map", e.Verdict.Kind)
			continue
		}
		vm.entries[e.Key[0].Str] = v
	}
	b.t.maps[m.Name] = vm
}

func (b *builder) compileChain(c *ir.Chain, out *chain) {
	idx := b.t.byName[c.Name]
	if c.Base != nil {
		if c.Base.Hook < ir.HookPrerouting || c.Base.Hook > ir.HookPostrouting {
			b.fail("chain "+c.Name, ErrMalformed, "unknown hook %d", c.Base.Hook)
		}
		if c.Base.Policy != ir.VerdictAccept && c.Base.Policy != ir.VerdictDrop {
			b.fail("chain "+c.Name, ErrMalformed, "base chain policy %q", c.Base.Policy)
		}
		b.t.hooks[c.Base.Hook] = append(b.t.hooks[c.Base.Hook], idx)
	}
	out.rules = make([]rule, len(c.Rules))
	for i, r := range c.Rules {
		obj := fmt.Sprintf("chain %s rule %d", c.Name, i)
		if r == nil {
			b.fail(obj, ErrMalformed, "nil rule")
			continue
		}
		cr := rule{src: r, verdict: verdict{v: r.Verdict, target: -1}}
		for j, m := range r.Matches {
			if cm := b.compileMatch(fmt.Sprintf("%s match %d", obj, j), m); cm != nil {
				cr.ms = append(cr.ms, cm)
			}
		}
		for _, s := range r.Stmts {
			switch s := s.(type) {
			case ir.StmtSetMark:
				cr.stmts = append(cr.stmts, stmt{and: s.And, or: s.Or})
			case ir.StmtLog:
				cr.stmts = append(cr.stmts, stmt{log: true, prefix: s.Prefix})
			default:
				b.fail(obj, ErrMalformed, "unknown statement %T", s)
			}
		}
		switch r.Verdict.Kind {
		case ir.VerdictNone, ir.VerdictAccept, ir.VerdictDrop, ir.VerdictReturn:
		case ir.VerdictJump, ir.VerdictGoto:
			if t, ok := b.target(obj, r.Verdict); ok {
				cr.verdict.target = t
			}
		case ir.VerdictMap:
			if r.Verdict.MapKey != ir.FieldIIFName && r.Verdict.MapKey != ir.FieldOIFName {
				b.fail(obj, ErrKeyType, "verdict map keyed by %v", r.Verdict.MapKey)
			}
			vm, ok := b.t.maps[r.Verdict.Map]
			if !ok {
				b.fail(obj, ErrUnknownMap, "%q", r.Verdict.Map)
			}
			cr.vmap, cr.vkey = vm, r.Verdict.MapKey
		default:
			b.fail(obj, ErrMalformed, "unknown verdict %d", r.Verdict.Kind)
		}
		out.rules[i] = cr
	}
}

// fieldType is the key type a field is looked up as.
func fieldType(f ir.Field) ir.KeyType {
	switch f {
	case ir.FieldIPSaddr, ir.FieldIPDaddr:
		return ir.TypeIPv4Addr
	case ir.FieldIP6Saddr, ir.FieldIP6Daddr:
		return ir.TypeIPv6Addr
	case ir.FieldL4Proto:
		return ir.TypeInetProto
	case ir.FieldTHSport, ir.FieldTHDport:
		return ir.TypeInetService
	case ir.FieldIIFName, ir.FieldOIFName:
		return ir.TypeIfname
	}
	return 0
}

func (b *builder) lookupSet(obj, name string, fields []ir.Field) *set {
	s, ok := b.t.sets[name]
	if !ok {
		if slices.ContainsFunc(b.t.table.Sets, func(x *ir.Set) bool { return x.Name == name }) {
			return nil // malformed, reported with the set
		}
		b.fail(obj, ErrUnknownSet, "@%s", name)
		return nil
	}
	if len(s.types) != len(fields) {
		b.fail(obj, ErrKeyType, "%d fields against set %s of type %v", len(fields), name, s.types)
		return nil
	}
	for i, f := range fields {
		if ft := fieldType(f); ft == 0 || ft != s.types[i] {
			b.fail(obj, ErrKeyType, "field %v against %v in set %s", f, s.types[i], name)
			return nil
		}
	}
	return s
}

func (b *builder) compileMatch(obj string, m ir.Match) matcher {
	switch m := m.(type) {
	case ir.MatchNfproto:
		if m.Family != ir.IPv4 && m.Family != ir.IPv6 {
			b.fail(obj, ErrMalformed, "family %d", m.Family)
			return nil
		}
		return mNfproto{m.Family}
	case ir.MatchCtState:
		if m.States == 0 {
			b.fail(obj, ErrMalformed, "empty ct state")
			return nil
		}
		return mCt{m.States}
	case ir.MatchL4Proto:
		if len(m.Protos) == 0 {
			b.fail(obj, ErrMalformed, "no protocols")
			return nil
		}
		var c mL4
		for _, p := range m.Protos {
			c.bits[p/64] |= 1 << (p % 64)
		}
		c.neg = m.Negate
		return c
	case ir.MatchAddr:
		fam := map[ir.Field]ir.Family{ir.FieldIPSaddr: ir.IPv4, ir.FieldIPDaddr: ir.IPv4,
			ir.FieldIP6Saddr: ir.IPv6, ir.FieldIP6Daddr: ir.IPv6}[m.Field]
		if fam == 0 {
			b.fail(obj, ErrMalformed, "address match on %v", m.Field)
			return nil
		}
		if (m.Set == "") == (len(m.Prefixes) == 0) {
			b.fail(obj, ErrMalformed, "address match needs exactly one of a set and prefixes")
			return nil
		}
		c := mAddr{field: m.Field, neg: m.Negate}
		if m.Set != "" {
			c.set = b.lookupSet(obj, m.Set, []ir.Field{m.Field})
		} else {
			s, err := prefixSet(m.Prefixes, fam)
			if err != nil {
				b.fail(obj, ErrKeyType, "%v", err)
			}
			c.set = s
		}
		if c.set == nil {
			return nil
		}
		return c
	case ir.MatchPort:
		if m.Field != ir.FieldTHSport && m.Field != ir.FieldTHDport {
			b.fail(obj, ErrMalformed, "port match on %v", m.Field)
			return nil
		}
		if m.Proto != 0 && !hasPorts(m.Proto) {
			b.fail(obj, ErrMalformed, "protocol %d has no ports", m.Proto)
			return nil
		}
		if len(m.Ranges) == 0 || slices.ContainsFunc(m.Ranges, func(r policy.PortRange) bool { return r.First > r.Last }) {
			b.fail(obj, ErrMalformed, "port ranges %v", m.Ranges)
			return nil
		}
		return mPort{src: m.Field == ir.FieldTHSport, proto: m.Proto, ranges: m.Ranges, neg: m.Negate}
	case ir.MatchICMP:
		c := mICMP{proto: 1, typ: m.Type, code: -1, neg: m.Negate}
		if m.V6 {
			c.proto = 58
		}
		if m.Code != nil {
			c.code = int(*m.Code)
		}
		return c
	case ir.MatchConcat:
		if len(m.Fields) == 0 {
			b.fail(obj, ErrMalformed, "empty concatenation")
			return nil
		}
		s := b.lookupSet(obj, m.Set, m.Fields)
		if s == nil {
			return nil
		}
		return mConcat{fields: m.Fields, set: s, neg: m.Negate}
	case ir.MatchMark:
		return mMark{mask: m.Mask, value: m.Value, neg: m.Negate}
	case ir.MatchIface:
		if m.Field != ir.FieldIIFName && m.Field != ir.FieldOIFName {
			b.fail(obj, ErrMalformed, "interface match on %v", m.Field)
			return nil
		}
		return mIface{out: m.Field == ir.FieldOIFName, name: m.Name, neg: m.Negate}
	}
	b.fail(obj, ErrMalformed, "unknown match %T", m)
	return nil
}

// checkLoops refuses cycles through jumps, gotos and verdict maps, as the
// kernel does (ELOOP).
func (b *builder) checkLoops() {
	const (
		white = iota
		grey
		black
	)
	color := make([]uint8, len(b.t.chains))
	var path []int
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		path = append(path, i)
		for _, next := range b.edges(i) {
			switch color[next] {
			case grey:
				var names []string
				for _, p := range path[slices.Index(path, next):] {
					names = append(names, b.t.chains[p].name)
				}
				b.fail("chain "+b.t.chains[next].name, ErrLoop, "%v", append(names, b.t.chains[next].name))
				return true
			case white:
				if visit(next) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		color[i] = black
		return false
	}
	for i := range b.t.chains {
		if color[i] == white && visit(i) {
			return // one loop is enough to refuse the table
		}
	}
}

// edges lists the chains chain i may enter, in rule order.
func (b *builder) edges(i int) []int {
	var out []int
	for _, r := range b.t.chains[i].rules {
		if r.src == nil {
			continue
		}
		switch {
		case r.vmap != nil:
			keys := make([]string, 0, len(r.vmap.entries))
			for k := range r.vmap.entries {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				if t := r.vmap.entries[k].target; t >= 0 {
					out = append(out, t)
				}
			}
		case r.verdict.target >= 0:
			out = append(out, r.verdict.target)
		}
	}
	return out
}
