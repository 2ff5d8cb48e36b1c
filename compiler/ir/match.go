package ir

import "go4.org/netipx"

// Match is one packet predicate; only package ir adds kinds.
type Match interface{ isMatch() }

// FamilyMatch holds for packets of one family (nft `meta nfproto ipv4`).
// Backends may omit it where another match of the rule already implies the
// family (an `ip saddr` match, an `icmp type` match).
type FamilyMatch struct {
	Family Family // IPv4 or IPv6
}

// Direction says which interface or address of a packet a match reads.
type Direction uint8

const (
	// In is the input interface (nft `iifname`) or the source (`saddr`,
	// `sport`).
	In Direction = iota
	// Out is the output interface (nft `oifname`) or the destination
	// (`daddr`, `dport`).
	Out
)

// Src and Dst name the address and port fields of a packet.
const (
	Src = In  // nft `saddr` / `sport`
	Dst = Out // nft `daddr` / `dport`
)

// IfaceMatch holds when the packet's input (In) or output (Out) interface
// name is one of Names. A name ending in `*` matches by prefix.
type IfaceMatch struct {
	Dir    Direction
	Names  []string // sorted, deduplicated, at least one
	Negate bool
}

// AddrMatch holds when the source (Src) or destination (Dst) address of a
// packet of Family is in the named Set or in Elems (exactly one of them is
// used). Negate inverts the membership test; it still only holds for packets
// of Family.
type AddrMatch struct {
	Field  Direction
	Family Family // IPv4 or IPv6
	Set    *Set   // a named set of the ruleset, or nil
	Elems  []netipx.IPRange
	Negate bool
}

// ProtoMatch holds when the L4 protocol (nft `meta l4proto`) is one of
// Protos.
type ProtoMatch struct {
	Protos []Proto // sorted, deduplicated, at least one
}

// PortMatch holds for TCP, UDP, SCTP, DCCP or UDP-Lite packets of Proto
// whose source (Src) or destination (Dst) port is in one of Ranges
// (nft `tcp dport { 22, 80-90 }`). It implies the protocol.
type PortMatch struct {
	Proto  Proto
	Field  Direction
	Ranges []PortRange // sorted, non-overlapping, at least one
}

// ICMPMatch holds for ICMP (Family IPv4, nft `icmp type`) or ICMPv6 (Family
// IPv6, nft `icmpv6 type`) packets of one of Types. It implies the family
// and the protocol.
type ICMPMatch struct {
	Family Family
	Types  []ICMPType // sorted, deduplicated, at least one
}

// CtStateMatch holds when the packet's conntrack state is one of States
// (nft `ct state { established, related }`).
type CtStateMatch struct {
	States CtState
}

// FibLocalMatch holds when the packet's destination is an address of this
// host (nft `fib daddr type local`).
type FibLocalMatch struct{}

// HopLimitMatch holds for IPv6 packets with this hop limit (nft
// `ip6 hoplimit 255`). It implies IPv6.
type HopLimitMatch struct {
	Value uint8
}

func (FamilyMatch) isMatch()   {}
func (IfaceMatch) isMatch()    {}
func (AddrMatch) isMatch()     {}
func (ProtoMatch) isMatch()    {}
func (PortMatch) isMatch()     {}
func (ICMPMatch) isMatch()     {}
func (CtStateMatch) isMatch()  {}
func (FibLocalMatch) isMatch() {}
func (HopLimitMatch) isMatch() {}

// Verdict ends a rule; only package ir adds kinds. A nil Verdict means
// "continue".
type Verdict interface{ isVerdict() }

// Accept is nft `accept`: the packet leaves this base chain accepted (later
// base chains and hooks still see it).
type Accept struct{}

// Drop is nft `drop`.
type Drop struct{}

// Reject is nft `reject with ...`.
type Reject struct {
	With RejectType
}

// Jump is nft `jump CHAIN`: the rules of Chain run, and if none decides, the
// rule after the jump.
type Jump struct {
	Chain *Chain
}

// Return is nft `return`: leave a regular chain (in a base chain, apply the
// chain's policy).
type Return struct{}

// VerdictName is the policy word of a final verdict: "accept", "drop" or
// "reject"; "none" for no verdict or any other.
func VerdictName(v Verdict) string {
	switch v.(type) {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Reject:
		return "reject"
	}
	return "none"
}

func (Accept) isVerdict() {}
func (Drop) isVerdict()   {}
func (Reject) isVerdict() {}
func (Jump) isVerdict()   {}
func (Return) isVerdict() {}
