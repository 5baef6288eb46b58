package selectors

import (
	"errors"
	"slices"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that Parse never panics, that errors are well-formed
// *ParseErrors, and that the canonical form is a fixed point that evaluates
// like the original. Seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q): error %T is not a *ParseError", in, err)
			}
			if pe.Input != in || pe.Col < 1 || pe.Col > utf8.RuneCountInString(in)+1 || pe.Expected == "" {
				t.Fatalf("Parse(%q): malformed error %+v", in, pe)
			}
			return
		}
		canon := s.String()
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", in, canon, err)
		}
		if again.String() != canon || again.ID() != s.ID() {
			t.Fatalf("Parse(%q) = %q, reparsed as %q", in, canon, again.String())
		}
		if !slices.Equal(again.Keys(), s.Keys()) || again.MatchesEmpty() != s.MatchesEmpty() {
			t.Fatalf("%q: keys or empty result differ after reparse", canon)
		}
		if s.MatchesEmpty() != s.Matches(Map{}) {
			t.Fatalf("%q: MatchesEmpty disagrees with Matches(empty)", canon)
		}
		for _, l := range derivedLabels(s) {
			if s.Matches(l) != again.Matches(l) {
				t.Fatalf("%q and its reparse disagree on %v", canon, l)
			}
		}
	})
}

// derivedLabels builds label maps from the literals of s so evaluation hits
// both branches of its leaves: keys set to each literal, to extensions of it
// (for contains/starts/ends), absent, and with the namespace key toggled.
func derivedLabels(s *Selector) []Map {
	lits := map[string][]string{}
	var walk func(Node)
	walk = func(n Node) {
		switch c := n.(type) {
		case *Leaf:
			if c.Op == OpAll || c.Op == OpGlobal {
				return
			}
			vs := append([]string{c.Value}, c.Values...)
			lits[c.Key] = append(lits[c.Key], vs...)
		case *AndExpr:
			for _, ch := range c.Children {
				walk(ch)
			}
		case *OrExpr:
			for _, ch := range c.Children {
				walk(ch)
			}
		case *NotExpr:
			walk(c.Child)
		}
	}
	walk(s.Root())
	keys := s.Keys()
	out := []Map{{}, {KeyNamespace: "ns"}}
	for variant := 0; variant < 4; variant++ {
		m := Map{}
		for i, k := range keys {
			vs := lits[k]
			if len(vs) == 0 {
				vs = []string{""}
			}
			v := vs[(variant+i)%len(vs)]
			switch variant {
			case 1:
				v = "x" + v + "y"
			case 2:
				if i%2 == 1 {
					continue // absent
				}
			case 3:
				v = vs[len(vs)-1] + "z"
			}
			m[k] = v
		}
		out = append(out, m)
	}
	return out
}
