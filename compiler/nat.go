package compiler

import (
	"fmt"
	"slices"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// Chain names of the gateway features (policy-format.md, "NAT and MSS
// clamping").
const (
	ChainNATPrerouting  = "nat_prerouting"
	ChainNATPostrouting = "nat_postrouting"
	ChainMSS            = "mss"
)

// natTypeName is the policy word of a NAT type.
func natTypeName(t model.NATType) string {
	switch t {
	case model.NATSNAT:
		return "snat"
	case model.NATDNAT:
		return "dnat"
	}
	return "masquerade"
}

// natWhat names a [[nat]] for humans and for Source.What: `nat[2] dnat`.
func natWhat(i int, n *model.NAT) string {
	return fmt.Sprintf("nat[%d] %s", i, natTypeName(n.Type))
}

// keyPos is the position of a key's value in a table, or the table's
// header when the key is missing.
func keyPos(keys model.KeyPos, key string, header model.Pos) model.Pos {
	if p, ok := keys[key]; ok {
		return p
	}
	return header
}

// hasDNAT reports whether the policy has a dnat.
func (c *compilation) hasDNAT() bool {
	return slices.ContainsFunc(c.pol.NATs, func(n *model.NAT) bool { return n.Type == model.NATDNAT })
}

// dnatAccept is the forward chain's `ct status dnat accept`, right after
// its defaults when the policy has a dnat (nil otherwise): connections our
// DNAT rewrote are accepted, as firewalld does.
func (c *compilation) dnatAccept() *ir.Rule {
	for i, n := range c.pol.NATs {
		if n.Type == model.NATDNAT {
			return &ir.Rule{
				Matches: []ir.Match{ir.CtStatusMatch{Status: ir.CtStatusDNAT}},
				Counter: true,
				Verdict: ir.Accept{},
				Source:  source(n.Pos, DNATAcceptWhat+" (after "+natWhat(i, n)+")"),
			}
		}
	}
	return nil
}

// DNATAcceptWhat starts the Source.What of the forward chain's `ct status
// dnat accept` rule.
const DNATAcceptWhat = "nat.dnat accepts what it rewrote"

// natChains builds nat_prerouting and nat_postrouting (when the policy has
// a [[nat]]) and mss (when it has an [[mss]]), with the errors only the
// compiler can see: a dnat to one of the node's own addresses, a zone
// without interfaces, a from that has no address of the translation's
// family.
func (c *compilation) natChains(diags *model.Diags) []*ir.Chain {
	var out []*ir.Chain
	if len(c.pol.NATs) > 0 {
		pre := &ir.Chain{
			Name: ChainNATPrerouting,
			Base: &ir.Base{Type: ir.TypeNAT, Hook: ir.HookPrerouting, Priority: ir.PriorityDstNAT, Policy: ir.Accept{}},
		}
		post := &ir.Chain{
			Name: ChainNATPostrouting,
			Base: &ir.Base{Type: ir.TypeNAT, Hook: ir.HookPostrouting, Priority: ir.PrioritySrcNAT, Policy: ir.Accept{}},
		}
		for i, n := range c.pol.NATs {
			rules := c.natRules(i, n, diags)
			if n.Type == model.NATDNAT {
				pre.Rules = append(pre.Rules, rules...)
			} else {
				post.Rules = append(post.Rules, rules...)
			}
		}
		out = append(out, pre, post)
	}
	if len(c.pol.MSS) > 0 {
		mss := &ir.Chain{
			Name: ChainMSS,
			Base: &ir.Base{Type: ir.TypeFilter, Hook: ir.HookPostrouting, Priority: ir.PriorityMangle, Policy: ir.Accept{}},
		}
		for i, m := range c.pol.MSS {
			mss.Rules = append(mss.Rules, c.mssRule(i, m, diags)...)
		}
		out = append(out, mss)
	}
	return out
}

// natRules compiles one [[nat]]: one rule per family it applies to and
// protocol alternative of its service, in that order.
func (c *compilation) natRules(i int, n *model.NAT, diags *model.Diags) []*ir.Rule {
	typ := natTypeName(n.Type)
	zoneKey, dir, zone := "to_zone", ir.Out, n.ToZone
	if n.Type == model.NATDNAT {
		zoneKey, dir, zone = "from_zone", ir.In, n.FromZone
	}
	var ifaces []ir.Match
	if zone == "" && n.Type == model.NATMasquerade {
		diags.Errorf(n.Pos, "masquerade without \"to_zone\": it takes the address of the interface a packet leaves through, so it needs the zone whose interfaces those are (e.g. to_zone = \"public\")")
		return nil
	}
	if zone != "" {
		m, ok := c.zoneMatch(zone, dir)
		if !ok {
			leaving := "leaving through"
			if dir == ir.In {
				leaving = "arriving through"
			}
			diags.Errorf(keyPos(n.Keys, zoneKey, n.Pos), "%s on zone %q, which has no interfaces: no packet is %s it; give the zone interfaces or use another zone", typ, zone, leaving)
			return nil
		}
		ifaces = appendMatch(ifaces, m)
	}
	if n.Type == model.NATDNAT && c.node != nil && slices.Contains(c.node.Addresses, n.ToAddr) {
		diags.Errorf(keyPos(n.Keys, "to", n.Pos), "dnat to %s, an address of node %q itself: a dnat forwards to another host; to accept the port here, use a [[policy.in]] rule", n.ToAddr, c.node.Name)
		return nil
	}
	src := c.resolveAddr(n.From, ir.Src)
	fams := families[:]
	if n.Type != model.NATMasquerade {
		fams = []ir.Family{ir.FamilyOf(n.ToAddr)}
	}
	var verdict func(ir.Family) ir.Verdict
	switch n.Type {
	case model.NATDNAT:
		verdict = func(f ir.Family) ir.Verdict { return ir.DNAT{Family: f, Addr: n.ToAddr, Port: n.ToPort} }
	case model.NATSNAT:
		verdict = func(f ir.Family) ir.Verdict { return ir.SNAT{Family: f, Addr: n.ToAddr} }
	default:
		verdict = func(ir.Family) ir.Verdict { return ir.Masquerade{} }
	}
	what := source(n.Pos, natWhat(i, n))
	var out []*ir.Rule
	anyFamily := n.Type == model.NATMasquerade && src == ([2]addrSide{})
	if anyFamily {
		fams = []ir.Family{ir.FamilyAny}
	}
	for _, f := range fams {
		var addr *ir.AddrMatch
		if f != ir.FamilyAny {
			side := src[slices.Index(families[:], f)]
			if side.none {
				if n.Type != model.NATMasquerade {
					diags.Errorf(keyPos(n.Keys, "from", n.Pos), "%s to %s: \"from\" has no %s address, so this %s never matches; add %s addresses to from or change \"to\"", typ, n.ToAddr, famWord(f), typ, famWord(f))
				}
				continue
			}
			addr = side.match
		}
		for _, svc := range serviceMatchers(n.Services) {
			if svc.family != ir.FamilyAny && f != ir.FamilyAny && svc.family != f {
				continue
			}
			var ms []ir.Match
			ms = append(ms, ifaces...)
			if addr != nil {
				ms = append(ms, *addr)
			} else if f != ir.FamilyAny && !svc.impliesFamily {
				ms = append(ms, ir.FamilyMatch{Family: f})
			}
			ms = append(ms, svc.matches...)
			out = append(out, &ir.Rule{Matches: ms, Counter: true, Verdict: verdict(f), Source: what})
		}
	}
	if len(out) == 0 && !diags.HasErrors() && n.Type == model.NATMasquerade {
		diags.Errorf(keyPos(n.Keys, "from", n.Pos), "masquerade: \"from\" has no address, so it never matches; add addresses to the group or remove from")
	}
	return out
}

// mssRule compiles one [[mss]]: TCP SYNs and SYN-ACKs leaving through the
// zone get their MSS clamped.
func (c *compilation) mssRule(i int, m *model.MSS, diags *model.Diags) []*ir.Rule {
	var ms []ir.Match
	if m.Zone != "" {
		z, ok := c.zoneMatch(m.Zone, ir.Out)
		if !ok {
			diags.Errorf(keyPos(m.Keys, "zone", m.Pos), "mss on zone %q, which has no interfaces: no packet leaves through it; give the zone interfaces or use another zone", m.Zone)
			return nil
		}
		ms = appendMatch(ms, z)
	}
	ms = append(ms, ir.TCPFlagsMatch{Mask: ir.TCPFlagSYN | ir.TCPFlagRST, Value: ir.TCPFlagSYN})
	return []*ir.Rule{{
		Matches: ms,
		Counter: true,
		Verdict: ir.ClampMSS{Size: m.Size, PMTU: m.PMTU},
		Source:  source(m.Pos, fmt.Sprintf("mss[%d]", i)),
	}}
}

// famWord names a family in messages.
func famWord(f ir.Family) string {
	if f == ir.FamilyIPv6 {
		return "IPv6"
	}
	return "IPv4"
}
