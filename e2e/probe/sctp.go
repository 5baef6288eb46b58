package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The minimal SCTP wire format the probe needs (RFC 9260, which obsoletes
// RFC 4960 without changing any of this): the common header, INIT, INIT ACK
// with a State Cookie parameter, and ABORT.

const (
	ipProtoSCTP = 132

	sctpCommonHeaderLen = 12
	sctpChunkHeaderLen  = 4
	// INIT and INIT ACK share a 20-byte fixed part: chunk header, Initiate
	// Tag, a_rwnd, outbound streams, inbound streams, initial TSN.
	sctpInitFixedLen = 20

	chunkInit    = 1
	chunkInitAck = 2
	chunkAbort   = 6

	// chunkFlagT is the T bit of ABORT and SHUTDOWN COMPLETE: the
	// verification tag is the sender's own rather than the receiver's.
	chunkFlagT = 1

	paramStateCookie = 7

	// maxCookieLen bounds the State Cookie (and so the banner it carries) so
	// that an INIT ACK always fits a minimum-MTU IPv6 packet unfragmented.
	maxCookieLen = 512
)

// castagnoli is CRC32c, the SCTP checksum (RFC 9260 appendix A, RFC 3309).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errMalformed is wrapped by every decode failure, so callers can tell a
// garbage packet (ignored) from an I/O error with errors.Is.
var errMalformed = errors.New("malformed SCTP packet")

// sctpChecksum is CRC32c over the whole SCTP packet with the checksum field
// taken as zero. The value goes on the wire little-endian: that is what the
// Linux stack (cpu_to_le32 in sctp_compute_cksum) and the RFC's reference
// code put there, and what netfilter verifies.
func sctpChecksum(pkt []byte) uint32 {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, pkt[:8])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, pkt[12:])
}

func setSCTPChecksum(pkt []byte) {
	binary.LittleEndian.PutUint32(pkt[8:12], sctpChecksum(pkt))
}

func validSCTPChecksum(pkt []byte) bool {
	return len(pkt) >= sctpCommonHeaderLen &&
		binary.LittleEndian.Uint32(pkt[8:12]) == sctpChecksum(pkt)
}

// sctpHeader is the common header minus the checksum, which encoding always
// computes and decoding always verifies.
type sctpHeader struct {
	SrcPort uint16
	DstPort uint16
	VTag    uint32
}

// sctpInit is the body of an INIT or INIT ACK chunk.
type sctpInit struct {
	InitiateTag uint32
	ARwnd       uint32
	OutStreams  uint16
	InStreams   uint16
	InitialTSN  uint32
	// Cookie is the State Cookie parameter of an INIT ACK (nil in an INIT).
	Cookie []byte
}

// sctpPacket is what decodeSCTP understands of a packet: the header, the type
// of the first chunk, and the INIT / INIT ACK body when that is the chunk.
type sctpPacket struct {
	sctpHeader
	ChunkType  uint8
	ChunkFlags uint8
	Init       sctpInit // valid when ChunkType is chunkInit or chunkInitAck
}

// appendInitChunkPacket appends a complete SCTP packet holding one INIT
// (chunkType chunkInit) or INIT ACK (chunkInitAck) chunk, checksum included.
// An INIT ACK carries in.Cookie as its State Cookie; an INIT never does.
func appendInitChunkPacket(b []byte, h sctpHeader, chunkType uint8, in sctpInit) ([]byte, error) {
	if chunkType != chunkInit && chunkType != chunkInitAck {
		return nil, fmt.Errorf("chunk type %d is not INIT or INIT ACK", chunkType)
	}
	if in.InitiateTag == 0 {
		// RFC 9260 3.3.2: a zero Initiate Tag makes the receiver abort.
		return nil, errors.New("SCTP initiate tag must not be zero")
	}
	if in.OutStreams == 0 || in.InStreams == 0 {
		return nil, errors.New("SCTP stream counts must not be zero")
	}
	chunkLen := sctpInitFixedLen
	if chunkType == chunkInitAck {
		if len(in.Cookie) == 0 || len(in.Cookie) > maxCookieLen {
			return nil, fmt.Errorf("state cookie of %d bytes, want 1..%d", len(in.Cookie), maxCookieLen)
		}
		chunkLen += 4 + len(in.Cookie)
	}
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, h.SrcPort)
	b = binary.BigEndian.AppendUint16(b, h.DstPort)
	b = binary.BigEndian.AppendUint32(b, h.VTag)
	b = append(b, 0, 0, 0, 0) // checksum, filled in last
	b = append(b, chunkType, 0)
	// The chunk length excludes the final padding (RFC 9260 3.2).
	b = binary.BigEndian.AppendUint16(b, uint16(chunkLen))
	b = binary.BigEndian.AppendUint32(b, in.InitiateTag)
	b = binary.BigEndian.AppendUint32(b, in.ARwnd)
	b = binary.BigEndian.AppendUint16(b, in.OutStreams)
	b = binary.BigEndian.AppendUint16(b, in.InStreams)
	b = binary.BigEndian.AppendUint32(b, in.InitialTSN)
	if chunkType == chunkInitAck {
		b = binary.BigEndian.AppendUint16(b, paramStateCookie)
		b = binary.BigEndian.AppendUint16(b, uint16(4+len(in.Cookie)))
		b = append(b, in.Cookie...)
		b = appendPadding(b, len(in.Cookie))
	}
	setSCTPChecksum(b[start:])
	return b, nil
}

// appendAbortPacket appends an SCTP packet with a bare ABORT chunk whose T
// bit is set, so h.VTag is the sender's own Initiate Tag (RFC 9260 8.5.1 B).
// The probe aborts that way because its own tag is the one both ends and
// conntrack agree on even when a retransmitted INIT drew two INIT ACKs with
// different tags; the peer's tag would depend on which answer came first.
func appendAbortPacket(b []byte, h sctpHeader) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, h.SrcPort)
	b = binary.BigEndian.AppendUint16(b, h.DstPort)
	b = binary.BigEndian.AppendUint32(b, h.VTag)
	b = append(b, 0, 0, 0, 0)
	b = append(b, chunkAbort, chunkFlagT, 0, sctpChunkHeaderLen)
	setSCTPChecksum(b[start:])
	return b
}

func appendPadding(b []byte, n int) []byte {
	for ; n%4 != 0; n++ {
		b = append(b, 0)
	}
	return b
}

// decodeSCTP parses an SCTP packet (no IP header). It verifies the checksum
// and the bounds of the first chunk; for INIT and INIT ACK it decodes the
// fixed fields and walks the parameters, keeping the State Cookie. Every
// error wraps errMalformed.
func decodeSCTP(pkt []byte) (sctpPacket, error) {
	var p sctpPacket
	if len(pkt) < sctpCommonHeaderLen+sctpChunkHeaderLen {
		return p, fmt.Errorf("%w: %d bytes", errMalformed, len(pkt))
	}
	if !validSCTPChecksum(pkt) {
		return p, fmt.Errorf("%w: bad CRC32c checksum", errMalformed)
	}
	p.SrcPort = binary.BigEndian.Uint16(pkt[0:2])
	p.DstPort = binary.BigEndian.Uint16(pkt[2:4])
	p.VTag = binary.BigEndian.Uint32(pkt[4:8])
	chunk := pkt[sctpCommonHeaderLen:]
	p.ChunkType = chunk[0]
	p.ChunkFlags = chunk[1]
	chunkLen := int(binary.BigEndian.Uint16(chunk[2:4]))
	if chunkLen < sctpChunkHeaderLen || chunkLen > len(chunk) {
		return p, fmt.Errorf("%w: chunk length %d with %d bytes left", errMalformed, chunkLen, len(chunk))
	}
	if p.ChunkType != chunkInit && p.ChunkType != chunkInitAck {
		return p, nil
	}
	if chunkLen < sctpInitFixedLen {
		return p, fmt.Errorf("%w: INIT chunk of %d bytes", errMalformed, chunkLen)
	}
	p.Init = sctpInit{
		InitiateTag: binary.BigEndian.Uint32(chunk[4:8]),
		ARwnd:       binary.BigEndian.Uint32(chunk[8:12]),
		OutStreams:  binary.BigEndian.Uint16(chunk[12:14]),
		InStreams:   binary.BigEndian.Uint16(chunk[14:16]),
		InitialTSN:  binary.BigEndian.Uint32(chunk[16:20]),
	}
	params := chunk[sctpInitFixedLen:chunkLen]
	for len(params) > 0 {
		if len(params) < 4 {
			return p, fmt.Errorf("%w: %d trailing parameter bytes", errMalformed, len(params))
		}
		typ := binary.BigEndian.Uint16(params[0:2])
		plen := int(binary.BigEndian.Uint16(params[2:4]))
		if plen < 4 || plen > len(params) {
			return p, fmt.Errorf("%w: parameter %d length %d with %d bytes left", errMalformed, typ, plen, len(params))
		}
		if typ == paramStateCookie && p.ChunkType == chunkInitAck && p.Init.Cookie == nil {
			p.Init.Cookie = append([]byte{}, params[4:plen]...)
		}
		// Parameters are padded to 4 bytes; the last one's padding lies
		// outside the chunk length, hence the clamp.
		next := (plen + 3) &^ 3
		if next > len(params) {
			next = len(params)
		}
		params = params[next:]
	}
	return p, nil
}

// stripIPv4Header returns the payload of an IPv4 packet as a raw socket
// delivers it (header included), with the header's source and destination.
func stripIPv4Header(b []byte) (payload []byte, src, dst [4]byte, err error) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return nil, src, dst, fmt.Errorf("%w: not an IPv4 packet", errMalformed)
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || ihl > len(b) || total < ihl {
		return nil, src, dst, fmt.Errorf("%w: IPv4 header length %d", errMalformed, ihl)
	}
	if total > len(b) {
		total = len(b) // truncated read; decodeSCTP catches short chunks
	}
	copy(src[:], b[12:16])
	copy(dst[:], b[16:20])
	return b[ihl:total], src, dst, nil
}
