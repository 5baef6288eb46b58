package selectors

import (
	"sort"
)

// The constructors below are the only way nodes are built (the parser and
// FromLabelSelector use them too), so every AST is canonical by construction:
// And/Or are flattened, deduplicated and sorted by their String(); all() is
// dropped from And and absorbs Or; double negation and !has/has collapse.

// All matches everything.
func All() *Selector { return newSelector(allNode) }

var allNode = &Leaf{Op: OpAll}

// New wraps a canonical node built with the node constructors.
func New(n Node) *Selector { return newSelector(n) }

// LeafNode builds a leaf. Values of in/not in are sorted and deduplicated.
func LeafNode(op Op, key, value string, values ...string) Node {
	switch op {
	case OpAll:
		return allNode
	case OpGlobal:
		return &Leaf{Op: OpGlobal}
	case OpIn, OpNotIn:
		vs := append([]string(nil), values...)
		sort.Strings(vs)
		vs = dedupSorted(vs)
		return &Leaf{Op: op, Key: key, Values: vs}
	case OpHas, OpNotHas:
		return &Leaf{Op: op, Key: key}
	}
	return &Leaf{Op: op, Key: key, Value: value}
}

func dedupSorted(vs []string) []string {
	out := vs[:0]
	for i, v := range vs {
		if i == 0 || v != vs[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// NotNode negates n canonically.
func NotNode(n Node) Node {
	switch c := n.(type) {
	case *NotExpr:
		return c.Child
	case *Leaf:
		switch c.Op {
		case OpHas:
			return &Leaf{Op: OpNotHas, Key: c.Key}
		case OpNotHas:
			return &Leaf{Op: OpHas, Key: c.Key}
		}
	}
	return &NotExpr{Child: n}
}

// AndNode conjoins nodes canonically. No nodes means all().
func AndNode(nodes ...Node) Node {
	var flat []Node
	for _, n := range nodes {
		switch c := n.(type) {
		case *AndExpr:
			flat = append(flat, c.Children...)
		case *Leaf:
			if c.Op == OpAll {
				continue
			}
			flat = append(flat, n)
		default:
			flat = append(flat, n)
		}
	}
	flat = sortDedup(flat)
	switch len(flat) {
	case 0:
		return allNode
	case 1:
		return flat[0]
	}
	return &AndExpr{Children: flat}
}

// OrNode disjoins nodes canonically. It needs at least one node.
func OrNode(nodes ...Node) Node {
	var flat []Node
	for _, n := range nodes {
		switch c := n.(type) {
		case *OrExpr:
			flat = append(flat, c.Children...)
		case *Leaf:
			if c.Op == OpAll {
				return allNode
			}
			flat = append(flat, n)
		default:
			flat = append(flat, n)
		}
	}
	flat = sortDedup(flat)
	if len(flat) == 1 {
		return flat[0]
	}
	return &OrExpr{Children: flat}
}

func sortDedup(ns []Node) []Node {
	type keyed struct {
		s string
		n Node
	}
	ks := make([]keyed, len(ns))
	for i, n := range ns {
		ks[i] = keyed{n.String(), n}
	}
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].s < ks[j].s })
	out := make([]Node, 0, len(ks))
	for i, k := range ks {
		if i > 0 && k.s == ks[i-1].s {
			continue
		}
		out = append(out, k.n)
	}
	return out
}

// And conjoins selectors; nil arguments are skipped (they constrain nothing).
func And(ss ...*Selector) *Selector {
	nodes := make([]Node, 0, len(ss))
	for _, s := range ss {
		if s != nil {
			nodes = append(nodes, s.root)
		}
	}
	return newSelector(AndNode(nodes...))
}

// Or disjoins selectors; nil arguments are skipped. Or() of nothing is nil.
func Or(ss ...*Selector) *Selector {
	nodes := make([]Node, 0, len(ss))
	for _, s := range ss {
		if s != nil {
			nodes = append(nodes, s.root)
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	return newSelector(OrNode(nodes...))
}

// Not negates a selector.
func Not(s *Selector) *Selector { return newSelector(NotNode(s.root)) }

// Eq is key == value.
func Eq(key, value string) *Selector { return newSelector(LeafNode(OpEq, key, value)) }

// In is key in {values}.
func In(key string, values ...string) *Selector {
	return newSelector(LeafNode(OpIn, key, "", values...))
}

// Has is has(key).
func Has(key string) *Selector { return newSelector(LeafNode(OpHas, key, "")) }

// Global is global().
func Global() *Selector { return newSelector(LeafNode(OpGlobal, "", "")) }
