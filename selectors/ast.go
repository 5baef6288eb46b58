package selectors

import (
	"crypto/sha256"
	"encoding/base32"
	"sort"
	"strconv"
	"strings"
)

// Reserved label keys. Kubernetes label keys cannot contain ':', so these never
// collide with user labels. Policy normalisation (policy/) writes them onto every
// endpoint and network set; selectors read them like any other key.
const (
	// KeyNamespace holds the namespace of a namespaced subject (pod, NetworkSet).
	// It is absent on global subjects, which is what global() tests.
	KeyNamespace = "tabby:namespace"
	// KeyKind is "pod", "networkset" or "globalnetworkset".
	KeyKind = "tabby:kind"
	// KeyServiceAccount holds a pod's service account name.
	KeyServiceAccount = "tabby:serviceaccount"
	// NamespaceLabelPrefix prefixes the labels of a subject's namespace.
	NamespaceLabelPrefix = "ns:"
	// ServiceAccountLabelPrefix prefixes the labels of a pod's service account.
	ServiceAccountLabelPrefix = "sa:"
)

// Labels is what a selector is evaluated against.
type Labels interface {
	Get(key string) (value string, ok bool)
}

// Map is the plain Labels implementation.
type Map map[string]string

// Get implements Labels.
func (m Map) Get(k string) (string, bool) { v, ok := m[k]; return v, ok }

// Op is the operator of a leaf node.
type Op uint8

// Leaf operators. Absent keys: ==, in, has, contains, starts with, ends with
// are false; !=, not in, !has are true (Calico and Kubernetes agree on this).
const (
	OpAll    Op = iota // all(): matches everything
	OpGlobal           // global(): matches subjects without a namespace
	OpEq
	OpNeq
	OpIn
	OpNotIn
	OpHas
	OpNotHas
	OpContains
	OpStartsWith
	OpEndsWith
)

// Node is one node of a selector's AST. Nodes are immutable once built.
type Node interface {
	// Eval reports whether l matches.
	Eval(l Labels) bool
	// String is the canonical form; parse(String()) yields an equal node.
	String() string
	// keys calls f for every label key the node reads.
	keys(f func(string))
}

// Leaf is a comparison on one key.
type Leaf struct {
	Op     Op
	Key    string
	Value  string   // ==, !=, contains, starts with, ends with
	Values []string // in, not in: sorted, deduplicated
}

// AndExpr matches when every child matches. Children are canonically sorted.
type AndExpr struct{ Children []Node }

// OrExpr matches when any child matches. Children are canonically sorted.
type OrExpr struct{ Children []Node }

// NotExpr negates its child.
type NotExpr struct{ Child Node }

// Eval implements Node.
func (n *Leaf) Eval(l Labels) bool {
	switch n.Op {
	case OpAll:
		return true
	case OpGlobal:
		_, ok := l.Get(KeyNamespace)
		return !ok
	}
	v, ok := l.Get(n.Key)
	switch n.Op {
	case OpEq:
		return ok && v == n.Value
	case OpNeq:
		return !ok || v != n.Value
	case OpIn:
		return ok && contains(n.Values, v)
	case OpNotIn:
		return !ok || !contains(n.Values, v)
	case OpHas:
		return ok
	case OpNotHas:
		return !ok
	case OpContains:
		return ok && strings.Contains(v, n.Value)
	case OpStartsWith:
		return ok && strings.HasPrefix(v, n.Value)
	case OpEndsWith:
		return ok && strings.HasSuffix(v, n.Value)
	}
	return false
}

func contains(sorted []string, v string) bool {
	i := sort.SearchStrings(sorted, v)
	return i < len(sorted) && sorted[i] == v
}

func (n *Leaf) keys(f func(string)) {
	switch n.Op {
	case OpAll:
	case OpGlobal:
		f(KeyNamespace)
	default:
		f(n.Key)
	}
}

// String implements Node.
func (n *Leaf) String() string {
	switch n.Op {
	case OpAll:
		return "all()"
	case OpGlobal:
		return "global()"
	case OpEq:
		return n.Key + " == " + Quote(n.Value)
	case OpNeq:
		return n.Key + " != " + Quote(n.Value)
	case OpIn, OpNotIn:
		var b strings.Builder
		b.WriteString(n.Key)
		if n.Op == OpIn {
			b.WriteString(" in {")
		} else {
			b.WriteString(" not in {")
		}
		for i, v := range n.Values {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(Quote(v))
		}
		b.WriteString("}")
		return b.String()
	case OpHas:
		return "has(" + n.Key + ")"
	case OpNotHas:
		return "!has(" + n.Key + ")"
	case OpContains:
		return n.Key + " contains " + Quote(n.Value)
	case OpStartsWith:
		return n.Key + " starts with " + Quote(n.Value)
	case OpEndsWith:
		return n.Key + " ends with " + Quote(n.Value)
	}
	return "<invalid>"
}

// Quote renders a string literal the tokenizer reads back: double quotes, with
// backslash escapes for '"' and '\'.
func Quote(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return `"` + s + `"`
	}
	return strconv.Quote(s)
}

// Eval implements Node.
func (n *AndExpr) Eval(l Labels) bool {
	for _, c := range n.Children {
		if !c.Eval(l) {
			return false
		}
	}
	return true
}

func (n *AndExpr) keys(f func(string)) {
	for _, c := range n.Children {
		c.keys(f)
	}
}

// String implements Node.
func (n *AndExpr) String() string { return join(n.Children, " && ") }

// Eval implements Node.
func (n *OrExpr) Eval(l Labels) bool {
	for _, c := range n.Children {
		if c.Eval(l) {
			return true
		}
	}
	return false
}

func (n *OrExpr) keys(f func(string)) {
	for _, c := range n.Children {
		c.keys(f)
	}
}

// String implements Node.
func (n *OrExpr) String() string { return join(n.Children, " || ") }

func join(cs []Node, sep string) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		s := c.String()
		switch c.(type) {
		case *AndExpr, *OrExpr:
			s = "(" + s + ")"
		}
		parts[i] = s
	}
	return strings.Join(parts, sep)
}

// Eval implements Node.
func (n *NotExpr) Eval(l Labels) bool  { return !n.Child.Eval(l) }
func (n *NotExpr) keys(f func(string)) { n.Child.keys(f) }

// String implements Node.
func (n *NotExpr) String() string {
	switch n.Child.(type) {
	case *Leaf:
		return "!" + n.Child.String()
	}
	return "!(" + n.Child.String() + ")"
}

// Selector is a parsed, canonicalised selector. The zero value is not valid;
// build one with Parse, FromLabelSelector or the constructors in build.go.
type Selector struct {
	root  Node
	canon string
	id    string
	keys  []string
	empty bool // result on a subject with no labels at all
}

func newSelector(root Node) *Selector {
	s := &Selector{root: root, canon: root.String()}
	sum := sha256.Sum256([]byte(s.canon))
	s.id = strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:10]))
	seen := map[string]bool{}
	root.keys(func(k string) {
		if !seen[k] {
			seen[k] = true
			s.keys = append(s.keys, k)
		}
	})
	sort.Strings(s.keys)
	s.empty = root.Eval(Map(nil))
	return s
}

// Root returns the canonical AST.
func (s *Selector) Root() Node { return s.root }

// String returns the canonical form.
func (s *Selector) String() string { return s.canon }

// ID is a short stable hash of the canonical form: equivalent selectors share it.
func (s *Selector) ID() string { return s.id }

// Keys are the label keys the selector reads, sorted.
func (s *Selector) Keys() []string { return s.keys }

// MatchesEmpty reports the result on a subject with no labels. A subject whose
// labels share no key with Keys() gets exactly this result.
func (s *Selector) MatchesEmpty() bool { return s.empty }

// Matches reports whether l matches.
func (s *Selector) Matches(l Labels) bool { return s.root.Eval(l) }
