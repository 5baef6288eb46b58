package ir

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Rendering of set keys and elements, addresses and quoted strings.

// String is a best-effort rendering without the key type: an address, a
// quoted name, or a number. Format renders it for a known type.
func (v Value) String() string {
	switch {
	case v.Addr.IsValid():
		return v.Addr.String()
	case v.Str != "":
		return quote(v.Str, 0)
	}
	return strconv.FormatUint(uint64(v.Num), 10)
}

// Format renders the value as an element of type t.
func (v Value) Format(t KeyType) string {
	switch t {
	case TypeIPv4Addr, TypeIPv6Addr:
		return v.Addr.String()
	case TypeInetProto:
		return ProtoName(uint8(v.Num))
	case TypeInetService:
		return strconv.FormatUint(uint64(v.Num), 10)
	case TypeIfname:
		return quote(v.Str, 0)
	}
	return v.String()
}

// Format renders the key for the given (possibly concatenated) type.
func (k Key) Format(types []KeyType) string {
	parts := make([]string, len(k))
	for i, v := range k {
		parts[i] = v.Format(typeAt(types, i))
	}
	return strings.Join(parts, " . ")
}

func (k Key) String() string { return k.Format(nil) }

// Format renders the element: per field a single value, a prefix when the
// range is exactly one, else `first-last`.
func (e Element) Format(types []KeyType) string {
	if e.End == nil {
		return e.Key.Format(types)
	}
	parts := make([]string, len(e.Key))
	for i, v := range e.Key {
		t := typeAt(types, i)
		var end Value
		if i < len(e.End) {
			end = e.End[i]
		}
		parts[i] = rangeString(v, end, t)
	}
	return strings.Join(parts, " . ")
}

func (e Element) String() string { return e.Format(nil) }

func typeAt(types []KeyType, i int) KeyType {
	if i < len(types) {
		return types[i]
	}
	return 0
}

func rangeString(first, last Value, t KeyType) string {
	if first == last {
		return first.Format(t)
	}
	if first.Addr.IsValid() && last.Addr.IsValid() {
		if p, ok := RangePrefix(first.Addr, last.Addr); ok {
			return prefixString(p)
		}
	}
	return first.Format(t) + "-" + last.Format(t)
}

// RangePrefix returns the prefix that covers exactly [first, last], if any.
func RangePrefix(first, last netip.Addr) (netip.Prefix, bool) {
	if first.BitLen() != last.BitLen() || last.Less(first) {
		return netip.Prefix{}, false
	}
	a, z := first.AsSlice(), last.AsSlice()
	bits := len(a) * 8
	// The prefix length is where first and last start to differ; below it
	// first must be all zeros and last all ones.
	n := 0
	for n < bits && bitAt(a, n) == bitAt(z, n) {
		n++
	}
	for i := n; i < bits; i++ {
		if bitAt(a, i) != 0 || bitAt(z, i) != 1 {
			return netip.Prefix{}, false
		}
	}
	return netip.PrefixFrom(first, n), true
}

func bitAt(b []byte, i int) byte { return b[i/8] >> (7 - i%8) & 1 }

// prefixString prints a host prefix as a bare address, as nft does.
func prefixString(p netip.Prefix) string {
	p = p.Masked()
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// anon renders a one-item list bare and longer lists as an anonymous set.
func anon(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return "{ " + strings.Join(items, ", ") + " }"
}

// quote renders s as an nft quoted string. nft strings have no escapes, so a
// double quote or control character becomes a space; max > 0 truncates to at
// most max bytes on a UTF-8 boundary.
func quote(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if max > 0 && len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return `"` + s + `"`
}
