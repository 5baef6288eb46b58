// Package trace is the one interpreter of the IR: it runs a packet through
// an ir.Table exactly as netfilter would run it through the same ruleset, and
// explains the outcome in policy terms. Everything that asks "is this packet
// allowed, and why" (the simulator, explain, tests of the compiler) asks it
// here, so the compiled ruleset is the only judge.
//
// In: an *ir.Table (New validates it and builds lookup structures; the
// Tracer is then immutable and safe for concurrent use) and Packets. Out:
// Result — the verdict, every executed rule (Steps), log prefixes, and the
// executed rules that carry an Origin (Decisions) — and, through Explain, a
// per-direction summary with sentences (DirectionDecision.Words).
//
// Semantics, as the kernel (nft_do_chain) has them:
//   - Base chains of a hook run in priority order (ties: table order); accept
//     moves on to the next base chain, drop is final, no base chain: accept.
//   - Rules run in order; all matches must hold; then the counter, the
//     statements in order (mark set, log), then the verdict. jump pushes the
//     return point (at most MaxJumpStack = 16 deep, else *JumpStackError and
//     drop), goto does not; return or the end of a chain goes back to the
//     caller; at the base chain's level the chain's policy decides. A verdict
//     map miss continues with the next rule.
//   - Matches on a field the packet lacks fail whether negated or not: `ip
//     saddr != @s` does not match an IPv6 packet, `th dport` does not match
//     a portless protocol (the tracer does not model reading ICMP bytes as
//     ports, so the compiler must guard th with meta l4proto), `tcp dport`
//     needs protocol tcp, `icmp type` needs protocol 1 and `icmpv6 type` 58.
//   - Sets: interval sets compare per field; a concatenation element
//     matches when every field lies in its range (as the kernel's pipapo).
//
// New refuses (errors.Join of *InvalidTableError, each wrapping one of the
// Err* sentinels) what the kernel would refuse or what has no meaning: jumps
// to unknown or base chains, loops through jumps, gotos and verdict maps
// (ELOOP), unknown sets and maps, set key types that do not fit the matched
// fields, malformed or overlapping interval elements, duplicate names. It
// does not check the kernel's static depth limit; Trace reports the depth a
// packet actually reaches.
//
// What Explain relies on (the compiler's side of the contract):
//   - Every rule that decides carries an Origin: policy rules (Action
//     Allow/Deny/Pass/Log, with Tier and Direction), tier defaults
//     (OriginTierDefault, Action Deny or Pass), the final allow
//     (OriginNoTier) and the conntrack rules (OriginConntrack, no direction).
//   - A rule that jumps from a tier chain into a policy's chain should carry
//     Origin{Kind: OriginPolicyRule, Tier, Direction, Policy, RuleIndex: -1}
//     with Action zero: Explain lists those policies as governing the
//     endpoint when the tier's default decides (policies whose rules ran are
//     found without it, empty policies only through it).
//   - The egress side is entered by a verdict map keyed by iifname, the
//     ingress side by one keyed by oifname; a miss means no policy selects
//     the endpoint in that direction.
//
// Imports: the standard library, compiler/ir and policy. Never compiler/ (it
// must stay independent of the compiler it checks).
package trace
