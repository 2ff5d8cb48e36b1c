package ir

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// PortRange is an inclusive range of ports; Lo == Hi for one port.
type PortRange struct{ Lo, Hi uint16 }

// String returns "22" or "1024-6513".
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Proto is an IP protocol number (IPv4 protocol / IPv6 next header).
type Proto uint8

// Protocols hostwall knows by name.
const (
	ProtoICMP    Proto = 1   // nft `icmp`
	ProtoIGMP    Proto = 2   // nft `igmp`
	ProtoIPIP    Proto = 4   // IP in IP (what Linux ipip tunnels use); /etc/protocols calls 4 `ipencap` and 94 `ipip`, so backends write the number
	ProtoTCP     Proto = 6   // nft `tcp`
	ProtoEGP     Proto = 8   // nft `egp`
	ProtoUDP     Proto = 17  // nft `udp`
	ProtoIPv6    Proto = 41  // nft `ipv6` (6in4)
	ProtoGRE     Proto = 47  // nft `gre`
	ProtoESP     Proto = 50  // nft `esp`
	ProtoAH      Proto = 51  // nft `ah`
	ProtoICMPv6  Proto = 58  // nft `ipv6-icmp`
	ProtoOSPF    Proto = 89  // nft `ospf`
	ProtoPIM     Proto = 103 // nft `pim`
	ProtoVRRP    Proto = 112 // nft `vrrp`
	ProtoL2TP    Proto = 115 // nft `l2tp`
	ProtoSCTP    Proto = 132 // nft `sctp`
	ProtoDCCP    Proto = 33  // nft `dccp`
	ProtoUDPLite Proto = 136 // nft `udplite`
)

var protoNames = map[Proto]string{
	ProtoICMP: "icmp", ProtoIGMP: "igmp", ProtoIPIP: "ipip", ProtoTCP: "tcp",
	ProtoEGP: "egp", ProtoUDP: "udp", ProtoIPv6: "ipv6", ProtoGRE: "gre",
	ProtoESP: "esp", ProtoAH: "ah", ProtoICMPv6: "ipv6-icmp", ProtoOSPF: "ospf",
	ProtoPIM: "pim", ProtoVRRP: "vrrp", ProtoL2TP: "l2tp", ProtoSCTP: "sctp",
	ProtoDCCP: "dccp", ProtoUDPLite: "udplite",
}

// String returns the nft name of the protocol, or its number.
func (p Proto) String() string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

// HasPorts reports whether the protocol has 16-bit source and destination
// ports that nft can match (tcp, udp, sctp, dccp, udplite).
func (p Proto) HasPorts() bool {
	switch p {
	case ProtoTCP, ProtoUDP, ProtoSCTP, ProtoDCCP, ProtoUDPLite:
		return true
	}
	return false
}

// ParseProto reads a protocol name ("tcp", "vrrp", "icmpv6", "ipv6-icmp")
// or number ("112").
func ParseProto(s string) (Proto, bool) {
	if s == "icmpv6" {
		return ProtoICMPv6, true
	}
	for p, n := range protoNames {
		if n == s {
			return p, true
		}
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	return Proto(n), true
}

// ProtoNames lists the protocol names ParseProto accepts, sorted.
func ProtoNames() []string {
	names := []string{"icmpv6"}
	for _, n := range protoNames {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ICMPType is an ICMP (v4) or ICMPv6 message type number; which one depends
// on the family it is used with.
type ICMPType uint8

// icmpTypes are the nft names of ICMP types per family.
var icmpTypes = map[Family]map[string]ICMPType{
	FamilyIPv4: {
		"echo-reply": 0, "destination-unreachable": 3, "source-quench": 4,
		"redirect": 5, "echo-request": 8, "router-advertisement": 9,
		"router-solicitation": 10, "time-exceeded": 11, "parameter-problem": 12,
		"timestamp-request": 13, "timestamp-reply": 14, "info-request": 15,
		"info-reply": 16, "address-mask-request": 17, "address-mask-reply": 18,
	},
	FamilyIPv6: {
		"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3,
		"parameter-problem": 4, "echo-request": 128, "echo-reply": 129,
		"mld-listener-query": 130, "mld-listener-report": 131,
		"mld-listener-done": 132, "nd-router-solicit": 133,
		"nd-router-advert": 134, "nd-neighbor-solicit": 135,
		"nd-neighbor-advert": 136, "nd-redirect": 137,
		"router-renumbering": 138, "ind-neighbor-solicit": 141,
		"ind-neighbor-advert": 142, "mld2-listener-report": 143,
	},
}

// ParseICMPType reads an nft ICMP type name of a family (IPv4 for icmp,
// IPv6 for icmpv6).
func ParseICMPType(f Family, name string) (ICMPType, bool) {
	t, ok := icmpTypes[f][name]
	return t, ok
}

// ICMPTypeName returns the nft name of an ICMP type of a family, or its
// number.
func ICMPTypeName(f Family, t ICMPType) string {
	for n, v := range icmpTypes[f] {
		if v == t {
			return n
		}
	}
	return strconv.Itoa(int(t))
}

// ICMPTypeNames lists the nft ICMP type names of a family, sorted.
func ICMPTypeNames(f Family) []string {
	var names []string
	for n := range icmpTypes[f] {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// CtState is a set of conntrack states (a bit mask, as nft's ct state).
type CtState uint8

// Conntrack states, with the bits nft uses.
const (
	CtInvalid     CtState = 1 << 0 // nft `invalid`
	CtEstablished CtState = 1 << 1 // nft `established`
	CtRelated     CtState = 1 << 2 // nft `related`
	CtNew         CtState = 1 << 3 // nft `new`
	CtUntracked   CtState = 1 << 6 // nft `untracked`
)

var ctStateNames = []struct {
	s    CtState
	name string
}{
	{CtInvalid, "invalid"}, {CtEstablished, "established"},
	{CtRelated, "related"}, {CtNew, "new"}, {CtUntracked, "untracked"},
}

// ParseCtState reads one state name.
func ParseCtState(name string) (CtState, bool) {
	for _, n := range ctStateNames {
		if n.name == name {
			return n.s, true
		}
	}
	return 0, false
}

// Names returns the names of the states in the set, in nft's order.
func (s CtState) Names() []string {
	var out []string
	for _, n := range ctStateNames {
		if s&n.s != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// String returns the names joined by ",".
func (s CtState) String() string { return strings.Join(s.Names(), ",") }

// RejectType is how a Reject verdict answers, in nft's exact terms. Some
// types only exist for one family: see Family.
type RejectType uint8

const (
	RejectICMPXAdminProhibited  RejectType = iota // nft `reject with icmpx admin-prohibited`
	RejectICMPXPortUnreachable                    // nft `reject with icmpx port-unreachable`
	RejectICMPXHostUnreachable                    // nft `reject with icmpx host-unreachable`
	RejectICMPXNoRoute                            // nft `reject with icmpx no-route`
	RejectICMPNetUnreachable                      // nft `reject with icmp net-unreachable` (IPv4)
	RejectICMPHostProhibited                      // nft `reject with icmp host-prohibited` (IPv4)
	RejectICMPNetProhibited                       // nft `reject with icmp net-prohibited` (IPv4)
	RejectICMPv6AdminProhibited                   // nft `reject with icmpv6 admin-prohibited` (IPv6)
	RejectICMPv6NoRoute                           // nft `reject with icmpv6 no-route` (IPv6)
	RejectTCPReset                                // nft `reject with tcp reset` (TCP only)
)

// Family returns the only family the reject type can answer, or FamilyAny.
func (t RejectType) Family() Family {
	switch t {
	case RejectICMPNetUnreachable, RejectICMPHostProhibited, RejectICMPNetProhibited:
		return FamilyIPv4
	case RejectICMPv6AdminProhibited, RejectICMPv6NoRoute:
		return FamilyIPv6
	}
	return FamilyAny
}
