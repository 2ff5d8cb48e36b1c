package ir

import "net/netip"

// This file holds the IR kinds of gateways: address translation (NAT
// statements, which end a rule of a nat chain as nft's do) and TCP MSS
// clamping, with the matches they need.

// SNAT is nft `snat ip to ADDR` (Family IPv4) or `snat ip6 to ADDR`
// (IPv6): the source address of the connection becomes Addr. It belongs in
// a nat chain on the postrouting hook, and ends the chain: the packet goes
// on, translated, to the next base chain. The rule must only match packets
// of Family (nft's nat statement does nothing to a packet of the other
// family and lets the next rule run).
type SNAT struct {
	Family Family // IPv4 or IPv6, that of Addr
	Addr   netip.Addr
}

// DNAT is nft `dnat ip to ADDR[:PORT]` (Family IPv4) or `dnat ip6 to
// [ADDR]:PORT` (IPv6): the destination of the connection becomes Addr, and
// Port when it is not 0 (which needs a rule that matches one protocol with
// ports). It belongs in a nat chain on the prerouting (or output) hook, and
// ends the chain as SNAT does; later chains see the new destination.
type DNAT struct {
	Family Family // IPv4 or IPv6, that of Addr
	Addr   netip.Addr
	Port   uint16 // 0: the port is left as it is
}

// Masquerade is nft `masquerade`: the source address becomes the primary
// address of the output interface, of the packet's own family. It belongs
// in a nat chain on the postrouting hook and ends the chain as SNAT does.
type Masquerade struct{}

// ClampMSS is nft `tcp option maxseg size set N` (or `... set rt mtu` with
// PMTU): a statement, not a decision. It lowers the MSS option of a TCP
// packet to Size (or to what the route's path MTU allows) and never raises
// it (the kernel leaves a smaller MSS alone); the packet goes on with the
// next rule, as after a rule without a verdict. The rule must match TCP
// (a TCPFlagsMatch does).
type ClampMSS struct {
	Size uint16 // 1-65535; unused with PMTU
	PMTU bool
}

func (SNAT) isVerdict()       {}
func (DNAT) isVerdict()       {}
func (Masquerade) isVerdict() {}
func (ClampMSS) isVerdict()   {}

// IsNAT reports whether a verdict is an address translation (SNAT, DNAT or
// Masquerade).
func IsNAT(v Verdict) bool {
	switch v.(type) {
	case SNAT, DNAT, Masquerade:
		return true
	}
	return false
}

// CtStatus is a set of conntrack status bits (nft's ct status), with the
// kernel's bit values.
type CtStatus uint32

// Conntrack status bits hostwall matches.
const (
	// CtStatusDNAT is nft `dnat` (IPS_DST_NAT): the connection's
	// destination was rewritten by DNAT.
	CtStatusDNAT CtStatus = 1 << 5
)

// CtStatusMatch holds when the packet's connection has one of the status
// bits of Status (nft `ct status dnat`). Eval knows CtStatusDNAT only: it
// holds for a packet that a DNAT of the same evaluation translated (see
// Eval).
type CtStatusMatch struct {
	Status CtStatus
}

// TCP flag bits, as in the TCP header.
const (
	TCPFlagFIN uint8 = 1 << 0 // nft `fin`
	TCPFlagSYN uint8 = 1 << 1 // nft `syn`
	TCPFlagRST uint8 = 1 << 2 // nft `rst`
	TCPFlagACK uint8 = 1 << 4 // nft `ack`
)

// TCPFlagsMatch holds for TCP packets whose flags, masked with Mask, equal
// Value (nft `tcp flags syn / syn,rst`: SYNs and SYN-ACKs). It implies the
// protocol. Eval has no flags in its packets: it takes a TCP packet in
// state new as a SYN and any other TCP packet as an ACK.
type TCPFlagsMatch struct {
	Mask, Value uint8
}

func (CtStatusMatch) isMatch() {}
func (TCPFlagsMatch) isMatch() {}

// TCPFlagNames names the bits of f that hostwall writes, in nft's listing
// order (fin, syn, rst, ack); rest is the bits of f it does not name.
func TCPFlagNames(f uint8) (names []string, rest uint8) {
	for _, n := range []struct {
		bit  uint8
		name string
	}{{TCPFlagFIN, "fin"}, {TCPFlagSYN, "syn"}, {TCPFlagRST, "rst"}, {TCPFlagACK, "ack"}} {
		if f&n.bit != 0 {
			names = append(names, n.name)
			f &^= n.bit
		}
	}
	return names, f
}

// tcpFlagsOf is the TCP flags Eval assumes a packet has.
func tcpFlagsOf(p Packet) uint8 {
	if p.State == CtNew {
		return TCPFlagSYN
	}
	return TCPFlagACK
}

// Translation is an address translation Eval applied to a packet.
type Translation struct {
	// Rule and Chain are the NAT rule and its chain.
	Rule  *Rule
	Chain *Chain
	// Addr is the new address (destination for DNAT, source for SNAT);
	// invalid for Masquerade, whose address is that of the output
	// interface, which Eval does not know.
	Addr netip.Addr
	// Port is the new destination port of a DNAT, 0 when unchanged.
	Port uint16
	// Masquerade is set for a Masquerade.
	Masquerade bool
}

// natFamily is the family a NAT statement translates (FamilyAny for
// Masquerade).
func natFamily(v Verdict) Family {
	switch v := v.(type) {
	case SNAT:
		return v.Family
	case DNAT:
		return v.Family
	}
	return FamilyAny
}
