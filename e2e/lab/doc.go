// Package lab builds a real multi-node Tabby cluster out of network
// namespaces on this machine, runs one real `tabby agent` per node and
// measures the connectivity matrix with real packets, so that what
// `tabbyctl policy matrix` predicts (compiler/sim) can be compared with what
// the kernel does. `tabbyctl lab up|probe|down` is its CLI.
//
// # Topology (Config.Name = "tabby-lab", 2 nodes, 3 pods)
//
//	netns tabby-lab-underlay
//	┌──────────────────────────────────────────────────────────────┐
//	│ br0  192.168.254.1/24  (+ fd74:6162:6279::1/64 with IPv6)    │
//	│  ├─ node1 (veth)                        ├─ node2 (veth)      │
//	└──┼──────────────────────────────────────┼────────────────────┘
//	   │                                      │
//	┌──┼───────────────────────────────┐   ┌──┼───────────────────────────────┐
//	│ eth0 192.168.254.11/24           │   │ eth0 192.168.254.12/24           │
//	│ netns tabby-lab-node-1           │   │ netns tabby-lab-node-2           │
//	│ default via 192.168.254.1        │   │ default via 192.168.254.1        │
//	│ 10.0.2.1/32 via 192.168.254.12   │   │ 10.0.1.1/32 via 192.168.254.11   │
//	│ 10.0.1.1/32 dev tab<hash x/a>    │   │ 10.0.1.2/32 via 192.168.254.11   │
//	│ 10.0.1.2/32 dev tab<hash x/b>    │   │ 10.0.2.1/32 dev tab<hash y/a>    │
//	│ tabby agent --node node-1        │   │ tabby agent --node node-2        │
//	│  (table inet tabby, 127.0.0.1:   │   │  (table inet tabby, 127.0.0.1:   │
//	│   9099 /readyz /status)          │   │   9099 /readyz /status)          │
//	└──┼───────────────┼───────────────┘   └──┼───────────────────────────────┘
//	   │ veth          │ veth                 │ veth   (networking.SetupPod:
//	┌──┼──────────┐ ┌──┼──────────┐        ┌──┼──────────┐  routed, gateway
//	│ eth0        │ │ eth0        │        │ eth0        │  169.254.1.1 and
//	│ 10.0.1.1/32 │ │ 10.0.1.2/32 │        │ 10.0.2.1/32 │  fe80::1)
//	│ tabby-lab-  │ │ tabby-lab-  │        │ tabby-lab-  │
//	│  pod-x-a    │ │  pod-x-b    │        │  pod-y-a    │
//	│ lab serve   │ │ lab serve   │        │ lab serve   │
//	└─────────────┘ └─────────────┘        └─────────────┘
//
// Pod traffic between nodes is routed (no encapsulation): every node has one
// route per remote pod IP via that pod's node's underlay address. The host
// side of each pod veth is named compiler.InterfaceName(namespace, pod), the
// name the compiled ruleset dispatches on; the agent finds it from the route
// to the pod IP. Nothing is created in the root namespace or outside
// Config.StateDir; the underlay addresses exist only inside these namespaces.
//
// # Contract
//
// Up(ctx, Config) takes manifests (files or decoded objects) and a node
// count. Pods are placed on spec.nodeName ("node-1".."node-N", anything else
// is a *ConfigError) or round-robin in file order; pods without an address
// get one from their node's pod CIDR (10.244.<node>.0/24). Then it creates:
// the underlay and node namespaces, one namespace per pod (<name>-pod-<ns>-
// <pod>, shortened with a hash when long) wired with networking.SetupPod, one
// detached `tabbyctl lab serve` process per pod with containerPorts, started
// inside the pod namespace (TCP, UDP and SCTP via e2e/probe, banner
// "ns/pod"; it reports readiness on a pipe), the manifests with nodeName
// and IPs filled in at <StateDir>/manifests/lab.yaml, and one detached
// `tabby agent --node node-i` per node started inside the node namespace,
// logging to <StateDir>/logs/. Up returns once every server listens and
// every agent's /readyz answers 200. Everything created is recorded, as it
// is created, in <StateDir>/lab.json, so Open, Lab.Down and Down work from
// another process and after a crash. Up first removes whatever a previous
// lab of the same state directory and name left (Down).
//
// Lab.Probe measures the matrix of compiler/sim (same probe list, same
// types, same writers): every ordered pair of distinct pods x every
// containerPort of the destination, from the source pod's namespace to the
// destination's first address of the source's family, in parallel. A probe
// is allowed when it is answered with the destination's banner; an answer
// from any other pod is an error (the lab is miswired), never a verdict.
// Before measuring, conntrack is flushed in every node: the matrix is about
// new connections, and a UDP probe reusing the source port of an earlier,
// still-tracked flow would otherwise ride on that flow's verdict.
//
// Lab.UpdateManifests replaces the agents' manifests atomically (temp file +
// rename) with new objects, filling in the lab's placement. Pods may change
// labels, arrive or leave. An arriving pod is placed on its spec.nodeName, else
// on the node with the fewest pods, and built before the
// manifests are written: namespace and interface (networking.SetupPod,
// host side compiler.InterfaceName), routes on the other nodes, server,
// state file. A leaving pod is torn down: server stopped, routes removed,
// networking.TeardownPod, namespace deleted. A pod with another node,
// address or set of ports than the lab gave it, or an IPv6 pod in a lab
// built without an IPv6 underlay, is a *PodChangeError, and the lab is left
// as it was. Objects are written sorted, so the same objects give the same
// bytes and an unchanged update writes
// nothing. Lab.WaitSynced then polls every agent's /status, in parallel,
// until a batch that ended after the update has stayed the last one for
// quietPeriod (a batch already running at the write cannot pass for it: the
// batch that saw the write follows within the agent's debounce) with no
// pending interfaces, sync error or object errors.
//
// Down (and Lab.Down) kills the recorded processes with their process
// groups (SIGTERM, then SIGKILL; the start time is checked, so a recycled PID
// is never hit) and any tabby/tabbyctl process still inside one of the
// lab's namespaces, deletes the namespaces recorded
// in the state file and any namespace named <name>-underlay, <name>-node-<n>
// or <name>-pod-<...> (only those), and removes lab.json and the manifests;
// logs stay until the next Up. It is idempotent.
//
// Lab.KillAgent SIGKILLs a node's agent (a crash: the kernel table stays)
// and Lab.StartAgent starts it again exactly as Up does and waits for its
// /readyz: the restart tests' tools.
//
// Errors: *ConfigError for bad input (the CLI's exit code 2),
// *PodChangeError for an update the lab cannot apply, *AgentError for an
// agent that does not become ready or reports problems and *ProcessError
// for a server that does not start (both name the log and quote its tail),
// *MiswiredError, *NoLabError; everything else wraps its cause with %w.
//
// # Imports
//
// Standard library, compiler, compiler/sim, policy, e2e/probe, networking,
// github.com/vishvananda/netlink (underlay links, addresses, routes,
// conntrack), golang.org/x/sys/unix, sigs.k8s.io/yaml and the Kubernetes API
// types. Root is required; the root tests skip without it. Tests also import
// e2e/scenario (the conformance corpus) and github.com/google/nftables, and
// TestMain builds cmd/tabby and cmd/tabbyctl with the go command.
package lab
