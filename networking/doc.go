// Package networking builds a pod's network interface exactly as Tabby's CNI
// plugin does (the lab uses it now, the plugin later): a veth pair, routed
// (no bridge), with the Calico-style fixed gateway.
//
// # In and out
//
// SetupPod(ctx, PodSpec) -> (*PodInterface, error). The spec names the node
// (host) netns by path ("" = this process's), the pod netns by path, the
// host-side interface (compiler.InterfaceName(namespace, pod): the
// enforcer's verdict maps dispatch on that name), the pod-side name
// (default eth0), the pod IPs (IPv4 and/or IPv6) and the MTU (0 = 1500).
// TeardownPod(ctx, PodSpec) removes it; CheckPod(ctx, PodSpec) compares the
// kernel with the spec without changing anything (CNI CHECK).
//
// # The state SetupPod leaves (and CheckPod verifies)
//
// Pod netns:
//   - lo up; <pod if> up, MTU as specified, the peer of <host if>;
//   - each IP as /32 or /128 (IPv6 with nodad), nothing else but the
//     kernel's fe80:: address; net.ipv6.conf.<pod if>.disable_ipv6=0 and
//     accept_dad=0 when there is IPv6;
//   - default via 169.254.1.1 dev <pod if> onlink (IPv4), default via fe80::1
//     dev <pod if> onlink (IPv6), proto 84 (RouteProtocol); no other routes
//     on <pod if> except the kernel's own;
//   - permanent neighbour entries 169.254.1.1 and fe80::1 -> the host veth's
//     MAC, so the pod never has to resolve its gateway.
//
// Host netns:
//   - lo up, net.ipv4.ip_forward=1, net.ipv6.conf.all.forwarding=1 (per
//     family in use; node-wide, written only when different, never undone);
//   - <host if> up, MTU as specified; IPv4: conf.<if>.forwarding=1,
//     proxy_arp=1, neigh.<if>.proxy_delay=0; IPv6: conf.<if>.disable_ipv6=0,
//     accept_dad=0, accept_ra=0, forwarding=1, proxy_ndp=1,
//     neigh.<if>.proxy_delay=0, and a proxy neighbour entry fe80::1 dev <if>;
//   - one route per pod IP: <ip>/32 dev <host if> scope link proto 84
//     (<ip>/128 dev <host if> proto 84: IPv6 routes have no scope);
//   - SetupPod returns only once <host if> has a usable IPv6 link-local
//     address (when the pod has IPv6), so the pod is reachable at once.
//
// # Gateway scheme (what works on this kernel, Linux 6.18)
//
// Neither gateway exists on any interface. The primary path is the pod's
// permanent neighbour entries. The host side also answers, as Calico's does:
// proxy NDP answers for fe80::1 on its own (measured); proxy ARP answers for
// 169.254.1.1 only when the node has a route to 169.254.1.1 out of another
// interface (a default route is enough) - which is why the permanent entries
// exist: a lab node without a default route works too.
//
// # Kernel quirks this package works around (see the code comments)
//   - A netns that never had a local address has no local routing table;
//     IPv4 neighbours to pods then become NOARP with the broadcast MAC and
//     TCP (not UDP) is dropped. SetupPod brings the host lo up.
//   - The node solicits a pod's IPv6 address only from the host veth's
//     link-local address; while that is tentative (DAD, the DAD work item,
//     or a carrier event that linkwatch delays up to 1 s when both veth ends
//     have the same ifindex) the first packets wait 1 s. Hence accept_dad=0
//     and the final wait. Lab underlay veths need the same treatment
//     (accept_dad=0 before up, then Netns.WaitLinkLocal).
//   - CONFIG_DUMMY is off on this machine kind: tests use veths and bridges.
//
// # Idempotency and failure
//
// SetupPod converges: on the existing pair it fixes what differs (including
// IPs added or removed, and a family dropped) and touches nothing that is
// right; the same spec twice gives the same ifindexes, MACs and state. A veth
// under <host if> whose peer is not <pod if> in the pod netns is a stale
// leftover of an earlier sandbox of the same pod and is replaced. If the call
// created the veth and a later step fails (or ctx is cancelled), the veth is
// deleted, which removes everything on both ends; only the node-wide settings
// and the pod's lo being up remain. A pod IP that is a node address or is
// routed to another interface fails with ErrAddressInUse before anything is
// created (and, racing, at the exclusive route add, then rolled back).
//
// TeardownPod is idempotent (absent = success) and deletes only a veth it can
// prove is this pod's: <host if> whose peer is <pod if> in the pod netns. A
// late DEL of an old sandbox therefore cannot cut a newer sandbox of the
// same pod off; with the pod netns gone the kernel has already removed the
// pair. Reaping orphans whose netns is unreachable is left to CNI GC.
//
// Errors are *StepError (step, interface, netns path, cause) wrapping a
// sentinel - ErrInvalidSpec, ErrNetnsNotFound, ErrInterfaceExists,
// ErrAddressInUse - or the kernel's errno; CheckPod's differences are a
// *CheckError (errors.Is ErrCheckFailed).
//
// # Namespaces
//
// No function moves the calling goroutine: netlink sockets are opened inside
// a namespace on a throwaway goroutine whose OS thread is locked and never
// unlocked (the runtime then destroys the thread), and sysctls are read and
// written the same way. Netns wraps this for tests and the lab: NewNetns
// (named, /run/netns, like `ip netns add`; "" = throwaway name), OpenNetns,
// Do, Handle, SetSysctl/Sysctl, WaitLinkLocal, Close, Delete.
//
// # Imports
//
// Standard library, github.com/vishvananda/netlink, golang.org/x/sys/unix.
// The types and errors compile everywhere; the functions are Linux only. Tests also import compiler
// (for InterfaceName) and need root; each creates and deletes its own
// namespaces and never touches the root namespace.
package networking
