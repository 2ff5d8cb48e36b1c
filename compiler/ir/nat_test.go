package ir

import (
	"net/netip"
	"strings"
	"testing"
)

// natRuleset is a small gateway: a port forward and a v6 forward on
// prerouting, masquerade and snat on postrouting, an MSS clamp, and a
// forward chain that accepts what DNAT rewrote and nothing else.
func natRuleset(t *testing.T) *Ruleset {
	tcp8443 := PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{8443, 8443}}}
	wanIn := IfaceMatch{Dir: In, Names: []string{"wan0"}}
	wanOut := IfaceMatch{Dir: Out, Names: []string{"wan0"}}
	pre := &Chain{Name: "nat_prerouting", Base: &Base{Type: TypeNAT, Hook: HookPrerouting, Priority: PriorityDstNAT, Policy: Accept{}}, Rules: []*Rule{
		// An IPv6 statement first: IPv4 packets pass it by.
		{Matches: []Match{wanIn, tcp8443}, Verdict: DNAT{Family: FamilyIPv6, Addr: netip.MustParseAddr("fd00:64::80"), Port: 443}, Comment: "fwd6"},
		{Matches: []Match{wanIn, FamilyMatch{FamilyIPv4}, tcp8443}, Verdict: DNAT{Family: FamilyIPv4, Addr: netip.MustParseAddr("198.18.64.80"), Port: 443}, Comment: "fwd4"},
		{Matches: []Match{wanIn, ProtoMatch{Protos: []Proto{ProtoGRE}}}, Verdict: Drop{}, Comment: "gre dropped in nat"},
	}}
	post := &Chain{Name: "nat_postrouting", Base: &Base{Type: TypeNAT, Hook: HookPostrouting, Priority: PrioritySrcNAT, Policy: Accept{}}, Rules: []*Rule{
		{Matches: []Match{wanOut, AddrMatch{Field: Src, Family: FamilyIPv4, Elems: rngs(t, "198.18.64.0/24")}}, Verdict: SNAT{Family: FamilyIPv4, Addr: netip.MustParseAddr("198.19.0.1")}, Comment: "snat"},
		{Matches: []Match{wanOut}, Verdict: Masquerade{}, Comment: "masq"},
	}}
	clamp := &Rule{Matches: []Match{wanOut, TCPFlagsMatch{Mask: TCPFlagSYN | TCPFlagRST, Value: TCPFlagSYN}}, Verdict: ClampMSS{Size: 1250}, Comment: "mss"}
	mss := &Chain{Name: "mss", Base: &Base{Type: TypeFilter, Hook: HookPostrouting, Priority: PriorityMangle, Policy: Accept{}}, Rules: []*Rule{clamp}}
	forward := &Chain{Name: "forward", Base: &Base{Type: TypeFilter, Hook: HookForward, Priority: PriorityFilter, Policy: Drop{}}, Rules: []*Rule{
		{Matches: []Match{CtStatusMatch{Status: CtStatusDNAT}}, Verdict: Accept{}, Comment: "dnat"},
		{Matches: []Match{IfaceMatch{Dir: In, Names: []string{"lan0"}}}, Verdict: Accept{}, Comment: "lan out"},
		// Sees the translated destination: never the public one.
		{Matches: []Match{AddrMatch{Field: Dst, Family: FamilyIPv4, Elems: rngs(t, "198.19.0.1")}}, Verdict: Reject{With: RejectICMPXAdminProhibited}, Comment: "public dst"},
	}}
	return &Ruleset{Table: "t", Chains: []*Chain{forward, post, mss, pre}}
}

func TestEvalNAT(t *testing.T) {
	rs := natRuleset(t)
	tests := []struct {
		pkt      string
		status   CtStatus
		want     string
		rule     string // comment of the deciding rule
		dnat     string // "addr:port" or "addr", "" for none
		dnatBy   string
		snat     string // address, "masquerade" or ""
		entered  string
		clamped  bool
		skipNote string // in a StepSkip note
	}{
		// The port forward: translated, accepted by ct status dnat, and
		// the reply path's masquerade does not apply (iif wan, oif lan).
		{pkt: "forward tcp 198.19.7.7 -> 198.19.0.1:8443 iif wan0 oif lan0", want: "accept", rule: "dnat", dnat: "198.18.64.80:443", dnatBy: "fwd4",
			entered: "nat_prerouting forward mss nat_postrouting"},
		{pkt: "forward tcp [fd00:77::7]:1234 -> [fd00::1]:8443 iif wan0 oif lan0", want: "accept", rule: "dnat", dnat: "[fd00:64::80]:443", dnatBy: "fwd6",
			entered: "nat_prerouting forward mss nat_postrouting"},
		// Not forwarded: the forward chain sees the public address.
		{pkt: "forward tcp 198.19.7.7 -> 198.19.0.1:8444 iif wan0 oif lan0", want: "reject", rule: "public dst",
			entered: "nat_prerouting forward"},
		// A drop in a nat chain ends everything.
		{pkt: "forward gre 198.19.7.7 -> 198.19.0.1 iif wan0 oif lan0", want: "drop", rule: "gre dropped in nat",
			entered: "nat_prerouting"},
		// LAN out: snat for the LAN's addresses, masquerade for the rest;
		// the SYN is clamped.
		{pkt: "forward tcp 198.18.64.9 -> 198.19.7.7:443 iif lan0 oif wan0", want: "accept", rule: "lan out", snat: "198.19.0.1",
			entered: "nat_prerouting forward mss nat_postrouting", clamped: true},
		{pkt: "forward udp [fd00:64::9]:53 -> [fd00:77::7]:53 iif lan0 oif wan0", want: "accept", rule: "lan out", snat: "masquerade",
			entered: "nat_prerouting forward mss nat_postrouting"},
		// Established: translated as the first packet was, without
		// entering the nat chains; not clamped (not a SYN).
		{pkt: "forward tcp 198.19.7.7 -> 198.19.0.1:8443 iif wan0 oif lan0 state established", want: "accept", rule: "dnat", dnat: "198.18.64.80:443", dnatBy: "fwd4",
			entered: "forward mss", skipNote: "translated as the first one was"},
		{pkt: "forward tcp 198.18.64.9 -> 198.19.7.7:443 iif lan0 oif wan0 state established", want: "accept", rule: "lan out", snat: "198.19.0.1",
			entered: "forward mss"},
		// Invalid packets are never translated.
		{pkt: "forward tcp 198.19.7.7 -> 198.19.0.1:8443 iif wan0 oif lan0 state invalid", want: "reject", rule: "public dst",
			entered: "forward", skipNote: "never translated"},
		// A caller that knows the connection was DNATed says so.
		{pkt: "forward tcp 198.18.9.9 -> 198.18.64.80:443 iif wan0 oif lan0 state invalid", status: CtStatusDNAT, want: "accept", rule: "dnat",
			entered: "forward mss"},
		// Out: postrouting only.
		{pkt: "out tcp 198.19.0.1 -> 198.19.7.7:443 oif wan0", want: "accept", snat: "masquerade", entered: "mss nat_postrouting", clamped: true},
	}
	for _, tc := range tests {
		t.Run(tc.pkt, func(t *testing.T) {
			p := pkt(t, tc.pkt)
			p.CtStatus = tc.status
			res := Eval(rs, p)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if got := VerdictName(res.Verdict); got != tc.want {
				t.Errorf("verdict %s, want %s", got, tc.want)
			}
			gotRule := ""
			if res.Rule != nil {
				gotRule = res.Rule.Comment
			}
			if gotRule != tc.rule {
				t.Errorf("deciding rule %q, want %q", gotRule, tc.rule)
			}
			gotDNAT, gotBy := "", ""
			if d := res.DNAT; d != nil {
				gotDNAT = d.Addr.String()
				if d.Port != 0 {
					gotDNAT = netip.AddrPortFrom(d.Addr, d.Port).String()
				}
				gotBy = d.Rule.Comment
			}
			if gotDNAT != tc.dnat || gotBy != tc.dnatBy {
				t.Errorf("dnat %q by %q, want %q by %q", gotDNAT, gotBy, tc.dnat, tc.dnatBy)
			}
			gotSNAT := ""
			if s := res.SNAT; s != nil {
				gotSNAT = s.Addr.String()
				if s.Masquerade {
					gotSNAT = "masquerade"
				}
			}
			if gotSNAT != tc.snat {
				t.Errorf("snat %q, want %q", gotSNAT, tc.snat)
			}
			var entered []string
			clamped, note := false, false
			for _, s := range res.Trace {
				switch s.Kind {
				case StepEnter:
					entered = append(entered, s.Chain.Name)
				case StepRule:
					if _, ok := s.Verdict.(ClampMSS); ok {
						clamped = true
					}
				case StepSkip:
					if tc.skipNote != "" && strings.Contains(s.Note, tc.skipNote) {
						note = true
					}
				}
			}
			if got := strings.Join(entered, " "); got != tc.entered {
				t.Errorf("chains entered %q, want %q", got, tc.entered)
			}
			if clamped != tc.clamped {
				t.Errorf("mss clamped %v, want %v", clamped, tc.clamped)
			}
			if tc.skipNote != "" && !note {
				t.Errorf("no skip note containing %q in %+v", tc.skipNote, res.Trace)
			}
		})
	}
}

// TestEvalNATMisplaced: NAT statements where the kernel refuses them are
// evaluation errors, never a silent accept.
func TestEvalNATMisplaced(t *testing.T) {
	v4 := DNAT{Family: FamilyIPv4, Addr: netip.MustParseAddr("198.18.0.5")}
	tests := []struct {
		name string
		c    *Chain
	}{
		{"dnat in a filter chain", &Chain{Name: "fwd", Base: &Base{Type: TypeFilter, Hook: HookForward, Policy: Accept{}}, Rules: []*Rule{{Verdict: v4}}}},
		{"dnat on postrouting", &Chain{Name: "post", Base: &Base{Type: TypeNAT, Hook: HookPostrouting, Policy: Accept{}}, Rules: []*Rule{{Verdict: v4}}}},
		{"snat on prerouting", &Chain{Name: "pre", Base: &Base{Type: TypeNAT, Hook: HookPrerouting, Policy: Accept{}}, Rules: []*Rule{{Verdict: SNAT{Family: FamilyIPv4, Addr: netip.MustParseAddr("198.18.0.5")}}}}},
		{"masquerade on prerouting", &Chain{Name: "pre", Base: &Base{Type: TypeNAT, Hook: HookPrerouting, Policy: Accept{}}, Rules: []*Rule{{Verdict: Masquerade{}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := Eval(&Ruleset{Table: "t", Chains: []*Chain{tc.c}}, pkt(t, "forward tcp 198.18.0.1 -> 198.18.0.2:22 iif a oif b"))
			if res.Err == nil {
				t.Fatalf("no error; verdict %s", VerdictName(res.Verdict))
			}
			if _, ok := res.Verdict.(Drop); !ok {
				t.Errorf("verdict %s on error, want drop", VerdictName(res.Verdict))
			}
		})
	}
}

func TestMatchesNAT(t *testing.T) {
	syn := TCPFlagsMatch{Mask: TCPFlagSYN | TCPFlagRST, Value: TCPFlagSYN}
	dnat := CtStatusMatch{Status: CtStatusDNAT}
	tests := []struct {
		m      Match
		pkt    string
		status CtStatus
		want   bool
	}{
		{syn, "tcp 198.18.0.1 -> 198.18.0.2:22", 0, true},
		{syn, "tcp 198.18.0.1 -> 198.18.0.2:22 state established", 0, false},
		{syn, "udp 198.18.0.1 -> 198.18.0.2:22", 0, false},
		{dnat, "tcp 198.18.0.1 -> 198.18.0.2:22", 0, false},
		{dnat, "tcp 198.18.0.1 -> 198.18.0.2:22", CtStatusDNAT, true},
	}
	for _, tc := range tests {
		p := pkt(t, tc.pkt)
		p.CtStatus = tc.status
		got, err := Matches(tc.m, p)
		if err != nil || got != tc.want {
			t.Errorf("Matches(%+v, %s status %d) = %v, %v; want %v", tc.m, tc.pkt, tc.status, got, err, tc.want)
		}
	}
	if !IsNAT(Masquerade{}) || !IsNAT(DNAT{}) || !IsNAT(SNAT{}) || IsNAT(ClampMSS{}) || IsNAT(Accept{}) {
		t.Error("IsNAT is wrong")
	}
}
