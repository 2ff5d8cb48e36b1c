package ir

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PacketDir says which way a packet crosses the host, and so which hooks
// it passes (see Eval).
type PacketDir uint8

const (
	// DirIn is a packet that arrives for this host: prerouting, then input.
	DirIn PacketDir = iota
	// DirOut is a packet this host sends: output, then postrouting.
	DirOut
	// DirForward is a packet routed through this host: prerouting, forward,
	// then postrouting.
	DirForward
)

// String returns "in", "out" or "forward".
func (d PacketDir) String() string {
	switch d {
	case DirOut:
		return "out"
	case DirForward:
		return "forward"
	}
	return "in"
}

// Defaults the PACKET parser fills in.
const (
	// DefaultSPort is the source port of a TCP/UDP/SCTP/DCCP/UDP-Lite
	// packet written without one (an ephemeral port).
	DefaultSPort = 40000
	// DefaultHopLimit is the hop limit (IPv6) of a packet written without
	// one, except neighbour discovery (see NDHopLimit).
	DefaultHopLimit = 64
	// NDHopLimit is the hop limit of ICMPv6 router/neighbour solicitations
	// and advertisements and redirects (RFC 4861 requires 255).
	NDHopLimit = 255
)

// Packet is one packet as Eval sees it: the header fields hostwall's
// matches read, the interfaces it crosses and its conntrack state.
type Packet struct {
	// Direction is in (to this host), out (from this host) or forward
	// (routed through this host).
	Direction PacketDir
	// IIF is the name of the input interface: set for in and forward, empty
	// for out (the kernel has no input interface there).
	IIF string
	// OIF is the name of the output interface: set for out and forward,
	// empty for in.
	OIF string
	// Src and Dst are the source and destination addresses; both are of
	// one family (see Family), neither is an IPv4-mapped IPv6 address.
	Src, Dst netip.Addr
	// Proto is the L4 protocol (IPv4 protocol / IPv6 next header).
	Proto Proto
	// SPort and DPort are the ports of protocols that have ports
	// (Proto.HasPorts); zero otherwise.
	SPort, DPort uint16
	// ICMPType is the ICMP type (Proto ProtoICMP, IPv4) or ICMPv6 type
	// (Proto ProtoICMPv6, IPv6); zero for other protocols.
	ICMPType ICMPType
	// State is the packet's conntrack state: exactly one of CtNew,
	// CtEstablished, CtRelated, CtInvalid, CtUntracked.
	State CtState
	// HopLimit is the IPv6 hop limit (the TTL for IPv4, which no match
	// reads). The parser uses DefaultHopLimit, and NDHopLimit for neighbour
	// discovery types.
	HopLimit uint8
	// DstLocal says whether Dst is an address of this host (nft `fib daddr
	// type local`): true for in, false for forward, and for out true only
	// when the host sends to itself. The caller decides; the parser sets
	// it from the direction (in: true, out and forward: false).
	DstLocal bool
	// CtStatus are conntrack status bits of the packet's connection that
	// the caller knows (nft `ct status`); the parser leaves it 0. Eval adds
	// CtStatusDNAT when a DNAT translates the packet.
	CtStatus CtStatus
}

// Family returns the packet's family, that of its source address.
func (p Packet) Family() Family { return FamilyOf(p.Src) }

// isND reports whether an ICMPv6 type is router/neighbour discovery or a
// redirect, which always travel with hop limit 255.
func isND(t ICMPType) bool { return t >= 133 && t <= 137 }

// TypicalHopLimit is the hop limit the parser gives a packet written
// without one: NDHopLimit for ICMPv6 neighbour discovery and redirects,
// DefaultHopLimit otherwise.
func (p Packet) TypicalHopLimit() uint8 { return defaultHopLimit(p) }

// defaultHopLimit is the hop limit the parser gives a packet.
func defaultHopLimit(p Packet) uint8 {
	if p.Family() == FamilyIPv6 && p.Proto == ProtoICMPv6 && isND(p.ICMPType) {
		return NDHopLimit
	}
	return DefaultHopLimit
}

// String writes the packet in the PACKET syntax ParsePacket reads; the
// parser reads it back to the same packet (DstLocal aside, which the text
// does not carry).
func (p Packet) String() string {
	var b strings.Builder
	b.WriteString(p.Direction.String())
	b.WriteByte(' ')
	switch p.Proto {
	case ProtoICMPv6:
		b.WriteString("icmpv6")
	default:
		b.WriteString(p.Proto.String())
	}
	b.WriteByte(' ')
	b.WriteString(hostPort(p.Src, p.SPort, p.Proto.HasPorts()))
	b.WriteString(" -> ")
	b.WriteString(hostPort(p.Dst, p.DPort, p.Proto.HasPorts()))
	if p.IIF != "" {
		b.WriteString(" iif " + p.IIF)
	}
	if p.OIF != "" {
		b.WriteString(" oif " + p.OIF)
	}
	if p.State != 0 {
		b.WriteString(" state " + p.State.String())
	}
	if f, ok := icmpFamily(p.Proto); ok {
		b.WriteString(" type " + ICMPTypeName(f, p.ICMPType))
	}
	if p.HopLimit != defaultHopLimit(p) {
		b.WriteString(" hoplimit " + strconv.Itoa(int(p.HopLimit)))
	}
	return b.String()
}

// hostPort writes an address with an optional port, IPv6 in brackets when
// there is a port.
func hostPort(a netip.Addr, port uint16, hasPort bool) string {
	if !hasPort {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

// icmpFamily returns the family whose ICMP the protocol is.
func icmpFamily(p Proto) (Family, bool) {
	switch p {
	case ProtoICMP:
		return FamilyIPv4, true
	case ProtoICMPv6:
		return FamilyIPv6, true
	}
	return FamilyAny, false
}

// packetSyntax is what ParsePacket expects; errors repeat it.
const packetSyntax = "[in|out|forward] PROTO SRC[:SPORT] -> DST[:DPORT] [iif NAME] [oif NAME] [state STATE] [type ICMPTYPE] [hoplimit N]"

// ParsePacket reads a packet written the way an operator thinks of it:
//
//	[in|out|forward] PROTO SRC[:SPORT] -> DST[:DPORT] [iif NAME] [oif NAME] [state STATE] [type ICMPTYPE] [hoplimit N]
//
// for example `tcp 203.0.113.9:40000 -> 192.0.2.10:3306 iif eth0`,
// `out udp [fd00::1]:5353 -> [fd00::2]:53 oif eth1`,
// `forward icmp 198.18.0.1 -> 198.18.1.1 iif lan0 oif wan0 type echo-request`.
// IPv6 addresses with a port are written in brackets; without a port, bare
// or in brackets. Defaults: direction in, state new, source port
// DefaultSPort, ICMP type echo-request, hop limit DefaultHopLimit
// (NDHopLimit for ICMPv6 neighbour discovery). A destination port is
// required for protocols with ports and refused for others. Source and
// destination must be of one family, icmp goes with IPv4 and icmpv6 with
// IPv6, iif is for in and forward, oif for out and forward. DstLocal is set
// for in only; a caller that knows the host's addresses may set it for out.
func ParsePacket(s string) (Packet, error) {
	fields := strings.Fields(strings.ReplaceAll(s, "->", " -> "))
	if len(fields) == 0 {
		return Packet{}, fmt.Errorf("empty packet: expected %s", packetSyntax)
	}
	var p Packet
	i := 0
	switch fields[0] {
	case "in":
		p.Direction, i = DirIn, 1
	case "out":
		p.Direction, i = DirOut, 1
	case "forward":
		p.Direction, i = DirForward, 1
	}
	if len(fields) < i+4 || fields[i+2] != "->" {
		return Packet{}, fmt.Errorf("packet %q: expected %s", s, packetSyntax)
	}
	proto, ok := ParseProto(fields[i])
	if !ok {
		return Packet{}, fmt.Errorf("unknown protocol %q: expected a name (%s) or a number 0-255", fields[i], strings.Join(ProtoNames(), ", "))
	}
	p.Proto = proto
	src, sport, hasSPort, err := parseHostPort(fields[i+1], "source")
	if err != nil {
		return Packet{}, err
	}
	dst, dport, hasDPort, err := parseHostPort(fields[i+3], "destination")
	if err != nil {
		return Packet{}, err
	}
	p.Src, p.Dst = src, dst
	if FamilyOf(src) != FamilyOf(dst) {
		return Packet{}, fmt.Errorf("source %s and destination %s are of different families: a packet is IPv4 or IPv6", src, dst)
	}
	if proto.HasPorts() {
		p.SPort = DefaultSPort
		if hasSPort {
			p.SPort = sport
		}
		if !hasDPort {
			return Packet{}, fmt.Errorf("%s packet without a destination port: write DST:PORT (IPv6 as [ADDR]:PORT)", proto)
		}
		p.DPort = dport
	} else if hasSPort || hasDPort {
		return Packet{}, fmt.Errorf("protocol %s has no ports: write the addresses without :PORT", proto)
	}
	if f, ok := icmpFamily(proto); ok {
		if f != p.Family() {
			want := "icmp"
			if p.Family() == FamilyIPv6 {
				want = "icmpv6"
			}
			return Packet{}, fmt.Errorf("protocol %s does not go with %s addresses: use %s", fields[i], famName(p.Family()), want)
		}
		p.ICMPType, _ = ParseICMPType(f, "echo-request")
	}
	p.State = CtNew
	hopLimit := -1
	seen := map[string]bool{}
	rest := fields[i+4:]
	for j := 0; j < len(rest); j += 2 {
		key := rest[j]
		if j+1 >= len(rest) {
			return Packet{}, fmt.Errorf("%q needs a value: expected %s", key, packetSyntax)
		}
		val := rest[j+1]
		if seen[key] {
			return Packet{}, fmt.Errorf("%q given twice", key)
		}
		seen[key] = true
		switch key {
		case "iif", "oif":
			if err := checkIfaceName(val); err != nil {
				return Packet{}, fmt.Errorf("%s %q: %v", key, val, err)
			}
			if key == "iif" {
				if p.Direction == DirOut {
					return Packet{}, fmt.Errorf("iif on an out packet: a packet this host sends has no input interface (use oif)")
				}
				p.IIF = val
			} else {
				if p.Direction == DirIn {
					return Packet{}, fmt.Errorf("oif on an in packet: a packet for this host has no output interface (use iif, or write forward)")
				}
				p.OIF = val
			}
		case "state":
			st, ok := ParseCtState(val)
			if !ok {
				return Packet{}, fmt.Errorf("unknown state %q: expected one of new, established, related, invalid, untracked", val)
			}
			p.State = st
		case "type":
			f, ok := icmpFamily(proto)
			if !ok {
				return Packet{}, fmt.Errorf("type %q on a %s packet: only icmp and icmpv6 packets have a type", val, proto)
			}
			t, ok := ParseICMPType(f, val)
			if !ok {
				n, err := strconv.ParseUint(val, 10, 8)
				if err != nil {
					return Packet{}, fmt.Errorf("unknown %s type %q: expected a number 0-255 or one of %s", fields[i], val, strings.Join(ICMPTypeNames(f), ", "))
				}
				t = ICMPType(n)
			}
			p.ICMPType = t
		case "hoplimit":
			n, err := strconv.ParseUint(val, 10, 8)
			if err != nil {
				return Packet{}, fmt.Errorf("hoplimit %q: expected a number 0-255", val)
			}
			hopLimit = int(n)
		default:
			return Packet{}, fmt.Errorf("unexpected %q: expected iif, oif, state, type or hoplimit after the addresses (%s)", key, packetSyntax)
		}
	}
	p.HopLimit = defaultHopLimit(p)
	if hopLimit >= 0 {
		p.HopLimit = uint8(hopLimit)
	}
	p.DstLocal = p.Direction == DirIn
	return p, nil
}

// famName names a family for messages.
func famName(f Family) string {
	switch f {
	case FamilyIPv4:
		return "IPv4"
	case FamilyIPv6:
		return "IPv6"
	}
	return "any"
}

// parseHostPort reads ADDR, ADDR:PORT (IPv4), [ADDR] or [ADDR]:PORT.
func parseHostPort(s, what string) (netip.Addr, uint16, bool, error) {
	host, port, hasPort := s, "", false
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, 0, false, fmt.Errorf("%s %q: missing ]: write IPv6 with a port as [ADDR]:PORT", what, s)
		}
		host = s[1:end]
		switch after := s[end+1:]; {
		case after == "":
		case strings.HasPrefix(after, ":"):
			port, hasPort = after[1:], true
		default:
			return netip.Addr{}, 0, false, fmt.Errorf("%s %q: expected :PORT after ]", what, s)
		}
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
		hasPort = true
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, 0, false, fmt.Errorf("%s %q: not an IP address: write 192.0.2.1, 192.0.2.1:80, fd00::1 or [fd00::1]:80", what, s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, 0, false, fmt.Errorf("%s %q: an address with a zone (%%%s) cannot be matched: leave it out", what, s, a.Zone())
	}
	if a.Is4In6() {
		return netip.Addr{}, 0, false, fmt.Errorf("%s %q: an IPv4-mapped IPv6 address: write the IPv4 address %s", what, s, a.Unmap())
	}
	if strings.HasPrefix(s, "[") && a.Is4() {
		return netip.Addr{}, 0, false, fmt.Errorf("%s %q: brackets are for IPv6 addresses: write %s", what, s, a)
	}
	if !hasPort {
		return a, 0, false, nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (len(port) > 1 && port[0] == '0') {
		return netip.Addr{}, 0, false, fmt.Errorf("%s %q: port %q: expected a number 0-65535", what, s, port)
	}
	return a, uint16(n), true, nil
}

// checkIfaceName checks an interface name: 1 to 15 bytes of letters,
// digits, '.', '_' and '-'.
func checkIfaceName(s string) error {
	if len(s) == 0 || len(s) > 15 {
		return fmt.Errorf("an interface name is 1 to 15 bytes")
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("byte %q is not allowed: use letters, digits, '.', '_' and '-'", c)
		}
	}
	return nil
}
