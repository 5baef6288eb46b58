package enforcer

import (
	"bytes"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/tabbynet/tabby/compiler/ir"
)

// Set and element encoding, mirroring what nft 1.0.x sends, so that `nft
// list` prints a written set exactly as ir renders it.

// ifnameLen is IFNAMSIZ: ifname keys are NUL-padded to 16 bytes.
const ifnameLen = 16

// Key byte orders of the set userdata (nft's BYTEORDER_*). nft prints ifname
// keys as strings only when the set says host byte order.
const (
	byteorderInvalid = 0
	byteorderHost    = 1
	byteorderBig     = 2
)

// setDef is the kernel definition of a named set, a verdict map or an
// anonymous set.
type setDef struct {
	name      string
	keyType   uint32   // nft datatype magic (concatenations included)
	keyLen    uint32   // bytes, fields padded to 4 in concatenations
	fieldLens []uint32 // per field (unpadded), concatenations only
	interval  bool
	isMap     bool
	anon      bool
	comment   string
	byteorder uint32
	size      uint32 // anonymous sets: number of elements (nft's "size")
}

// concat reports whether the key is a concatenation.
func (d *setDef) concat() bool { return len(d.fieldLens) > 0 }

// flags are the NFT_SET_* flags nft uses for such a set: the CONCAT flag
// only marks interval concatenations (pipapo).
func (d *setDef) flags() uint32 {
	var f uint32
	if d.anon {
		f |= 0x1 | 0x2 // NFT_SET_ANONYMOUS | NFT_SET_CONSTANT
	}
	if d.interval {
		f |= 0x4 // NFT_SET_INTERVAL
	}
	if d.isMap {
		f |= 0x8 // NFT_SET_MAP
	}
	if d.interval && d.concat() {
		f |= 0x80 // NFT_SET_CONCAT
	}
	return f
}

// elem is one kernel set element. A single-field interval is a start element
// plus an end element (end) at last+1, or a start element marked open when
// the range reaches the top of the type; an interval of a concatenation is
// one element with keyEnd (inclusive).
type elem struct {
	key, keyEnd []byte
	end, open   bool
	verdict     *expr.Verdict
}

func datatype(t ir.KeyType) (nftables.SetDatatype, error) {
	switch t {
	case ir.TypeIPv4Addr:
		return nftables.TypeIPAddr, nil
	case ir.TypeIPv6Addr:
		return nftables.TypeIP6Addr, nil
	case ir.TypeInetProto:
		return nftables.TypeInetProto, nil
	case ir.TypeInetService:
		return nftables.TypeInetService, nil
	case ir.TypeIfname:
		return nftables.TypeIFName, nil
	}
	return nftables.TypeInvalid, invalidf("unknown key type %d", t)
}

// newSetDef builds the definition of a key of the given types.
func newSetDef(name string, types []ir.KeyType) (setDef, error) {
	d := setDef{name: name}
	if len(types) == 0 {
		return d, invalidf("set %s has no key type", name)
	}
	dts := make([]nftables.SetDatatype, len(types))
	for i, t := range types {
		dt, err := datatype(t)
		if err != nil {
			return d, fmt.Errorf("set %s: %w", name, err)
		}
		dts[i] = dt
	}
	if len(types) == 1 {
		d.keyType, d.keyLen = dts[0].GetNFTMagic(), dts[0].Bytes
		switch types[0] {
		case ir.TypeIPv4Addr, ir.TypeIPv6Addr, ir.TypeInetService:
			d.byteorder = byteorderBig
		case ir.TypeIfname:
			d.byteorder = byteorderHost
		}
		return d, nil
	}
	ct, err := nftables.ConcatSetType(dts...)
	if err != nil {
		return d, invalidf("set %s: %v", name, err)
	}
	d.keyType, d.keyLen = ct.GetNFTMagic(), ct.Bytes
	for _, dt := range dts {
		d.fieldLens = append(d.fieldLens, dt.Bytes)
	}
	return d, nil
}

// putValue appends v encoded as type t (unpadded).
func putValue(b []byte, v ir.Value, t ir.KeyType) ([]byte, error) {
	switch t {
	case ir.TypeIPv4Addr:
		if !v.Addr.Is4() {
			return b, invalidf("%v is not an IPv4 address", v)
		}
		a := v.Addr.As4()
		return append(b, a[:]...), nil
	case ir.TypeIPv6Addr:
		if !v.Addr.Is6() {
			return b, invalidf("%v is not an IPv6 address", v)
		}
		a := v.Addr.As16()
		return append(b, a[:]...), nil
	case ir.TypeInetProto:
		if v.Num > 0xff {
			return b, invalidf("protocol %d out of range", v.Num)
		}
		return append(b, byte(v.Num)), nil
	case ir.TypeInetService:
		if v.Num > 0xffff {
			return b, invalidf("port %d out of range", v.Num)
		}
		return append(b, byte(v.Num>>8), byte(v.Num)), nil
	case ir.TypeIfname:
		return putIfname(b, v.Str)
	}
	return b, invalidf("unknown key type %d", t)
}

func putIfname(b []byte, name string) ([]byte, error) {
	if name == "" || len(name) >= ifnameLen || bytes.IndexByte([]byte(name), 0) >= 0 {
		return b, invalidf("bad interface name %q", name)
	}
	b = append(b, name...)
	return append(b, make([]byte, ifnameLen-len(name))...), nil
}

// putKey appends a whole key; concatenation fields are padded to 4 bytes.
func putKey(b []byte, k ir.Key, types []ir.KeyType) ([]byte, error) {
	if len(k) != len(types) {
		return b, invalidf("key %v has %d fields, type has %d", k, len(k), len(types))
	}
	var err error
	for i, v := range k {
		start := len(b)
		if b, err = putValue(b, v, types[i]); err != nil {
			return b, err
		}
		if len(types) > 1 {
			for (len(b)-start)%4 != 0 {
				b = append(b, 0)
			}
		}
	}
	return b, nil
}

// elementRange encodes an element as its first and last (inclusive) key.
func elementRange(e ir.Element, types []ir.KeyType, interval bool) (first, last []byte, err error) {
	if first, err = putKey(nil, e.Key, types); err != nil {
		return nil, nil, err
	}
	if e.End == nil {
		return first, first, nil
	}
	if last, err = putKey(nil, e.End, types); err != nil {
		return nil, nil, err
	}
	if bytes.Equal(first, last) {
		return first, first, nil
	}
	if !interval {
		return nil, nil, invalidf("range %s in a set without interval flag", e.Format(types))
	}
	if bytes.Compare(first, last) > 0 && len(types) == 1 {
		return nil, nil, invalidf("empty range %s", e.Format(types))
	}
	return first, last, nil
}

// rangeElems is the kernel encoding of the range [first, last] in a set of
// definition d.
func rangeElems(d *setDef, first, last []byte) []elem {
	switch {
	case !d.interval:
		return []elem{{key: first}}
	case d.concat():
		return []elem{{key: first, keyEnd: last}}
	}
	end, ok := increment(last)
	if !ok {
		return []elem{{key: first, open: true}}
	}
	return []elem{{key: first}, {key: end, end: true}}
}

// increment returns b+1 as a big-endian number; false on overflow.
func increment(b []byte) ([]byte, bool) {
	out := bytes.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return nil, false
}

// elemID identifies an element by its encoded range; the inverse is
// elemsOfID.
func elemID(first, last []byte) string {
	return string(first) + string(last)
}

func elemsOfID(d *setDef, id string) []elem {
	n := len(id) / 2
	return rangeElems(d, []byte(id[:n]), []byte(id[n:]))
}

// verdictOf is the kernel verdict of a map entry.
func verdictOf(v ir.Verdict) (*expr.Verdict, error) {
	switch v.Kind {
	case ir.VerdictAccept:
		return &expr.Verdict{Kind: expr.VerdictAccept}, nil
	case ir.VerdictDrop:
		return &expr.Verdict{Kind: expr.VerdictDrop}, nil
	case ir.VerdictReturn:
		return &expr.Verdict{Kind: expr.VerdictReturn}, nil
	case ir.VerdictJump:
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain}, nil
	case ir.VerdictGoto:
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: v.Chain}, nil
	}
	return nil, invalidf("verdict %q cannot be a map value", v.String())
}

// namedSetDef is the definition of an ir.Set.
func namedSetDef(s *ir.Set) (setDef, error) {
	d, err := newSetDef(s.Name, s.Type)
	if err != nil {
		return d, err
	}
	d.interval = s.Interval
	d.comment = sanitize(s.Comment, ir.MaxCommentLen)
	if d.concat() {
		d.byteorder = byteorderInvalid
	}
	return d, nil
}

// mapDef is the definition of an ir.Map.
func mapDef(m *ir.Map) (setDef, error) {
	d, err := newSetDef(m.Name, m.Type)
	if err != nil {
		return d, err
	}
	d.isMap = true
	d.comment = sanitize(m.Comment, ir.MaxCommentLen)
	return d, nil
}

// setElements encodes the elements of s, keyed by elemID.
func setElements(d *setDef, s *ir.Set) (map[string]struct{}, error) {
	ids := make(map[string]struct{}, len(s.Elements))
	var prev []byte
	for _, e := range s.Elements {
		first, last, err := elementRange(e, s.Type, s.Interval)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
		// The kernel aborts a transaction on overlapping intervals; ir
		// keeps elements sorted, so one pass finds any.
		if d.interval && !d.concat() {
			if prev != nil && bytes.Compare(prev, first) >= 0 {
				return nil, invalidf("set %s: element %s overlaps or is out of order", s.Name, e.Format(s.Type))
			}
			prev = last
		}
		ids[elemID(first, last)] = struct{}{}
	}
	if len(ids) != len(s.Elements) {
		return nil, invalidf("set %s has duplicate elements", s.Name)
	}
	return ids, nil
}

// mapEntries encodes the entries of m: key bytes to verdict.
func mapEntries(m *ir.Map) (map[string]ir.Verdict, error) {
	out := make(map[string]ir.Verdict, len(m.Entries))
	for _, me := range m.Entries {
		k, err := putKey(nil, me.Key, m.Type)
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", m.Name, err)
		}
		if _, dup := out[string(k)]; dup {
			return nil, invalidf("map %s has duplicate key %s", m.Name, me.Key.Format(m.Type))
		}
		if _, err := verdictOf(me.Verdict); err != nil {
			return nil, fmt.Errorf("map %s: %w", m.Name, err)
		}
		out[string(k)] = me.Verdict
	}
	return out, nil
}
