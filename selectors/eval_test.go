package selectors

import "testing"

func TestEvalAbsentKey(t *testing.T) {
	// Every operator on a subject without key k, with k set to a value that
	// fails the test, and with k set to one that passes.
	cases := []struct {
		sel                   string
		absent, wrong, passes bool
	}{
		{`k == "v"`, false, false, true},
		{`k != "v"`, true, true, false},
		{`k in {"v", "w"}`, false, false, true},
		{`k not in {"v", "w"}`, true, true, false},
		{`has(k)`, false, true, true},
		{`!has(k)`, true, false, false},
		{`k contains "v"`, false, false, true},
		{`k starts with "v"`, false, false, true},
		{`k ends with "v"`, false, false, true},
		{`k in {}`, false, false, false},
		{`k not in {}`, true, true, true},
		{`k == ""`, false, false, false},
	}
	absent := Map{"other": "v"}
	wrong := Map{"k": "x"}
	passes := Map{"k": "v"}
	for _, c := range cases {
		s := MustParse(c.sel)
		if got := s.Matches(absent); got != c.absent {
			t.Errorf("%s on %v = %v, want %v", c.sel, absent, got, c.absent)
		}
		if got := s.Matches(wrong); got != c.wrong {
			t.Errorf("%s on %v = %v, want %v", c.sel, wrong, got, c.wrong)
		}
		if got := s.Matches(passes); got != c.passes {
			t.Errorf("%s on %v = %v, want %v", c.sel, passes, got, c.passes)
		}
		if s.MatchesEmpty() != c.absent {
			t.Errorf("%s: MatchesEmpty = %v, want %v", c.sel, s.MatchesEmpty(), c.absent)
		}
	}
}

func TestEvalStringOperators(t *testing.T) {
	l := Map{"k": "frontend-v2"}
	for sel, want := range map[string]bool{
		`k contains "end-v"`:    true,
		`k contains ""`:         true,
		`k contains "back"`:     false,
		`k starts with "front"`: true,
		`k starts with "end"`:   false,
		`k ends with "-v2"`:     true,
		`k ends with "front"`:   false,
		`k == "frontend-v2"`:    true,
		`k == "Frontend-v2"`:    false, // case-sensitive
	} {
		if got := MustParse(sel).Matches(l); got != want {
			t.Errorf("%s on %v = %v, want %v", sel, l, got, want)
		}
	}
}

func TestEvalGlobal(t *testing.T) {
	g := MustParse(`global()`)
	if !g.Matches(Map{KeyKind: "globalnetworkset"}) {
		t.Error("global() does not match a subject without a namespace")
	}
	if g.Matches(Map{KeyKind: "pod", KeyNamespace: "default"}) {
		t.Error("global() matches a namespaced subject")
	}
	if g.Matches(Map{KeyNamespace: ""}) {
		t.Error("global() matches a subject whose namespace key is present but empty")
	}
	if !g.MatchesEmpty() {
		t.Error("global() must match empty labels")
	}
	if keys := g.Keys(); len(keys) != 1 || keys[0] != KeyNamespace {
		t.Errorf("global() reads %v, want [%s]", keys, KeyNamespace)
	}
	ng := MustParse(`!global() && tabby:kind == "networkset"`)
	if !ng.Matches(Map{KeyKind: "networkset", KeyNamespace: "a"}) || ng.Matches(Map{KeyKind: "networkset"}) {
		t.Error("!global() wrong")
	}
}

func TestEvalNestedNegation(t *testing.T) {
	s := MustParse(`!(a == "1" && !(has(b) || c != "x"))`)
	// Inner: has(b) || c != "x"; middle: a == "1" && !inner; whole: !middle.
	for _, c := range []struct {
		l    Map
		want bool
	}{
		{Map{}, true},                            // a absent
		{Map{"a": "1"}, true},                    // c absent: c != "x" true, inner true
		{Map{"a": "1", "c": "x"}, false},         // inner false, middle true
		{Map{"a": "1", "c": "x", "b": ""}, true}, // has(b)
		{Map{"a": "2", "c": "x"}, true},
	} {
		if got := s.Matches(c.l); got != c.want {
			t.Errorf("%s on %v = %v, want %v", s, c.l, got, c.want)
		}
	}
	if s.String() != `!(!(c != "x" || has(b)) && a == "1")` { // "!" sorts before letters
		t.Errorf("canonical form %s", s)
	}
}

func TestCanonicalEquivalences(t *testing.T) {
	same := [][]string{
		{`b == "1" && a == "1"`, `a == "1" && b == "1"`, `a == "1" && (b == "1" && a == "1")`, `all() && a == "1" && b == "1"`},
		{`!!has(a)`, `has(a)`, `!(!has(a))`, `(has(a))`},
		{`!has(a)`, `!(has(a))`, `!!!has(a)`},
		{`a in {"y", "x", "x"}`, `a in {'x', 'y'}`},
		{`(a == "1" || b == "1") || c == "1"`, `a == "1" || (c == "1" || b == "1")`, `c == "1" || b == "1" || a == "1"`},
		{`all()`, ``, `all() && all()`, `a == "1" || all()`},
		{`a == 'x"y'`, `a == "x\"y"`},
	}
	for _, group := range same {
		first := MustParse(group[0])
		for _, in := range group[1:] {
			s := MustParse(in)
			if s.ID() != first.ID() || s.String() != first.String() {
				t.Errorf("%q (%s, %s) and %q (%s, %s) should be the same selector",
					group[0], first, first.ID(), in, s, s.ID())
			}
		}
	}
	different := []string{`a == "1"`, `a != "1"`, `a in {"1"}`, `has(a)`, `!a == "1"`, `a == "1" && b == "1"`, `a == "1" || b == "1"`, `global()`, `all()`}
	ids := map[string]string{}
	for _, in := range different {
		id := MustParse(in).ID()
		if prev, dup := ids[id]; dup {
			t.Errorf("%q and %q share ID %s", prev, in, id)
		}
		ids[id] = in
	}
}

func TestBuildersMatchParser(t *testing.T) {
	// The programmatic constructors and the parser build the same canonical
	// selectors.
	pairs := []struct {
		built  *Selector
		parsed string
	}{
		{And(Eq("b", "1"), Eq("a", "1")), `a == "1" && b == "1"`},
		{Or(Has("a"), Global()), `global() || has(a)`},
		{Not(Not(Has("a"))), `has(a)`},
		{In("k", "b", "a"), `k in {"a", "b"}`},
		{And(nil, Eq("a", "1"), nil), `a == "1"`},
		{And(), `all()`},
	}
	for _, p := range pairs {
		want := MustParse(p.parsed)
		if p.built.String() != want.String() || p.built.ID() != want.ID() {
			t.Errorf("built %s, parsed %s", p.built, want)
		}
	}
	if Or() != nil {
		t.Error("Or() of nothing should be nil")
	}
}
