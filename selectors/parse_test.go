package selectors

import (
	"errors"
	"math/rand"
	"strings"
	"testing"
)

func TestParseCanonical(t *testing.T) {
	cases := []struct{ in, want string }{
		{``, `all()`},
		{" \t\n ", `all()`},
		{`all()`, `all()`},
		{`all ( )`, `all()`},
		{`global()`, `global()`},
		{`!global()`, `!global()`},
		{`a=="x"`, `a == "x"`},
		{`a == 'x'`, `a == "x"`},
		{`a != "x"`, `a != "x"`},
		{`a == 'say "hi"'`, `a == "say \"hi\""`},
		{`a == "it\'s"`, `a == "it's"`},
		{`a == 'it\'s'`, `a == "it's"`},
		{`a == "back\\slash"`, `a == "back\\slash"`},
		{`a == ""`, `a == ""`},
		{`a in {"z", "a", "z"}`, `a in {"a", "z"}`},
		{`a in {}`, `a in {}`},
		{`a not in {'y','x'}`, `a not in {"x", "y"}`},
		{`has(a)`, `has(a)`},
		{`has( a )`, `has(a)`},
		{`!has(a)`, `!has(a)`},
		{`!!has(a)`, `has(a)`},
		{`!!!has(a)`, `!has(a)`},
		{`!(has(a))`, `!has(a)`},
		{`!(!has(a))`, `has(a)`},
		{`!a == "x"`, `!a == "x"`},
		{`!!a == "x"`, `a == "x"`},
		{`a contains "x"`, `a contains "x"`},
		{`a starts with "x"`, `a starts with "x"`},
		{`a ends with "x"`, `a ends with "x"`},
		{`all() && a == "1"`, `a == "1"`},
		{`all() || a == "1"`, `all()`},
		{`b == "1" && a == "1"`, `a == "1" && b == "1"`},
		{`a == "1" && a == "1"`, `a == "1"`},
		{`((a == "1"))`, `a == "1"`},
		{`a == "1" || b == "1" && c == "1"`, `a == "1" || (b == "1" && c == "1")`},
		{`c == "1" && (b == "1" || a == "1")`, `(a == "1" || b == "1") && c == "1"`},
		{`(a == "1" || b == "1") || c == "1"`, `a == "1" || b == "1" || c == "1"`},
		{`!(b == "1" && a == "1")`, `!(a == "1" && b == "1")`},
		{`!has(a) && !b == "1"`, `!b == "1" && !has(a)`},
		{`tabby:namespace == "ns-1" && ns:team == "x"`, `ns:team == "x" && tabby:namespace == "ns-1"`},
		{`k8s.io/app-name_1 == "v"`, `k8s.io/app-name_1 == "v"`},
		// Keywords are ordinary keys where a key is expected.
		{`has == "x"`, `has == "x"`},
		{`in in {"a"}`, `in in {"a"}`},
		{`not not in {"a"}`, `not not in {"a"}`},
		{`all == "x" && global != "y"`, `all == "x" && global != "y"`},
	}
	for _, c := range cases {
		s, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if s.String() != c.want {
			t.Errorf("Parse(%q) = %s, want %s", c.in, s, c.want)
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Errorf("Parse(%q) of the canonical form: %v", s.String(), err)
			continue
		}
		if again.String() != s.String() || again.ID() != s.ID() {
			t.Errorf("canonical form of %q is not stable: %q -> %q", c.in, s, again)
		}
	}
}

func TestParseEscapesRoundTrip(t *testing.T) {
	// Values holding quotes, backslashes, control bytes and invalid UTF-8 must
	// survive Quote -> Parse: the canonical form relies on it.
	values := []string{"", `"`, `\`, `'`, "a\nb", "tab\there", "\x00\xff", "é\"ü", `\"\\`, "\u2028"}
	for _, v := range values {
		s := Eq("k", v)
		got, err := Parse(s.String())
		if err != nil {
			t.Errorf("Parse(%q): %v", s.String(), err)
			continue
		}
		leaf, ok := got.Root().(*Leaf)
		if !ok || leaf.Value != v {
			t.Errorf("value %q came back as %#v", v, got.Root())
		}
	}
}

func TestParseErrors(t *testing.T) {
	deep := strings.Repeat("(", maxDepth+1) + `a == "1"` + strings.Repeat(")", maxDepth+1)
	cases := []struct {
		in       string
		col      int
		expected string
		found    string
	}{
		{`app = x`, 5, expOperator, "="},
		{`a == "abc`, 10, `closing " of the string starting at column 6`, ""},
		{`a == 'abc`, 10, `closing ' of the string starting at column 6`, ""},
		{`a == "x\`, 9, `closing " of the string starting at column 6`, ""},
		{`a == "x\q"`, 8, `escape sequence (\" \' \\ \n \t \xNN \uNNNN ...)`, `\q`},
		{`a in {"x"`, 10, expSetNext, ""},
		{`a in {"x" "y"}`, 11, expSetNext, `"y"`},
		{`a in {"x",}`, 11, expString, "}"},
		{`a in "x"`, 6, `"{"`, `"x"`},
		{`a == "x" b`, 10, expAfterAll, "b"},
		{`a == "x" )`, 10, expAfterAll, ")"},
		{`a == "x" &&`, 12, expTerm, ""},
		{`a == "x" || `, 13, expTerm, ""},
		{`()`, 2, expTerm, ")"},
		{`)`, 1, expTerm, ")"},
		{`!`, 2, expTerm, ""},
		{`a$b == "x"`, 2, expOperator, "$"},
		{`$a == "x"`, 1, expTerm, "$"},
		{`é == "x"`, 1, expTerm, "é"},
		{`a == "é" b`, 10, expAfterAll, "b"}, // columns count runes, not bytes
		{`a not {"x"}`, 7, `"in"`, "{"},
		{`a not`, 6, `"in"`, ""},
		{`a starts "x"`, 10, `"with"`, `"x"`},
		{`a ends on "x"`, 8, `"with"`, "on"},
		{`a is "x"`, 3, expOperator, "is"},
		{`a`, 2, expOperator, ""},
		{`a == x`, 6, expString, "x"},
		{`a contains`, 11, expString, ""},
		{`has(a`, 6, `")"`, ""},
		{`has()`, 5, expKey, ")"},
		{`has("a")`, 5, expKey, `"a"`},
		{`all(x)`, 5, `")"`, "x"},
		{`foo(a)`, 4, expOperator, "("},
		{`(a == "x"`, 10, expAfterSub, ""},
		{`(a == "x" b)`, 11, expAfterSub, "b"},
		{`has(a) & has(b)`, 8, expAfterAll, "&"},
		{`has(a) | has(b)`, 8, expAfterAll, "|"},
		{deep, maxDepth + 1, "at most 64 nested parentheses", "("},
	}
	for _, c := range cases {
		s, err := Parse(c.in)
		if err == nil {
			t.Errorf("Parse(%q) = %s, want an error", c.in, s)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q): error %T is not a *ParseError", c.in, err)
			continue
		}
		if pe.Input != c.in || pe.Col != c.col || pe.Expected != c.expected || pe.Found != c.found {
			t.Errorf("Parse(%q): got col %d expected %q found %q; want col %d expected %q found %q",
				c.in, pe.Col, pe.Expected, pe.Found, c.col, c.expected, c.found)
		}
	}
}

func TestParseErrorMessage(t *testing.T) {
	_, err := Parse(`app = x`)
	want := `selector "app = x": column 5: expected operator (==, !=, in, not in, contains, starts with, ends with), found "="`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	_, err = Parse(`a ==`)
	if err == nil || !strings.HasSuffix(err.Error(), "found end of input") {
		t.Fatalf("end of input not named: %v", err)
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustParse of a bad selector did not panic")
		}
	}()
	MustParse(`a ==`)
}

func TestLongNegationRunDoesNotRecurse(t *testing.T) {
	// 100k "!" must parse iteratively; an even count cancels.
	s, err := Parse(strings.Repeat("!", 100000) + `has(a)`)
	if err != nil {
		t.Fatal(err)
	}
	if s.String() != `has(a)` {
		t.Fatalf("got %s", s)
	}
}

func BenchmarkParse(b *testing.B) {
	inputs := []string{
		`tabby:kind == "pod" && tabby:namespace == "ns-17" && app == "web-3"`,
		`ns:kubernetes.io/metadata.name in {"prod", "staging", "dev"} && !has(ns:quarantine)`,
		`(role == "db" || role == "cache") && env != "test" && version starts with "v2"`,
		`all()`,
	}
	var n int
	for b.Loop() {
		for _, in := range inputs {
			if _, err := Parse(in); err != nil {
				b.Fatal(err)
			}
		}
		n += len(inputs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "parses/s")
}

// TestRandomSelectorsRoundTrip builds random canonical ASTs with the
// constructors and checks that their String() parses back to the same
// selector; values include quotes, backslashes and control bytes.
func TestRandomSelectorsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	saved := genVals
	defer func() { genVals = saved }()
	genVals = append(append([]string(nil), saved...), `q"uote`, `back\slash`, "new\nline", "it's")
	for i := 0; i < 3000; i++ {
		s := randSelector(rng, 4)
		again, err := Parse(s.String())
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if again.String() != s.String() || again.ID() != s.ID() {
			t.Fatalf("%q reparsed as %q", s, again)
		}
		for j := 0; j < 5; j++ {
			l := randLabelMap(rng)
			if s.Matches(l) != again.Matches(l) {
				t.Fatalf("%q and its reparse disagree on %v", s, l)
			}
		}
	}
}
