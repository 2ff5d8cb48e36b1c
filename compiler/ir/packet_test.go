package ir

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePacket(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		in   string
		want Packet
	}{
		{"tcp 203.0.113.9:40000 -> 192.0.2.10:3306 iif eth0", Packet{
			Direction: DirIn, IIF: "eth0", Src: a("203.0.113.9"), Dst: a("192.0.2.10"), Proto: ProtoTCP,
			SPort: 40000, DPort: 3306, State: CtNew, HopLimit: 64, DstLocal: true}},
		{"out udp [fd00::1]:5353 -> [fd00::2]:53 oif eth1", Packet{
			Direction: DirOut, OIF: "eth1", Src: a("fd00::1"), Dst: a("fd00::2"), Proto: ProtoUDP,
			SPort: 5353, DPort: 53, State: CtNew, HopLimit: 64}},
		{"forward icmp 198.18.0.1 -> 198.18.1.1 iif lan0 oif wan0 type echo-request", Packet{
			Direction: DirForward, IIF: "lan0", OIF: "wan0", Src: a("198.18.0.1"), Dst: a("198.18.1.1"), Proto: ProtoICMP,
			ICMPType: 8, State: CtNew, HopLimit: 64}},
		// Default sport 40000, state as given.
		{"tcp 198.18.0.9 -> 198.18.0.1:22 state established", Packet{
			Src: a("198.18.0.9"), Dst: a("198.18.0.1"), Proto: ProtoTCP, SPort: DefaultSPort, DPort: 22,
			State: CtEstablished, HopLimit: 64, DstLocal: true}},
		// No spaces around the arrow; in written out; icmp default type.
		{"in icmp 198.18.0.9->198.18.0.1", Packet{
			Src: a("198.18.0.9"), Dst: a("198.18.0.1"), Proto: ProtoICMP, ICMPType: 8,
			State: CtNew, HopLimit: 64, DstLocal: true}},
		// Bare IPv6 without port; ND type gets hop limit 255.
		{"icmpv6 fe80::1 -> ff02::1 type nd-neighbor-solicit", Packet{
			Src: a("fe80::1"), Dst: a("ff02::1"), Proto: ProtoICMPv6, ICMPType: 135,
			State: CtNew, HopLimit: 255, DstLocal: true}},
		{"ipv6-icmp [fd00::1] -> fd00::2 type 200 hoplimit 1 state related", Packet{
			Src: a("fd00::1"), Dst: a("fd00::2"), Proto: ProtoICMPv6, ICMPType: 200,
			State: CtRelated, HopLimit: 1, DstLocal: true}},
		{"112 198.18.0.1 -> 224.0.0.18 iif eth0.100", Packet{
			IIF: "eth0.100", Src: a("198.18.0.1"), Dst: a("224.0.0.18"), Proto: ProtoVRRP,
			State: CtNew, HopLimit: 64, DstLocal: true}},
		{"  sctp   198.18.0.1:0   ->   198.18.0.2:65535  ", Packet{
			Src: a("198.18.0.1"), Dst: a("198.18.0.2"), Proto: ProtoSCTP, SPort: 0, DPort: 65535,
			State: CtNew, HopLimit: 64, DstLocal: true}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePacket(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			// Round trip through String.
			back, err := ParsePacket(got.String())
			if err != nil {
				t.Fatalf("reparse %q: %v", got.String(), err)
			}
			if back != got {
				t.Errorf("round trip %q: %+v, want %+v", got.String(), back, got)
			}
		})
	}
}

func TestParsePacketErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty packet"},
		{"tcp 198.18.0.1 198.18.0.2:22", "expected [in|out|forward] PROTO"},
		{"bogus 198.18.0.1 -> 198.18.0.2", `unknown protocol "bogus"`},
		{"tcp 198.18.0.1 -> fd00::2", "different families"},
		{"tcp [fd00::1]:1 -> 198.18.0.2:22", "different families"},
		{"tcp 198.18.0.1 -> 198.18.0.2", "without a destination port"},
		{"esp 198.18.0.1:5 -> 198.18.0.2", "has no ports"},
		{"icmp fd00::1 -> fd00::2", "use icmpv6"},
		{"icmpv6 198.18.0.1 -> 198.18.0.2", "use icmp"},
		{"tcp 198.18.0.1 -> 198.18.0.2:70000", "expected a number 0-65535"},
		{"tcp 198.18.0.1 -> 198.18.0.2:022", "expected a number 0-65535"},
		{"tcp 198.18.0.300 -> 198.18.0.2:22", "not an IP address"},
		{"tcp [fd00::1 -> [fd00::2]:22", "missing ]"},
		{"tcp [fd00::1]x -> [fd00::2]:22", "expected :PORT after ]"},
		{"tcp [198.18.0.1]:1 -> 198.18.0.2:22", "brackets are for IPv6"},
		{"tcp ::ffff:198.18.0.1 -> 198.18.0.2:22", "IPv4-mapped"},
		{"tcp [fe80::1%eth0]:1 -> [fe80::2]:22", "zone"},
		{"tcp 198.18.0.1 -> 198.18.0.2:22 iif", `"iif" needs a value`},
		{"tcp 198.18.0.1 -> 198.18.0.2:22 iif eth*", "not allowed"},
		{"tcp 198.18.0.1 -> 198.18.0.2:22 iif averyveryverylongname", "1 to 15 bytes"},
		{"tcp 198.18.0.1 -> 198.18.0.2:22 oif eth0", "oif on an in packet"},
		{"out tcp 198.18.0.1 -> 198.18.0.2:22 iif eth0", "iif on an out packet"},
		{"tcp 198.18.0.1 -> 198.18.0.2:22 state bogus", `unknown state "bogus"`},
		{"tcp 198.18.0.1 -> 198.18.0.2:22 type echo-request", "only icmp and icmpv6"},
		{"icmp 198.18.0.1 -> 198.18.0.2 type nd-neighbor-solicit", "unknown icmp type"},
		{"tcp 198.18.0.1 -> 198.18.0.2:22 hoplimit 256", "hoplimit"},
		{"tcp 198.18.0.1 -> 198.18.0.2:22 state new state new", "given twice"},
		{"tcp 198.18.0.1 -> 198.18.0.2:22 ttl 3", `unexpected "ttl"`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParsePacket(tc.in)
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// FuzzParsePacket: the parser never panics, and whatever it accepts prints
// back (String) to text that parses to the same packet.
func FuzzParsePacket(f *testing.F) {
	for _, s := range []string{
		"tcp 203.0.113.9:40000 -> 192.0.2.10:3306 iif eth0",
		"out udp [fd00::1]:5353 -> [fd00::2]:53 oif eth1",
		"forward icmp 198.18.0.1 -> 198.18.1.1 iif lan0 oif wan0 type echo-request",
		"tcp 198.18.0.9 -> 198.18.0.1:22 state established",
		"icmpv6 fe80::1 -> ff02::1 type nd-neighbor-solicit hoplimit 3",
		"esp [fd00::1] -> fd00::2",
		"0 0.0.0.0 -> 0.0.0.0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePacket(s)
		if err != nil {
			return
		}
		if p.Family() != FamilyOf(p.Dst) {
			t.Fatalf("%q: families differ: %v", s, p)
		}
		text := p.String()
		q, err := ParsePacket(text)
		if err != nil {
			t.Fatalf("%q parsed, but its String %q does not: %v", s, text, err)
		}
		if q != p {
			t.Fatalf("round trip of %q via %q: %+v, want %+v", s, text, q, p)
		}
	})
}
