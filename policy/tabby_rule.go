package policy

// Normalisation of one tabby.dev rule: action, protocols, ICMP, IP family and
// the log prefix. The two sides (source, destination) are in tabby_entity.go.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"

	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
)

// tabbyProtoUDPLite has no constant in model.go: nothing but Tabby policy names it.
const tabbyProtoUDPLite Protocol = 136

// tabbyProtocolNames are the protocol names a rule may use, case-sensitive as
// in Calico's v3 API.
var tabbyProtocolNames = map[string]Protocol{
	"TCP":     ProtoTCP,
	"UDP":     ProtoUDP,
	"SCTP":    ProtoSCTP,
	"ICMP":    ProtoICMP,
	"ICMPv6":  ProtoICMPv6,
	"UDPLite": tabbyProtoUDPLite,
}

// tabbyLogPrefixMax is the longest prefix nftables' log statement takes
// (NF_LOG_PREFIXLEN is 128 with the terminating NUL).
const tabbyLogPrefixMax = 127

// tabbyRuleCtx carries what every rule of one policy needs.
type tabbyRuleCtx struct {
	errs        *tabbyErrs
	namespace   string // "" for a GlobalNetworkPolicy
	logIdentity string
}

// rule normalises rules[i] of direction d at field path f. ok is false when
// the rule had errors (they are in r.errs).
func (r *tabbyRuleCtx) rule(f string, d Direction, i int, in *tabbyv1.Rule) (Rule, bool) {
	e := r.errs
	before := len(e.errs)
	out := Rule{Index: i}

	switch in.Action {
	case tabbyv1.Allow:
		out.Action = ActionAllow
	case tabbyv1.Deny:
		out.Action = ActionDeny
	case tabbyv1.Pass:
		out.Action = ActionPass
	case tabbyv1.Log:
		out.Action = ActionLog
		out.LogPrefix = tabbyLogPrefix(r.logIdentity, d, i)
	case "":
		e.add(f+".action", "is required (Allow, Deny, Pass or Log)")
	default:
		e.addf(f+".action", "%q is not Allow, Deny, Pass or Log", in.Action)
	}

	out.Protocol = tabbyProtocol(e, f+".protocol", in.Protocol)
	out.NotProtocol = tabbyProtocol(e, f+".notProtocol", in.NotProtocol)
	if out.Protocol != ProtoAny && out.Protocol == out.NotProtocol {
		e.addf(f+".notProtocol", "equals protocol %s: the rule could never match", out.Protocol)
	}

	// ICMP and ICMPv6 exist in one IP family each, so the protocol implies
	// the family; an explicit ipVersion must agree with it.
	implied := 0
	switch out.Protocol {
	case ProtoICMP:
		implied = 4
	case ProtoICMPv6:
		implied = 6
	}
	out.IPFamily = implied
	if in.IPVersion != nil {
		switch v := *in.IPVersion; {
		case v != 4 && v != 6:
			e.addf(f+".ipVersion", "%d is not 4 or 6", v)
		case implied != 0 && v != implied:
			e.addf(f+".ipVersion", "%d contradicts protocol %s, which is IPv%d only", v, out.Protocol, implied)
		default:
			out.IPFamily = v
		}
	}

	out.ICMP = tabbyICMP(e, f+".icmp", in.ICMP, out.Protocol)
	out.NotICMP = tabbyICMP(e, f+".notICMP", in.NotICMP, out.Protocol)

	out.Source = r.entity(f+".source", &in.Source, out.Protocol, false)
	out.Destination = r.entity(f+".destination", &in.Destination, out.Protocol, true)
	tabbyCheckFamilies(e, f, &out, in.IPVersion != nil)

	return out, len(e.errs) == before
}

// tabbyProtocol resolves a protocol by name or number (1-255); nil is ProtoAny.
func tabbyProtocol(e *tabbyErrs, f string, p *tabbyv1.Protocol) Protocol {
	if p == nil {
		return ProtoAny
	}
	n := p.NumVal
	if p.Type == tabbyv1.FormString {
		if proto, ok := tabbyProtocolNames[p.StrVal]; ok {
			return proto
		}
		// A number written as a string ("6") is still a number.
		v, err := strconv.ParseInt(p.StrVal, 10, 64)
		if err != nil {
			e.addf(f, "unknown protocol %q (want TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or a number 1-255)", p.StrVal)
			return ProtoAny
		}
		n = v
	}
	if n < 1 || n > 255 {
		e.addf(f, "protocol %d is out of range 1-255", n)
		return ProtoAny
	}
	return Protocol(n)
}

// tabbyICMP validates an icmp/notICMP match: it needs protocol ICMP or
// ICMPv6 and a type; code needs type; both are 0-255.
func tabbyICMP(e *tabbyErrs, f string, in *tabbyv1.ICMPFields, proto Protocol) *ICMPMatch {
	if in == nil {
		return nil
	}
	before := len(e.errs)
	if proto != ProtoICMP && proto != ProtoICMPv6 {
		e.add(f, "needs protocol ICMP or ICMPv6")
	}
	if in.Type == nil {
		if in.Code != nil {
			e.add(f+".code", "needs type")
		} else {
			e.add(f+".type", "is required")
		}
	} else if *in.Type < 0 || *in.Type > 255 {
		e.addf(f+".type", "%d is out of range 0-255", *in.Type)
	}
	if in.Code != nil && (*in.Code < 0 || *in.Code > 255) {
		e.addf(f+".code", "%d is out of range 0-255", *in.Code)
	}
	if len(e.errs) != before {
		return nil
	}
	m := &ICMPMatch{Type: uint8(*in.Type)}
	if in.Code != nil {
		c := uint8(*in.Code)
		m.Code = &c
	}
	return m
}

// tabbyCheckFamilies rejects a rule whose nets cannot match in its IP family:
// with a family set (ipVersion or implied by ICMP), each side's nets must hold
// a prefix of that family; without one, the two sides' nets must share a
// family. Mixed families within one list are fine: the compiler splits them.
func tabbyCheckFamilies(e *tabbyErrs, f string, r *Rule, explicit bool) {
	src, dst := tabbyFamilies(r.Source.Nets), tabbyFamilies(r.Destination.Nets)
	if r.IPFamily != 0 {
		why := fmt.Sprintf("ipVersion is %d", r.IPFamily)
		if !explicit {
			why = fmt.Sprintf("protocol %s is IPv%d only", r.Protocol, r.IPFamily)
		}
		for _, side := range []struct {
			name string
			fams tabbyFamilySet
		}{{"source", src}, {"destination", dst}} {
			if side.fams != 0 && !side.fams.has(r.IPFamily) {
				e.addf(f+"."+side.name+".nets", "%s but no network is IPv%d", why, r.IPFamily)
			}
		}
		return
	}
	if src != 0 && dst != 0 && src&dst == 0 {
		e.add(f+".destination.nets", "source.nets and destination.nets share no IP family: the rule could never match")
	}
}

// tabbyFamilySet is a bit set of IP families: 1 for IPv4, 2 for IPv6.
type tabbyFamilySet uint8

func (s tabbyFamilySet) has(family int) bool {
	if family == 4 {
		return s&1 != 0
	}
	return s&2 != 0
}

func tabbyFamilies(nets []netip.Prefix) tabbyFamilySet {
	var s tabbyFamilySet
	for _, p := range nets {
		if p.Addr().Is4() {
			s |= 1
		} else {
			s |= 2
		}
	}
	return s
}

// tabbyLogPrefix is "tabby <ns>/<name> <dir>[<i>]: ", deterministic and short
// enough for nftables. An over-long identity is cut and suffixed with a hash of
// the whole, so two long names still get distinct prefixes.
func tabbyLogPrefix(identity string, d Direction, i int) string {
	tail := fmt.Sprintf(" %s[%d]: ", d, i)
	p := "tabby " + identity + tail
	if len(p) <= tabbyLogPrefixMax {
		return p
	}
	sum := sha256.Sum256([]byte(identity))
	hash := "~" + hex.EncodeToString(sum[:4])
	keep := tabbyLogPrefixMax - len("tabby ") - len(tail) - len(hash)
	return "tabby " + identity[:keep] + hash + tail
}
