package compiler

import (
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"go4.org/netipx"
)

// families are the two L3 families a rule may be split into, in output
// order.
var families = [2]ir.Family{ir.FamilyIPv4, ir.FamilyIPv6}

// addrSide is what a from/to key requires of the packets of one family.
type addrSide struct {
	none  bool          // no packet of this family can match
	match *ir.AddrMatch // the address test; nil when any address matches
}

// resolveAddr turns a from/to spec into one addrSide per family (index 0
// IPv4, 1 IPv6). A group with no member of a family never matches that
// family; negated, it matches every packet of that family.
func (c *compilation) resolveAddr(spec model.AddrSpec, field ir.Direction) [2]addrSide {
	var out [2]addrSide
	if len(spec.Items) == 0 {
		return out
	}
	if len(spec.Items) == 1 {
		it := spec.Items[0]
		if it.Kind == model.AddrAny {
			if it.Negate { // "!any" matches nothing
				out[0].none, out[1].none = true, true
			}
			return out
		}
		ranges := c.itemRanges(it)
		for i, f := range families {
			elems := familyRanges(ranges, f)
			switch {
			case len(elems) == 0 && it.Negate:
				// every packet of the family is outside the group
			case len(elems) == 0:
				out[i].none = true
			case it.Kind == model.AddrLiteral:
				out[i].match = &ir.AddrMatch{Field: field, Family: f, Elems: elems, Negate: it.Negate}
			default:
				set := c.namedSet(it, f, elems)
				out[i].match = &ir.AddrMatch{Field: field, Family: f, Set: set, Negate: it.Negate}
			}
		}
		return out
	}
	// A union of several items (the model refuses negation in lists).
	var b netipx.IPSetBuilder
	for _, it := range spec.Items {
		if it.Kind == model.AddrAny {
			return [2]addrSide{}
		}
		b.AddSet(c.itemAddrs(it))
	}
	union, _ := b.IPSet()
	ranges := union.Ranges()
	for i, f := range families {
		elems := familyRanges(ranges, f)
		if len(elems) == 0 {
			out[i].none = true
			continue
		}
		out[i].match = &ir.AddrMatch{Field: field, Family: f, Elems: elems}
	}
	return out
}

// itemRanges returns the ranges of itemAddrs(it), sorted, both families.
// A literal is its one range and a group its resolved set, as they are:
// copying them through an IPSetBuilder, one rule at a time, only made
// garbage.
func (c *compilation) itemRanges(it model.AddrItem) []netipx.IPRange {
	switch it.Kind {
	case model.AddrLiteral:
		if it.Range.IsValid() {
			return []netipx.IPRange{it.Range}
		}
	case model.AddrGroup:
		if g := c.pol.Group(it.Name); g != nil && g.Addrs != nil {
			return g.Addrs.Ranges()
		}
	}
	return c.itemAddrs(it).Ranges()
}

// itemAddrs returns every address an item names (both families).
func (c *compilation) itemAddrs(it model.AddrItem) *netipx.IPSet {
	var b netipx.IPSetBuilder
	switch it.Kind {
	case model.AddrLiteral:
		b.AddRange(it.Range)
	case model.AddrGroup:
		if g := c.pol.Group(it.Name); g != nil && g.Addrs != nil {
			return g.Addrs // already a set; nothing changes it
		}
	case model.AddrNodes:
		for _, n := range c.pol.Nodes {
			for _, a := range n.Addresses {
				b.Add(a)
			}
		}
	case model.AddrRole:
		for _, n := range c.pol.RoleNodes(it.Name) {
			for _, a := range n.Addresses {
				b.Add(a)
			}
		}
	}
	s, _ := b.IPSet() // the builder only fails on invalid input, which the model refused
	return s
}

// familyRanges returns the ranges of family f among rs.
func familyRanges(rs []netipx.IPRange, f ir.Family) []netipx.IPRange {
	var out []netipx.IPRange
	for _, r := range rs {
		if ir.FamilyOf(r.From()) == f {
			out = append(out, r)
		}
	}
	return out
}

// namedSet returns the ruleset's named set for a group, `nodes` or a role in
// family f, creating it on first use. Names carry a fixed prefix so they can
// never be nft keywords: g_NAME_v4, nodes_v4, role_NAME_v6.
func (c *compilation) namedSet(it model.AddrItem, f ir.Family, elems []netipx.IPRange) *ir.Set {
	suffix := "_v4"
	if f == ir.FamilyIPv6 {
		suffix = "_v6"
	}
	var name, comment string
	var src ir.Source
	switch it.Kind {
	case model.AddrGroup:
		name, comment = "g_"+it.Name+suffix, "group "+it.Name
		if g := c.pol.Group(it.Name); g != nil {
			src = source(g.Pos, "group "+g.Name)
		}
	case model.AddrNodes:
		name, comment = "nodes"+suffix, "every address of [nodes]"
	case model.AddrRole:
		name, comment = "role_"+it.Name+suffix, "nodes with role "+it.Name
	}
	if s, ok := c.sets[name]; ok {
		return s
	}
	s := &ir.Set{Name: name, Family: f, Elems: elems, Comment: comment, Source: src}
	c.sets[name] = s
	return s
}

// source makes an ir.Source from a model position.
func source(p model.Pos, what string) ir.Source {
	return ir.Source{File: p.File, Line: p.Line, Col: p.Col, What: what}
}
