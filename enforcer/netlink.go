package enforcer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/compiler/ir"
)

// The transaction layer. google/nftables encodes every expression, datatype
// and userdata TLV; the messages around them are built here because the
// pinned google/nftables cannot give a chain a comment (no
// NFTA_CHAIN_USERDATA) and echoes every added rule back (NLM_F_ECHO), which
// doubles the traffic of a full program. A batch is sent with one sendmsg:
// the kernel applies all of it or none of it.

const familyINet = unix.NFPROTO_INET

// maxElemBytes bounds the element list of one message: the nested
// attribute's length is 16 bits.
const maxElemBytes = 60000

// replyTimeout bounds the wait for the kernel's answer to a transaction.
const replyTimeout = 60 * time.Second

func msgType(t int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | t)
}

// batch accumulates the messages of one transaction.
type batch struct {
	table string
	msgs  []netlink.Message
	ops   []string // what each message does, for errors
	ids   uint32   // transaction-local set IDs
	err   error    // first encoding error
	bytes int
}

func newBatch(table string) *batch { return &batch{table: table} }

func (b *batch) empty() bool { return len(b.msgs) == 0 }

func (b *batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// put appends one message built by fill.
func (b *batch) put(t int, flags netlink.HeaderFlags, op string, fill func(ae *netlink.AttributeEncoder)) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	fill(ae)
	data, err := ae.Encode()
	if err != nil {
		b.fail(fmt.Errorf("%s: %w", op, err))
		return
	}
	// nfgenmsg: family, version 0, resource id 0.
	data = append([]byte{familyINet, unix.NFNETLINK_V0, 0, 0}, data...)
	b.msgs = append(b.msgs, netlink.Message{Header: netlink.Header{Type: msgType(t), Flags: netlink.Request | flags}, Data: data})
	b.ops = append(b.ops, op)
	b.bytes += len(data) + unix.NLMSG_HDRLEN
}

func (b *batch) addTable() {
	b.put(unix.NFT_MSG_NEWTABLE, netlink.Create, "add table "+b.table, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_TABLE_NAME, b.table)
		ae.Uint32(unix.NFTA_TABLE_FLAGS, 0)
	})
}

func (b *batch) delTable() {
	b.put(unix.NFT_MSG_DELTABLE, 0, "delete table "+b.table, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_TABLE_NAME, b.table)
	})
}

func hookNum(h ir.Hook) (uint32, error) {
	switch h {
	case ir.HookPrerouting:
		return unix.NF_INET_PRE_ROUTING, nil
	case ir.HookInput:
		return unix.NF_INET_LOCAL_IN, nil
	case ir.HookForward:
		return unix.NF_INET_FORWARD, nil
	case ir.HookOutput:
		return unix.NF_INET_LOCAL_OUT, nil
	case ir.HookPostrouting:
		return unix.NF_INET_POST_ROUTING, nil
	}
	return 0, invalidf("unknown hook %d", h)
}

func chainPolicy(v ir.VerdictKind) (uint32, error) {
	switch v {
	case ir.VerdictAccept:
		return nfAccept, nil
	case ir.VerdictDrop:
		return nfDrop, nil
	}
	return 0, invalidf("base chain policy must be accept or drop, not %s", v)
}

// addChain creates a chain (empty).
func (b *batch) addChain(c *ir.Chain) {
	var hook, policy uint32
	if c.Base != nil {
		var err error
		if hook, err = hookNum(c.Base.Hook); err != nil {
			b.fail(fmt.Errorf("chain %s: %w", c.Name, err))
			return
		}
		if policy, err = chainPolicy(c.Base.Policy); err != nil {
			b.fail(fmt.Errorf("chain %s: %w", c.Name, err))
			return
		}
	}
	b.put(unix.NFT_MSG_NEWCHAIN, netlink.Create, "add chain "+c.Name, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_CHAIN_TABLE, b.table)
		ae.String(unix.NFTA_CHAIN_NAME, c.Name)
		if c.Base != nil {
			ae.Nested(unix.NFTA_CHAIN_HOOK, func(nae *netlink.AttributeEncoder) error {
				nae.Uint32(unix.NFTA_HOOK_HOOKNUM, hook)
				nae.Uint32(unix.NFTA_HOOK_PRIORITY, uint32(int32(c.Base.Priority)))
				return nil
			})
			ae.Uint32(unix.NFTA_CHAIN_POLICY, policy)
			ae.String(unix.NFTA_CHAIN_TYPE, "filter")
		}
		if ud := chainUdata(c); ud != nil {
			ae.Bytes(nftaChainUserdata, ud)
		}
	})
}

// flushChain deletes every rule of a chain.
func (b *batch) flushChain(name string) {
	b.put(unix.NFT_MSG_DELRULE, 0, "flush chain "+name, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_RULE_TABLE, b.table)
		ae.String(unix.NFTA_RULE_CHAIN, name)
	})
}

func (b *batch) delChain(name string) {
	b.put(unix.NFT_MSG_DELCHAIN, 0, "delete chain "+name, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_CHAIN_TABLE, b.table)
		ae.String(unix.NFTA_CHAIN_NAME, name)
	})
}

// addSet creates a set or map and returns its transaction ID.
func (b *batch) addSet(d *setDef) uint32 {
	b.ids++
	id := b.ids
	name := d.name
	if d.anon {
		name = "__set%d"
	}
	b.put(unix.NFT_MSG_NEWSET, netlink.Create, "add set "+name, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_SET_TABLE, b.table)
		ae.String(unix.NFTA_SET_NAME, name)
		ae.Uint32(unix.NFTA_SET_FLAGS, d.flags())
		ae.Uint32(unix.NFTA_SET_KEY_TYPE, d.keyType)
		ae.Uint32(unix.NFTA_SET_KEY_LEN, d.keyLen)
		if d.isMap {
			ae.Uint32(unix.NFTA_SET_DATA_TYPE, unix.NFT_DATA_VERDICT)
			ae.Uint32(unix.NFTA_SET_DATA_LEN, 0)
		}
		ae.Uint32(unix.NFTA_SET_ID, id)
		// Field lengths go only with interval concatenations (pipapo): the
		// kernel refuses them on other sets.
		fields := d.interval && d.concat()
		if d.size > 0 || fields {
			ae.Nested(unix.NFTA_SET_DESC, func(nae *netlink.AttributeEncoder) error {
				if d.size > 0 {
					nae.Uint32(unix.NFTA_SET_DESC_SIZE, d.size)
				}
				if fields {
					nae.Nested(nftaSetDescConcat, func(cae *netlink.AttributeEncoder) error {
						for _, n := range d.fieldLens {
							cae.Nested(unix.NFTA_LIST_ELEM, func(fae *netlink.AttributeEncoder) error {
								fae.Uint32(nftaSetFieldLen, n)
								return nil
							})
						}
						return nil
					})
				}
				return nil
			})
		}
		ae.Bytes(unix.NFTA_SET_USERDATA, d.udata())
	})
	return id
}

func (b *batch) delSet(name string) {
	b.put(unix.NFT_MSG_DELSET, 0, "delete set "+name, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_SET_TABLE, b.table)
		ae.String(unix.NFTA_SET_NAME, name)
	})
}

// elements adds (add) or deletes elements of a set, in messages of at most
// maxElemBytes of elements. id is the set's transaction ID (0 for a set that
// already exists).
func (b *batch) elements(d *setDef, id uint32, add bool, es []elem) {
	t, verb := unix.NFT_MSG_NEWSETELEM, "add"
	var flags netlink.HeaderFlags = netlink.Create
	if !add {
		t, verb, flags = unix.NFT_MSG_DELSETELEM, "delete", 0
	}
	name := d.name
	if d.anon {
		name = "__set%d"
	}
	op := fmt.Sprintf("%s elements of set %s", verb, name)
	for len(es) > 0 {
		var chunk [][]byte
		size := 0
		for len(es) > 0 && size < maxElemBytes {
			enc, err := encodeElem(es[0])
			if err != nil {
				b.fail(fmt.Errorf("%s: %w", op, err))
				return
			}
			chunk = append(chunk, enc)
			size += len(enc) + unix.NLA_HDRLEN
			es = es[1:]
		}
		b.put(t, flags, op, func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, b.table)
			ae.String(unix.NFTA_SET_ELEM_LIST_SET, name)
			if id != 0 {
				ae.Uint32(unix.NFTA_SET_ELEM_LIST_SET_ID, id)
			}
			ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(lae *netlink.AttributeEncoder) error {
				for _, enc := range chunk {
					lae.Do(unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM, func() ([]byte, error) { return enc, nil })
				}
				return nil
			})
		})
	}
}

// udata is the set's userdata: key byte order and comment, as nft writes.
func (d *setDef) udata() []byte {
	ud := userdata.AppendUint32(nil, userdata.NFTNL_UDATA_SET_KEYBYTEORDER, d.byteorder)
	if d.comment != "" {
		ud = userdata.AppendString(ud, userdata.NFTNL_UDATA_SET_COMMENT, d.comment)
	}
	return ud
}

// chainUdata is the chain's userdata: its comment.
func chainUdata(c *ir.Chain) []byte {
	if c.Comment == "" {
		return nil
	}
	return userdata.AppendString(nil, userdata.TypeComment, sanitize(c.Comment, ir.MaxCommentLen))
}

// elemUdata is an element's userdata: nft marks an interval open to the
// top of the type.
func (e *elem) udata() []byte {
	if !e.open {
		return nil
	}
	return userdata.AppendUint32(nil, userdata.NFTNL_UDATA_SET_ELEM_FLAGS, userdata.NFTNL_UDATA_SET_ELEM_F_INTERVAL_OPEN)
}

func encodeElem(e elem) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	value := func(t uint16, v []byte) {
		ae.Nested(t, func(nae *netlink.AttributeEncoder) error {
			nae.Bytes(unix.NFTA_DATA_VALUE, v)
			return nil
		})
	}
	if e.end {
		ae.Uint32(unix.NFTA_SET_ELEM_FLAGS, unix.NFT_SET_ELEM_INTERVAL_END)
	}
	value(unix.NFTA_SET_ELEM_KEY, e.key)
	if e.keyEnd != nil {
		value(nftaSetElemKeyEnd, e.keyEnd)
	}
	if e.verdict != nil {
		ae.Nested(unix.NFTA_SET_ELEM_DATA, func(dae *netlink.AttributeEncoder) error {
			dae.Nested(unix.NFTA_DATA_VERDICT, func(vae *netlink.AttributeEncoder) error {
				vae.Uint32(unix.NFTA_VERDICT_CODE, uint32(int32(e.verdict.Kind)))
				if e.verdict.Chain != "" {
					vae.String(unix.NFTA_VERDICT_CHAIN, e.verdict.Chain)
				}
				return nil
			})
			return nil
		})
	}
	if ud := e.udata(); ud != nil {
		ae.Bytes(nftaSetElemUserdata, ud)
	}
	return ae.Encode()
}

// addRule appends an encoded rule to a chain, creating its anonymous sets
// first.
func (b *batch) addRule(chain string, r encodedRule) {
	for _, a := range r.anons {
		id := b.addSet(&a.def)
		b.elements(&a.def, id, true, a.elems)
		a.lookup.SetName, a.lookup.SetID = "__set%d", id
	}
	exprs := make([][]byte, len(r.exprs))
	for i, x := range r.exprs {
		enc, err := expr.Marshal(familyINet, x)
		if err != nil {
			b.fail(fmt.Errorf("rule in chain %s: %w", chain, err))
			return
		}
		exprs[i] = enc
	}
	b.put(unix.NFT_MSG_NEWRULE, netlink.Create|netlink.Append, "add rule to chain "+chain, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_RULE_TABLE, b.table)
		ae.String(unix.NFTA_RULE_CHAIN, chain)
		ae.Nested(unix.NFTA_RULE_EXPRESSIONS, func(lae *netlink.AttributeEncoder) error {
			for _, enc := range exprs {
				lae.Do(unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM, func() ([]byte, error) { return enc, nil })
			}
			return nil
		})
		if r.udata != nil {
			ae.Bytes(unix.NFTA_RULE_USERDATA, r.udata)
		}
	})
}

// conn is a netlink socket in the target namespace.
type conn struct {
	nl     *netlink.Conn
	sndbuf int
}

func dial(netnsFd int) (*conn, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFd})
	if err != nil {
		return nil, fmt.Errorf("%w: dial netlink: %w", ErrTransport, err)
	}
	// Kernel error strings (mdlayher mis-parses capped acks: not capped).
	_ = nl.SetOption(netlink.ExtendedAcknowledge, true)
	return &conn{nl: nl}, nil
}

func (c *conn) close() error { return c.nl.Close() }

// commit sends the batch as one transaction and waits for the kernel's
// verdict. It returns the ruleset generation after the transaction. A
// *KernelError (wrapping ErrKernel) means the kernel applied nothing; any
// other error (ErrTransport) leaves the outcome unknown.
//
// Messages carry no ACK flag, so a successful transaction sends nothing
// back but the opener's echo; errors come back as NLMSG_ERROR, one per
// refused message. A GETGEN request sent after the batch marks the end of
// the batch's replies.
func (c *conn) commit(b *batch) (uint32, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.empty() {
		return c.generation(nil, nil)
	}
	// The batch opens with an "add table" (a no-op: the table exists or is
	// created anyway) that carries NLM_F_ECHO: the kernel reports the
	// generation our commit creates to the sender of the batch's first
	// message, echoing that message too, which must therefore be small
	// (echoed element messages come back one reply per element).
	opener := newBatch(b.table)
	opener.addTable()
	hdr := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}
	msgs := make([]netlink.Message, 0, len(b.msgs)+3)
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request}, Data: hdr})
	msgs = append(msgs, opener.msgs[0])
	msgs[1].Header.Flags |= netlink.Echo
	msgs = append(msgs, b.msgs...)
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request}, Data: hdr})
	// The whole batch is one datagram: the socket buffer must hold it.
	if need := b.bytes + 64<<10; need > c.sndbuf {
		if err := c.nl.SetWriteBuffer(need); err != nil {
			return 0, fmt.Errorf("%w: set write buffer: %w", ErrTransport, err)
		}
		c.sndbuf = need
	}
	sent, err := c.nl.SendMessages(msgs)
	if err != nil {
		return 0, fmt.Errorf("%w: send batch: %w", ErrTransport, err)
	}
	ops := make(map[uint32]string, len(sent))
	for i := 2; i < len(sent)-1; i++ {
		ops[sent[i].Header.Sequence] = b.ops[i-2]
	}
	// Errors on the batch begin and end or the opener are about the
	// transaction as a whole.
	for _, i := range []int{0, 1, len(sent) - 1} {
		ops[sent[i].Header.Sequence] = "commit"
	}
	var kerrs []error
	var committed uint32 // the generation our commit created, echoed back
	gen, err := c.generation(func(oe *netlink.OpError) {
		if op, ok := ops[oe.Sequence]; ok { // not a stale reply
			kerrs = append(kerrs, &KernelError{Op: op, Message: oe.Message, Err: oe.Err})
		}
	}, func(seq, gen uint32) {
		if seq == sent[1].Header.Sequence {
			committed = gen
		}
	})
	if err != nil {
		return 0, err
	}
	if len(kerrs) > 0 {
		return 0, errors.Join(kerrs...)
	}
	if committed != 0 {
		// Exactly ours: GETGEN could already see a later commit by someone
		// else.
		return committed, nil
	}
	return gen, nil
}

// generation asks for the ruleset generation and reads replies until the
// answer, passing any error reply to a request sent before to onErr, and
// generation messages other than the answer to onGen.
func (c *conn) generation(onErr func(*netlink.OpError), onGen func(seq, gen uint32)) (uint32, error) {
	req := netlink.Message{Header: netlink.Header{Type: msgType(unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}}
	sent, err := c.nl.Send(req)
	if err != nil {
		return 0, fmt.Errorf("%w: send getgen: %w", ErrTransport, err)
	}
	if err := c.nl.SetReadDeadline(time.Now().Add(replyTimeout)); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrTransport, err)
	}
	defer func() { _ = c.nl.SetReadDeadline(time.Time{}) }()
	for {
		replies, err := c.nl.Receive()
		if err != nil {
			var oe *netlink.OpError
			if errors.As(err, &oe) && oe.Sequence != 0 && oe.Sequence != sent.Header.Sequence {
				if onErr != nil {
					onErr(oe)
				}
				continue
			}
			return 0, fmt.Errorf("%w: receive: %w", ErrTransport, err)
		}
		for _, m := range replies {
			if m.Header.Type != msgType(unix.NFT_MSG_NEWGEN) {
				continue
			}
			gen, err := genID(m)
			if err != nil {
				return 0, fmt.Errorf("%w: decode generation: %w", ErrTransport, err)
			}
			if m.Header.Sequence == sent.Header.Sequence {
				return gen, nil
			}
			if onGen != nil {
				onGen(m.Header.Sequence, gen)
			}
		}
	}
}

func genID(m netlink.Message) (uint32, error) {
	ad, err := newDecoder(body(m))
	if err != nil {
		return 0, err
	}
	var gen uint32
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			gen = ad.Uint32()
		}
	}
	return gen, ad.Err()
}

// dump runs a dump request (family inet) and returns the replies. ENOENT
// (no such table or set) is returned as is for the caller to interpret.
func (c *conn) dump(t int, fill func(ae *netlink.AttributeEncoder)) ([]netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	fill(ae)
	data, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	req := netlink.Message{Header: netlink.Header{Type: msgType(t), Flags: netlink.Request | netlink.Dump},
		Data: append([]byte{familyINet, unix.NFNETLINK_V0, 0, 0}, data...)}
	if err := c.nl.SetReadDeadline(time.Now().Add(replyTimeout)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTransport, err)
	}
	defer func() { _ = c.nl.SetReadDeadline(time.Time{}) }()
	msgs, err := c.nl.Execute(req)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: dump: %w", ErrTransport, err)
	}
	return msgs, nil
}

// Netlink constants golang.org/x/sys/unix lacks (include/uapi/linux/netfilter*.h).
const (
	nfDrop              = 0  // NF_DROP
	nfAccept            = 1  // NF_ACCEPT
	nftaChainUserdata   = 12 // NFTA_CHAIN_USERDATA
	nftaSetDescConcat   = 2  // NFTA_SET_DESC_CONCAT
	nftaSetFieldLen     = 1  // NFTA_SET_FIELD_LEN
	nftaSetElemKeyEnd   = 10 // NFTA_SET_ELEM_KEY_END
	nftaSetElemUserdata = 6  // NFTA_SET_ELEM_USERDATA
)
