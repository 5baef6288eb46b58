// Package compiler turns the normalised policy model (policy.Model) into one
// nftables table (ir.Table, family inet, named "tabby"), either at once
// (Compile) or incrementally (Engine, which Compile is built on, so the two
// cannot disagree). Output is a pure, deterministic function of the model and
// Options: objects sorted by name, elements and entries by key.
//
// In: policy.Tier, policy.Policy, policy.Endpoint, policy.NetworkSet.
// Out: *ir.Table, and per Flush a Delta (sets, map entries and chains added,
// changed or removed) that the enforcer writes as one transaction.
// Imports: the standard library, policy/, selectors/, compiler/ir. Nothing
// that touches the kernel.
//
// # Ruleset layout
//
//	forward (hook forward, priority 0, policy accept)
//	  ct state established,related counter accept        Origin Conntrack
//	  ct state invalid counter drop                      Origin Conntrack
//	  iifname vmap @from-endpoint ───┐  egress of a local source
//	  oifname vmap @to-endpoint ─────┼─┐ ingress of a local destination
//	                                 │ │ (no entry: not governed, accept)
//	map from-endpoint / to-endpoint  │ │ InterfaceName(ns, pod) : jump <profile>
//	                                 ▼ ▼
//	eg-<hash> / in-<hash>   profile chain, shared by endpoints with the same
//	  meta mark set meta mark & 0xfffcffff                 governing tiers
//	  jump tier-<hash> ──────────────┐   (one block per governing tier,
//	  meta mark & 0x00010000 == 0x00010000 return    in Model.Tiers order)
//	  meta mark set meta mark & 0xfffdffff
//	  ...
//	  counter return                                     Origin NoTier
//	                                 ▼
//	tier-<hash>             tier chain, shared by endpoints governed by the
//	  jump knp/x/allow-web/ingress ──┐  same policies of that tier
//	  meta mark & 0x00030000 != 0x00000000 return   (one block per policy,
//	  ...                            │   by Order, then Ref)
//	  counter drop  |  counter meta mark set meta mark | 0x00020000 return
//	                                 ▼                   Origin TierDefault
//	knp/<ns>/<name>/<dir>   policy chain, one per (policy, direction)
//	cnp/<name>/<dir>  tnp/<ns>/<name>/<dir>  gnp/<name>/<dir>
//	  <matches> counter meta mark set meta mark | 0x00010000 return   Allow
//	  <matches> counter drop                                          Deny
//	  <matches> counter meta mark set meta mark | 0x00020000 return   Pass
//	  <matches> counter log prefix "..."                              Log
//
// The mark bit 0x10000 means "allowed by this tier" and 0x20000 "passed to
// the next tier"; the profile chain clears both on entry and the pass bit
// after each tier. An allowed egress returns to forward so that the ingress
// of a local destination is still checked. Host<->pod traffic (input and
// output hooks) is never policed.
//
// # Sets
//
//   - sel-<selector ID>-v4|v6: interval set of the addresses of every
//     endpoint (local or not) and the networks of every network set a peer
//     selector matches, merged into disjoint, non-adjacent ranges. A
//     NotSelector uses the same set with !=. The set exists (maybe empty)
//     whenever a rule names the selector, so chains never depend on
//     membership.
//   - net-<hash>-v4|v6: literal networks (Nets, NotNets). A rule's networks
//     of one family, merged into the minimal prefix list, stay inline as an
//     anonymous set when there are at most 8 prefixes, and go to a named
//     interval set, shared by all rules with the same list, above that.
//   - np-<hash>-v4|v6: (address . l4proto . port) of the named ports of the
//     endpoints on the destination side: for an ingress rule those the
//     policy's Subject selects, for an egress rule those the peer selector
//     selects (all endpoints without one). Matched as
//     `ip daddr . meta l4proto . th dport @np-...`.
//
// Numeric ports and named ports of one rule are alternatives: the rule
// renders once per alternative. A rule matching addresses renders once per
// family it can match (under `meta nfproto`); numeric ports without a
// protocol are guarded by `meta l4proto { tcp, udp, sctp }`. When a named-port
// set is built from the peer's own selector, the sel-* match of that side is
// left out (the np-* set implies it). Named ports on a Source (Tabby policy
// only) are resolved the same way on the source side: the source endpoint's
// declared ports, matched against `saddr . l4proto . th sport`.
//
// Jumps from a tier chain into a policy chain carry an Origin naming the
// policy (RuleIndex -1, no Action), so explain can list governing policies
// whose rules never ran.
//
// # What is emitted
//
// Only local endpoints get map entries, and only chains reachable from a map
// entry exist (and only the sets those chains use). So churn of remote pods
// changes set elements only; churn of local pods adds or removes map entries
// and, when their governing policy list is new, profile and tier chains.
// Policy chains change only when their policy does.
//
// # Incremental engine
//
// Two selectors.Index instances drive everything: one evaluates policy
// subjects against local endpoints (governance), the other the selectors of
// existing sets against all endpoints and network sets (membership). Their
// events mark endpoints for regovernance and queue per-set element changes;
// Flush re-merges only the touched region of each dirty set, rebuilds the
// profile of only the marked endpoints, and re-renders only changed policies.
// Chains and sets are reference counted (endpoint -> profile -> tier ->
// policy -> set). Published objects are never modified: a change makes a new
// object, so a Table returned earlier stays valid.
package compiler
