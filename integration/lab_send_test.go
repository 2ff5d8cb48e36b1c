package integration

import (
	"net/netip"
	"testing"

	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

// TestPacketSender proves each kind of probe PacketSender sends tells
// accept, drop and reject apart, in each direction: a hand-written table
// decides a set of packets, and both ir.Eval and the kernel must give the
// outcome written beside each packet. Two tables differ only in
// `ct state established accept` and `ct state invalid drop`: an
// established packet passes only with the first, a SYN+FIN segment only
// without the second, so those probes are really established and invalid.
func TestPacketSender(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	a := netip.MustParseAddr
	ok4, rej4, drop4 := a("198.18.7.1"), a("198.18.7.2"), a("198.18.7.3")
	ok6, rej6 := a("fd00:7::1"), a("fd00:7::2")
	node4, node6 := a("198.18.7.254"), a("fd00:7::fe")
	far4, far6 := a("198.18.8.1"), a("fd00:8::1")
	from := func(x netip.Addr) ir.Match {
		f := ir.FamilyIPv4
		if x.Is6() {
			f = ir.FamilyIPv6
		}
		return ir.AddrMatch{Field: ir.Src, Family: f, Elems: []netipx.IPRange{netipx.IPRangeFrom(x, x)}}
	}
	dport := func(p ir.Proto, n uint16) ir.Match {
		return ir.PortMatch{Proto: p, Field: ir.Dst, Ranges: []ir.PortRange{{Lo: n, Hi: n}}}
	}
	proto := func(p ir.Proto) ir.Match { return ir.ProtoMatch{Protos: []ir.Proto{p}} }
	rule := func(v ir.Verdict, ms ...ir.Match) *ir.Rule { return &ir.Rule{Matches: ms, Verdict: v} }
	admin := ir.Reject{With: ir.RejectICMPXAdminProhibited}
	reset := ir.Reject{With: ir.RejectTCPReset}
	table := func(withCt bool) *ir.Ruleset {
		// Loopback first, as every hostwall table has it: a reject on the
		// output hook answers this host over lo.
		in := []*ir.Rule{rule(ir.Accept{}, ir.IfaceMatch{Dir: ir.In, Names: []string{"lo"}})}
		if withCt {
			in = append(in,
				rule(ir.Accept{}, ir.CtStateMatch{States: ir.CtEstablished}),
				rule(ir.Drop{}, ir.CtStateMatch{States: ir.CtInvalid}))
		}
		in = append(in,
			rule(ir.Accept{}, dport(ir.ProtoTCP, 80)),
			rule(reset, dport(ir.ProtoTCP, 81)),
			rule(ir.Accept{}, dport(ir.ProtoUDP, 53)),
			rule(admin, dport(ir.ProtoUDP, 54)),
			rule(ir.Accept{}, from(ok4), proto(ir.ProtoICMP)),
			rule(admin, from(rej4), proto(ir.ProtoICMP)),
			rule(ir.Accept{}, from(ok6), proto(ir.ProtoICMPv6)),
			rule(admin, from(rej6), proto(ir.ProtoICMPv6)),
			rule(ir.Accept{}, from(ok4), proto(ir.ProtoESP)),
			rule(admin, from(rej4), proto(ir.ProtoESP)),
			rule(ir.Accept{}, from(ok6), proto(ir.ProtoVRRP)),
		)
		fwd := []*ir.Rule{
			rule(ir.Accept{}, ir.CtStateMatch{States: ir.CtEstablished}),
			rule(ir.Accept{}, dport(ir.ProtoTCP, 80)),
			rule(reset, dport(ir.ProtoTCP, 81)),
			rule(admin, dport(ir.ProtoUDP, 54)),
			rule(ir.Accept{}, from(ok6), proto(ir.ProtoICMPv6)),
		}
		out := []*ir.Rule{
			rule(ir.Accept{}, ir.CtStateMatch{States: ir.CtEstablished}),
			rule(ir.Drop{}, proto(ir.ProtoVRRP), ir.AddrMatch{Field: ir.Dst, Family: ir.FamilyIPv4, Elems: []netipx.IPRange{netipx.IPRangeFrom(drop4, drop4)}}),
			rule(admin, dport(ir.ProtoUDP, 54)),
		}
		base := func(name string, h ir.Hook, policy ir.Verdict, rules []*ir.Rule) *ir.Chain {
			return &ir.Chain{Name: name, Base: &ir.Base{Type: ir.TypeFilter, Hook: h, Priority: ir.PriorityFilter, Policy: policy}, Rules: rules}
		}
		return &ir.Ruleset{Table: "hwlab", Chains: []*ir.Chain{
			base("input", ir.HookInput, ir.Drop{}, in),
			base("forward", ir.HookForward, ir.Drop{}, fwd),
			base("output", ir.HookOutput, ir.Accept{}, out),
		}}
	}
	in := func(p ir.Proto, src, dst netip.Addr, dport uint16) ir.Packet {
		pk := ir.Packet{Direction: ir.DirIn, IIF: "eth0", Src: src, Dst: dst, Proto: p, State: ir.CtNew, DstLocal: true, HopLimit: ir.DefaultHopLimit}
		switch p {
		case ir.ProtoTCP, ir.ProtoUDP:
			pk.SPort, pk.DPort = 40000+dport, dport
		case ir.ProtoICMP:
			pk.ICMPType = 8
		case ir.ProtoICMPv6:
			pk.ICMPType = 128
		}
		return pk
	}
	fwd := func(pk ir.Packet) ir.Packet {
		pk.Direction, pk.IIF, pk.OIF, pk.DstLocal = ir.DirForward, "lan0", "wan0", false
		pk.SPort += 1000
		return pk
	}
	out := func(pk ir.Packet) ir.Packet {
		pk.Direction, pk.IIF, pk.OIF, pk.DstLocal = ir.DirOut, "", "eth1", false
		pk.SPort += 2000
		return pk
	}
	state := func(pk ir.Packet, s ir.CtState, sport uint16) ir.Packet {
		pk.State, pk.SPort = s, sport
		return pk
	}
	type tc struct {
		pkt  ir.Packet
		want Outcome
	}
	common := []tc{
		{in(ir.ProtoTCP, drop4, node4, 80), Accepted},
		{in(ir.ProtoTCP, drop4, node4, 81), Rejected},
		{in(ir.ProtoTCP, drop4, node4, 82), Dropped},
		{in(ir.ProtoTCP, rej6, node6, 81), Rejected},
		{in(ir.ProtoUDP, drop4, node4, 53), Accepted},
		{in(ir.ProtoUDP, ok6, node6, 54), Rejected},
		{in(ir.ProtoUDP, ok6, node6, 55), Dropped},
		{in(ir.ProtoICMP, ok4, node4, 0), Accepted},
		{in(ir.ProtoICMP, rej4, node4, 0), Rejected},
		{in(ir.ProtoICMP, drop4, node4, 0), Dropped},
		{in(ir.ProtoICMPv6, ok6, node6, 0), Accepted},
		{in(ir.ProtoICMPv6, rej6, node6, 0), Rejected},
		{in(ir.ProtoESP, ok4, node4, 0), Accepted},
		{in(ir.ProtoESP, rej4, node4, 0), Rejected},
		{in(ir.ProtoESP, drop4, node4, 0), Dropped},
		{in(ir.ProtoVRRP, ok6, node6, 0), Accepted},
		{in(ir.ProtoVRRP, rej6, node6, 0), Dropped},
		{fwd(in(ir.ProtoTCP, ok4, far4, 80)), Accepted},
		{fwd(in(ir.ProtoTCP, ok4, far4, 81)), Rejected},
		{fwd(in(ir.ProtoTCP, ok6, far6, 82)), Dropped},
		{fwd(in(ir.ProtoUDP, ok4, far4, 54)), Rejected},
		{fwd(in(ir.ProtoICMPv6, ok6, far6, 0)), Accepted},
		{fwd(in(ir.ProtoICMPv6, rej6, far6, 0)), Dropped},
		{fwd(state(in(ir.ProtoTCP, ok4, far4, 90), ir.CtEstablished, 443)), Accepted},
		{out(in(ir.ProtoVRRP, node4, drop4, 0)), Dropped},
		{out(in(ir.ProtoVRRP, node4, ok4, 0)), Accepted},
		{out(in(ir.ProtoUDP, node6, ok6, 54)), Rejected},
	}
	for _, v := range []struct {
		name   string
		withCt bool
		extra  []tc
	}{
		{"with ct rules", true, []tc{
			{state(in(ir.ProtoTCP, drop4, node4, 90), ir.CtEstablished, 443), Accepted},
			{state(in(ir.ProtoUDP, ok6, node6, 91), ir.CtEstablished, 5353), Accepted},
			{state(in(ir.ProtoTCP, drop4, node4, 80), ir.CtInvalid, 40100), Dropped},
			{state(in(ir.ProtoTCP, ok6, node6, 80), ir.CtInvalid, 40100), Dropped},
			// The answer comes back through input: only with the
			// established rule.
			{out(in(ir.ProtoTCP, node6, ok6, 82)), Accepted},
		}},
		{"without ct rules", false, []tc{
			{state(in(ir.ProtoTCP, drop4, node4, 90), ir.CtEstablished, 443), Dropped},
			{state(in(ir.ProtoUDP, ok6, node6, 91), ir.CtEstablished, 5353), Dropped},
			{state(in(ir.ProtoTCP, drop4, node4, 80), ir.CtInvalid, 40100), Accepted},
			{state(in(ir.ProtoTCP, ok6, node6, 80), ir.CtInvalid, 40100), Accepted},
		}},
	} {
		t.Run(v.name, func(t *testing.T) {
			rs := table(v.withCt)
			var cases []PacketCase
			for _, c := range append(append([]tc{}, common...), v.extra...) {
				if got := outcomeOfVerdict(ir.Eval(rs, c.pkt).Verdict); got != c.want {
					t.Fatalf("%s: ir.Eval %s, the table says %s", c.pkt, got, c.want)
				}
				cases = append(cases, PacketCase{Name: c.pkt.String(), Pkt: c.pkt, Want: c.want})
			}
			for i, r := range (PacketSender{Load: netlinkLoader}).Send(t, rs, cases) {
				switch {
				case r.Skip != "":
					t.Errorf("%s: not sent: %s", cases[i].Pkt, r.Skip)
				case r.Got != cases[i].Want:
					t.Errorf("%s: kernel %s (%v), want %s", cases[i].Pkt, r.Got, r.Err, cases[i].Want)
				}
			}
		})
	}
}
