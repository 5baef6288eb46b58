// Package synth generates synthetic clusters: a normalised policy.Model with
// realistic namespaces, pods, labels, named ports and a mix of policy kinds,
// for benchmarks and randomised tests of the compiler and everything after
// it. Output is a deterministic function of Config (the seed included).
//
// In: Config. Out: *policy.Model, already normalised (reserved label keys,
// tiers in evaluation order, defaults applied), as policy/ would produce it.
// May import: the standard library, policy/, selectors/.
//
// The default Config is the benchmark cluster of the compiler: 10,000 pods
// in 500 namespaces (kube-system first, with the cluster DNS), labels app,
// tier and version on pods and team and env on namespaces, 20% dual-stack,
// named ports by pod tier, 2,000 policies (70% Kubernetes NetworkPolicy
// shapes: default deny, allow from app / namespace / ipBlock with except,
// named ports, egress to DNS; 10% admin and 5% baseline
// ClusterNetworkPolicies with Allow, Deny and Pass; 15% Tabby policies in
// tier "security" with Log, Deny, ICMP and literal networks), 8 network
// sets, and 110 pods on node "node-1". Small(seed) is the same shape at a
// size tests can check exhaustively.
package synth
