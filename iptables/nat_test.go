package iptables

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

// natRuleset is a gateway as the compiler writes it: port forwards of both
// families, snat and masquerade, ct status dnat in forward, MSS clamping.
func natRuleset() *ir.Ruleset {
	wanIn := ir.IfaceMatch{Dir: ir.In, Names: []string{"eth0"}}
	wanOut := ir.IfaceMatch{Dir: ir.Out, Names: []string{"eth0", "ppp*"}}
	tcp8443 := ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(8443, 8443)}
	v4, v6 := ir.FamilyMatch{Family: ir.FamilyIPv4}, ir.FamilyMatch{Family: ir.FamilyIPv6}
	a4, a6 := netip.MustParseAddr("198.18.64.80"), netip.MustParseAddr("fd00:64::80")
	syn := ir.TCPFlagsMatch{Mask: ir.TCPFlagSYN | ir.TCPFlagRST, Value: ir.TCPFlagSYN}
	pre := &ir.Chain{Name: "nat_prerouting", Base: &ir.Base{Type: ir.TypeNAT, Hook: ir.HookPrerouting, Priority: ir.PriorityDstNAT, Policy: ir.Accept{}}, Rules: []*ir.Rule{
		{Matches: []ir.Match{wanIn, v4, tcp8443}, Counter: true, Verdict: ir.DNAT{Family: ir.FamilyIPv4, Addr: a4, Port: 443}, Source: src(10, "nat[0] dnat")},
		{Matches: []ir.Match{wanIn, v6, tcp8443}, Counter: true, Verdict: ir.DNAT{Family: ir.FamilyIPv6, Addr: a6, Port: 443}, Source: src(10, "nat[0] dnat")},
		{Matches: []ir.Match{wanIn, v4, ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoESP}}}, Verdict: ir.DNAT{Family: ir.FamilyIPv4, Addr: a4}, Source: src(15, "nat[1] dnat")},
	}}
	post := &ir.Chain{Name: "nat_postrouting", Base: &ir.Base{Type: ir.TypeNAT, Hook: ir.HookPostrouting, Priority: ir.PrioritySrcNAT, Policy: ir.Accept{}}, Rules: []*ir.Rule{
		{Matches: []ir.Match{wanOut, ir.AddrMatch{Field: ir.Src, Family: ir.FamilyIPv4, Elems: []netipx.IPRange{rng("198.18.64.0/24")}}}, Counter: true, Verdict: ir.SNAT{Family: ir.FamilyIPv4, Addr: netip.MustParseAddr("198.19.0.1")}, Source: src(20, "nat[2] snat")},
		{Matches: []ir.Match{wanOut}, Counter: true, Verdict: ir.Masquerade{}, Source: src(25, "nat[3] masquerade")},
	}}
	forward := base("forward", ir.HookForward, ir.PriorityFilter, ir.Drop{},
		&ir.Rule{Matches: []ir.Match{ir.CtStateMatch{States: ir.CtEstablished | ir.CtRelated}}, Verdict: ir.Accept{}},
		&ir.Rule{Matches: []ir.Match{ir.CtStatusMatch{Status: ir.CtStatusDNAT}}, Counter: true, Verdict: ir.Accept{}, Source: src(10, "nat.dnat")},
	)
	mss := &ir.Chain{Name: "mss", Base: &ir.Base{Type: ir.TypeFilter, Hook: ir.HookPostrouting, Priority: ir.PriorityMangle, Policy: ir.Accept{}}, Rules: []*ir.Rule{
		{Matches: []ir.Match{wanOut, syn}, Counter: true, Verdict: ir.ClampMSS{Size: 1250}, Source: src(30, "mss[0]")},
		{Matches: []ir.Match{ir.IfaceMatch{Dir: ir.Out, Names: []string{"wg0"}}, syn}, Counter: true, Verdict: ir.ClampMSS{PMTU: true}, Source: src(33, "mss[1]")},
	}}
	return &ir.Ruleset{Table: "hostwall", Chains: []*ir.Chain{forward, pre, post, mss}}
}

// TestExportNATLines checks the lines that carry the meaning, beside the
// goldens: each family gets its own translations, in rule order.
func TestExportNATLines(t *testing.T) {
	tests := []struct {
		fam  ir.Family
		want []string
		not  []string
	}{
		{ir.FamilyIPv4, []string{
			"-A HOSTWALL-NAT-PRE -i eth0 -p tcp -m tcp --dport 8443 -j DNAT --to-destination 198.18.64.80:443",
			"-A HOSTWALL-NAT-PRE -i eth0 -p esp -j DNAT --to-destination 198.18.64.80",
			"-A HOSTWALL-NAT-POST -o eth0 -s 198.18.64.0/24 -j SNAT --to-source 198.19.0.1",
			"-A HOSTWALL-NAT-POST -o ppp+ -j MASQUERADE",
			"-A HOSTWALL-FORWARD -m conntrack --ctstate DNAT -j ACCEPT",
			"-A HOSTWALL-MSS -o eth0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1250",
			"-A HOSTWALL-MSS -o wg0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
			"-A PREROUTING -j HOSTWALL-NAT-PRE", "-A POSTROUTING -j HOSTWALL-NAT-POST", "-A POSTROUTING -j HOSTWALL-MSS",
		}, []string{"fd00:64::80", "--to-source fd00"}},
		{ir.FamilyIPv6, []string{
			"-A HOSTWALL-NAT-PRE -i eth0 -p tcp -m tcp --dport 8443 -j DNAT --to-destination [fd00:64::80]:443",
			"-A HOSTWALL-NAT-POST -o eth0 -j MASQUERADE",
			"-A HOSTWALL-MSS -o ppp+ -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1250",
		}, []string{"198.18.64.80", "SNAT"}},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		if err := Export(&out, natRuleset(), Options{Family: tc.fam}); err != nil {
			t.Fatalf("%s: %v", famName(tc.fam), err)
		}
		lines := strings.Split(out.String(), "\n")
		has := func(l string) bool {
			for _, x := range lines {
				if x == l {
					return true
				}
			}
			return false
		}
		for _, l := range tc.want {
			if !has(l) {
				t.Errorf("%s: missing line %q in:\n%s", famName(tc.fam), l, out.String())
			}
		}
		for _, s := range tc.not {
			if strings.Contains(out.String(), s) {
				t.Errorf("%s: has %q, which belongs to the other family", famName(tc.fam), s)
			}
		}
	}
	// A full export of a ruleset without NAT leaves the nat table alone
	// (an empty *nat would flush Docker's and kube-proxy's rules).
	var out bytes.Buffer
	if err := Export(&out, &ir.Ruleset{Table: "hostwall"}, Options{Family: ir.FamilyIPv4}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "*nat") {
		t.Errorf("export without NAT writes table nat:\n%s", out.String())
	}
}

func TestExportNATErrors(t *testing.T) {
	chain := func(r *ir.Rule) *ir.Ruleset {
		return &ir.Ruleset{Chains: []*ir.Chain{{Name: "nat_prerouting", Base: &ir.Base{Type: ir.TypeNAT, Hook: ir.HookPrerouting, Priority: -100, Policy: ir.Accept{}}, Rules: []*ir.Rule{r}}}}
	}
	tests := []struct {
		name string
		r    *ir.Rule
		want string
	}{
		{"dnat address of the other family", &ir.Rule{Matches: []ir.Match{ir.FamilyMatch{Family: ir.FamilyIPv4}}, Verdict: ir.DNAT{Family: ir.FamilyIPv4, Addr: netip.MustParseAddr("fd00::1")}, Source: src(4, "nat[0] dnat")},
			"policy.toml:4:3: nat[0] dnat: nat address fd00::1 is not a plain IPv4 address"},
		{"mss size 0", &ir.Rule{Matches: []ir.Match{ir.TCPFlagsMatch{Mask: ir.TCPFlagSYN, Value: ir.TCPFlagSYN}}, Verdict: ir.ClampMSS{}, Source: src(5, "mss[0]")},
			"policy.toml:5:3: mss[0]: mss clamp to size 0"},
		{"ct status other", &ir.Rule{Matches: []ir.Match{ir.CtStatusMatch{Status: 1}}, Verdict: ir.Accept{}, Source: src(6, "r")},
			"policy.toml:6:3: r: conntrack status 0x1 has no iptables equivalent here (only dnat)"},
		{"tcp flags bad", &ir.Rule{Matches: []ir.Match{ir.TCPFlagsMatch{Mask: ir.TCPFlagSYN}}, Verdict: ir.Accept{}, Source: src(7, "r")},
			"policy.toml:7:3: r: tcp flags match: value 0x0 must be a non-empty subset of mask 0x2"},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		err := Export(&out, chain(tc.r), Options{Family: ir.FamilyIPv4})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
		if out.Len() != 0 {
			t.Errorf("%s: wrote output despite the error", tc.name)
		}
	}
}
