package compiler

import (
	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

// FailsafeSSHPort is the port the failsafe ruleset accepts ssh on.
const FailsafeSSHPort = 22

// Failsafe returns the ruleset `apply` loads into table when
// settings.on_error = "failsafe" and the policy cannot be loaded, compiled
// or applied: input accepts loopback, established and related traffic,
// IPv6 neighbour discovery (hop limit 255) and new ssh (tcp/22) from
// sshFrom (from anywhere when sshFrom is nil), and drops everything else;
// forward drops everything but established traffic; output accepts. src
// says where the failsafe was asked for (settings.on_error).
func Failsafe(table string, sshFrom *netipx.IPSet, src ir.Source) *ir.Ruleset {
	rs := &ir.Ruleset{Table: table}
	what := func(w string) ir.Source { s := src; s.What = "failsafe: " + w; return s }
	established := func() *ir.Rule {
		return &ir.Rule{
			Matches: []ir.Match{ir.CtStateMatch{States: ir.CtEstablished | ir.CtRelated}},
			Counter: true, Verdict: ir.Accept{}, Source: what("established,related"),
		}
	}
	invalid := func() *ir.Rule {
		return &ir.Rule{
			Matches: []ir.Match{ir.CtStateMatch{States: ir.CtInvalid}},
			Counter: true, Verdict: ir.Drop{}, Source: what("invalid"),
		}
	}
	input := &ir.Chain{Name: "input", Base: &ir.Base{Type: ir.TypeFilter, Hook: ir.HookInput, Priority: ir.PriorityFilter, Policy: ir.Drop{}}}
	input.Rules = []*ir.Rule{
		{Matches: []ir.Match{ir.IfaceMatch{Dir: ir.In, Names: []string{"lo"}}}, Verdict: ir.Accept{}, Source: what("loopback")},
		established(),
		invalid(),
		{
			Matches: []ir.Match{
				ir.ICMPMatch{Family: ir.FamilyIPv6, Types: icmpTypes(ir.FamilyIPv6, "nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert")},
				ir.HopLimitMatch{Value: ir.NDHopLimit},
			},
			Counter: true, Verdict: ir.Accept{}, Source: what("IPv6 neighbour discovery"),
		},
	}
	ssh := ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: []ir.PortRange{{Lo: FailsafeSSHPort, Hi: FailsafeSSHPort}}}
	if sshFrom == nil {
		input.Rules = append(input.Rules, &ir.Rule{Matches: []ir.Match{ssh}, Counter: true, Verdict: ir.Accept{}, Source: what("ssh from anywhere")})
	} else {
		for _, f := range []struct {
			fam  ir.Family
			name string
		}{{ir.FamilyIPv4, "failsafe_ssh_v4"}, {ir.FamilyIPv6, "failsafe_ssh_v6"}} {
			var elems []netipx.IPRange
			for _, r := range sshFrom.Ranges() {
				if ir.FamilyOf(r.From()) == f.fam {
					elems = append(elems, r)
				}
			}
			if len(elems) == 0 {
				continue
			}
			set := &ir.Set{Name: f.name, Family: f.fam, Elems: elems, Comment: "failsafe ssh", Source: what("settings.failsafe_ssh_from")}
			rs.Sets = append(rs.Sets, set)
			input.Rules = append(input.Rules, &ir.Rule{
				Matches: []ir.Match{ir.AddrMatch{Field: ir.Src, Family: f.fam, Set: set}, ssh},
				Counter: true, Verdict: ir.Accept{}, Source: what("ssh from settings.failsafe_ssh_from"),
			})
		}
	}
	input.Rules = append(input.Rules, &ir.Rule{Counter: true, Verdict: ir.Drop{}, Source: what("drop everything else")})
	forward := &ir.Chain{Name: "forward", Base: &ir.Base{Type: ir.TypeFilter, Hook: ir.HookForward, Priority: ir.PriorityFilter, Policy: ir.Drop{}},
		Rules: []*ir.Rule{established(), invalid()}}
	output := &ir.Chain{Name: "output", Base: &ir.Base{Type: ir.TypeFilter, Hook: ir.HookOutput, Priority: ir.PriorityFilter, Policy: ir.Accept{}}}
	rs.Chains = []*ir.Chain{input, forward, output}
	return rs
}
