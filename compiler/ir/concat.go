package ir

import (
	"cmp"
	"net/netip"
	"slices"
)

// This file holds what the compiler's optimiser adds to the IR: the
// concatenated lookup of an address and a port (nft `ip saddr . tcp dport
// { 198.18.0.1 . 22, ... }`), which decides in one hash lookup what many
// "this source to this port" rules decide one by one, and MergedRule, which
// says which of the rules a merged rule stands for decides a packet.

// AddrPort is one element of a ConcatMatch: an address and a port.
type AddrPort struct {
	Addr netip.Addr
	Port uint16
}

// CompareAddrPort orders AddrPorts by address, then port (the order of
// ConcatMatch.Elems).
func CompareAddrPort(a, b AddrPort) int {
	return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
}

// ConcatMatch holds for packets of Family and protocol Proto whose address
// (AddrField: Src or Dst) and port (PortField) are, together, one of Elems:
// nft `ip saddr . tcp dport { 198.18.0.1 . 22, 198.18.0.2 . 443 }`. It
// implies the family and the protocol.
type ConcatMatch struct {
	Family    Family // IPv4 or IPv6
	AddrField Direction
	Proto     Proto // a protocol with ports (Proto.HasPorts)
	PortField Direction
	// Elems are sorted by CompareAddrPort and distinct, at least one; each
	// address is of Family.
	Elems []AddrPort
}

func (ConcatMatch) isMatch() {}

// matchConcat reports whether a ConcatMatch holds for p.
func matchConcat(m ConcatMatch, p Packet) bool {
	if m.Family != p.Family() || p.Proto != m.Proto || !p.Proto.HasPorts() {
		return false
	}
	k := AddrPort{Addr: p.Src, Port: p.SPort}
	if m.AddrField == Dst {
		k.Addr = p.Dst
	}
	if m.PortField == Dst {
		k.Port = p.DPort
	}
	_, found := slices.BinarySearchFunc(m.Elems, k, CompareAddrPort)
	return found
}

// MergedRule returns the rule that decides p when r matches it: r itself,
// or, when r merges several rules (Rule.Merged), the first of them that
// matches p. It returns nil when r merges rules and none of them matches
// p, which means the merge was wrong (Eval reports it as an error).
func MergedRule(r *Rule, p Packet) (*Rule, error) {
	if len(r.Merged) == 0 {
		return r, nil
	}
	for _, o := range r.Merged {
		ok, err := matchAll(o.Matches, p)
		if err != nil {
			return nil, err
		}
		if ok {
			return o, nil
		}
	}
	return nil, nil
}
