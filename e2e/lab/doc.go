// Package lab builds a real multi-node Tabby cluster out of network
// namespaces on this machine, runs one real `tabby agent` per node and
// measures the connectivity matrix with real packets, so that what
// `tabbyctl policy matrix` predicts (compiler/sim) can be compared with what
// the kernel does. `tabbyctl lab up|probe|down` is its CLI.
//
// # Topology (Config.Name = "tabby-lab", 2 nodes, 3 pods)
//
//	                          netns tabby-lab-cp (Kubernetes mode only)
//	                          ┌───────────────────────────────────────┐
//	root netns (loopback      │ eth0 192.168.254.2/24                 │
//	 only): `tabbyctl lab     │ kube-apiserver 192.168.254.2:6443     │
//	 forward` 127.0.0.1:P ────┼─▶ (dials from inside this netns)      │
//	 ← kube/admin.kubeconfig  │ etcd 127.0.0.1 (this netns's loopback)│
//	                          └──┼────────────────────────────────────┘
//	netns tabby-lab-underlay     │ veth cp
//	┌────────────────────────────┼─────────────────────────────────┐
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
// # Kubernetes mode (Config.Kubernetes, `lab up --kubernetes`)
//
// The agents read a real API server instead of a manifest file, as the
// DaemonSet's would. Up then also: creates netns <Name>-cp on the underlay
// (192.168.254.2); runs etcd and kube-apiserver (e2e/controlplane, v1.35.4,
// `make kube-tools`) detached inside it, the apiserver on
// https://192.168.254.2:6443, recorded in <StateDir>/kube/controlplane.json;
// starts `tabbyctl lab forward`, a detached relay from a free port on the root
// namespace's 127.0.0.1 (the lab's only footprint there) into that netns, and
// writes <StateDir>/kube/admin.kubeconfig (system:masters) pointing at it, so
// kubectl on the host works while the lab runs; applies from Config.Deploy
// (default deploy/tabby.yaml, found above the working directory or the
// tabbyctl binary: the one file users apply) the Namespace, CRDs (Tabby's and
// the upstream ClusterNetworkPolicy), ServiceAccount, ClusterRole and
// ClusterRoleBinding, nothing else, and waits for the CRDs to be Established;
// registers Node objects node-1..N (InternalIP = underlay address, podCIDR,
// Ready); creates every object through the API (server-side apply, field
// manager tabby-lab; namespaces that objects use but no Namespace declares
// are created bare; containers without an image get PauseImage); then plays
// kubelet: builds each pod (same placement, addresses and wiring as
// standalone) and only then writes its status (podIP(s), hostIP, phase
// Running, ready conditions and containers; field manager tabby-lab-kubelet);
// and starts each agent as `tabby agent --node node-i --kubeconfig
// <StateDir>/kube/agent-node-i.kubeconfig --health-addr 127.0.0.1:9099`, whose
// client certificate names AgentUser in AgentGroups: the agents run with
// exactly deploy's RBAC. Up takes about 6 s (the apiserver's start is most of
// it). <StateDir>/manifests/lab.yaml is then the lab's record of its desired
// state; the agents do not read it.
//
// Changes go through the API. UpdateManifests (and `lab apply`) makes the API
// hold exactly the objects given (of the kinds the agents read, outside
// kube-system, kube-public, kube-node-lease and tabby-system): an object the
// lab wrote and nobody changed since (same resourceVersion) is not written
// again; one changed with kubectl is re-applied; one not given is deleted,
// kubectl-made ones included; a deleted namespace is emptied and finalized
// (no controller manager runs). Lab.Apply(objs...) and Lab.Delete(refs...)
// change only the objects named and leave the rest of the API alone. A pod
// that arrives is created, built, then given its status; one that leaves is
// deleted (grace 0), then torn down (PodWrites tells when the lab began to
// create a pod and to write its status). WaitSynced waits for a batch that
// ended after the last write that changed the API (none: it returns at
// once); it needs that batch to stay the last for only 20 ms instead of
// 100 ms when the agent's /status shows it applied the writes: a sync of a
// change the agent saw after the last write began (lastChangeSeen), with
// the policy, endpoint, local-endpoint and network-set counts of the
// desired state. WaitSyncedAfter(t) waits, with the full quiet period, for
// changes made outside the lab (kubectl, the clients of Lab.Kube).
// Lab.Objects is the lab's desired state; APIObjects
// reads what the API holds, decoded as package policy decodes manifests: the
// input of a prediction after kubectl changes. Lab.Kube gives the admin's
// rest.Config, clientset and dynamic client (they dial from inside the
// control plane's namespace, so they need no forwarder), the host kubeconfig
// and kubectl; Lab.StopAPIServer (SIGKILL) and Lab.StartAPIServer (same port,
// certificates and etcd; waits for /readyz) restart only the apiserver under
// running agents. Lab.StartAPIServerReplica runs a second kube-apiserver on
// the same etcd (APIServerReplicaPort), as an HA control plane has: the
// agents do not know it, but while StopAPIServer has the first one down the
// lab's own API calls (writes, its kubelet's, APIObjects) fail over to it,
// so the cluster can change during an outage of the agents' server;
// StopAPIServerReplica stops it. Open of a Kubernetes-mode lab connects to
// its control plane from the record, so all of this works from another
// process (a replica is recorded, so Down stops it, but such a lab does not
// fail over to it).
//
// Down also stops the forwarder (lab.json), etcd and kube-apiserver (through
// controlplane.json, and as strays found in the lab's namespaces by command
// name if that record is lost), deletes <Name>-cp with the other namespaces
// and removes <StateDir>/kube (certificates, kubeconfigs, etcd's data); their
// logs stay in <StateDir>/logs (etcd.log, kube-apiserver.log, forward.log).
//
// Errors: *ConfigError for bad input (the CLI's exit code 2),
// *PodChangeError for an update the lab cannot apply, *AgentError for an
// agent that does not become ready or reports problems and *ProcessError
// for a server that does not start (both name the log and quote its tail),
// *MiswiredError, *NoLabError, ErrNotKubernetes (a Kubernetes-mode operation
// on a standalone lab), a missing kube binary as
// controlplane.MissingBinariesError; everything else wraps its cause with %w.
//
// # Imports
//
// Standard library, compiler, compiler/sim, policy, policy/api/v1alpha1,
// e2e/probe, e2e/controlplane, networking, github.com/vishvananda/netlink
// (underlay links, addresses, routes, conntrack), golang.org/x/sys/unix,
// sigs.k8s.io/yaml, the Kubernetes API types and client-go (kubernetes,
// dynamic, rest). Root is required; the root tests skip without it, and the
// Kubernetes-mode tests also without the kube binaries (failing under CI).
// Tests also import e2e/scenario (the conformance corpus), e2e/kubetest and
// github.com/google/nftables, and TestMain builds cmd/tabby and cmd/tabbyctl
// with the go command.
package lab
