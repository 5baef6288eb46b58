package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// udpAttempts and sctpAttempts: datagrams can be lost even on a veth (a full
// queue), so a probe retransmits within its timeout before calling the
// destination unreachable. Each attempt gets an equal share of what is left.
const (
	udpAttempts  = 3
	sctpAttempts = 3
)

// probePayload is what a UDP probe sends; servers ignore its content.
var probePayload = []byte("tabby-probe\n")

// aLongTimeAgo is a deadline in the past, to unblock I/O on cancellation.
var aLongTimeAgo = time.Unix(1, 0)

// Probe sends one probe from the network namespace at src (a path such as
// /run/netns/NAME, or CurrentNetns) to dst:port over proto and waits at most
// timeout for the answer.
//
// The verdict is in Result: Reached, or Failure saying why not. An error
// means the probe could not be carried out (bad arguments, namespace or
// socket trouble, ctx cancelled) and says nothing about connectivity.
// Only socket creation runs on a thread inside src; waiting happens on
// ordinary goroutines, so thousands of probes may run in parallel.
func Probe(ctx context.Context, src string, dst netip.Addr, port uint16, proto Protocol, timeout time.Duration) (Result, error) {
	if !dst.IsValid() {
		return Result{}, &UsageError{Msg: "invalid destination address"}
	}
	if err := (Port{Number: port, Protocol: proto}).validate(); err != nil {
		return Result{}, err
	}
	if timeout <= 0 {
		return Result{}, &UsageError{Msg: fmt.Sprintf("timeout %v, want > 0", timeout)}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("probe %s: %w", dst, err)
	}
	target := netip.AddrPortFrom(dst.Unmap(), port)
	deadline := time.Now().Add(timeout)
	var (
		res Result
		err error
	)
	switch proto {
	case TCP:
		res, err = probeTCP(ctx, src, target, deadline)
	case UDP:
		res, err = probeUDP(ctx, src, target, deadline)
	case SCTP:
		res, err = probeSCTP(ctx, src, target, deadline)
	}
	if err != nil {
		return Result{}, fmt.Errorf("probe %s/%s from %q: %w", target, proto, src, err)
	}
	// A cancelled context cuts the wait short, so a "timeout" then proves
	// nothing: report the cancellation instead of a verdict.
	if !res.Reached {
		if cerr := ctx.Err(); cerr != nil {
			return Result{}, fmt.Errorf("probe %s/%s from %q: %w", target, proto, src, cerr)
		}
	}
	return res, nil
}

// notReached turns err into a verdict, or passes it on as an internal error.
func notReached(err error) (Result, error) {
	if f, ok := classify(err); ok {
		return Result{Failure: f}, nil
	}
	return Result{}, err
}

// cancelOnDone unblocks c's pending I/O when ctx is done.
func cancelOnDone(ctx context.Context, c interface{ SetDeadline(time.Time) error }) func() bool {
	return context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
}

func probeTCP(ctx context.Context, src string, dst netip.AddrPort, deadline time.Time) (Result, error) {
	var (
		fd      int
		connErr error
	)
	start := time.Now()
	err := InNetns(src, func() error {
		sa, err := sockaddr(dst.Addr(), dst.Port())
		if err != nil {
			return err
		}
		if fd, err = newSocket(family(dst.Addr()), unix.SOCK_STREAM, unix.IPPROTO_TCP); err != nil {
			return err
		}
		// Non-blocking connect: only the SYN leaves while we hold the
		// namespace thread; the handshake is awaited outside it.
		connErr = unix.Connect(fd, sa)
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	if connErr != nil && connErr != unix.EINPROGRESS {
		unix.Close(fd)
		return notReached(connErr)
	}
	c, err := fdConn(fd, "tcp-probe")
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	defer cancelOnDone(ctx, c)()
	c.SetDeadline(deadline)
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return Result{}, fmt.Errorf("TCP socket adopted as %T", c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return Result{}, err
	}
	if connErr == unix.EINPROGRESS {
		werr := rc.Write(func(fd uintptr) bool {
			connErr = connectResult(int(fd))
			return connErr != unix.EINPROGRESS
		})
		if werr != nil {
			return notReached(werr)
		}
		if connErr != nil {
			return notReached(connErr)
		}
	}
	res := Result{Reached: true, RTT: time.Since(start)}
	// The banner is evidence of which pod answered, not a condition of
	// reachability: the handshake already proved both directions.
	banner, _ := io.ReadAll(io.LimitReader(c, maxBannerLen))
	res.Banner = string(banner)
	return res, nil
}

// connectResult reports a non-blocking connect's outcome once the socket
// polls writable: nil when connected, EINPROGRESS while still in progress.
func connectResult(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	switch e := unix.Errno(v); e {
	case 0:
		// Writable with no error can also be a stale wakeup; only a peer
		// address proves the handshake finished.
		if _, err := unix.Getpeername(fd); err != nil {
			if err == unix.ENOTCONN {
				return unix.EINPROGRESS
			}
			return err
		}
		return nil
	case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
		return unix.EINPROGRESS
	default:
		return e
	}
}

func probeUDP(ctx context.Context, src string, dst netip.AddrPort, deadline time.Time) (Result, error) {
	var (
		fd      int
		connErr error
	)
	err := InNetns(src, func() error {
		sa, err := sockaddr(dst.Addr(), dst.Port())
		if err != nil {
			return err
		}
		if fd, err = newSocket(family(dst.Addr()), unix.SOCK_DGRAM, unix.IPPROTO_UDP); err != nil {
			return err
		}
		// A connected UDP socket only accepts replies from dst and reports
		// ICMP port unreachable as ECONNREFUSED.
		connErr = unix.Connect(fd, sa)
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	if connErr != nil {
		unix.Close(fd)
		return notReached(connErr)
	}
	c, err := fdConn(fd, "udp-probe")
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	defer cancelOnDone(ctx, c)()
	buf := make([]byte, maxBannerLen)
	for i := range udpAttempts {
		sent := time.Now()
		if !sent.Before(deadline) {
			break
		}
		if _, err := c.Write(probePayload); err != nil {
			return notReached(err)
		}
		c.SetReadDeadline(sent.Add(deadline.Sub(sent) / time.Duration(udpAttempts-i)))
		n, err := c.Read(buf)
		if err == nil {
			return Result{Reached: true, Banner: string(buf[:n]), RTT: time.Since(sent)}, nil
		}
		if f, ok := classify(err); !ok {
			return Result{}, err
		} else if f != FailureTimeout || ctx.Err() != nil {
			return Result{Failure: f}, nil
		}
	}
	return Result{Failure: FailureTimeout}, nil
}

// sctpSourcePorts hands out SCTP source ports. Raw sockets reserve no ports,
// and two probes sharing a 5-tuple would share one conntrack entry, whose
// recorded verification tags would then fail the other probe's INIT ACK.
// Ports cycle through the dynamic range from a random start, so a tuple is
// reused as late as possible, and never while in use.
var sctpSourcePorts = struct {
	sync.Mutex
	next  uint32
	inUse map[uint16]bool
}{next: rand.Uint32(), inUse: map[uint16]bool{}}

const (
	sctpPortBase  = 49152
	sctpPortCount = 65536 - sctpPortBase
)

func reserveSCTPPort() (uint16, func(), error) {
	sp := &sctpSourcePorts
	sp.Lock()
	defer sp.Unlock()
	for range sctpPortCount {
		port := uint16(sctpPortBase + sp.next%sctpPortCount)
		sp.next++
		if !sp.inUse[port] {
			sp.inUse[port] = true
			return port, func() {
				sp.Lock()
				delete(sp.inUse, port)
				sp.Unlock()
			}, nil
		}
	}
	return 0, nil, errors.New("all SCTP source ports are in use")
}

func probeSCTP(ctx context.Context, src string, dst netip.AddrPort, deadline time.Time) (Result, error) {
	sport, release, err := reserveSCTPPort()
	if err != nil {
		return Result{}, err
	}
	defer release()
	var (
		c       *net.IPConn
		connErr error
	)
	err = InNetns(src, func() error {
		sa, err := sockaddr(dst.Addr(), 0)
		if err != nil {
			return err
		}
		if c, err = openRawSCTP(family(dst.Addr())); err != nil {
			return err
		}
		// Connecting a raw socket makes the kernel deliver only packets from
		// dst to it, instead of every SCTP packet of the namespace.
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		if err := rc.Control(func(fd uintptr) { connErr = unix.Connect(int(fd), sa) }); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		return Result{}, err
	}
	defer c.Close()
	if connErr != nil {
		return notReached(connErr)
	}
	defer cancelOnDone(ctx, c)()

	tag := nonZeroUint32()
	initPkt, err := appendInitChunkPacket(nil, sctpHeader{SrcPort: sport, DstPort: dst.Port()}, chunkInit, sctpInit{
		InitiateTag: tag,
		ARwnd:       65536,
		OutStreams:  16,
		InStreams:   16,
		InitialTSN:  rand.Uint32(),
	})
	if err != nil {
		return Result{}, err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return Result{}, err
	}
	buf := make([]byte, 65536)
	for i := range sctpAttempts {
		sent := time.Now()
		if !sent.Before(deadline) {
			break
		}
		if err := rawSend(rc, initPkt); err != nil {
			return notReached(err)
		}
		c.SetReadDeadline(sent.Add(deadline.Sub(sent) / time.Duration(sctpAttempts-i)))
		ack, ok, err := awaitInitAck(c, buf, dst, sport, tag)
		if err != nil {
			return Result{}, err
		}
		if ok {
			res := Result{Reached: true, Banner: string(ack.Init.Cookie), RTT: time.Since(sent)}
			// Abort the half-open association at once: conntrack on the path
			// then drops it in seconds instead of keeping it for minutes.
			rawSend(rc, appendAbortPacket(nil, sctpHeader{SrcPort: sport, DstPort: dst.Port(), VTag: tag}))
			return res, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return Result{Failure: FailureTimeout}, nil
}

// rawSend writes one packet on the connected raw socket.
func rawSend(rc interface {
	Write(func(uintptr) bool) error
}, pkt []byte) error {
	var serr error
	err := rc.Write(func(fd uintptr) bool {
		serr = unix.Send(int(fd), pkt, 0)
		return serr != unix.EAGAIN && serr != unix.EINTR
	})
	if err != nil {
		return err
	}
	return serr
}

// awaitInitAck reads until the read deadline for the INIT ACK answering our
// INIT: from dst's port to ours, carrying our tag. ok is false on timeout.
//
// ICMP errors are deliberately not verdicts here: a raw socket receives the
// ICMP errors of every SCTP packet to dst, other probes' included, so one
// cannot tell whose packet was rejected. A rejected probe times out instead.
func awaitInitAck(c *net.IPConn, buf []byte, dst netip.AddrPort, sport uint16, tag uint32) (sctpPacket, bool, error) {
	for {
		n, _, _, from, err := c.ReadMsgIP(buf, nil)
		if err != nil {
			f, ok := classify(err)
			switch {
			case ok && f == FailureTimeout:
				return sctpPacket{}, false, nil
			case ok, errors.Is(err, unix.ENOPROTOOPT), errors.Is(err, unix.EPROTO), errors.Is(err, unix.EMSGSIZE):
				// An ICMP error, maybe for another probe's packet (the
				// kernel reports it once): keep listening for our answer.
				continue
			}
			return sctpPacket{}, false, err
		}
		if a, ok := netip.AddrFromSlice(from.IP); !ok || a.Unmap() != dst.Addr().WithZone("") {
			continue
		}
		payload := buf[:n]
		if dst.Addr().Is4() {
			if payload, _, _, err = stripIPv4Header(payload); err != nil {
				continue
			}
		}
		p, err := decodeSCTP(payload)
		if err != nil || p.ChunkType != chunkInitAck || p.SrcPort != dst.Port() || p.DstPort != sport ||
			p.VTag != tag || p.Init.InitiateTag == 0 {
			continue
		}
		return p, true, nil
	}
}
