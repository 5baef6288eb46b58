package selectors

import (
	"fmt"
	"strconv"
)

// ParseError reports where and why a selector string does not parse.
type ParseError struct {
	Input    string
	Col      int    // 1-based, in runes
	Expected string // what the grammar allows at Col
	Found    string // source text at Col; "" at the end of the input
}

func (e *ParseError) Error() string {
	found := "end of input"
	if e.Found != "" {
		found = strconv.Quote(e.Found)
	}
	return fmt.Sprintf("selector %q: column %d: expected %s, found %s", e.Input, e.Col, e.Expected, found)
}

// maxDepth bounds parenthesis nesting so hostile input cannot drive the
// recursive-descent parser (and the recursive String/Eval of the result)
// arbitrarily deep. Real selectors nest two or three levels.
const maxDepth = 64

// Expected texts, shared by the parser and its tests.
const (
	expTerm     = `selector term (label key, has(), all(), global(), "!" or "(")`
	expOperator = `operator (==, !=, in, not in, contains, starts with, ends with)`
	expString   = `string literal`
	expKey      = `label key`
	expAfterAll = `"&&", "||" or end of input`
	expAfterSub = `"&&", "||" or ")"`
	expSetNext  = `"," or "}"`
)

// Parse parses a selector in Tabby's selector language, a superset of
// Calico's:
//
//	expr    = and { "||" and }
//	and     = unary { "&&" unary }
//	unary   = { "!" } primary
//	primary = "(" expr ")" | "all" "(" ")" | "global" "(" ")" | "has" "(" key ")"
//	        | key ( "==" str | "!=" str | "in" set | "not" "in" set
//	                | "contains" str | "starts" "with" str | "ends" "with" str )
//	set     = "{" [ str { "," str } ] "}"
//
// Keys are runs of [A-Za-z0-9_./:-]; strings are single- or double-quoted with
// backslash escapes. Empty or whitespace-only input is all(), as in Calico.
// The result is canonical: Parse(s.String()) yields s again. Errors are
// *ParseError.
func Parse(s string) (*Selector, error) {
	p := &parser{lx: lexer{in: s}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokEOF {
		return All(), nil
	}
	n, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.unexpected(expAfterAll)
	}
	return newSelector(n), nil
}

// MustParse is Parse for selectors known to be valid (tests, constants); it
// panics on error.
func MustParse(s string) *Selector {
	sel, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return sel
}

type parser struct {
	lx    lexer
	tok   token
	depth int
}

func (p *parser) advance() *ParseError {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) unexpected(expected string) *ParseError {
	return &ParseError{
		Input:    p.lx.in,
		Col:      column(p.lx.in, p.tok.pos),
		Expected: expected,
		Found:    p.tok.text,
	}
}

// expect consumes a token of kind k or fails with expected.
func (p *parser) expect(k tokKind, expected string) (token, *ParseError) {
	if p.tok.kind != k {
		return token{}, p.unexpected(expected)
	}
	t := p.tok
	return t, p.advance()
}

// expectWord consumes the identifier w (a keyword) or fails.
func (p *parser) expectWord(w string) *ParseError {
	if p.tok.kind != tokIdent || p.tok.text != w {
		return p.unexpected(strconv.Quote(w))
	}
	return p.advance()
}

func (p *parser) parseOr() (Node, *ParseError) {
	n, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	nodes := []Node{n}
	for p.tok.kind == tokOr {
		if err := p.advance(); err != nil {
			return nil, err
		}
		n, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	if len(nodes) == 1 {
		return nodes[0], nil
	}
	return OrNode(nodes...), nil
}

func (p *parser) parseAnd() (Node, *ParseError) {
	n, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	nodes := []Node{n}
	for p.tok.kind == tokAnd {
		if err := p.advance(); err != nil {
			return nil, err
		}
		n, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	if len(nodes) == 1 {
		return nodes[0], nil
	}
	return AndNode(nodes...), nil
}

// parseUnary reads a run of "!" iteratively (a long run must not recurse) and
// applies it as at most one NotNode: on canonical nodes double negation is the
// identity.
func (p *parser) parseUnary() (Node, *ParseError) {
	neg := false
	for p.tok.kind == tokNot {
		neg = !neg
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	n, err := p.parsePrimary()
	if err != nil {
		return nil, err
	}
	if neg {
		n = NotNode(n)
	}
	return n, nil
}

func (p *parser) parsePrimary() (Node, *ParseError) {
	switch p.tok.kind {
	case tokLParen:
		if p.depth >= maxDepth {
			return nil, p.unexpected(fmt.Sprintf("at most %d nested parentheses", maxDepth))
		}
		p.depth++
		if err := p.advance(); err != nil {
			return nil, err
		}
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tokRParen, expAfterSub); err != nil {
			return nil, err
		}
		p.depth--
		return n, nil
	case tokIdent:
		name := p.tok
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind == tokLParen {
			switch name.text {
			case "all", "global", "has":
				return p.parseCall(name.text)
			}
		}
		return p.parseComparison(name.text)
	}
	return nil, p.unexpected(expTerm)
}

// parseCall reads the rest of all(), global() or has(key); the current token
// is the "(".
func (p *parser) parseCall(fn string) (Node, *ParseError) {
	if err := p.advance(); err != nil {
		return nil, err
	}
	var n Node
	switch fn {
	case "all":
		n = LeafNode(OpAll, "", "")
	case "global":
		n = LeafNode(OpGlobal, "", "")
	default:
		key, err := p.expect(tokIdent, expKey)
		if err != nil {
			return nil, err
		}
		n = LeafNode(OpHas, key.text, "")
	}
	if _, err := p.expect(tokRParen, `")"`); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *parser) parseComparison(key string) (Node, *ParseError) {
	var op Op
	switch p.tok.kind {
	case tokEq:
		op = OpEq
	case tokNeq:
		op = OpNeq
	case tokIdent:
		switch p.tok.text {
		case "in":
			op = OpIn
		case "not":
			op = OpNotIn
		case "contains":
			op = OpContains
		case "starts":
			op = OpStartsWith
		case "ends":
			op = OpEndsWith
		default:
			return nil, p.unexpected(expOperator)
		}
	default:
		return nil, p.unexpected(expOperator)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	switch op {
	case OpNotIn:
		if err := p.expectWord("in"); err != nil {
			return nil, err
		}
	case OpStartsWith, OpEndsWith:
		if err := p.expectWord("with"); err != nil {
			return nil, err
		}
	}
	if op == OpIn || op == OpNotIn {
		vs, err := p.parseSet()
		if err != nil {
			return nil, err
		}
		return LeafNode(op, key, "", vs...), nil
	}
	v, err := p.expect(tokString, expString)
	if err != nil {
		return nil, err
	}
	return LeafNode(op, key, v.val), nil
}

// parseSet reads {"a", "b"}. The empty set is allowed, as in Calico: `k in {}`
// matches nothing and `k not in {}` everything.
func (p *parser) parseSet() ([]string, *ParseError) {
	if _, err := p.expect(tokLBrace, `"{"`); err != nil {
		return nil, err
	}
	var vs []string
	if p.tok.kind == tokRBrace {
		return vs, p.advance()
	}
	for {
		v, err := p.expect(tokString, expString)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v.val)
		switch p.tok.kind {
		case tokComma:
			if err := p.advance(); err != nil {
				return nil, err
			}
		case tokRBrace:
			return vs, p.advance()
		default:
			return nil, p.unexpected(expSetNext)
		}
	}
}
