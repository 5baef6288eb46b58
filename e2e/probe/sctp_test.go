package probe

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCRC32cKnownValues(t *testing.T) {
	seq := func(f func(i int) byte) []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = f(i)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want uint32
	}{
		// The CRC-32C check value (iSCSI, RFC 3720; "CRC-32/ISCSI" catalogue).
		{"check 123456789", []byte("123456789"), 0xE3069283},
		// RFC 3720 appendix B.4 test patterns.
		{"32 zeros", seq(func(int) byte { return 0 }), 0x8A9136AA},
		{"32 ones", seq(func(int) byte { return 0xFF }), 0x62A8AB43},
		{"incrementing", seq(func(i int) byte { return byte(i) }), 0x46DD794E},
		{"decrementing", seq(func(i int) byte { return byte(31 - i) }), 0x113FDB5C},
	} {
		if got := crc32.Checksum(tc.in, castagnoli); got != tc.want {
			t.Errorf("%s: CRC32c = %#08x, want %#08x", tc.name, got, tc.want)
		}
	}
}

// scapyInit is raw(IP()/SCTP()/SCTPChunkInit(params=[SCTPChunkParamIPv4Addr()]))
// from Scapy's SCTP regression tests, which state its checksum is
// 0x402c0b5f as the bytes appear on the wire: an independent encoder.
const scapyInit = "4500003c0001000040847c3b7f0000017f000001" +
	"0000000000000000402c0b5f" +
	"0100001c" + "00000000" + "00000000" + "0000" + "0000" + "00000000" +
	"000500087f000001"

func TestDecodeReferencePacket(t *testing.T) {
	raw, err := hex.DecodeString(scapyInit)
	if err != nil {
		t.Fatal(err)
	}
	payload, src, dst, err := stripIPv4Header(raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := [4]byte{127, 0, 0, 1}; src != want || dst != want {
		t.Errorf("addresses %v -> %v, want 127.0.0.1 both", src, dst)
	}
	if len(payload) != 40 {
		t.Fatalf("SCTP payload of %d bytes, want 40", len(payload))
	}
	if !validSCTPChecksum(payload) {
		t.Fatalf("reference checksum %x does not validate (computed %#08x)", payload[8:12], sctpChecksum(payload))
	}
	p, err := decodeSCTP(payload)
	if err != nil {
		t.Fatal(err)
	}
	if p.ChunkType != chunkInit || p.SrcPort != 0 || p.DstPort != 0 || p.VTag != 0 || p.Init.Cookie != nil {
		t.Errorf("decoded %+v", p)
	}
	// Our encoder, given the same fields, must produce the same checksum
	// bytes (the parameter is appended by hand: we never send it).
	enc := append([]byte{}, payload...)
	binary.LittleEndian.PutUint32(enc[8:12], 0xdeadbeef)
	setSCTPChecksum(enc)
	if !bytes.Equal(enc, payload) {
		t.Errorf("re-checksummed packet\n%x\nwant\n%x", enc, payload)
	}
}

func TestChecksumInsertedValidates(t *testing.T) {
	pkt, err := appendInitChunkPacket(nil, sctpHeader{SrcPort: 5000, DstPort: 80}, chunkInit,
		sctpInit{InitiateTag: 0x01020304, ARwnd: 1500, OutStreams: 10, InStreams: 11, InitialTSN: 7})
	if err != nil {
		t.Fatal(err)
	}
	zeroed := append([]byte{}, pkt...)
	copy(zeroed[8:12], []byte{0, 0, 0, 0})
	sum := crc32.Checksum(zeroed, castagnoli)
	if got := binary.LittleEndian.Uint32(pkt[8:12]); got != sum {
		t.Fatalf("stored checksum %#08x, CRC32c of the zeroed packet is %#08x", got, sum)
	}
	if !validSCTPChecksum(pkt) {
		t.Fatal("encoded packet does not validate")
	}
	// Every single-bit corruption anywhere must be caught (CRC32c detects
	// all of them); a decoder that skipped the check would accept these.
	for i := range len(pkt) * 8 {
		bad := append([]byte{}, pkt...)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := decodeSCTP(bad); !errors.Is(err, errMalformed) {
			t.Fatalf("bit %d flipped: decode error %v, want errMalformed", i, err)
		}
	}
}

func TestInitAckRoundTrip(t *testing.T) {
	for cookieLen := 1; cookieLen <= 9; cookieLen++ {
		cookie := []byte(strings.Repeat("c", cookieLen))
		h := sctpHeader{SrcPort: 9999, DstPort: 51000, VTag: 0xa1b2c3d4}
		in := sctpInit{InitiateTag: 0x11223344, ARwnd: 65536, OutStreams: 3, InStreams: 16, InitialTSN: 0xfffffff0, Cookie: cookie}
		pkt, err := appendInitChunkPacket([]byte("prefix"), h, chunkInitAck, in)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(pkt, []byte("prefix")) {
			t.Fatal("append clobbered the prefix")
		}
		pkt = pkt[len("prefix"):]
		if len(pkt)%4 != 0 {
			t.Errorf("cookie %d: packet of %d bytes is not padded to 4", cookieLen, len(pkt))
		}
		if got, want := int(binary.BigEndian.Uint16(pkt[14:16])), sctpInitFixedLen+4+cookieLen; got != want {
			t.Errorf("cookie %d: chunk length %d, want %d (excluding padding)", cookieLen, got, want)
		}
		p, err := decodeSCTP(pkt)
		if err != nil {
			t.Fatalf("cookie %d: %v", cookieLen, err)
		}
		if p.sctpHeader != h || p.ChunkType != chunkInitAck || p.ChunkFlags != 0 {
			t.Errorf("cookie %d: header %+v type %d", cookieLen, p.sctpHeader, p.ChunkType)
		}
		if !bytes.Equal(p.Init.Cookie, cookie) {
			t.Errorf("cookie %d: got cookie %q", cookieLen, p.Init.Cookie)
		}
		got, want := p.Init, in
		got.Cookie, want.Cookie = nil, nil
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("cookie %d: init %+v, want %+v", cookieLen, got, want)
		}
	}
}

func TestAbortPacket(t *testing.T) {
	pkt := appendAbortPacket(nil, sctpHeader{SrcPort: 1, DstPort: 2, VTag: 42})
	p, err := decodeSCTP(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if p.ChunkType != chunkAbort || p.ChunkFlags != chunkFlagT || p.VTag != 42 || len(pkt) != 16 {
		t.Errorf("abort %+v (%d bytes)", p, len(pkt))
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	ok := sctpInit{InitiateTag: 1, OutStreams: 1, InStreams: 1, Cookie: []byte("x")}
	for name, tc := range map[string]struct {
		typ uint8
		in  sctpInit
	}{
		"zero tag":        {chunkInit, sctpInit{OutStreams: 1, InStreams: 1}},
		"zero streams":    {chunkInit, sctpInit{InitiateTag: 1, InStreams: 1}},
		"ack no cookie":   {chunkInitAck, sctpInit{InitiateTag: 1, OutStreams: 1, InStreams: 1}},
		"ack huge cookie": {chunkInitAck, sctpInit{InitiateTag: 1, OutStreams: 1, InStreams: 1, Cookie: make([]byte, maxCookieLen+1)}},
		"not init":        {chunkAbort, ok},
	} {
		if _, err := appendInitChunkPacket(nil, sctpHeader{}, tc.typ, tc.in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// rechecksum returns pkt with a fresh valid checksum, so malformation tests
// reach the structural checks rather than failing on the CRC.
func rechecksum(pkt []byte) []byte {
	if len(pkt) >= sctpCommonHeaderLen {
		setSCTPChecksum(pkt)
	}
	return pkt
}

func TestDecodeMalformed(t *testing.T) {
	good, err := appendInitChunkPacket(nil, sctpHeader{SrcPort: 1, DstPort: 2, VTag: 3}, chunkInitAck,
		sctpInit{InitiateTag: 1, OutStreams: 1, InStreams: 1, Cookie: []byte("abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte { return rechecksum(f(append([]byte{}, good...))) }
	for name, pkt := range map[string][]byte{
		"short":             good[:15],
		"chunk len < 4":     mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[14:16], 3); return b }),
		"chunk len > data":  mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[14:16], 200); return b }),
		"init too short":    mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[14:16], 16); return b }),
		"param len < 4":     mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[34:36], 2); return b }),
		"param beyond":      mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[34:36], 64); return b }),
		"truncated param":   mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[14:16], 22); return b }),
		"bad checksum only": func() []byte { b := append([]byte{}, good...); b[8] ^= 0xff; return b }(),
	} {
		if _, err := decodeSCTP(pkt); !errors.Is(err, errMalformed) {
			t.Errorf("%s: error %v, want errMalformed", name, err)
		}
	}
	if _, _, _, err := stripIPv4Header([]byte{0x60, 0, 0, 0}); !errors.Is(err, errMalformed) {
		t.Errorf("IPv6 bytes as IPv4: %v", err)
	}
}

func TestAnswerSCTP(t *testing.T) {
	s := &Server{
		banner:    []byte("ns/pod"),
		sctpPorts: map[uint16]bool{9999: true},
		hits:      map[Port]*atomic.Uint64{{9999, SCTP}: new(atomic.Uint64)},
	}
	in := sctpInit{InitiateTag: 0xcafe, ARwnd: 1000, OutStreams: 5, InStreams: 3, InitialTSN: 1}
	mk := func(dport uint16, vtag uint32, typ uint8) []byte {
		pkt, err := appendInitChunkPacket(nil, sctpHeader{SrcPort: 50000, DstPort: dport, VTag: vtag}, typ, in)
		if err != nil {
			in.Cookie = []byte("x")
			pkt, err = appendInitChunkPacket(nil, sctpHeader{SrcPort: 50000, DstPort: dport, VTag: vtag}, typ, in)
			in.Cookie = nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return pkt
	}
	reply, ok := s.answerSCTP(nil, mk(9999, 0, chunkInit))
	if !ok {
		t.Fatal("no answer to an INIT on a served port")
	}
	p, err := decodeSCTP(reply)
	if err != nil {
		t.Fatal(err)
	}
	if p.ChunkType != chunkInitAck || p.SrcPort != 9999 || p.DstPort != 50000 || p.VTag != 0xcafe {
		t.Errorf("reply header %+v type %d", p.sctpHeader, p.ChunkType)
	}
	if p.Init.InitiateTag == 0 || p.Init.OutStreams > in.InStreams || p.Init.InStreams == 0 || string(p.Init.Cookie) != "ns/pod" {
		t.Errorf("reply body %+v", p.Init)
	}
	if got := s.Hits(Port{9999, SCTP}); got != 1 {
		t.Errorf("hits %d, want 1", got)
	}
	for name, pkt := range map[string][]byte{
		"unserved port":    mk(9998, 0, chunkInit),
		"nonzero vtag":     mk(9999, 7, chunkInit),
		"INIT ACK":         mk(9999, 0, chunkInitAck),
		"corrupt checksum": func() []byte { b := mk(9999, 0, chunkInit); b[9] ^= 1; return b }(),
	} {
		if _, ok := s.answerSCTP(nil, pkt); ok {
			t.Errorf("%s: answered", name)
		}
	}
	if got := s.Hits(Port{9999, SCTP}); got != 1 {
		t.Errorf("hits %d after ignored packets, want 1", got)
	}
}

func TestPktinfoRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		ifindex uint32
	}{{"10.1.2.3", 0}, {"fd00::1", 7}} {
		a := netip.MustParseAddr(tc.addr)
		got, ifi := packetDestination(replyPktinfo(a, tc.ifindex))
		if got != a || ifi != tc.ifindex {
			t.Errorf("%s%%%d: got %s%%%d", a, tc.ifindex, got, ifi)
		}
	}
	for _, a := range []string{"0.0.0.0", "::", "ff02::1", "224.0.0.1"} {
		if b := replyPktinfo(netip.MustParseAddr(a), 0); b != nil {
			t.Errorf("%s: pktinfo %x, want none", a, b)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Failure
		ok   bool
	}{
		{os.ErrDeadlineExceeded, FailureTimeout, true},
		{fmt.Errorf("read: %w", os.NewSyscallError("read", unix.ECONNREFUSED)), FailureRefused, true},
		{unix.EHOSTUNREACH, FailureUnreachable, true},
		{unix.ENETUNREACH, FailureUnreachable, true},
		{unix.EPERM, FailureProhibited, true},
		{unix.EBADF, FailureNone, false},
		{errors.New("other"), FailureNone, false},
	} {
		got, ok := classify(tc.err)
		if got != tc.want || ok != tc.ok {
			t.Errorf("classify(%v) = %q, %v; want %q, %v", tc.err, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseProtocolAndPorts(t *testing.T) {
	for in, want := range map[string]Protocol{"tcp": TCP, "Udp": UDP, "SCTP": SCTP} {
		if got, err := ParseProtocol(in); err != nil || got != want {
			t.Errorf("ParseProtocol(%q) = %q, %v", in, got, err)
		}
	}
	var ue *UsageError
	if _, err := ParseProtocol("icmp"); !errors.As(err, &ue) {
		t.Errorf("ParseProtocol(icmp) error %v, want *UsageError", err)
	}
	if err := (Port{0, TCP}).validate(); !errors.As(err, &ue) {
		t.Errorf("port 0: %v", err)
	}
	if got := (Port{80, TCP}).String(); got != "80/TCP" {
		t.Errorf("String() = %q", got)
	}
}

func FuzzDecodeSCTP(f *testing.F) {
	raw, _ := hex.DecodeString(scapyInit)
	f.Add(raw[20:])
	ack, _ := appendInitChunkPacket(nil, sctpHeader{1, 2, 3}, chunkInitAck,
		sctpInit{InitiateTag: 1, OutStreams: 1, InStreams: 1, Cookie: []byte("cookie")})
	f.Add(ack)
	f.Add(appendAbortPacket(nil, sctpHeader{1, 2, 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, pkt := range [][]byte{b, rechecksum(append([]byte{}, b...))} {
			if len(pkt) < sctpCommonHeaderLen {
				continue
			}
			p, err := decodeSCTP(pkt)
			if err != nil {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("error %v does not wrap errMalformed", err)
				}
				continue
			}
			if len(p.Init.Cookie) > len(pkt) {
				t.Fatalf("cookie longer than the packet")
			}
		}
	})
}
