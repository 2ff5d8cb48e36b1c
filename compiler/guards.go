package compiler

import (
	"fmt"

	"github.com/hostwall/hostwall/compiler/ir"
)

// guardChains builds guard_prerouting and guard_output: the guards in file
// order, at settings.guard_priority, policy accept. A guard's accept ends
// only its guard chain (exempting the packet from later guards); the input,
// forward and output chains still see the packet.
//
// A guard with a zone matches the input interface, which packets of the
// output hook do not have: such a guard is left out of guard_output.
func (c *compilation) guardChains() []*ir.Chain {
	prio := c.pol.Settings.GuardPriority
	pre := &ir.Chain{
		Name: ChainGuardPrerouting,
		Base: &ir.Base{Type: ir.TypeFilter, Hook: ir.HookPrerouting, Priority: prio, Policy: ir.Accept{}},
	}
	out := &ir.Chain{
		Name: ChainGuardOutput,
		Base: &ir.Base{Type: ir.TypeFilter, Hook: ir.HookOutput, Priority: prio, Policy: ir.Accept{}},
	}
	for _, g := range c.pol.Guards {
		spec := filterSpec{
			src:        c.resolveAddr(g.From, ir.Src),
			services:   g.Services,
			state:      g.State,
			action:     g.Action,
			rejectWith: c.pol.Defaults.RejectWith,
			limit:      g.Limit,
			counter:    g.Counter,
			comment:    g.Comment,
			source:     source(g.Pos, fmt.Sprintf("guard %q", g.Name)),
		}
		if g.Log != nil {
			spec.log = &ir.Log{Prefix: g.Log.Prefix}
		}
		if g.Local {
			spec.extra = []ir.Match{ir.FibLocalMatch{}}
		}
		zone, ok := c.zoneMatch(g.Zone, ir.In)
		if !ok {
			continue
		}
		if zone == nil && g.Output {
			out.Rules = append(out.Rules, spec.expand()...)
		}
		spec.ifaces = appendMatch(nil, zone)
		pre.Rules = append(pre.Rules, spec.expand()...)
	}
	return []*ir.Chain{pre, out}
}
