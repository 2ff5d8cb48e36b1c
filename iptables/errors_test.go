package iptables

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler/ir"
)

// TestExportErrors: what iptables cannot express is an error naming the
// rule's position, every problem at once, sorted, and nothing is written.
func TestExportErrors(t *testing.T) {
	tcp := func(p uint16) ir.Match { return ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(p, p)} }
	input := func(rules ...*ir.Rule) *ir.Ruleset {
		return &ir.Ruleset{Table: "hostwall", Chains: []*ir.Chain{base("input", ir.HookInput, 0, ir.Drop{}, rules...)}}
	}
	guard := func(rules ...*ir.Rule) *ir.Ruleset {
		return &ir.Ruleset{Table: "hostwall", Chains: []*ir.Chain{base("guard_prerouting", ir.HookPrerouting, -110, ir.Accept{}, rules...)}}
	}
	sub := &ir.Chain{Name: "sub", Rules: []*ir.Rule{{Verdict: ir.Accept{}, Source: src(9, "sub")}}}
	tests := []struct {
		name string
		rs   *ir.Ruleset
		opts Options
		want []string // the error's lines, in order
	}{
		{"guard reject without a mode", guard(&ir.Rule{Matches: []ir.Match{tcp(31002)}, Verdict: ir.Reject{}, Source: src(7, `guard "np"`)}), Options{},
			[]string{`policy.toml:7:3: guard "np": reject is not possible in a guard`}},
		{"log prefix over 29 bytes", input(&ir.Rule{Log: &ir.Log{Prefix: strings.Repeat("x", 30)}, Source: src(4, "defaults.log")}), Options{},
			[]string{`policy.toml:4:3: defaults.log: log prefix "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" is 30 bytes; iptables LOG allows at most 29`}},
		{"comment over 255 bytes", input(&ir.Rule{Verdict: ir.Accept{}, Comment: strings.Repeat("c", 256), Source: src(5, "r")}), Options{},
			[]string{`policy.toml:5:3: r: comment is 256 bytes; iptables allows at most 255`}},
		{"comment that would break the quotes", input(&ir.Rule{Verdict: ir.Accept{}, Comment: "a\" -j ACCEPT", Source: src(6, "r")}), Options{},
			[]string{`policy.toml:6:3: r: comment "a\" -j ACCEPT": byte 0x22 at offset 1 cannot be written`}},
		{"comment with a newline", input(&ir.Rule{Verdict: ir.Accept{}, Comment: "a\n-A INPUT -j ACCEPT", Source: src(6, "r")}), Options{},
			[]string{`policy.toml:6:3: r: comment "a\n-A INPUT -j ACCEPT": byte 0x0a at offset 1`}},
		{"tcp reset for udp", input(&ir.Rule{Matches: []ir.Match{ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoTCP, ir.ProtoUDP}}}, Verdict: ir.Reject{With: ir.RejectTCPReset}, Source: src(8, "r")}), Options{},
			[]string{`policy.toml:8:3: r: reject with tcp-reset needs a rule that matches tcp only`}},
		{"interface with a plus", input(&ir.Rule{Matches: []ir.Match{ir.IfaceMatch{Dir: ir.In, Names: []string{"eth+"}}}, Verdict: ir.Accept{}, Source: src(3, "r")}), Options{},
			[]string{`policy.toml:3:3: r: interface "eth+": byte '+' cannot be written for iptables`}},
		{"limit too fast", input(&ir.Rule{Limit: &ir.Limit{Rate: 20000, Unit: ir.PerSecond}, Verdict: ir.Accept{}, Source: src(3, "r")}), Options{},
			[]string{`policy.toml:3:3: r: limit 20000/second: iptables accepts 1/day up to 10000/second`}},
		{"nat chain on output", &ir.Ruleset{Chains: []*ir.Chain{{Name: "nat_output", Base: &ir.Base{Type: ir.TypeNAT, Hook: ir.HookOutput, Priority: -100, Policy: ir.Accept{}}}}}, Options{},
			[]string{`chain "nat_output": a nat chain on hook 3 has no iptables equivalent here (only prerouting and postrouting)`}},
		{"accept in a chain below a guard with noflush", &ir.Ruleset{Chains: []*ir.Chain{
			base("guard_prerouting", ir.HookPrerouting, -110, ir.Accept{}, &ir.Rule{Verdict: ir.Jump{Chain: sub}, Source: src(2, "g")}), sub}},
			Options{NoFlush: true},
			[]string{`policy.toml:9:3: sub: accept in chain "sub" reached from a guard cannot be written for iptables-restore --noflush`}},
		{"every problem at once, sorted", input(
			&ir.Rule{Log: &ir.Log{Prefix: strings.Repeat("y", 40)}, Source: src(20, "late")},
			&ir.Rule{Verdict: ir.Accept{}, Comment: "\x01", Source: src(10, "early")},
		), Options{},
			[]string{`policy.toml:10:3: early: comment`, `policy.toml:20:3: late: log prefix`}},
	}
	for _, tt := range tests {
		for _, fam := range families {
			t.Run(tt.name+"/"+fam.suffix, func(t *testing.T) {
				opts := tt.opts
				opts.Family = fam.f
				var out bytes.Buffer
				err := Export(&out, tt.rs, opts)
				if err == nil {
					t.Fatalf("no error; wrote:\n%s", out.String())
				}
				var list ErrorList
				if !errors.As(err, &list) {
					t.Fatalf("error %T is not an ErrorList: %v", err, err)
				}
				lines := strings.Split(err.Error(), "\n")
				if len(lines) != len(tt.want) {
					t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(tt.want), err)
				}
				for i, w := range tt.want {
					if !strings.HasPrefix(lines[i], w) {
						t.Errorf("error %d:\n got %s\nwant %s...", i, lines[i], w)
					}
				}
				if out.Len() != 0 {
					t.Errorf("a failed export wrote %d bytes", out.Len())
				}
			})
		}
	}
}

// TestFamilySplit: a rule of one family goes only to that family's file;
// a rule of both goes to both.
func TestFamilySplit(t *testing.T) {
	rs := &ir.Ruleset{Chains: []*ir.Chain{base("input", ir.HookInput, 0, ir.Drop{},
		&ir.Rule{Matches: []ir.Match{ir.FamilyMatch{Family: ir.FamilyIPv4}}, Verdict: ir.Accept{}, Comment: "only-v4", Source: src(1, "a")},
		&ir.Rule{Matches: []ir.Match{ir.HopLimitMatch{Value: 255}}, Verdict: ir.Accept{}, Comment: "only-v6-hl", Source: src(2, "b")},
		&ir.Rule{Verdict: ir.Reject{With: ir.RejectICMPv6NoRoute}, Comment: "only-v6-reject", Source: src(3, "c")},
		&ir.Rule{Matches: []ir.Match{ir.ICMPMatch{Family: ir.FamilyIPv4, Types: []ir.ICMPType{8}}}, Verdict: ir.Accept{}, Comment: "only-v4-icmp", Source: src(4, "d")},
		&ir.Rule{Matches: []ir.Match{tcpPort(22)}, Verdict: ir.Accept{}, Comment: "both", Source: src(5, "e")},
	)}}
	want := map[ir.Family][]string{
		ir.FamilyIPv4: {"only-v4", "only-v4-icmp", "both"},
		ir.FamilyIPv6: {"only-v6-hl", "only-v6-reject", "both"},
	}
	for _, fam := range families {
		var out bytes.Buffer
		if err := Export(&out, rs, Options{Family: fam.f}); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range strings.Split(out.String(), "\n") {
			if _, c, ok := strings.Cut(l, `--comment "`); ok {
				got = append(got, c[:strings.IndexByte(c, '"')])
			}
		}
		if strings.Join(got, ",") != strings.Join(want[fam.f], ",") {
			t.Errorf("%s: rules %v, want %v", fam.suffix, got, want[fam.f])
		}
	}
}

func tcpPort(p uint16) ir.Match {
	return ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: ports(p, p)}
}

// TestChunkPorts: multiport takes at most 15 ports, a range counts two.
func TestChunkPorts(t *testing.T) {
	var rs []ir.PortRange
	for p := uint16(1); p <= 7; p++ {
		rs = append(rs, ir.PortRange{Lo: p * 10, Hi: p*10 + 1}) // 7 ranges: 14 slots
	}
	rs = append(rs, ir.PortRange{Lo: 100, Hi: 100}, ir.PortRange{Lo: 200, Hi: 201}, ir.PortRange{Lo: 300, Hi: 300})
	chunks := chunkPorts(rs)
	for i, c := range chunks {
		slots := 0
		for _, r := range c {
			slots++
			if r.Lo != r.Hi {
				slots++
			}
		}
		if slots > maxMultiport {
			t.Errorf("chunk %d takes %d slots", i, slots)
		}
	}
	var flat []ir.PortRange
	for _, c := range chunks {
		flat = append(flat, c...)
	}
	if len(chunks) != 2 || len(flat) != len(rs) {
		t.Errorf("chunks %v: want 2 chunks holding all %d ranges", chunks, len(rs))
	}
}

// TestNormIfaces: names covered by a wildcard of the list are dropped, so
// that one packet never meets two of the alternatives.
func TestNormIfaces(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"eth0", "eth1"}, []string{"eth0", "eth1"}},
		{[]string{"eth*", "eth0", "eth1*"}, []string{"eth*"}},
		{[]string{"eth", "eth*"}, []string{"eth*"}},
		{[]string{"bond0", "vxlan*"}, []string{"bond0", "vxlan*"}},
	}
	for _, tt := range tests {
		if got := normIfaces(tt.in); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("normIfaces(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
