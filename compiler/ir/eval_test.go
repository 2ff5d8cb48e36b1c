package ir

import (
	"net/netip"
	"strings"
	"testing"

	"go4.org/netipx"
)

// rng parses "a-b", a CIDR or one address into a range (test helper).
func rng(t testing.TB, s string) netipx.IPRange {
	t.Helper()
	if from, to, ok := strings.Cut(s, "-"); ok {
		return netipx.IPRangeFrom(netip.MustParseAddr(from), netip.MustParseAddr(to))
	}
	if strings.Contains(s, "/") {
		return netipx.RangeOfPrefix(netip.MustParsePrefix(s))
	}
	a := netip.MustParseAddr(s)
	return netipx.IPRangeFrom(a, a)
}

func rngs(t testing.TB, ss ...string) []netipx.IPRange {
	var out []netipx.IPRange
	for _, s := range ss {
		out = append(out, rng(t, s))
	}
	return out
}

// pkt parses a PACKET text (test helper).
func pkt(t testing.TB, s string) Packet {
	t.Helper()
	p, err := ParsePacket(s)
	if err != nil {
		t.Fatalf("ParsePacket(%q): %v", s, err)
	}
	return p
}

// ruleset builds a one-chain ruleset: an input base chain with policy pol.
func inputOnly(pol Verdict, rules ...*Rule) *Ruleset {
	return &Ruleset{Table: "t", Chains: []*Chain{{
		Name:  "input",
		Base:  &Base{Type: TypeFilter, Hook: HookInput, Priority: PriorityFilter, Policy: pol},
		Rules: rules,
	}}}
}

// TestMatches checks every match kind, with negation, against packets that
// must and must not match.
func TestMatches(t *testing.T) {
	set4 := &Set{Name: "g4", Family: FamilyIPv4, Elems: rngs(t, "198.18.0.0/24", "198.18.5.1-198.18.5.9")}
	set6 := &Set{Name: "g6", Family: FamilyIPv6, Elems: rngs(t, "fd00:1::/64")}
	tests := []struct {
		name  string
		m     Match
		yes   []string
		no    []string
		local bool // set DstLocal on the out packets
	}{
		{"family ipv4", FamilyMatch{FamilyIPv4},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22"},
			[]string{"tcp [fd00::1]:1 -> [fd00::2]:22"}, false},
		{"family ipv6", FamilyMatch{FamilyIPv6},
			[]string{"udp [fd00::1]:1 -> [fd00::2]:53"},
			[]string{"udp 198.18.0.1 -> 198.18.0.2:53"}, false},
		{"family any", FamilyMatch{FamilyAny},
			[]string{"udp [fd00::1]:1 -> [fd00::2]:53", "udp 198.18.0.1 -> 198.18.0.2:53"}, nil, false},
		{"iif exact", IfaceMatch{Dir: In, Names: []string{"eth0", "eth2"}},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22 iif eth0", "tcp 198.18.0.1 -> 198.18.0.2:22 iif eth2"},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22 iif eth1", "tcp 198.18.0.1 -> 198.18.0.2:22 iif eth00", "out tcp 198.18.0.1 -> 198.18.0.2:22 oif eth0"}, false},
		{"iif wildcard", IfaceMatch{Dir: In, Names: []string{"vxlan*"}},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22 iif vxlan", "tcp 198.18.0.1 -> 198.18.0.2:22 iif vxlan.100"},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22 iif vxla", "tcp 198.18.0.1 -> 198.18.0.2:22 iif eth0"}, false},
		{"iif negated", IfaceMatch{Dir: In, Names: []string{"lo"}, Negate: true},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22 iif eth0", "out tcp 198.18.0.1 -> 198.18.0.2:22 oif lo"},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22 iif lo"}, false},
		{"oif", IfaceMatch{Dir: Out, Names: []string{"wan*"}},
			[]string{"out tcp 198.18.0.1 -> 198.18.0.2:22 oif wan0", "forward tcp 198.18.0.1 -> 198.18.0.2:22 iif lan0 oif wan1"},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22 iif wan0", "forward tcp 198.18.0.1 -> 198.18.0.2:22 iif wan0 oif lan0"}, false},
		{"saddr set v4", AddrMatch{Field: Src, Family: FamilyIPv4, Set: set4},
			[]string{"tcp 198.18.0.7 -> 198.18.9.9:22", "tcp 198.18.5.9 -> 198.18.9.9:22"},
			[]string{"tcp 198.18.1.7 -> 198.18.9.9:22", "tcp 198.18.5.10 -> 198.18.0.1:22", "tcp [fd00:1::1]:1 -> [fd00::9]:22"}, false},
		{"saddr set v4 negated", AddrMatch{Field: Src, Family: FamilyIPv4, Set: set4, Negate: true},
			[]string{"tcp 198.18.1.7 -> 198.18.9.9:22"},
			[]string{"tcp 198.18.0.7 -> 198.18.9.9:22", "tcp [fd00:7::1]:1 -> [fd00::9]:22"}, false},
		{"daddr set v6", AddrMatch{Field: Dst, Family: FamilyIPv6, Set: set6},
			[]string{"tcp [fd00::1]:1 -> [fd00:1::ffff]:22"},
			[]string{"tcp [fd00:1::1]:1 -> [fd00:2::1]:22", "tcp 198.18.0.1 -> 198.18.0.2:22"}, false},
		{"daddr anonymous v6 negated", AddrMatch{Field: Dst, Family: FamilyIPv6, Elems: rngs(t, "fd00::5"), Negate: true},
			[]string{"tcp [fd00::1]:1 -> [fd00::6]:22"},
			[]string{"tcp [fd00::1]:1 -> [fd00::5]:22", "tcp 198.18.0.1 -> 198.18.0.2:22"}, false},
		{"proto", ProtoMatch{Protos: []Proto{ProtoESP, ProtoVRRP}},
			[]string{"esp 198.18.0.1 -> 198.18.0.2", "112 fd00::1 -> fd00::2"},
			[]string{"ah 198.18.0.1 -> 198.18.0.2", "tcp 198.18.0.1 -> 198.18.0.2:22"}, false},
		{"dport ranges", PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{22, 22}, {1024, 6513}}},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22", "tcp 198.18.0.1 -> 198.18.0.2:1024", "tcp [fd00::1]:9 -> [fd00::2]:6513"},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:23", "tcp 198.18.0.1 -> 198.18.0.2:6514", "udp 198.18.0.1 -> 198.18.0.2:22", "sctp 198.18.0.1 -> 198.18.0.2:22"}, false},
		{"sport", PortMatch{Proto: ProtoUDP, Field: Src, Ranges: []PortRange{{500, 500}}},
			[]string{"udp 198.18.0.1:500 -> 198.18.0.2:500"},
			[]string{"udp 198.18.0.1 -> 198.18.0.2:500", "tcp 198.18.0.1:500 -> 198.18.0.2:500"}, false},
		{"icmp type", ICMPMatch{Family: FamilyIPv4, Types: []ICMPType{8, 11}},
			[]string{"icmp 198.18.0.1 -> 198.18.0.2", "icmp 198.18.0.1 -> 198.18.0.2 type time-exceeded"},
			[]string{"icmp 198.18.0.1 -> 198.18.0.2 type echo-reply", "icmpv6 fd00::1 -> fd00::2 type 8", "tcp 198.18.0.1 -> 198.18.0.2:8"}, false},
		{"icmpv6 type", ICMPMatch{Family: FamilyIPv6, Types: []ICMPType{128, 135}},
			[]string{"icmpv6 fd00::1 -> fd00::2", "icmpv6 fd00::1 -> fd00::2 type nd-neighbor-solicit"},
			[]string{"icmpv6 fd00::1 -> fd00::2 type echo-reply", "icmp 198.18.0.1 -> 198.18.0.2"}, false},
		{"ct state", CtStateMatch{States: CtEstablished | CtRelated},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22 state established", "icmp 198.18.0.1 -> 198.18.0.2 state related type destination-unreachable"},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22", "tcp 198.18.0.1 -> 198.18.0.2:22 state invalid", "tcp 198.18.0.1 -> 198.18.0.2:22 state untracked"}, false},
		{"fib daddr local", FibLocalMatch{},
			[]string{"tcp 198.18.0.1 -> 198.18.0.2:22", "out tcp 198.18.0.1 -> 198.18.0.1:22"},
			[]string{"forward tcp 198.18.0.1 -> 198.18.0.2:22 iif a oif b"}, true},
		{"hoplimit 255", HopLimitMatch{Value: 255},
			[]string{"icmpv6 fe80::1 -> ff02::1 type nd-neighbor-advert", "icmpv6 fd00::1 -> fd00::2 hoplimit 255"},
			[]string{"icmpv6 fe80::1 -> ff02::1 type nd-neighbor-advert hoplimit 254", "icmpv6 fd00::1 -> fd00::2", "icmp 198.18.0.1 -> 198.18.0.2 hoplimit 255"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(s string, want bool) {
				p := pkt(t, s)
				if tc.local && p.Direction == DirOut {
					p.DstLocal = true
				}
				got, err := Matches(tc.m, p)
				if err != nil {
					t.Fatalf("%q: %v", s, err)
				}
				if got != want {
					t.Errorf("%#v on %q = %v, want %v", tc.m, s, got, want)
				}
				// The same through Eval: a rule with only this match.
				res := Eval(inputOnly(Drop{}, &Rule{Matches: []Match{tc.m}, Verdict: Accept{}}), withDir(p))
				if _, acc := res.Verdict.(Accept); acc != want {
					t.Errorf("Eval of %q = %s, want accept=%v", s, VerdictName(res.Verdict), want)
				}
			}
			for _, s := range tc.yes {
				check(s, true)
			}
			for _, s := range tc.no {
				check(s, false)
			}
		})
	}
}

// withDir makes a packet cross the input hook so inputOnly decides it.
func withDir(p Packet) Packet {
	p.Direction = DirIn
	return p
}

func TestUnknownMatchAndVerdict(t *testing.T) {
	type oddMatch struct{ Match }
	type oddVerdict struct{ Verdict }
	p := pkt(t, "tcp 198.18.0.1 -> 198.18.0.2:22")
	res := Eval(inputOnly(Accept{}, &Rule{Matches: []Match{oddMatch{}}, Verdict: Accept{}}), p)
	if res.Err == nil || VerdictName(res.Verdict) != "drop" {
		t.Errorf("unknown match: got %s err %v, want drop with an error", VerdictName(res.Verdict), res.Err)
	}
	res = Eval(inputOnly(Accept{}, &Rule{Verdict: oddVerdict{}}), p)
	if res.Err == nil || VerdictName(res.Verdict) != "drop" {
		t.Errorf("unknown verdict: got %s err %v, want drop with an error", VerdictName(res.Verdict), res.Err)
	}
	loop := &Chain{Name: "loop"}
	loop.Rules = []*Rule{{Verdict: Jump{Chain: loop}}}
	rs := inputOnly(Accept{}, &Rule{Verdict: Jump{Chain: loop}})
	rs.Chains = append(rs.Chains, loop)
	if res := Eval(rs, p); res.Err == nil {
		t.Errorf("jump loop: no error")
	}
	if res := Eval(inputOnly(Accept{}, &Rule{Verdict: Jump{}}), p); res.Err == nil {
		t.Errorf("jump to nil: no error")
	}
	if res := Eval(nil, p); VerdictName(res.Verdict) != "accept" {
		t.Errorf("nil ruleset: %s, want accept", VerdictName(res.Verdict))
	}
}

// TestEvalChains checks the traversal: hooks per direction, several base
// chains per hook, accept continuing to the next base chain, jumps and
// returns, policies, log-only rules, reject types and NAT chains.
func TestEvalChains(t *testing.T) {
	tcp22 := PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{22, 22}}}
	tcp80 := PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{80, 80}}}
	est := CtStateMatch{States: CtEstablished | CtRelated}
	admin4 := AddrMatch{Field: Src, Family: FamilyIPv4, Elems: rngs(t, "198.18.7.0/24")}

	// Regular chains.
	ssh := &Chain{Name: "ssh", Rules: []*Rule{
		{Matches: []Match{admin4}, Verdict: Accept{}, Comment: "admins"},
		{Matches: []Match{FamilyMatch{FamilyIPv6}}, Verdict: Return{}, Comment: "v6 returns"},
		{Verdict: Reject{With: RejectTCPReset}, Comment: "others reset"},
	}}
	web := &Chain{Name: "web", Rules: []*Rule{
		{Matches: []Match{IfaceMatch{Dir: In, Names: []string{"eth1"}}}, Verdict: Drop{}, Comment: "not on eth1"},
		// falls off the end: returns
	}}
	log := &Rule{Matches: []Match{tcp80}, Log: &Log{Prefix: "web: "}, Comment: "log web"}
	input := &Chain{Name: "input", Base: &Base{Type: TypeFilter, Hook: HookInput, Priority: PriorityFilter, Policy: Drop{}}, Rules: []*Rule{
		{Matches: []Match{est}, Verdict: Accept{}, Comment: "established"},
		{Matches: []Match{tcp22}, Verdict: Jump{Chain: ssh}, Comment: "to ssh"},
		log,
		{Matches: []Match{tcp80}, Verdict: Jump{Chain: web}, Comment: "to web"},
		{Matches: []Match{tcp80}, Verdict: Accept{}, Comment: "web"},
		{Matches: []Match{ProtoMatch{Protos: []Proto{ProtoUDP}}}, Verdict: Reject{With: RejectICMPXPortUnreachable}, Comment: "udp rejected"},
		{Matches: []Match{ProtoMatch{Protos: []Proto{ProtoESP}}}, Verdict: Return{}, Comment: "esp returns to policy"},
	}}
	// Guard on prerouting: drops tcp/3000 unless from admins (accept).
	guardPre := &Chain{Name: "guard_prerouting", Base: &Base{Type: TypeFilter, Hook: HookPrerouting, Priority: -110, Policy: Accept{}}, Rules: []*Rule{
		{Matches: []Match{FibLocalMatch{}, admin4}, Verdict: Accept{}, Comment: "admins exempt"},
		{Matches: []Match{FibLocalMatch{}, PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{3000, 3099}}}}, Verdict: Drop{}, Comment: "guard 3000"},
	}}
	// A second prerouting chain at a higher priority that accepts nothing
	// itself (policy accept) but drops tcp/3001 — after the guard's accept.
	pre2 := &Chain{Name: "pre2", Base: &Base{Type: TypeFilter, Hook: HookPrerouting, Priority: -50, Policy: Accept{}}, Rules: []*Rule{
		{Matches: []Match{PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{3001, 3001}}}}, Verdict: Drop{}, Comment: "pre2 drop 3001"},
	}}
	guardOut := &Chain{Name: "guard_output", Base: &Base{Type: TypeFilter, Hook: HookOutput, Priority: -110, Policy: Accept{}}, Rules: []*Rule{
		{Matches: []Match{FibLocalMatch{}, PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{3000, 3099}}}}, Verdict: Reject{With: RejectICMPXAdminProhibited}, Comment: "guard 3000 out"},
	}}
	output := &Chain{Name: "output", Base: &Base{Type: TypeFilter, Hook: HookOutput, Priority: PriorityFilter, Policy: Accept{}}, Rules: []*Rule{
		{Matches: []Match{PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{25, 25}}}}, Verdict: Drop{}, Comment: "no smtp out"},
	}}
	forward := &Chain{Name: "forward", Base: &Base{Type: TypeFilter, Hook: HookForward, Priority: PriorityFilter, Policy: Drop{}}, Rules: []*Rule{
		{Matches: []Match{IfaceMatch{Dir: In, Names: []string{"lan*"}}, IfaceMatch{Dir: Out, Names: []string{"wan0"}}}, Verdict: Accept{}, Comment: "lan to wan"},
	}}
	natPost := &Chain{Name: "nat_postrouting", Base: &Base{Type: TypeNAT, Hook: HookPostrouting, Priority: PrioritySrcNAT, Policy: Accept{}}, Rules: []*Rule{
		{Matches: []Match{IfaceMatch{Dir: Out, Names: []string{"wan0"}}}, Verdict: Masquerade{}, Comment: "masquerade"},
	}}
	// Declared in a scrambled order: Eval must sort by hook and priority.
	rs := &Ruleset{Table: "t", Chains: []*Chain{input, ssh, web, output, pre2, guardPre, forward, guardOut, natPost}}

	tests := []struct {
		pkt       string
		local     bool // DstLocal for out packets
		want      string
		rule      string // comment of the deciding rule; "" for a policy
		chain     string
		with      RejectType
		wantTrace string // chain names entered, in order (StepEnter), joined by " "
	}{
		{"tcp 198.18.0.1 -> 198.18.0.2:22 state established", false, "accept", "established", "input", 0, "guard_prerouting pre2 input"},
		{"tcp 198.18.7.5 -> 198.18.0.2:22", false, "accept", "admins", "ssh", 0, "guard_prerouting pre2 input ssh"},
		{"tcp 198.18.9.5 -> 198.18.0.2:22", false, "reject", "others reset", "ssh", RejectTCPReset, "guard_prerouting pre2 input ssh"},
		// IPv6 returns from ssh; no later rule matches tcp/22: policy drop.
		{"tcp [fd00::1]:1 -> [fd00::2]:22", false, "drop", "", "input", 0, "guard_prerouting pre2 input ssh"},
		// web: log-only rule, then jump to web which drops on eth1...
		{"tcp 198.18.9.5 -> 198.18.0.2:80 iif eth1", false, "drop", "not on eth1", "web", 0, "guard_prerouting pre2 input web"},
		// ...and falls off its end otherwise: the rule after the jump accepts.
		{"tcp 198.18.9.5 -> 198.18.0.2:80 iif eth0", false, "accept", "web", "input", 0, "guard_prerouting pre2 input web"},
		{"udp 198.18.9.5 -> 198.18.0.2:53", false, "reject", "udp rejected", "input", RejectICMPXPortUnreachable, "guard_prerouting pre2 input"},
		// return in a base chain: its policy.
		{"esp 198.18.9.5 -> 198.18.0.2", false, "drop", "", "input", 0, "guard_prerouting pre2 input"},
		// guard drops before input could accept.
		{"tcp 198.18.9.5 -> 198.18.0.2:3000 state established", false, "drop", "guard 3000", "guard_prerouting", 0, "guard_prerouting"},
		// guard accept exempts from the guard's own later rules but the
		// next base chain and input still see the packet.
		{"tcp 198.18.7.5 -> 198.18.0.2:3000 state established", false, "accept", "established", "input", 0, "guard_prerouting pre2 input"},
		{"tcp 198.18.7.5 -> 198.18.0.2:3001 state established", false, "drop", "pre2 drop 3001", "pre2", 0, "guard_prerouting pre2"},
		// forwarded: not local, so the guard does not apply; forward decides.
		{"forward tcp 198.18.9.5 -> 198.18.10.1:3000 iif lan3 oif wan0", false, "accept", "lan to wan", "forward", 0, "guard_prerouting pre2 forward nat_postrouting"},
		{"forward tcp 198.18.9.5 -> 198.18.10.1:3000 iif wan0 oif lan3", false, "drop", "", "forward", 0, "guard_prerouting pre2 forward"},
		// out: guard_output then output then postrouting.
		{"out tcp 198.18.0.2 -> 198.18.0.2:3000 oif lo", true, "reject", "guard 3000 out", "guard_output", RejectICMPXAdminProhibited, "guard_output"},
		{"out tcp 198.18.0.2 -> 198.18.9.9:3000 oif wan0", false, "accept", "", "output", 0, "guard_output output nat_postrouting"},
		{"out tcp 198.18.0.2 -> 198.18.9.9:25 oif wan0", false, "drop", "no smtp out", "output", 0, "guard_output output"},
		// established packets skip the nat chain.
		{"out tcp 198.18.0.2 -> 198.18.9.9:443 oif wan0 state established", false, "accept", "", "output", 0, "guard_output output"},
	}
	for _, tc := range tests {
		t.Run(tc.pkt, func(t *testing.T) {
			p := pkt(t, tc.pkt)
			if p.Direction == DirOut {
				p.DstLocal = tc.local
			}
			res := Eval(rs, p)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if got := VerdictName(res.Verdict); got != tc.want {
				t.Errorf("verdict %s, want %s", got, tc.want)
			}
			if r, ok := res.Verdict.(Reject); ok && r.With != tc.with {
				t.Errorf("reject with %d, want %d", r.With, tc.with)
			}
			gotRule := ""
			if res.Rule != nil {
				gotRule = res.Rule.Comment
			}
			if gotRule != tc.rule {
				t.Errorf("deciding rule %q, want %q", gotRule, tc.rule)
			}
			if res.Chain == nil || res.Chain.Name != tc.chain {
				t.Errorf("deciding chain %v, want %s", res.Chain, tc.chain)
			}
			var entered []string
			for _, s := range res.Trace {
				if s.Kind == StepEnter {
					entered = append(entered, s.Chain.Name)
				}
			}
			if got := strings.Join(entered, " "); got != tc.wantTrace {
				t.Errorf("chains entered %q, want %q", got, tc.wantTrace)
			}
		})
	}

	// The log-only rule shows up in the trace and does not decide.
	res := Eval(rs, pkt(t, "tcp 198.18.9.5 -> 198.18.0.2:80 iif eth0"))
	found := false
	for _, s := range res.Trace {
		if s.Kind == StepRule && s.Rule == log {
			found = true
			if s.Verdict != nil || s.Index != 2 {
				t.Errorf("log step: verdict %v index %d, want none, 2", s.Verdict, s.Index)
			}
		}
	}
	if !found {
		t.Errorf("log-only rule missing from the trace: %+v", res.Trace)
	}
}

// TestEvalPolicies checks chain policies: a base chain without matching
// rules applies its policy; a nil policy accepts.
func TestEvalPolicies(t *testing.T) {
	p := pkt(t, "tcp 198.18.0.1 -> 198.18.0.2:22")
	for _, tc := range []struct {
		pol  Verdict
		want string
	}{{Accept{}, "accept"}, {Drop{}, "drop"}, {nil, "accept"}} {
		res := Eval(inputOnly(tc.pol), p)
		if got := VerdictName(res.Verdict); got != tc.want || res.Rule != nil || res.Chain == nil {
			t.Errorf("policy %v: got %s rule %v chain %v, want %s by the policy", tc.pol, got, res.Rule, res.Chain, tc.want)
		}
		last := res.Trace[len(res.Trace)-1]
		if last.Kind != StepPolicy {
			t.Errorf("policy %v: last step %+v, want a StepPolicy", tc.pol, last)
		}
	}
	// A limit does not stop a match: Eval answers for packets under the rate.
	res := Eval(inputOnly(Drop{}, &Rule{Limit: &Limit{Rate: 1, Unit: PerMinute}, Verdict: Accept{}}), p)
	if VerdictName(res.Verdict) != "accept" {
		t.Errorf("limited rule: %s, want accept", VerdictName(res.Verdict))
	}
}
