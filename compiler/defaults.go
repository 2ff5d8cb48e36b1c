package compiler

import (
	"slices"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// Essential ICMP (policy-format.md, [defaults] icmp = "essential"; RFC 4890
// for ICMPv6).
var (
	essentialICMPv4 = icmpTypes(ir.FamilyIPv4, "echo-request", "destination-unreachable", "time-exceeded", "parameter-problem")
	essentialICMPv6 = icmpTypes(ir.FamilyIPv6, "echo-request", "destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem")
	// neighbourDiscovery is accepted only with hop limit 255 (RFC 4861: a
	// packet that crossed a router is not on-link).
	neighbourDiscovery = icmpTypes(ir.FamilyIPv6, "nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert")
)

func icmpTypes(f ir.Family, names ...string) []ir.ICMPType {
	out := make([]ir.ICMPType, len(names))
	for i, n := range names {
		t, ok := ir.ParseICMPType(f, n)
		if !ok {
			panic("compiler: unknown ICMP type " + n) // a typo in the table above
		}
		out[i] = t
	}
	slices.Sort(out)
	return out
}

// defaultsSource names a [defaults] key for a rule's Source: its position
// when the policy sets it, else no position and "(default)".
func (c *compilation) defaultsSource(key string) ir.Source {
	if p, ok := c.pol.Defaults.Keys[key]; ok {
		return source(p, "defaults."+key)
	}
	return ir.Source{What: "defaults." + key + " (default)"}
}

// defaultRules are the rules that come first in every filter base chain:
// loopback, established/related, invalid, essential ICMP.
func (c *compilation) defaultRules(hook model.Hook) []*ir.Rule {
	d := c.pol.Defaults
	var rules []*ir.Rule
	if d.Loopback && hook != model.HookForward {
		dir := ir.In
		if hook == model.HookOut {
			dir = ir.Out
		}
		rules = append(rules, &ir.Rule{
			Matches: []ir.Match{ir.IfaceMatch{Dir: dir, Names: []string{"lo"}}},
			Verdict: ir.Accept{},
			Source:  c.defaultsSource("loopback"),
		})
	}
	if d.Established {
		rules = append(rules, &ir.Rule{
			Matches: []ir.Match{ir.CtStateMatch{States: ir.CtEstablished | ir.CtRelated}},
			Verdict: ir.Accept{},
			Source:  c.defaultsSource("established"),
		})
	}
	invalid := ir.Verdict(ir.Drop{})
	if d.Invalid == model.ActionAccept {
		invalid = ir.Accept{}
	}
	rules = append(rules, &ir.Rule{
		Matches: []ir.Match{ir.CtStateMatch{States: ir.CtInvalid}},
		Counter: true,
		Verdict: invalid,
		Source:  c.defaultsSource("invalid"),
	})
	src := c.defaultsSource("icmp")
	switch d.ICMP {
	case model.ICMPEssential:
		rules = append(rules,
			&ir.Rule{Matches: []ir.Match{ir.ICMPMatch{Family: ir.FamilyIPv4, Types: essentialICMPv4}}, Verdict: ir.Accept{}, Source: src},
			&ir.Rule{Matches: []ir.Match{ir.ICMPMatch{Family: ir.FamilyIPv6, Types: essentialICMPv6}}, Verdict: ir.Accept{}, Source: src},
			&ir.Rule{Matches: []ir.Match{ir.ICMPMatch{Family: ir.FamilyIPv6, Types: neighbourDiscovery}, ir.HopLimitMatch{Value: 255}}, Verdict: ir.Accept{}, Source: src},
		)
	case model.ICMPAll:
		rules = append(rules, &ir.Rule{
			Matches: []ir.Match{ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoICMP, ir.ProtoICMPv6}}},
			Verdict: ir.Accept{},
			Source:  src,
		})
	}
	if r := c.dnatAccept(); r != nil && hook == model.HookForward {
		rules = append(rules, r)
	}
	return rules
}

// defaultVerdict ends a filter base chain: the optional rate-limited log of
// what the default drops or rejects, then the default verdict as a rule
// with a counter (accept is left to the chain policy).
func (c *compilation) defaultVerdict(hook model.Hook, def model.Action) []*ir.Rule {
	if def == model.ActionAccept {
		return nil
	}
	src := c.defaultsSource(defaultsKey(hook))
	var rules []*ir.Rule
	if l := c.pol.Defaults.Log; l != nil {
		rules = append(rules, &ir.Rule{
			Limit:  l.Limit,
			Log:    &ir.Log{Prefix: l.Prefix},
			Source: c.defaultsSource("log"),
		})
	}
	for _, alt := range verdictAlts(def, c.pol.Defaults.RejectWith, ir.FamilyAny, 0) {
		var ms []ir.Match
		if alt.fam != ir.FamilyAny {
			ms = append(ms, ir.FamilyMatch{Family: alt.fam})
		}
		ms = append(ms, alt.extra...)
		rules = append(rules, &ir.Rule{Matches: ms, Counter: true, Verdict: alt.verdict, Source: src})
	}
	return rules
}
