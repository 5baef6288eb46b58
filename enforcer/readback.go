package enforcer

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Reading the table back from the kernel: raw dumps of the table's chains,
// sets (anonymous ones included), set elements and rules, decoded into the
// same kernel-level values the writer sends. Expressions are decoded by
// google/nftables; an expression it does not know is kept opaque, so that
// anything foreign in the table shows as drift.

type kChain struct {
	name       string
	base       bool
	hook, prio uint32
	policy     uint32
	typ        string
	udata      []byte
	rules      []kRule
}

type kRule struct {
	handle uint64
	exprs  []any // expr.Any, or *opaque
	udata  []byte
}

type kSet struct {
	name                   string
	flags, keyType, keyLen uint32
	dataType               uint32
	udata                  []byte
	elems                  []kElem
}

type kElem struct {
	key, keyEnd []byte
	end         bool
	verdict     *expr.Verdict
	udata       []byte
}

// opaque is an expression google/nftables does not decode.
type opaque struct {
	name string
	data []byte
}

// kTable is the kernel's view of the table; nil if the table is absent.
type kTable struct {
	chains []*kChain // in kernel order
	sets   map[string]*kSet
}

// body is a message's attributes, after the nfgenmsg header (empty for a
// malformed message: decoding it then finds nothing).
func body(m netlink.Message) []byte {
	if len(m.Data) < 4 {
		return nil
	}
	return m.Data[4:]
}

func newDecoder(b []byte) (*netlink.AttributeDecoder, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	return ad, nil
}

// readTable dumps the whole table.
func readTable(c *conn, table string) (*kTable, error) {
	setMsgs, err := c.dump(unix.NFT_MSG_GETSET, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_SET_TABLE, table)
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, nil // no such table
	}
	if err != nil {
		return nil, err
	}
	t := &kTable{sets: map[string]*kSet{}}
	for _, m := range setMsgs {
		s, err := parseSet(body(m))
		if err != nil {
			return nil, fmt.Errorf("decode set: %w", err)
		}
		t.sets[s.name] = s
	}
	for _, s := range t.sets {
		msgs, err := c.dump(unix.NFT_MSG_GETSETELEM, func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, table)
			ae.String(unix.NFTA_SET_ELEM_LIST_SET, s.name)
		})
		if err != nil {
			return nil, fmt.Errorf("dump elements of %s: %w", s.name, err)
		}
		for _, m := range msgs {
			if err := parseElems(body(m), s); err != nil {
				return nil, fmt.Errorf("decode elements of %s: %w", s.name, err)
			}
		}
	}
	chainMsgs, err := c.dump(unix.NFT_MSG_GETCHAIN, func(*netlink.AttributeEncoder) {})
	if err != nil {
		return nil, err
	}
	byName := map[string]*kChain{}
	for _, m := range chainMsgs {
		ch, tab, err := parseChain(body(m))
		if err != nil {
			return nil, fmt.Errorf("decode chain: %w", err)
		}
		if tab == table && len(m.Data) > 0 && m.Data[0] == familyINet {
			t.chains = append(t.chains, ch)
			byName[ch.name] = ch
		}
	}
	ruleMsgs, err := c.dump(unix.NFT_MSG_GETRULE, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_RULE_TABLE, table)
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, nil // deleted meanwhile
	}
	if err != nil {
		return nil, err
	}
	for _, m := range ruleMsgs {
		chain, r, err := parseRule(body(m))
		if err != nil {
			return nil, fmt.Errorf("decode rule: %w", err)
		}
		ch := byName[chain]
		if ch == nil {
			ch = &kChain{name: chain} // created meanwhile
			byName[chain] = ch
			t.chains = append(t.chains, ch)
		}
		ch.rules = append(ch.rules, r)
	}
	return t, nil
}

func parseChain(b []byte) (*kChain, string, error) {
	ad, err := newDecoder(b)
	if err != nil {
		return nil, "", err
	}
	ch := &kChain{}
	var table string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_CHAIN_TABLE:
			table = ad.String()
		case unix.NFTA_CHAIN_NAME:
			ch.name = ad.String()
		case unix.NFTA_CHAIN_HOOK:
			ch.base = true
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case unix.NFTA_HOOK_HOOKNUM:
						ch.hook = nad.Uint32()
					case unix.NFTA_HOOK_PRIORITY:
						ch.prio = nad.Uint32()
					}
				}
				return nil
			})
		case unix.NFTA_CHAIN_POLICY:
			ch.policy = ad.Uint32()
		case unix.NFTA_CHAIN_TYPE:
			ch.typ = ad.String()
		case nftaChainUserdata:
			ch.udata = ad.Bytes()
		}
	}
	return ch, table, ad.Err()
}

func parseSet(b []byte) (*kSet, error) {
	ad, err := newDecoder(b)
	if err != nil {
		return nil, err
	}
	s := &kSet{}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_NAME:
			s.name = ad.String()
		case unix.NFTA_SET_FLAGS:
			s.flags = ad.Uint32()
		case unix.NFTA_SET_KEY_TYPE:
			s.keyType = ad.Uint32()
		case unix.NFTA_SET_KEY_LEN:
			s.keyLen = ad.Uint32()
		case unix.NFTA_SET_DATA_TYPE:
			s.dataType = ad.Uint32()
		case unix.NFTA_SET_USERDATA:
			s.udata = ad.Bytes()
		}
	}
	return s, ad.Err()
}

func parseElems(b []byte, s *kSet) error {
	ad, err := newDecoder(b)
	if err != nil {
		return err
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(lad *netlink.AttributeDecoder) error {
			for lad.Next() {
				var e kElem
				lad.Nested(func(ead *netlink.AttributeDecoder) error {
					for ead.Next() {
						switch ead.Type() {
						case unix.NFTA_SET_ELEM_FLAGS:
							e.end = ead.Uint32()&unix.NFT_SET_ELEM_INTERVAL_END != 0
						case unix.NFTA_SET_ELEM_KEY:
							e.key = dataValue(ead)
						case nftaSetElemKeyEnd:
							e.keyEnd = dataValue(ead)
						case unix.NFTA_SET_ELEM_DATA:
							e.verdict = dataVerdict(ead)
						case nftaSetElemUserdata:
							e.udata = ead.Bytes()
						}
					}
					return nil
				})
				s.elems = append(s.elems, e)
			}
			return nil
		})
	}
	return ad.Err()
}

func dataValue(ad *netlink.AttributeDecoder) []byte {
	var v []byte
	ad.Nested(func(nad *netlink.AttributeDecoder) error {
		for nad.Next() {
			if nad.Type() == unix.NFTA_DATA_VALUE {
				v = nad.Bytes()
			}
		}
		return nil
	})
	return v
}

func dataVerdict(ad *netlink.AttributeDecoder) *expr.Verdict {
	var v *expr.Verdict
	ad.Nested(func(nad *netlink.AttributeDecoder) error {
		for nad.Next() {
			if nad.Type() != unix.NFTA_DATA_VERDICT {
				continue
			}
			v = &expr.Verdict{}
			nad.Nested(func(vad *netlink.AttributeDecoder) error {
				for vad.Next() {
					switch vad.Type() {
					case unix.NFTA_VERDICT_CODE:
						v.Kind = expr.VerdictKind(int32(vad.Uint32()))
					case unix.NFTA_VERDICT_CHAIN:
						v.Chain = vad.String()
					}
				}
				return nil
			})
		}
		return nil
	})
	return v
}

func parseRule(b []byte) (string, kRule, error) {
	ad, err := newDecoder(b)
	if err != nil {
		return "", kRule{}, err
	}
	var chain string
	var r kRule
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_CHAIN:
			chain = ad.String()
		case unix.NFTA_RULE_HANDLE:
			r.handle = ad.Uint64()
		case unix.NFTA_RULE_USERDATA:
			r.udata = ad.Bytes()
		case unix.NFTA_RULE_EXPRESSIONS:
			ad.Nested(func(lad *netlink.AttributeDecoder) error {
				for lad.Next() {
					lad.Nested(func(ead *netlink.AttributeDecoder) error {
						x, err := parseExpr(ead)
						if err != nil {
							return err
						}
						r.exprs = append(r.exprs, x)
						return nil
					})
				}
				return nil
			})
		}
	}
	return chain, r, ad.Err()
}

func parseExpr(ad *netlink.AttributeDecoder) (any, error) {
	var name string
	var data []byte
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_EXPR_NAME:
			name = ad.String()
		case unix.NFTA_EXPR_DATA:
			data = ad.Bytes()
		}
	}
	var x expr.Any
	switch name {
	case "meta":
		x = &expr.Meta{}
	case "cmp":
		x = &expr.Cmp{}
	case "payload":
		x = &expr.Payload{}
	case "bitwise":
		x = &expr.Bitwise{}
	case "lookup":
		x = &expr.Lookup{}
	case "immediate":
		x = &expr.Immediate{}
	case "counter":
		x = &expr.Counter{}
	case "log":
		x = &expr.Log{}
	case "ct":
		x = &expr.Ct{}
	case "range":
		x = &expr.Range{}
	default:
		return &opaque{name: name, data: data}, nil
	}
	if err := expr.Unmarshal(familyINet, data, x); err != nil {
		return nil, fmt.Errorf("expression %s: %w", name, err)
	}
	// A verdict is an immediate into the verdict register.
	if imm, ok := x.(*expr.Immediate); ok && imm.Register == regVerdict && len(imm.Data) == 0 {
		v := &expr.Verdict{}
		if err := expr.Unmarshal(familyINet, data, v); err != nil {
			return nil, fmt.Errorf("verdict: %w", err)
		}
		return v, nil
	}
	return x, nil
}

// RuleKey names a rule by chain and position (0-based) in the chain, which
// is its index in ir.Chain.Rules of the table last synced.
type RuleKey struct {
	Chain string
	Index int
}

// Counter is a rule's counter as the kernel holds it. Comment is the rule's
// comment (its ir.Origin), Handle the kernel's rule handle.
type Counter struct {
	Packets, Bytes uint64
	Comment        string
	Handle         uint64
}

// Counters reads the counters of every rule that has one, in one dump. Keys
// are positions, so they match the last synced table only while it is what
// the kernel holds (see CheckDrift); the comment identifies the rule's
// origin independently of position.
func (e *Enforcer) Counters() (map[RuleKey]Counter, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	c, err := e.conn()
	if err != nil {
		return nil, fmt.Errorf("enforcer: counters: %w", err)
	}
	msgs, err := c.dump(unix.NFT_MSG_GETRULE, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_RULE_TABLE, e.table)
	})
	e.check(err)
	if errors.Is(err, unix.ENOENT) {
		return map[RuleKey]Counter{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("enforcer: counters: %w", err)
	}
	out := map[RuleKey]Counter{}
	pos := map[string]int{}
	for _, m := range msgs {
		chain, r, err := parseRule(body(m))
		if err != nil {
			return nil, fmt.Errorf("enforcer: counters: %w", err)
		}
		i := pos[chain]
		pos[chain]++
		for _, x := range r.exprs {
			if c, ok := x.(*expr.Counter); ok {
				out[RuleKey{chain, i}] = Counter{Packets: c.Packets, Bytes: c.Bytes, Comment: ruleComment(r.udata), Handle: r.handle}
				break
			}
		}
	}
	return out, nil
}
