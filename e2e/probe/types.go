package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Protocol is a transport protocol, spelled as Kubernetes spells it
// (corev1.Protocol), so conversion is a plain string conversion.
type Protocol string

// The protocols of a connectivity matrix (/work/shared/formats/matrix.md).
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// ParseProtocol accepts TCP, UDP and SCTP in any letter case.
func ParseProtocol(s string) (Protocol, error) {
	p := Protocol(strings.ToUpper(s))
	if err := p.validate(); err != nil {
		return "", err
	}
	return p, nil
}

func (p Protocol) validate() error {
	switch p {
	case TCP, UDP, SCTP:
		return nil
	}
	return &UsageError{Msg: fmt.Sprintf("unknown protocol %q (want TCP, UDP or SCTP)", string(p))}
}

// Port is one served or probed port.
type Port struct {
	Number   uint16
	Protocol Protocol
}

// String is "80/TCP".
func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Number, p.Protocol) }

func (p Port) validate() error {
	if p.Number == 0 {
		return &UsageError{Msg: "port 0 cannot be served or probed"}
	}
	return p.Protocol.validate()
}

// comparePorts orders by number, then protocol: the order of the matrix.
func comparePorts(a, b Port) int {
	if a.Number != b.Number {
		return int(a.Number) - int(b.Number)
	}
	return strings.Compare(string(a.Protocol), string(b.Protocol))
}

// UsageError reports an invalid argument. Like every error this package
// returns, it means "could not measure", never "not reached".
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return "probe: " + e.Msg }

// Failure says why a probe did not reach its destination.
type Failure string

const (
	// FailureNone: the probe reached the destination.
	FailureNone Failure = ""
	// FailureTimeout: no answer within the timeout. A dropped packet and an
	// SCTP port nobody serves look the same; see the package documentation.
	FailureTimeout Failure = "timeout"
	// FailureRefused: the destination host answered "no": TCP RST, ICMP
	// port unreachable (nothing listening, or a reject rule).
	FailureRefused Failure = "refused"
	// FailureUnreachable: ICMP host or network unreachable (also what an
	// admin-prohibited reject turns into), or no route from the source.
	FailureUnreachable Failure = "unreachable"
	// FailureProhibited: the source's own netfilter output path dropped the
	// packet, so sending failed with EPERM.
	FailureProhibited Failure = "prohibited"
)

// Result is the outcome of one probe.
type Result struct {
	// Reached: TCP handshake completed, UDP reply received, or SCTP INIT ACK
	// received with our verification tag from the probed address and port.
	Reached bool
	// Banner is what the server sent: the TCP stream up to EOF (at most
	// maxBannerLen bytes), the UDP reply, or the SCTP State Cookie. A server
	// of this package sends its configured banner on all three.
	Banner string
	// RTT is the handshake time for TCP, and the time from the last
	// (re)transmission to the answer for UDP and SCTP.
	RTT time.Duration
	// Failure is why Reached is false (FailureNone when it is true).
	Failure Failure
}

// maxBannerLen bounds what a probe reads and what a server may send.
const maxBannerLen = maxCookieLen

// classify maps a network error to the Failure it proves. ok is false for
// errors that say nothing about the network (bad descriptor, no memory):
// those are internal errors.
func classify(err error) (f Failure, ok bool) {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, unix.ETIMEDOUT):
		return FailureTimeout, true
	case errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.ECONNRESET):
		return FailureRefused, true
	case errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ENETUNREACH),
		errors.Is(err, unix.EHOSTDOWN), errors.Is(err, unix.ENETDOWN):
		return FailureUnreachable, true
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return FailureProhibited, true
	}
	return FailureNone, false
}

// family returns the socket address family of a (unmapped) address.
func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// sockaddr converts an address and port to a unix.Sockaddr. A zone must
// be numeric or the name of an interface in the current network namespace,
// which is why callers resolve it inside InNetns.
func sockaddr(a netip.Addr, port uint16) (unix.Sockaddr, error) {
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(port), Addr: a.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(port), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		ifi, err := net.InterfaceByName(z)
		if err != nil {
			var n int
			if _, serr := fmt.Sscanf(z, "%d", &n); serr != nil {
				return nil, fmt.Errorf("zone %q of %s: %w", z, a, err)
			}
			sa.ZoneId = uint32(n)
		} else {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return sa, nil
}

// newSocket creates a socket in the calling thread's network namespace
// (callers are inside InNetns), close-on-exec and non-blocking.
func newSocket(fam, typ, proto int) (int, error) {
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	return fd, nil
}

// fdConn hands a socket descriptor to the Go runtime poller as a net.Conn
// (net.FileConn duplicates it; the original is closed here in all cases).
func fdConn(fd int, name string) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("adopt %s socket: %w", name, err)
	}
	return c, nil
}

// fdPacketConn is fdConn for datagram and raw sockets.
func fdPacketConn(fd int, name string) (net.PacketConn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("adopt %s socket: %w", name, err)
	}
	return c, nil
}

// openRawSCTP opens a raw socket receiving every SCTP packet addressed to
// this namespace (IPv4 ones with their IP header). IPv6 sockets also ask for
// IPV6_PKTINFO, the only way to learn an IPv6 packet's destination address.
func openRawSCTP(fam int) (*net.IPConn, error) {
	fd, err := newSocket(fam, unix.SOCK_RAW, ipProtoSCTP)
	if err != nil {
		return nil, err
	}
	if fam == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
			unix.Close(fd)
			return nil, os.NewSyscallError("setsockopt IPV6_RECVPKTINFO", err)
		}
	}
	c, err := fdPacketConn(fd, "sctp-raw")
	if err != nil {
		return nil, err
	}
	ipc, ok := c.(*net.IPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("raw SCTP socket adopted as %T, want *net.IPConn", c)
	}
	return ipc, nil
}
