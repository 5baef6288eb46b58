package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultBanner is what a server sends when no WithBanner option is given.
const DefaultBanner = "tabby-probe"

// Option configures Serve.
type Option func(*serveOptions)

type serveOptions struct {
	banner string
}

// WithBanner sets the banner the server answers with on every protocol; the
// lab uses the pod's "namespace/name" so a probe proves which pod answered.
// It must be 1..512 bytes (it travels in an SCTP State Cookie too).
func WithBanner(b string) Option {
	return func(o *serveOptions) { o.banner = b }
}

// Server answers probes on a set of ports in the network namespace it was
// started in. It is safe for concurrent use.
type Server struct {
	banner    []byte
	ports     []Port
	hits      map[Port]*atomic.Uint64 // read-only after Serve: no lock needed
	sctpPorts map[uint16]bool         // read-only after Serve

	closers []interface{ Close() error }
	done    chan struct{}
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	stopCtx func() bool // unregisters the ctx watch; guarded by mu
}

// Serve starts answering on ports, in the calling thread's network
// namespace: call it inside InNetns (or use ServeIn). Every socket is created
// before Serve returns, so a nil error means every port is being served; the
// serving goroutines may then run on any thread. The server stops when ctx is
// done or Close is called.
//
// TCP and UDP ports are served on 0.0.0.0 and [::] (IPv6 is skipped when the
// kernel has no IPv6). SCTP ports share one raw socket per address family.
func Serve(ctx context.Context, ports []Port, opts ...Option) (*Server, error) {
	o := serveOptions{banner: DefaultBanner}
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.banner) == 0 || len(o.banner) > maxBannerLen {
		return nil, &UsageError{Msg: fmt.Sprintf("banner of %d bytes, want 1..%d", len(o.banner), maxBannerLen)}
	}
	s := &Server{
		banner:    []byte(o.banner),
		hits:      map[Port]*atomic.Uint64{},
		sctpPorts: map[uint16]bool{},
		done:      make(chan struct{}),
	}
	for _, p := range ports {
		if err := p.validate(); err != nil {
			return nil, err
		}
		if _, dup := s.hits[p]; dup {
			continue
		}
		s.hits[p] = new(atomic.Uint64)
		s.ports = append(s.ports, p)
		if p.Protocol == SCTP {
			s.sctpPorts[p.Number] = true
		}
	}
	slices.SortFunc(s.ports, comparePorts)

	var starters []func()
	fail := func(err error) (*Server, error) {
		for _, c := range s.closers {
			c.Close()
		}
		return nil, err
	}
	for _, p := range s.ports {
		for _, netw := range networks(p.Protocol) {
			start, err := s.listen(ctx, p, netw)
			if err != nil {
				if netw.v6 && errors.Is(err, unix.EAFNOSUPPORT) {
					continue
				}
				return fail(fmt.Errorf("serve %s on %s: %w", p, netw.name, err))
			}
			starters = append(starters, start)
		}
	}
	if len(s.sctpPorts) > 0 {
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			c, err := openRawSCTP(fam)
			if err != nil {
				if fam == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
					continue
				}
				return fail(fmt.Errorf("serve SCTP: %w", err))
			}
			s.closers = append(s.closers, c)
			starters = append(starters, func() { s.serveSCTP(c, fam) })
		}
	}
	for _, start := range starters {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			start()
		}()
	}
	// Under mu: if ctx is already done, the AfterFunc's Close runs at once
	// and must not read stopCtx before it is set.
	s.mu.Lock()
	s.stopCtx = context.AfterFunc(ctx, func() { s.Close() })
	s.mu.Unlock()
	return s, nil
}

// ServeIn is Serve run inside the network namespace at nsPath.
func ServeIn(ctx context.Context, nsPath string, ports []Port, opts ...Option) (*Server, error) {
	var s *Server
	err := InNetns(nsPath, func() error {
		var err error
		s, err = Serve(ctx, ports, opts...)
		return err
	})
	return s, err
}

type network struct {
	name string // Go network name
	v6   bool
}

func networks(p Protocol) []network {
	switch p {
	case TCP:
		return []network{{"tcp4", false}, {"tcp6", true}}
	case UDP:
		return []network{{"udp4", false}, {"udp6", true}}
	}
	return nil // SCTP: raw sockets shared by all SCTP ports
}

// listen opens one TCP or UDP socket and returns the loop serving it. The
// "tcp6"/"udp6" networks make Go set IPV6_V6ONLY, so the v4 and v6 sockets
// never compete for the same packets.
func (s *Server) listen(ctx context.Context, p Port, netw network) (func(), error) {
	addr := fmt.Sprintf("0.0.0.0:%d", p.Number)
	if netw.v6 {
		addr = fmt.Sprintf("[::]:%d", p.Number)
	}
	if p.Protocol == TCP {
		l, err := (&net.ListenConfig{}).Listen(ctx, netw.name, addr)
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, l)
		return func() { s.serveTCP(l, p) }, nil
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		// Packet info gives each datagram's destination address, so the
		// reply leaves from the address the client sent to even when the
		// namespace has several; a connected client socket drops anything else.
		var serr error
		err := rc.Control(func(fd uintptr) {
			if netw.v6 {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, netw.name, addr)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, pc)
	return func() { s.serveUDP(pc.(*net.UDPConn), p) }, nil
}

// Ports returns the served ports, sorted and without duplicates.
func (s *Server) Ports() []Port { return slices.Clone(s.ports) }

// Banner returns the banner the server answers with.
func (s *Server) Banner() string { return string(s.banner) }

// Hits returns how many probes port p has answered (TCP connections, UDP
// datagrams, SCTP INITs). A probe denied on the way in never counts, which
// lets tests tell "dropped before the pod" from "dropped on the way back".
func (s *Server) Hits(p Port) uint64 {
	if h, ok := s.hits[p]; ok {
		return h.Load()
	}
	return 0
}

// Close stops serving, closes every socket and waits for the serving
// goroutines. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	stop := s.stopCtx
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	s.closeOnce.Do(func() {
		close(s.done)
		var errs []error
		for _, c := range s.closers {
			if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		s.wg.Wait()
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// retryAfterError decides what a serving loop does after a failed read or
// accept: stop when the server is closing, else back off and keep serving,
// because a lab server must outlive transient trouble (EMFILE, ENOBUFS).
func (s *Server) retryAfterError(backoff *time.Duration) bool {
	select {
	case <-s.done:
		return false
	default:
	}
	*backoff = min(max(2**backoff, 5*time.Millisecond), time.Second)
	t := time.NewTimer(*backoff)
	defer t.Stop()
	select {
	case <-s.done:
		return false
	case <-t.C:
		return true
	}
}

func (s *Server) serveTCP(l net.Listener, p Port) {
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.retryAfterError(&backoff) {
				continue
			}
			return
		}
		backoff = 0
		s.hits[p].Add(1)
		// A banner this small fits any fresh send buffer, so the write does
		// not block and serving inline needs no goroutine per connection;
		// the deadline only guards against the impossible.
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(s.banner) // a peer that is already gone is not our problem
		c.Close()
	}
}

func (s *Server) serveUDP(c *net.UDPConn, p Port) {
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	var backoff time.Duration
	for {
		_, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if s.retryAfterError(&backoff) {
				continue
			}
			return
		}
		backoff = 0
		s.hits[p].Add(1)
		local, ifindex := packetDestination(oob[:oobn])
		if _, _, err := c.WriteMsgUDPAddrPort(s.banner, replyPktinfo(local, ifindex), from); err != nil {
			// Replying without a chosen source is better than not replying.
			c.WriteToUDPAddrPort(s.banner, from)
		}
	}
}

// serveSCTP answers INITs to served ports with an INIT ACK. Everything else
// (other chunks, unserved ports, bad checksums) is ignored: with no SCTP
// stack in the kernel nobody else answers, so unserved ports stay silent.
func (s *Server) serveSCTP(c *net.IPConn, fam int) {
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	var out []byte
	var backoff time.Duration
	for {
		n, oobn, _, from, err := c.ReadMsgIP(buf, oob)
		if err != nil {
			if s.retryAfterError(&backoff) {
				continue
			}
			return
		}
		backoff = 0
		payload := buf[:n]
		var local netip.Addr
		var ifindex uint32
		if fam == unix.AF_INET {
			var dst [4]byte
			if payload, _, dst, err = stripIPv4Header(payload); err != nil {
				continue
			}
			local = netip.AddrFrom4(dst)
		} else {
			local, ifindex = packetDestination(oob[:oobn])
		}
		reply, ok := s.answerSCTP(out[:0], payload)
		if !ok {
			continue
		}
		out = reply
		if _, _, err := c.WriteMsgIP(reply, replyPktinfo(local, ifindex), from); err != nil {
			c.WriteMsgIP(reply, nil, from)
		}
	}
}

// answerSCTP returns the INIT ACK answering payload, or ok == false when
// payload is not an INIT to a served port.
func (s *Server) answerSCTP(out, payload []byte) ([]byte, bool) {
	p, err := decodeSCTP(payload)
	// RFC 9260 8.5.1: an INIT carries verification tag 0, and one with a
	// zero Initiate Tag or zero stream counts is to be aborted, not answered.
	if err != nil || p.ChunkType != chunkInit || p.VTag != 0 || !s.sctpPorts[p.DstPort] ||
		p.Init.InitiateTag == 0 || p.Init.OutStreams == 0 || p.Init.InStreams == 0 {
		return nil, false
	}
	s.hits[Port{Number: p.DstPort, Protocol: SCTP}].Add(1)
	const streams = 16
	reply, err := appendInitChunkPacket(out, sctpHeader{
		SrcPort: p.DstPort,
		DstPort: p.SrcPort,
		VTag:    p.Init.InitiateTag,
	}, chunkInitAck, sctpInit{
		InitiateTag: nonZeroUint32(),
		ARwnd:       65536,
		// Our outbound streams may not exceed the peer's inbound ones.
		OutStreams: min(streams, p.Init.InStreams),
		InStreams:  streams,
		InitialTSN: rand.Uint32(),
		Cookie:     s.banner,
	})
	if err != nil {
		return nil, false // unreachable: banner length was checked by Serve
	}
	return reply, true
}

func nonZeroUint32() uint32 {
	for {
		if v := rand.Uint32(); v != 0 {
			return v
		}
	}
}

// packetDestination extracts the destination address (and, for IPv6, the
// arrival interface) from IP_PKTINFO / IPV6_PKTINFO control messages.
// IPv4 uses ipi_spec_dst: the local address the kernel would answer from,
// which differs from the header destination only for broadcasts.
func packetDestination(oob []byte) (netip.Addr, uint32) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}, 0
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			return netip.AddrFrom4([4]byte(m.Data[4:8])), 0
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			return netip.AddrFrom16([16]byte(m.Data[0:16])), binary.NativeEndian.Uint32(m.Data[16:20])
		}
	}
	return netip.Addr{}, 0
}

// replyPktinfo builds the control message choosing a reply's source
// address, or nil when there is nothing usable to choose.
func replyPktinfo(local netip.Addr, ifindex uint32) []byte {
	if !local.IsValid() || local.IsUnspecified() || local.IsMulticast() {
		return nil
	}
	if local.Is4() {
		return unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: local.As4()})
	}
	return unix.PktInfo6(&unix.Inet6Pktinfo{Addr: local.As16(), Ifindex: ifindex})
}
