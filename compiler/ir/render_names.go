package ir

import (
	"fmt"
	"strconv"
	"strings"
)

// Names of the IR's enumerations as nft prints them.

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

func hasPorts(p uint8) bool { return p == protoTCP || p == protoUDP || p == protoSCTP }

func (k VerdictKind) String() string {
	switch k {
	case VerdictNone:
		return ""
	case VerdictAccept:
		return "accept"
	case VerdictDrop:
		return "drop"
	case VerdictReturn:
		return "return"
	case VerdictJump:
		return "jump"
	case VerdictGoto:
		return "goto"
	case VerdictMap:
		return "vmap"
	}
	return fmt.Sprintf("VerdictKind(%d)", uint8(k))
}

func (f Field) String() string {
	switch f {
	case FieldIPSaddr:
		return "ip saddr"
	case FieldIPDaddr:
		return "ip daddr"
	case FieldIP6Saddr:
		return "ip6 saddr"
	case FieldIP6Daddr:
		return "ip6 daddr"
	case FieldL4Proto:
		return "meta l4proto"
	case FieldTHSport:
		return "th sport"
	case FieldTHDport:
		return "th dport"
	case FieldIIFName:
		return "iifname"
	case FieldOIFName:
		return "oifname"
	}
	return fmt.Sprintf("Field(%d)", uint8(f))
}

func (k KeyType) String() string {
	switch k {
	case TypeIPv4Addr:
		return "ipv4_addr"
	case TypeIPv6Addr:
		return "ipv6_addr"
	case TypeInetProto:
		return "inet_proto"
	case TypeInetService:
		return "inet_service"
	case TypeIfname:
		return "ifname"
	}
	return fmt.Sprintf("KeyType(%d)", uint8(k))
}

func (h Hook) String() string {
	switch h {
	case HookPrerouting:
		return "prerouting"
	case HookInput:
		return "input"
	case HookForward:
		return "forward"
	case HookOutput:
		return "output"
	case HookPostrouting:
		return "postrouting"
	}
	return fmt.Sprintf("Hook(%d)", uint8(h))
}

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// String lists the states in the kernel's bit order, as nft prints them.
func (s CtState) String() string {
	names := []struct {
		bit  CtState
		name string
	}{{CtInvalid, "invalid"}, {CtEstablished, "established"}, {CtRelated, "related"}, {CtNew, "new"}, {CtUntracked, "untracked"}}
	var parts []string
	for _, n := range names {
		if s&n.bit != 0 {
			parts = append(parts, n.name)
		}
	}
	if len(parts) == 0 {
		return "0x0"
	}
	return strings.Join(parts, ",")
}

func (k OriginKind) String() string {
	switch k {
	case OriginPolicyRule:
		return "policy rule"
	case OriginTierDefault:
		return "tier default"
	case OriginNoTier:
		return "no tier"
	case OriginConntrack:
		return "conntrack"
	}
	return fmt.Sprintf("OriginKind(%d)", uint8(k))
}

// String is the rule comment text, e.g.
// `NetworkPolicy x/allow-web ingress[0] Allow`. A policy-rule origin with a
// negative RuleIndex marks the jump into a policy's chain and renders without
// index and action.
func (o *Origin) String() string {
	switch o.Kind {
	case OriginPolicyRule:
		s := fmt.Sprintf("%s %s", o.Policy, o.Direction)
		if o.RuleIndex < 0 {
			return s
		}
		s += fmt.Sprintf("[%d]", o.RuleIndex)
		if o.RuleName != "" {
			s += " (" + o.RuleName + ")"
		}
		return s + " " + o.Action.String()
	case OriginTierDefault:
		return fmt.Sprintf("tier %s %s default %s", o.Tier, o.Direction, o.Action)
	case OriginNoTier:
		return fmt.Sprintf("no tier decided %s %s", o.Direction, o.Action)
	case OriginConntrack:
		return "conntrack " + o.Action.String()
	}
	return o.Kind.String()
}

// ProtoName is how nft prints an IP protocol number.
func ProtoName(p uint8) string {
	switch p {
	case protoICMP:
		return "icmp"
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoICMPv6:
		return "ipv6-icmp"
	case protoSCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// ICMPTypeName is how nft prints an ICMP (v6 false) or ICMPv6 type.
func ICMPTypeName(v6 bool, t uint8) string {
	names := icmpTypes
	if v6 {
		names = icmpv6Types
	}
	if n, ok := names[t]; ok {
		return n
	}
	return strconv.Itoa(int(t))
}

// ICMPCodeName is how nft prints an ICMP (v6 false) or ICMPv6 code.
func ICMPCodeName(v6 bool, c uint8) string {
	names := icmpCodes
	if v6 {
		names = icmpv6Codes
	}
	if n, ok := names[c]; ok {
		return n
	}
	return strconv.Itoa(int(c))
}

// Symbol tables of nftables 1.0.x (icmp_type, icmp_code, icmpv6_type,
// icmpv6_code), as `nft list` prints them.
var (
	icmpTypes = map[uint8]string{
		0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect",
		8: "echo-request", 9: "router-advertisement", 10: "router-solicitation", 11: "time-exceeded",
		12: "parameter-problem", 13: "timestamp-request", 14: "timestamp-reply", 15: "info-request",
		16: "info-reply", 17: "address-mask-request", 18: "address-mask-reply",
	}
	icmpCodes = map[uint8]string{
		0: "net-unreachable", 1: "host-unreachable", 2: "prot-unreachable", 3: "port-unreachable",
		4: "frag-needed", 9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited",
	}
	icmpv6Types = map[uint8]string{
		1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
		128: "echo-request", 129: "echo-reply", 130: "mld-listener-query", 131: "mld-listener-report",
		132: "mld-listener-done", 133: "nd-router-solicit", 134: "nd-router-advert",
		135: "nd-neighbor-solicit", 136: "nd-neighbor-advert", 137: "nd-redirect",
		138: "router-renumbering", 141: "ind-neighbor-solicit", 142: "ind-neighbor-advert",
		143: "mld2-listener-report",
	}
	icmpv6Codes = map[uint8]string{
		0: "no-route", 1: "admin-prohibited", 3: "addr-unreachable", 4: "port-unreachable",
		5: "policy-fail", 6: "reject-route",
	}
)
