package selectors

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tokEOF     tokKind = iota
	tokIdent           // a run of key characters: label keys and keywords
	tokString          // a quoted literal; token.val holds the decoded value
	tokLParen          // (
	tokRParen          // )
	tokLBrace          // {
	tokRBrace          // }
	tokComma           // ,
	tokEq              // ==
	tokNeq             // !=
	tokNot             // !
	tokAnd             // &&
	tokOr              // ||
	tokIllegal         // one rune no token starts with; the parser reports it
)

type token struct {
	kind tokKind
	pos  int    // byte offset of the token in the input
	text string // source text
	val  string // decoded value of a tokString
}

// lexer splits a selector into tokens on demand. It never fails on a stray
// character: that becomes a tokIllegal, so the parser can say what it expected
// there. Only malformed string literals are lexical errors.
type lexer struct {
	in  string
	pos int
}

// isKeyByte reports whether c may appear in a label key. ':' is included so the
// reserved keys (tabby:namespace, ns:team) read like ordinary keys.
func isKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == '/' || c == ':' || c == '-'
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// column converts a byte offset to the 1-based rune column used in errors.
// Invalid UTF-8 bytes count as one column each, as utf8 decoding does.
func column(in string, pos int) int {
	if pos > len(in) {
		pos = len(in)
	}
	return utf8.RuneCountInString(in[:pos]) + 1
}

func (l *lexer) next() (token, *ParseError) {
	for l.pos < len(l.in) && isSpace(l.in[l.pos]) {
		l.pos++
	}
	start := l.pos
	if start >= len(l.in) {
		return token{kind: tokEOF, pos: start}, nil
	}
	c := l.in[start]
	two := func(k tokKind) (token, *ParseError) {
		l.pos += 2
		return token{kind: k, pos: start, text: l.in[start:l.pos]}, nil
	}
	one := func(k tokKind) (token, *ParseError) {
		l.pos++
		return token{kind: k, pos: start, text: l.in[start:l.pos]}, nil
	}
	peek := byte(0)
	if start+1 < len(l.in) {
		peek = l.in[start+1]
	}
	switch {
	case isKeyByte(c):
		end := start
		for end < len(l.in) && isKeyByte(l.in[end]) {
			end++
		}
		l.pos = end
		return token{kind: tokIdent, pos: start, text: l.in[start:end]}, nil
	case c == '"' || c == '\'':
		return l.lexString(start)
	case c == '(':
		return one(tokLParen)
	case c == ')':
		return one(tokRParen)
	case c == '{':
		return one(tokLBrace)
	case c == '}':
		return one(tokRBrace)
	case c == ',':
		return one(tokComma)
	case c == '=' && peek == '=':
		return two(tokEq)
	case c == '!' && peek == '=':
		return two(tokNeq)
	case c == '!':
		return one(tokNot)
	case c == '&' && peek == '&':
		return two(tokAnd)
	case c == '|' && peek == '|':
		return two(tokOr)
	}
	_, size := utf8.DecodeRuneInString(l.in[start:])
	l.pos += size
	return token{kind: tokIllegal, pos: start, text: l.in[start:l.pos]}, nil
}

// lexString reads a literal quoted with ' or ". Besides \" \' and \\ it
// accepts Go's escapes (\n, \xNN, \uNNNN, ...) because Quote renders values
// holding a quote or backslash with strconv.Quote, and the canonical form must
// read back. Bytes outside escapes are copied verbatim, so any value (even
// invalid UTF-8) round-trips.
func (l *lexer) lexString(start int) (token, *ParseError) {
	q := l.in[start]
	var b strings.Builder
	i := start + 1
	for {
		if i >= len(l.in) {
			return token{}, &ParseError{
				Input:    l.in,
				Col:      column(l.in, len(l.in)),
				Expected: fmt.Sprintf("closing %c of the string starting at column %d", q, column(l.in, start)),
			}
		}
		c := l.in[i]
		switch {
		case c == q:
			l.pos = i + 1
			return token{kind: tokString, pos: start, text: l.in[start:l.pos], val: b.String()}, nil
		case c != '\\':
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(l.in) {
			i = len(l.in) // a trailing backslash: the string is unterminated
			continue
		}
		switch n := l.in[i+1]; n {
		case '"', '\'', '\\':
			b.WriteByte(n)
			i += 2
			continue
		}
		// quote 0: \' and \" were handled above; everything else is Go syntax.
		v, multibyte, tail, err := strconv.UnquoteChar(l.in[i:], 0)
		if err != nil {
			_, size := utf8.DecodeRuneInString(l.in[i+1:])
			return token{}, &ParseError{
				Input:    l.in,
				Col:      column(l.in, i),
				Expected: `escape sequence (\" \' \\ \n \t \xNN \uNNNN ...)`,
				Found:    l.in[i : i+1+size],
			}
		}
		if multibyte {
			b.WriteRune(v)
		} else {
			b.WriteByte(byte(v))
		}
		i = len(l.in) - len(tail)
	}
}
