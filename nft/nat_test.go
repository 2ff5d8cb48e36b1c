package nft

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler/ir"
)

// natRuleset is a gateway's table: dnat and snat of both families,
// masquerade, ct status dnat in forward, and MSS clamping to a size and to
// the path MTU. Its text is testdata/nat.nft; the netlink equivalence test
// loads it both ways.
func natRuleset(t testing.TB) *ir.Ruleset {
	wanIn := ir.IfaceMatch{Dir: ir.In, Names: []string{"eth0"}}
	wanOut := ir.IfaceMatch{Dir: ir.Out, Names: []string{"eth0", "ppp*"}}
	tcp8443 := ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: []ir.PortRange{{Lo: 8443, Hi: 8443}}}
	udpRange := ir.PortMatch{Proto: ir.ProtoUDP, Field: ir.Dst, Ranges: []ir.PortRange{{Lo: 5000, Hi: 5010}, {Lo: 6000, Hi: 6000}}}
	v4, v6 := ir.FamilyMatch{Family: ir.FamilyIPv4}, ir.FamilyMatch{Family: ir.FamilyIPv6}
	lan4 := ir.AddrMatch{Field: ir.Src, Family: ir.FamilyIPv4, Elems: rngs(t, "198.18.64.0/24")}
	lan6 := ir.AddrMatch{Field: ir.Src, Family: ir.FamilyIPv6, Elems: rngs(t, "fd00:64::/64")}
	a4, a6 := netip.MustParseAddr("198.18.64.80"), netip.MustParseAddr("fd00:64::80")
	syn := ir.TCPFlagsMatch{Mask: ir.TCPFlagSYN | ir.TCPFlagRST, Value: ir.TCPFlagSYN}
	pre := &ir.Chain{Name: "nat_prerouting", Base: &ir.Base{Type: ir.TypeNAT, Hook: ir.HookPrerouting, Priority: ir.PriorityDstNAT, Policy: ir.Accept{}}, Rules: []*ir.Rule{
		{Matches: []ir.Match{wanIn, v4, tcp8443}, Counter: true, Verdict: ir.DNAT{Family: ir.FamilyIPv4, Addr: a4, Port: 443}},
		{Matches: []ir.Match{wanIn, v6, tcp8443}, Counter: true, Verdict: ir.DNAT{Family: ir.FamilyIPv6, Addr: a6, Port: 443}},
		{Matches: []ir.Match{wanIn, v4, udpRange}, Verdict: ir.DNAT{Family: ir.FamilyIPv4, Addr: a4}},
		{Matches: []ir.Match{wanIn, v6, ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoESP}}}, Verdict: ir.DNAT{Family: ir.FamilyIPv6, Addr: a6}},
		{Matches: []ir.Match{wanIn, v4, ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoUDP}}}, Verdict: ir.DNAT{Family: ir.FamilyIPv4, Addr: a4, Port: 53}},
		{Matches: []ir.Match{ir.AddrMatch{Field: ir.Src, Family: ir.FamilyIPv4, Elems: rngs(t, "198.19.0.0/16")}, tcp8443}, Verdict: ir.DNAT{Family: ir.FamilyIPv4, Addr: a4, Port: 8443}},
	}}
	post := &ir.Chain{Name: "nat_postrouting", Base: &ir.Base{Type: ir.TypeNAT, Hook: ir.HookPostrouting, Priority: ir.PrioritySrcNAT, Policy: ir.Accept{}}, Rules: []*ir.Rule{
		{Matches: []ir.Match{wanOut, lan4}, Counter: true, Verdict: ir.SNAT{Family: ir.FamilyIPv4, Addr: netip.MustParseAddr("198.19.0.1")}},
		{Matches: []ir.Match{wanOut, v6}, Verdict: ir.SNAT{Family: ir.FamilyIPv6, Addr: netip.MustParseAddr("fd00:99::1")}},
		{Matches: []ir.Match{wanOut, lan6}, Counter: true, Verdict: ir.Masquerade{}},
		{Matches: []ir.Match{wanOut}, Verdict: ir.Masquerade{}},
	}}
	forward := &ir.Chain{Name: "forward", Base: &ir.Base{Type: ir.TypeFilter, Hook: ir.HookForward, Priority: ir.PriorityFilter, Policy: ir.Drop{}}, Rules: []*ir.Rule{
		{Matches: []ir.Match{ir.CtStateMatch{States: ir.CtEstablished | ir.CtRelated}}, Verdict: ir.Accept{}},
		{Matches: []ir.Match{ir.CtStatusMatch{Status: ir.CtStatusDNAT}}, Counter: true, Verdict: ir.Accept{}},
	}}
	mss := &ir.Chain{Name: "mss", Base: &ir.Base{Type: ir.TypeFilter, Hook: ir.HookPostrouting, Priority: ir.PriorityMangle, Policy: ir.Accept{}}, Rules: []*ir.Rule{
		{Matches: []ir.Match{wanOut, syn}, Counter: true, Verdict: ir.ClampMSS{Size: 1250}},
		{Matches: []ir.Match{ir.IfaceMatch{Dir: ir.Out, Names: []string{"wg0"}}, syn}, Counter: true, Verdict: ir.ClampMSS{PMTU: true}},
		{Matches: []ir.Match{syn}, Verdict: ir.ClampMSS{Size: 1460}},
	}}
	return &ir.Ruleset{Table: "hostwall", Chains: []*ir.Chain{forward, pre, post, mss}}
}

func TestPrintRefusesNAT(t *testing.T) {
	a4 := netip.MustParseAddr("198.18.0.5")
	a6 := netip.MustParseAddr("fd00::5")
	v4 := ir.FamilyMatch{Family: ir.FamilyIPv4}
	tcp := ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: []ir.PortRange{{Lo: 80, Hi: 80}}}
	withRule := func(r *ir.Rule) *ir.Ruleset {
		return &ir.Ruleset{Table: "hostwall", Chains: []*ir.Chain{
			{Name: "c", Base: &ir.Base{Type: ir.TypeNAT, Hook: ir.HookPrerouting, Policy: ir.Accept{}}, Rules: []*ir.Rule{r}}}}
	}
	tests := []struct {
		name string
		r    *ir.Rule
		want string
	}{
		{"dnat without family", rule(ir.DNAT{Family: ir.FamilyIPv4, Addr: a4}, tcp), "must match its family"},
		{"dnat family conflict", rule(ir.DNAT{Family: ir.FamilyIPv6, Addr: a6}, v4), "both IPv4 and IPv6"},
		{"dnat addr family", rule(ir.DNAT{Family: ir.FamilyIPv6, Addr: a4}, ir.FamilyMatch{Family: ir.FamilyIPv6}), "not of the statement's family"},
		{"dnat no addr", rule(ir.DNAT{Family: ir.FamilyIPv4}, v4), "not a plain"},
		{"dnat port without proto", rule(ir.DNAT{Family: ir.FamilyIPv4, Addr: a4, Port: 443}, v4), "transport protocol"},
		{"dnat port on two protos", rule(ir.DNAT{Family: ir.FamilyIPv4, Addr: a4, Port: 443}, v4, ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoTCP, ir.ProtoUDP}}), "transport protocol"},
		{"snat mapped addr", rule(ir.SNAT{Family: ir.FamilyIPv6, Addr: netip.MustParseAddr("::ffff:1.2.3.4")}, ir.FamilyMatch{Family: ir.FamilyIPv6}), "not a plain"},
		{"mss without tcp", rule(ir.ClampMSS{Size: 1200}), "must match tcp"},
		{"mss size 0", rule(ir.ClampMSS{}, ir.TCPFlagsMatch{Mask: ir.TCPFlagSYN, Value: ir.TCPFlagSYN}), "size 0"},
		{"tcp flags empty", rule(ir.Accept{}, ir.TCPFlagsMatch{Mask: ir.TCPFlagSYN}), "non-empty subset"},
		{"tcp flags outside mask", rule(ir.Accept{}, ir.TCPFlagsMatch{Mask: ir.TCPFlagSYN, Value: ir.TCPFlagRST}), "non-empty subset"},
		{"tcp flags unknown", rule(ir.Accept{}, ir.TCPFlagsMatch{Mask: 0x80, Value: 0x80}), "unknown flag bits"},
		{"ct status other", rule(ir.Accept{}, ir.CtStatusMatch{Status: 1}), "only dnat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Print(errWriter{t}, withRule(tt.r))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Print = %v, want an error containing %q", err, tt.want)
			}
			// The netlink lowering refuses what the printer refuses.
			if _, err := Lower(withRule(tt.r)); err == nil {
				t.Errorf("Lower accepted it")
			}
		})
	}
}
