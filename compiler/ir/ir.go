// Package ir is the typed nftables intermediate representation that the
// compiler produces, the tracer interprets and the enforcer writes to the
// kernel. Everything is a typed value: no rule is ever built from or parsed
// out of a string. String() renders canonical nft syntax (render.go).
//
// Imports: the standard library and policy/ (for Ref, Action, Direction in
// Origin). Nothing else.
package ir

import (
	"net/netip"

	"github.com/tabbynet/tabby/policy"
)

// Table is one nftables table of family inet. Sets, Maps and Chains are kept
// sorted by name (base chains first, in hook order), so equal tables render
// byte-identically.
type Table struct {
	Name   string
	Sets   []*Set
	Maps   []*Map
	Chains []*Chain
}

// KeyType is an nftables data type usable in set keys.
type KeyType uint8

// Key types.
const (
	TypeIPv4Addr    KeyType = iota + 1 // ipv4_addr
	TypeIPv6Addr                       // ipv6_addr
	TypeInetProto                      // inet_proto
	TypeInetService                    // inet_service
	TypeIfname                         // ifname
)

// Value is one field of a key: Addr for address types, Num for inet_proto and
// inet_service, Str for ifname.
type Value struct {
	Addr netip.Addr
	Num  uint32
	Str  string
}

// Key is a set/map key; more than one Value for concatenated types.
type Key []Value

// Element is one set element. In an interval set End is the inclusive end of a
// range (nil for a single value); elements never overlap.
type Element struct {
	Key Key
	End Key
}

// Set is a named set.
type Set struct {
	Name     string
	Type     []KeyType // len > 1: concatenation
	Interval bool
	Comment  string
	Elements []Element // sorted ascending by key
}

// MapEntry maps a key to a verdict.
type MapEntry struct {
	Key     Key
	Verdict Verdict
}

// Map is a named verdict map.
type Map struct {
	Name    string
	Type    []KeyType
	Comment string
	Entries []MapEntry // sorted ascending by key
}

// Hook is a netfilter hook of a base chain.
type Hook uint8

// Hooks, in render order.
const (
	HookPrerouting Hook = iota + 1
	HookInput
	HookForward
	HookOutput
	HookPostrouting
)

// BaseChain makes a chain a base chain.
type BaseChain struct {
	Hook     Hook
	Priority int         // offset from the "filter" priority (0)
	Policy   VerdictKind // Accept or Drop
}

// Chain is a named chain.
type Chain struct {
	Name    string
	Base    *BaseChain // nil for regular chains
	Comment string
	Rules   []*Rule
}

// VerdictKind is the kind of a verdict.
type VerdictKind uint8

// Verdict kinds. VerdictNone continues with the next rule.
const (
	VerdictNone VerdictKind = iota
	VerdictAccept
	VerdictDrop
	VerdictReturn
	VerdictJump
	VerdictGoto
	VerdictMap // look the packet's MapKey up in Map and apply the entry's verdict
)

// Verdict ends a rule.
type Verdict struct {
	Kind   VerdictKind
	Chain  string // Jump, Goto
	Map    string // VerdictMap
	MapKey Field  // VerdictMap: FieldIIFName or FieldOIFName
}

// Field is a packet field usable in matches and concatenations.
type Field uint8

// Fields.
const (
	FieldIPSaddr  Field = iota + 1 // ip saddr
	FieldIPDaddr                   // ip daddr
	FieldIP6Saddr                  // ip6 saddr
	FieldIP6Daddr                  // ip6 daddr
	FieldL4Proto                   // meta l4proto
	FieldTHSport                   // th sport
	FieldTHDport                   // th dport
	FieldIIFName                   // iifname
	FieldOIFName                   // oifname
)

// Rule is matches (all must hold), then an optional counter, statements in
// order, then the verdict.
type Rule struct {
	Matches []Match
	Counter bool
	Stmts   []Stmt
	Verdict Verdict
	// Origin says why the rule exists; it renders as the rule's comment and is
	// what the tracer reports. nil for plumbing rules.
	Origin *Origin
}

// Match is a typed match expression. The set of implementations is closed
// (the unexported method): the tracer and the enforcer switch over exactly
// the types in this file.
type Match interface {
	String() string
	isMatch()
}

// Stmt is a typed statement (closed set, like Match).
type Stmt interface {
	String() string
	isStmt()
}

// Family is an IP family for meta nfproto.
type Family uint8

// Families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// MatchNfproto is `meta nfproto ipv4|ipv6`.
type MatchNfproto struct{ Family Family }

// CtState is a bit set of conntrack states.
type CtState uint8

// Conntrack states.
const (
	CtNew CtState = 1 << iota
	CtEstablished
	CtRelated
	CtInvalid
	CtUntracked
)

// MatchCtState is `ct state s1,s2` (packet's state in the set).
type MatchCtState struct{ States CtState }

// MatchL4Proto is `meta l4proto p` or `meta l4proto { p1, p2 }`, with != when Negate.
type MatchL4Proto struct {
	Protos []uint8 // sorted
	Negate bool
}

// MatchAddr matches a source or destination address (Field is one of the
// four address fields) against a named set (Set) or an anonymous list of
// prefixes (Prefixes, merged and sorted). Negate renders !=.
type MatchAddr struct {
	Field    Field
	Set      string
	Prefixes []netip.Prefix
	Negate   bool
}

// MatchPort matches `th sport|dport` (Field FieldTHSport/FieldTHDport) against
// ranges. Proto, when set (6, 17, 132), renders as `tcp dport` etc.; the rule
// must then also match that l4proto.
type MatchPort struct {
	Field  Field
	Proto  uint8
	Ranges []policy.PortRange // sorted, non-overlapping
	Negate bool
}

// MatchICMP matches ICMP (V6 false) or ICMPv6 type and optional code. With a
// code and Negate it renders a concatenation so that the pair is negated.
type MatchICMP struct {
	V6     bool
	Type   uint8
	Code   *uint8
	Negate bool
}

// MatchConcat looks a concatenation of fields up in a named set, e.g.
// `ip daddr . meta l4proto . th dport @np-…`.
type MatchConcat struct {
	Fields []Field
	Set    string
	Negate bool
}

// MatchMark is `meta mark & Mask == Value` (!= when Negate).
type MatchMark struct {
	Mask, Value uint32
	Negate      bool
}

// MatchIface is `iifname|oifname "name"` (Field FieldIIFName/FieldOIFName).
type MatchIface struct {
	Field  Field
	Name   string
	Negate bool
}

// StmtSetMark is `meta mark set meta mark & And | Or`.
type StmtSetMark struct{ And, Or uint32 }

// StmtLog is `log prefix "…"`.
type StmtLog struct{ Prefix string }

func (MatchNfproto) isMatch() {}
func (MatchCtState) isMatch() {}
func (MatchL4Proto) isMatch() {}
func (MatchAddr) isMatch()    {}
func (MatchPort) isMatch()    {}
func (MatchICMP) isMatch()    {}
func (MatchConcat) isMatch()  {}
func (MatchMark) isMatch()    {}
func (MatchIface) isMatch()   {}
func (StmtSetMark) isStmt()   {}
func (StmtLog) isStmt()       {}

// OriginKind classifies why a rule exists.
type OriginKind uint8

// Origin kinds.
const (
	OriginPolicyRule  OriginKind = iota + 1 // a rule of a policy
	OriginTierDefault                       // a tier's default action for governed endpoints
	OriginNoTier                            // no tier decided: the final allow
	OriginConntrack                         // the conntrack fast path
)

// Origin links a rule back to the policy model, for the tracer and explain.
type Origin struct {
	Kind      OriginKind
	Tier      string
	Direction policy.Direction
	Policy    policy.Ref // OriginPolicyRule
	RuleIndex int        // OriginPolicyRule: index in the source object's rule list
	RuleName  string
	Action    policy.Action // the decision this rule takes (Allow/Deny/Pass/Log)
}
