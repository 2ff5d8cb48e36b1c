package compiler

import (
	"slices"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// rule expands one policy rule into IR rules. A rule splits per family
// (when its addresses, services or reject type differ between IPv4 and
// IPv6) and per protocol alternative of its service; all parts share the
// rule's verdict and are adjacent, so the first-match meaning is kept.
func (c *compilation) rule(r *model.Rule) []*ir.Rule {
	var ifaces []ir.Match
	switch r.Hook {
	case model.HookIn, model.HookOut:
		zone := cmpOr(r.Zone, r.Policy.Zone)
		dir := ir.In
		if r.Hook == model.HookOut {
			dir = ir.Out
		}
		m, ok := c.zoneMatch(zone, dir)
		if !ok {
			return nil
		}
		ifaces = appendMatch(ifaces, m)
	case model.HookForward:
		m, ok := c.zoneMatch(cmpOr(r.FromZone, r.Policy.Zone), ir.In)
		if !ok {
			return nil
		}
		ifaces = appendMatch(ifaces, m)
		if m, ok = c.zoneMatch(r.ToZone, ir.Out); !ok {
			return nil
		}
		ifaces = appendMatch(ifaces, m)
	}
	tmpl := filterSpec{
		ifaces:     ifaces,
		src:        c.resolveAddr(r.From, ir.Src),
		dst:        c.resolveAddr(r.To, ir.Dst),
		services:   r.Services,
		state:      r.State,
		action:     r.Action,
		rejectWith: c.pol.Defaults.RejectWith,
		limit:      r.Limit,
		counter:    r.Counter,
		comment:    r.Comment,
		source:     source(r.Pos, ruleWhat(r)),
	}
	if r.RejectWith != nil {
		tmpl.rejectWith = *r.RejectWith
	}
	if r.Log != nil {
		tmpl.log = &ir.Log{Prefix: r.Log.Prefix}
	}
	return tmpl.expand()
}

// filterSpec is a rule or guard with its references resolved, ready to be
// expanded into IR rules.
type filterSpec struct {
	ifaces     []ir.Match
	src, dst   [2]addrSide
	extra      []ir.Match // after the addresses (e.g. fib daddr type local)
	services   []model.ServiceSpec
	state      ir.CtState
	action     model.Action
	rejectWith model.RejectWith
	limit      *ir.Limit // rate of the log; without log it has no effect
	log        *ir.Log
	counter    bool
	comment    string
	source     ir.Source
}

// expand produces the IR rules of a filterSpec, IPv4 parts before IPv6
// parts, in service order.
func (s filterSpec) expand() []*ir.Rule {
	type variant struct {
		fam      ir.Family
		src, dst *ir.AddrMatch
	}
	var variants []variant
	if s.src == ([2]addrSide{}) && s.dst == ([2]addrSide{}) {
		variants = []variant{{fam: ir.FamilyAny}}
	} else {
		for i, f := range families {
			if s.src[i].none || s.dst[i].none {
				continue
			}
			variants = append(variants, variant{f, s.src[i].match, s.dst[i].match})
		}
	}
	var out []*ir.Rule
	for _, v := range variants {
		for _, svc := range serviceMatchers(s.services) {
			fam := v.fam
			if svc.family != ir.FamilyAny {
				if fam != ir.FamilyAny && fam != svc.family {
					continue
				}
				fam = svc.family
			}
			for _, alt := range verdictAlts(s.action, s.rejectWith, fam, svc.proto) {
				ms := make([]ir.Match, 0, len(s.ifaces)+3+len(svc.matches)+len(alt.extra)+1+len(s.extra))
				ms = append(ms, s.ifaces...)
				implied := false
				for _, a := range []*ir.AddrMatch{v.src, v.dst} {
					if a != nil {
						ms = append(ms, *a)
						implied = true
					}
				}
				if svc.impliesFamily {
					implied = true
				}
				if alt.fam != ir.FamilyAny && !implied {
					ms = append(ms, ir.FamilyMatch{Family: alt.fam})
				}
				ms = append(ms, svc.matches...)
				ms = append(ms, alt.extra...)
				if s.state != 0 {
					ms = append(ms, ir.CtStateMatch{States: s.state})
				}
				ms = append(ms, s.extra...)
				if s.log != nil {
					// log and limit never change which rule decides
					// (policy-format.md): the limit only rate-limits the
					// log, in a rule of its own before the deciding one.
					out = append(out, &ir.Rule{Matches: ms, Limit: s.limit, Log: s.log, Comment: s.comment, Source: s.source})
				}
				out = append(out, &ir.Rule{
					Matches: ms,
					Counter: s.counter,
					Verdict: alt.verdict,
					Comment: s.comment,
					Source:  s.source,
				})
			}
		}
	}
	return out
}

// zoneMatch returns the interface match of a zone (ok with a nil match for
// no zone). ok is false when the zone has no interfaces: nothing can match.
func (c *compilation) zoneMatch(zone string, dir ir.Direction) (ir.Match, bool) {
	if zone == "" {
		return nil, true
	}
	z := c.pol.Zone(zone)
	if z == nil || len(z.Interfaces) == 0 {
		return nil, false
	}
	var names []string
	for _, i := range z.Interfaces {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return ir.IfaceMatch{Dir: dir, Names: slices.Compact(names)}, true
}

func appendMatch(ms []ir.Match, m ir.Match) []ir.Match {
	if m == nil {
		return ms
	}
	return append(ms, m)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// verdictAlt is one way a rule's verdict is written for a family: some
// reject types differ per family or per protocol.
type verdictAlt struct {
	fam     ir.Family
	extra   []ir.Match
	verdict ir.Verdict
}

// verdictAlts returns the verdicts of an action for packets of fam whose
// protocol is proto (0: any protocol).
func verdictAlts(a model.Action, rw model.RejectWith, fam ir.Family, proto ir.Proto) []verdictAlt {
	switch a {
	case model.ActionAccept:
		return []verdictAlt{{fam: fam, verdict: ir.Accept{}}}
	case model.ActionDrop:
		return []verdictAlt{{fam: fam, verdict: ir.Drop{}}}
	}
	var v4, v6 ir.RejectType
	switch rw {
	case model.RejectAdminProhibited:
		v4, v6 = ir.RejectICMPXAdminProhibited, ir.RejectICMPXAdminProhibited
	case model.RejectPortUnreachable:
		v4, v6 = ir.RejectICMPXPortUnreachable, ir.RejectICMPXPortUnreachable
	case model.RejectHostUnreachable:
		v4, v6 = ir.RejectICMPXHostUnreachable, ir.RejectICMPXHostUnreachable
	case model.RejectNetUnreachable:
		v4, v6 = ir.RejectICMPNetUnreachable, ir.RejectICMPv6NoRoute
	case model.RejectHostProhibited:
		v4, v6 = ir.RejectICMPHostProhibited, ir.RejectICMPv6AdminProhibited
	case model.RejectNetProhibited:
		v4, v6 = ir.RejectICMPNetProhibited, ir.RejectICMPv6AdminProhibited
	case model.RejectTCPReset:
		// TCP gets a reset; other protocols cannot, and get the ICMP error
		// iptables' REJECT would send.
		reset := verdictAlt{fam: fam, verdict: ir.Reject{With: ir.RejectTCPReset}}
		other := verdictAlt{fam: fam, verdict: ir.Reject{With: ir.RejectICMPXPortUnreachable}}
		switch {
		case proto == ir.ProtoTCP:
			return []verdictAlt{reset}
		case proto != 0:
			return []verdictAlt{other}
		}
		reset.extra = []ir.Match{ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoTCP}}}
		return []verdictAlt{reset, other}
	}
	switch {
	case fam == ir.FamilyIPv4 || (fam == ir.FamilyAny && v4 == v6):
		return []verdictAlt{{fam: fam, verdict: ir.Reject{With: v4}}}
	case fam == ir.FamilyIPv6:
		return []verdictAlt{{fam: fam, verdict: ir.Reject{With: v6}}}
	}
	return []verdictAlt{
		{fam: ir.FamilyIPv4, verdict: ir.Reject{With: v4}},
		{fam: ir.FamilyIPv6, verdict: ir.Reject{With: v6}},
	}
}
