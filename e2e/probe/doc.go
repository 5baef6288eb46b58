// Package probe measures connectivity with real packets: the servers and
// probes that the lab (tabbyctl lab) runs inside pod network namespaces to
// fill the connectivity matrix (/work/shared/formats/matrix.md).
//
// # Namespaces
//
// InNetns(path, f) runs f on a fresh goroutine whose OS thread is locked and
// switched into the network namespace at path, then switches it back (or
// discards the thread if it cannot). Everything here relies on one kernel
// rule: a socket belongs to the namespace of the thread that created it, for
// life. So sockets are created inside InNetns, and all waiting happens
// afterwards on ordinary goroutines; only socket creation (and, for TCP, the
// non-blocking connect that sends the SYN) holds a namespace thread.
//
// # Servers
//
// Serve(ctx, ports, WithBanner(b)) must be called from a goroutine already in
// the pod's namespace (inside InNetns; ServeIn does both). It creates every
// socket before returning, then serves until ctx is done or Close:
//   - TCP: listeners on 0.0.0.0 and [::] (IPV6_V6ONLY); each accepted
//     connection gets the banner, then a normal close.
//   - UDP: sockets on 0.0.0.0 and [::]; each datagram is answered with the
//     banner, from the address it was sent to (IP_PKTINFO / IPV6_PKTINFO).
//   - SCTP: the kernel has no SCTP stack here (CONFIG_IP_SCTP off), though
//     netfilter matches and conntracks SCTP. One raw IPv4 and one raw IPv6
//     socket for protocol 132 receive every SCTP packet of the namespace; an
//     INIT (verification tag 0, valid CRC32c) to a served port is answered
//     with an INIT ACK: ports swapped, verification tag = the INIT's Initiate
//     Tag, our own random Initiate Tag, a_rwnd, stream counts, a random
//     initial TSN, and a State Cookie holding the banner; CRC32c (Castagnoli,
//     little-endian on the wire as Linux does) over the packet. Nothing else
//     is answered. In particular, without a kernel SCTP stack no ABORT is
//     ever sent for a port nobody serves: such a probe times out, exactly
//     like a dropped one. That is correct for the lab, which only probes
//     declared (hence served) ports. A namespace with no raw SCTP socket at
//     all answers ICMP protocol unreachable, which a probe also reports as
//     a timeout (see below).
//
// Server.Hits(port) counts answered probes per port, so a test can tell a
// probe dropped on its way in from one dropped on its way back.
//
// # Probes
//
// Probe(ctx, src, dst, port, proto, timeout) sends one probe from the
// namespace at src (CurrentNetns: the caller's) and returns a Result:
//   - TCP: Reached when the handshake completes (RTT = handshake time); the
//     banner is then read until EOF within the same timeout.
//   - UDP: a connected socket sends up to 3 datagrams within the timeout;
//     Reached on the first reply, whose payload is the banner.
//   - SCTP: a raw socket connected to dst sends an INIT (random Initiate Tag,
//     source port from the dynamic range, unique among running probes, so
//     parallel probes never share a conntrack entry), retransmitted up to 3
//     times; Reached on an INIT ACK from dst's port to ours carrying our tag
//     and a valid checksum; the banner is its State Cookie. The probe then
//     sends an ABORT (T bit set, carrying its own tag, which stays valid
//     even if a retransmitted INIT drew a second INIT ACK) so conntrack
//     forgets the association in seconds.
//
// Not reached is a verdict, never an error: Failure says timeout (no answer:
// dropped, or an unserved SCTP port), refused (TCP RST, ICMP port
// unreachable), unreachable (ICMP host/net unreachable, no route) or
// prohibited (the source's own output path dropped it: EPERM). SCTP probes
// ignore ICMP errors, because a raw socket also receives those caused by
// other probes to the same address; a rejected SCTP probe times out. An
// error means the probe could not be made (invalid arguments, namespace or
// socket failure, ctx cancelled before a verdict) and says nothing about
// the network. Probes are safe to run in parallel from many goroutines.
//
// May import: the standard library and golang.org/x/sys/unix. Tests also
// run ip and nft, and read conntrack through github.com/vishvananda/netlink.
// Root is required for namespaces and raw sockets; tests skip without it.
package probe
