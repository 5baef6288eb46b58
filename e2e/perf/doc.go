// Package perf holds Tabby's end-to-end performance benchmarks, run against
// real kernels in network namespaces (root only; they skip otherwise):
//
//   - BenchmarkChangeToEnforced: a 2-node e2e/lab; a NetworkPolicy flips a
//     probe's verdict 100 times; per change, the latency from the rename
//     of the manifest file to the agent's reported end of Sync (/status
//     lastSync) and to the first probe that sees the new verdict.
//   - BenchmarkThroughput: iperf3 TCP between pods on two nodes with 0,
//     100, 1000 and 2000 NetworkPolicies loaded (skips without iperf3).
//   - BenchmarkAgentRSS: the real agent on e2e/synth's default cluster
//     rendered to Kubernetes objects: resident memory and time to ready.
//   - BenchmarkKubeApplyToEnforced: a 3-node e2e/lab in Kubernetes mode; a
//     NetworkPolicy flips 100 times by server-side apply (the request
//     `kubectl apply --server-side` sends) and 100 times by the real
//     kubectl; per change, from the write to the latest agent's reported
//     end of the Sync that applied it, confirmed by probes to every node.
//   - BenchmarkKubePodToSets: the same lab; 50 pods created through the API
//     (the lab plays kubelet: create, build, status.podIP); per pod, from
//     the create call and from the status write to the latest agent's
//     reported sync that put the IP in its sets, read back from each node's
//     kernel over netlink.
//
// The package's non-test API renders clusters as objects: RenderModel (a
// normalised synth model back to Namespaces, ServiceAccounts and Pods),
// GeneratePolicies (synth-shaped NetworkPolicies over those namespaces)
// (policy.Encode writes them to a manifest file). Percentiles computes the
// reported quantiles.
//
// May import: the standard library, policy/, selectors/, e2e/synth, e2e/lab,
// e2e/probe, the Kubernetes API types and sigs.k8s.io/yaml; the benchmarks
// also compiler (the table's name), e2e/kubetest, client-go,
// github.com/google/nftables and golang.org/x/sys/unix. Benchmarks build
// cmd/tabby and cmd/tabbyctl with the go command; the Kubernetes-mode ones
// need the kube binaries (make kube-tools; skipped without them, failed
// under CI).
package perf
