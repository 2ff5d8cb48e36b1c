package iptables

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

var update = flag.Bool("update", false, "rewrite golden files")

// src is a Source for hand-built rules.
func src(line int, what string) ir.Source {
	return ir.Source{File: "policy.toml", Line: line, Col: 3, What: what}
}

func rng(s string) netipx.IPRange {
	if from, to, ok := strings.Cut(s, "-"); ok {
		return netipx.IPRangeFrom(netip.MustParseAddr(from), netip.MustParseAddr(to))
	}
	if strings.Contains(s, "/") {
		return netipx.RangeOfPrefix(netip.MustParsePrefix(s))
	}
	a := netip.MustParseAddr(s)
	return netipx.IPRangeFrom(a, a)
}

func set(name string, f ir.Family, elems ...string) *ir.Set {
	s := &ir.Set{Name: name, Family: f, Comment: "group " + name}
	for _, e := range elems {
		s.Elems = append(s.Elems, rng(e))
	}
	return s
}

func base(name string, hook ir.Hook, prio int, policy ir.Verdict, rules ...*ir.Rule) *ir.Chain {
	return &ir.Chain{Name: name, Base: &ir.Base{Type: ir.TypeFilter, Hook: hook, Priority: prio, Policy: policy}, Rules: rules}
}

func ports(rs ...uint16) []ir.PortRange {
	var out []ir.PortRange
	for i := 0; i < len(rs); i += 2 {
		out = append(out, ir.PortRange{Lo: rs[i], Hi: rs[i+1]})
	}
	return out
}

// defaults are the rules every filter base chain starts with, as the
// compiler writes them.
func defaults(dir ir.Direction) []*ir.Rule {
	v4, _ := ir.ParseICMPType(ir.FamilyIPv4, "echo-request")
	v6 := []ir.ICMPType{1, 2, 3, 4, 128}
	return []*ir.Rule{
		{Matches: []ir.Match{ir.IfaceMatch{Dir: dir, Names: []string{"lo"}}}, Verdict: ir.Accept{}, Source: src(2, "defaults.loopback")},
		{Matches: []ir.Match{ir.CtStateMatch{States: ir.CtEstablished | ir.CtRelated}}, Verdict: ir.Accept{}, Source: src(3, "defaults.established")},
		{Matches: []ir.Match{ir.CtStateMatch{States: ir.CtInvalid}}, Verdict: ir.Drop{}, Source: src(4, "defaults.invalid")},
		{Matches: []ir.Match{ir.ICMPMatch{Family: ir.FamilyIPv4, Types: []ir.ICMPType{3, v4, 11, 12}}}, Verdict: ir.Accept{}, Source: src(5, "defaults.icmp")},
		{Matches: []ir.Match{ir.ICMPMatch{Family: ir.FamilyIPv6, Types: v6}}, Verdict: ir.Accept{}, Source: src(5, "defaults.icmp")},
		{Matches: []ir.Match{ir.ICMPMatch{Family: ir.FamilyIPv6, Types: []ir.ICMPType{133, 134, 135, 136}}, ir.HopLimitMatch{Value: 255}}, Verdict: ir.Accept{}, Source: src(5, "defaults.icmp")},
	}
}

// basicRuleset is a host policy: ssh from admins, web for everyone, a
// management interface lockdown, logged default reject, forwarding between
// zones.
func basicRuleset() *ir.Ruleset {
	admins4 := set("admins_v4", ir.FamilyIPv4, "198.51.100.0/24", "203.0.113.7", "203.0.113.20-203.0.113.40")
	admins6 := set("admins_v6", ir.FamilyIPv6, "fd00:10::/64")
	input := base("input", ir.HookInput, ir.PriorityFilter, ir.Drop{}, defaults(ir.In)...)
	input.Rules = append(input.Rules,
		&ir.Rule{Matches: []ir.Match{ir.AddrMatch{Field: ir.Src, Family: ir.FamilyIPv4, Set: admins4}, ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(22, 22)}},
			Verdict: ir.Accept{}, Comment: "ssh from admins; it's #1", Source: src(10, `policy "admin" in[0]`)},
		&ir.Rule{Matches: []ir.Match{ir.AddrMatch{Field: ir.Src, Family: ir.FamilyIPv6, Set: admins6}, ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(22, 22)}},
			Verdict: ir.Accept{}, Comment: "ssh from admins; it's #1", Source: src(10, `policy "admin" in[0]`)},
		&ir.Rule{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(80, 80, 443, 443)}}, Verdict: ir.Accept{}, Source: src(14, `policy "web" in[0]`)},
		// mgmt lockdown: drop new tcp 1024-65535 on eth0 and mgmt* except 6514, 8078.
		&ir.Rule{Matches: []ir.Match{ir.IfaceMatch{Dir: ir.In, Names: []string{"eth0", "mgmt*", "mgmt1"}}, ir.CtStateMatch{States: ir.CtNew},
			ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(1024, 6513, 6515, 8077, 8079, 65535)}},
			Log: &ir.Log{Prefix: "hostwall mgmt: "}, Verdict: ir.Reject{With: ir.RejectTCPReset}, Source: src(20, `policy "mgmt" in[0]`)},
		&ir.Rule{Matches: []ir.Match{ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoESP, ir.ProtoVRRP}}}, Verdict: ir.Accept{}, Source: src(24, `policy "ha" in[0]`)},
		&ir.Rule{Matches: []ir.Match{ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoUDP}}, ir.PortMatch{Proto: ir.ProtoUDP, Field: ir.Src, Ranges: ports(500, 500)}, ir.PortMatch{Proto: ir.ProtoUDP, Field: ir.Dst, Ranges: ports(500, 500, 4500, 4500)}},
			Verdict: ir.Accept{}, Source: src(25, `policy "ha" in[1]`)},
		&ir.Rule{Limit: &ir.Limit{Rate: 5, Unit: ir.PerMinute}, Log: &ir.Log{Prefix: "hostwall drop: "}, Source: src(30, "defaults.log")},
		&ir.Rule{Matches: []ir.Match{ir.FamilyMatch{Family: ir.FamilyIPv4}}, Verdict: ir.Reject{With: ir.RejectICMPHostProhibited}, Source: src(31, "defaults.input")},
		&ir.Rule{Matches: []ir.Match{ir.FamilyMatch{Family: ir.FamilyIPv6}}, Verdict: ir.Reject{With: ir.RejectICMPv6AdminProhibited}, Source: src(31, "defaults.input")},
	)
	forward := base("forward", ir.HookForward, ir.PriorityFilter, ir.Drop{}, defaults(ir.In)[1:]...)
	forward.Rules = append(forward.Rules,
		&ir.Rule{Matches: []ir.Match{ir.IfaceMatch{Dir: ir.In, Names: []string{"lan0", "lan1"}}, ir.IfaceMatch{Dir: ir.Out, Names: []string{"wan0"}}}, Verdict: ir.Accept{}, Source: src(40, `policy "gw" forward[0]`)},
		&ir.Rule{Matches: []ir.Match{ir.IfaceMatch{Dir: ir.In, Names: []string{"wan0"}}, ir.AddrMatch{Field: ir.Dst, Family: ir.FamilyIPv4, Elems: []netipx.IPRange{rng("198.18.5.0/24")}, Negate: true}}, Verdict: ir.Drop{}, Source: src(41, `policy "gw" forward[1]`)},
	)
	output := base("output", ir.HookOutput, ir.PriorityFilter, ir.Accept{}, defaults(ir.Out)[:1]...)
	output.Rules = append(output.Rules,
		&ir.Rule{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(25, 25)}}, Verdict: ir.Reject{With: ir.RejectICMPXAdminProhibited}, Source: src(50, `policy "nomail" out[0]`)},
	)
	return &ir.Ruleset{Table: "hostwall", Sets: []*ir.Set{admins4, admins6}, Chains: []*ir.Chain{input, forward, output}}
}

// guardRuleset blocks NodePorts from everyone but the nodes, before DNAT.
func guardRuleset() *ir.Ruleset {
	nodes4 := set("nodes_v4", ir.FamilyIPv4, "198.18.0.1", "198.18.0.2", "198.18.0.3")
	nodes6 := set("nodes_v6", ir.FamilyIPv6, "fd00::1")
	guard := func(hook ir.Hook, name string) *ir.Chain {
		c := base(name, hook, -110, ir.Accept{})
		for _, fam := range []struct {
			f ir.Family
			s *ir.Set
		}{{ir.FamilyIPv4, nodes4}, {ir.FamilyIPv6, nodes6}} {
			c.Rules = append(c.Rules,
				&ir.Rule{Matches: []ir.Match{ir.AddrMatch{Field: ir.Src, Family: fam.f, Set: fam.s}, ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(30000, 32767)}, ir.FibLocalMatch{}},
					Log: &ir.Log{Prefix: "nodeport ok: "}, Verdict: ir.Accept{}, Comment: "nodes may use NodePorts", Source: src(60, `guard "nodes-ok"`)},
				&ir.Rule{Matches: []ir.Match{ir.AddrMatch{Field: ir.Src, Family: fam.f, Set: fam.s, Negate: true}, ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(31002, 31002)}, ir.FibLocalMatch{}},
					Verdict: ir.Drop{}, Source: src(66, `guard "nodeport-31002"`)},
			)
		}
		c.Rules = append(c.Rules,
			&ir.Rule{Matches: []ir.Match{ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoTCP, ir.ProtoUDP}}, ir.CtStateMatch{States: ir.CtNew}, ir.FibLocalMatch{}},
				Limit: &ir.Limit{Rate: 100, Unit: ir.PerSecond, Burst: 50}, Verdict: ir.Accept{}, Source: src(70, `guard "rate"`)},
			&ir.Rule{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoUDP, Field: ir.Dst, Ranges: ports(30000, 32767)}, ir.FibLocalMatch{}}, Verdict: ir.Drop{}, Source: src(75, `guard "udp-nodeports"`)},
			&ir.Rule{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(32000, 32099)}, ir.FibLocalMatch{}},
				Limit: &ir.Limit{Rate: 30, Unit: ir.PerMinute}, Log: &ir.Log{Prefix: "internal: "}, Source: src(80, `guard "internal"`)},
			&ir.Rule{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(32000, 32099)}, ir.FibLocalMatch{}}, Verdict: ir.Reject{With: ir.RejectICMPXPortUnreachable}, Source: src(80, `guard "internal"`)},
			&ir.Rule{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(32100, 32199)}, ir.FibLocalMatch{}}, Verdict: ir.Reject{With: ir.RejectTCPReset}, Source: src(85, `guard "internal-rst"`)},
		)
		return c
	}
	input := base("input", ir.HookInput, ir.PriorityFilter, ir.Accept{})
	return &ir.Ruleset{Table: "hostwall", Sets: []*ir.Set{nodes4, nodes6}, Chains: []*ir.Chain{guard(ir.HookPrerouting, "guard_prerouting"), guard(ir.HookOutput, "guard_output"), input}}
}

// splitRuleset exercises what needs more than one iptables rule: long port
// lists, shared limits, long negated lists, regular chains with return.
func splitRuleset() *ir.Ruleset {
	var many []ir.PortRange
	for p := uint16(1000); p < 1040; p += 2 {
		many = append(many, ir.PortRange{Lo: p, Hi: p})
	}
	many = append(many, ir.PortRange{Lo: 2000, Hi: 2100}, ir.PortRange{Lo: 3000, Hi: 3100})
	var blocked []netipx.IPRange
	for i := range 20 {
		blocked = append(blocked, rng(netip.AddrFrom4([4]byte{198, 19, byte(2 * i), 0}).String()+"/24"))
	}
	blocked = append(blocked, rng("fd00:99::/48"))
	sub := &ir.Chain{Name: "svc_chain", Rules: []*ir.Rule{
		{Matches: []ir.Match{ir.IfaceMatch{Dir: ir.In, Names: []string{"eth1"}}}, Limit: &ir.Limit{Rate: 10, Unit: ir.PerSecond}, Log: &ir.Log{}, Verdict: ir.Return{}, Source: src(80, `policy "svc" in[0]`)},
		{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoUDP, Field: ir.Dst, Ranges: ports(53, 53)}}, Verdict: ir.Accept{}, Source: src(81, `policy "svc" in[1]`)},
		{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoSCTP, Field: ir.Dst, Ranges: ports(3868, 3868)}}, Verdict: ir.Accept{}, Source: src(82, `policy "svc" in[2]`)},
	}}
	var v4blocked, v6blocked []netipx.IPRange
	for _, b := range blocked {
		if b.From().Is4() {
			v4blocked = append(v4blocked, b)
		} else {
			v6blocked = append(v6blocked, b)
		}
	}
	input := base("input", ir.HookInput, ir.PriorityFilter, ir.Drop{},
		&ir.Rule{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: many}}, Verdict: ir.Accept{}, Source: src(90, `policy "many" in[0]`)},
		&ir.Rule{Matches: []ir.Match{ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoTCP, ir.ProtoUDP}}, ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(8080, 8080)}},
			Limit: &ir.Limit{Rate: 20, Unit: ir.PerMinute, Burst: 10}, Log: &ir.Log{Prefix: "web: "}, Verdict: ir.Accept{}, Source: src(91, `policy "web" in[0]`)},
		&ir.Rule{Matches: []ir.Match{ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoTCP, ir.ProtoUDP}}}, Limit: &ir.Limit{Rate: 3, Unit: ir.PerHour}, Verdict: ir.Drop{}, Source: src(92, `policy "rate" in[0]`)},
		&ir.Rule{Matches: []ir.Match{ir.AddrMatch{Field: ir.Src, Family: ir.FamilyIPv4, Elems: v4blocked, Negate: true}, ir.IfaceMatch{Dir: ir.In, Names: []string{"lan*"}}}, Verdict: ir.Jump{Chain: sub}, Source: src(93, `policy "svc" (zone lan)`)},
		&ir.Rule{Matches: []ir.Match{ir.AddrMatch{Field: ir.Src, Family: ir.FamilyIPv6, Elems: v6blocked, Negate: true}, ir.IfaceMatch{Dir: ir.In, Names: []string{"lan*"}}}, Verdict: ir.Jump{Chain: sub}, Source: src(93, `policy "svc" (zone lan)`)},
		&ir.Rule{Matches: []ir.Match{ir.IfaceMatch{Dir: ir.In, Names: []string{"dmz0", "dmz1"}, Negate: true}, ir.ICMPMatch{Family: ir.FamilyIPv4, Types: []ir.ICMPType{13}}}, Verdict: ir.Drop{}, Source: src(94, `policy "ts" in[0]`)},
		&ir.Rule{Matches: []ir.Match{ir.AddrMatch{Field: ir.Dst, Family: ir.FamilyIPv4, Elems: []netipx.IPRange{rng("0.0.0.0/0")}}}, Verdict: ir.Reject{With: ir.RejectICMPXNoRoute}, Source: src(95, `policy "all" in[0]`)},
	)
	return &ir.Ruleset{Table: "hostwall", Chains: []*ir.Chain{input, sub}}
}

// goldenCases are the hand-built rulesets with golden files.
var goldenCases = []struct {
	name string
	rs   func() *ir.Ruleset
	opts Options
}{
	{"basic", basicRuleset, Options{}},
	{"basic-noflush", basicRuleset, Options{NoFlush: true}},
	{"basic-ipset", basicRuleset, Options{IPSet: &bytes.Buffer{}}},
	{"guards", guardRuleset, Options{GuardReject: GuardRejectMark}},
	{"guards-drop", guardRuleset, Options{GuardReject: GuardRejectDrop}},
	{"guards-noflush", guardRuleset, Options{NoFlush: true, GuardReject: GuardRejectMark}},
	{"guards-ipset", guardRuleset, Options{IPSet: &bytes.Buffer{}, GuardReject: GuardRejectMark}},
	{"split", splitRuleset, Options{}},
	{"split-noflush", splitRuleset, Options{NoFlush: true}},
	{"nat", natRuleset, Options{}},
	{"nat-noflush", natRuleset, Options{NoFlush: true}},
}

// families are the two files of every case, with their golden suffixes.
var families = []struct {
	f      ir.Family
	suffix string
}{{ir.FamilyIPv4, "v4"}, {ir.FamilyIPv6, "v6"}}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", path, diff)
	}
}

func TestExportGolden(t *testing.T) {
	for _, tc := range goldenCases {
		for _, fam := range families {
			t.Run(tc.name+"/"+fam.suffix, func(t *testing.T) {
				opts := tc.opts
				opts.Family = fam.f
				var sets *bytes.Buffer
				if opts.IPSet != nil {
					sets = &bytes.Buffer{}
					opts.IPSet = sets
				}
				var out bytes.Buffer
				if err := Export(&out, tc.rs(), opts); err != nil {
					t.Fatalf("Export: %v", err)
				}
				checkGolden(t, filepath.Join("testdata", tc.name+".rules."+fam.suffix), out.Bytes())
				if sets != nil {
					checkGolden(t, filepath.Join("testdata", tc.name+".ipset."+fam.suffix), sets.Bytes())
				}
				// Determinism: a second export gives the same bytes.
				var again bytes.Buffer
				opts.IPSet = nil
				if sets != nil {
					opts.IPSet = &bytes.Buffer{}
				}
				if err := Export(&again, tc.rs(), opts); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), again.Bytes()) {
					t.Error("two exports of the same ruleset differ")
				}
			})
		}
	}
}

// TestFullModeFlushesGuards: a full export of a policy without guards still
// declares table mangle, so loading it removes an earlier export's guard
// chains; a noflush export leaves mangle alone.
func TestFullModeFlushesGuards(t *testing.T) {
	for _, noflush := range []bool{false, true} {
		var buf bytes.Buffer
		if err := Export(&buf, basicRuleset(), Options{Family: ir.FamilyIPv4, NoFlush: noflush}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(buf.String(), "*mangle\n"); got == noflush {
			t.Errorf("noflush=%v: *mangle written = %v, want %v\n%s", noflush, got, !noflush, buf.String())
		}
	}
}
