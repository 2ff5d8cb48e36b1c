package compiler

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/hostwall/hostwall/model"
	"go4.org/netipx"
)

// lintDefinitions makes the findings about definitions, which do not
// depend on the node: unused zones, groups and services (HW008-HW010) and
// group members contained in other members (HW007).
func lintDefinitions(p *model.Policy) []finding {
	var out []finding
	zones := map[string]bool{}
	groups := map[string]bool{}
	specs := map[model.Pos]bool{}
	useAddrs := func(specs ...model.AddrSpec) {
		for _, s := range specs {
			for _, it := range s.Items {
				if it.Kind == model.AddrGroup {
					groups[it.Name] = true
				}
			}
		}
	}
	useSpecs := func(ss []model.ServiceSpec) {
		for _, s := range ss {
			specs[s.Pos] = true
		}
	}
	for _, pb := range p.Policies {
		zones[pb.Zone] = true
		for _, list := range [][]*model.Rule{pb.In, pb.Out, pb.Forward} {
			for _, r := range list {
				zones[r.Zone], zones[r.FromZone], zones[r.ToZone] = true, true, true
				useAddrs(r.From, r.To)
				useSpecs(r.Services)
			}
		}
	}
	for _, g := range p.Guards {
		zones[g.Zone] = true
		useAddrs(g.From)
		useSpecs(g.Services)
	}
	for _, n := range p.NATs {
		zones[n.FromZone], zones[n.ToZone] = true, true
		useAddrs(n.From)
		useSpecs(n.Services)
	}
	for _, m := range p.MSS {
		zones[m.Zone] = true
	}
	// A group is used when something uses it, or a used group includes it.
	var include func(name string)
	seen := map[string]bool{}
	include = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		groups[name] = true
		if g := p.Group(name); g != nil {
			for _, m := range g.Members {
				if m.Ref != "" {
					include(m.Ref)
				}
			}
		}
	}
	for _, name := range sortedKeys(groups) {
		include(name)
	}

	for _, z := range p.Zones {
		if !zones[z.Name] {
			out = append(out, finding{z.Pos, LintUnusedZone, fmt.Sprintf("zone %q is not used by any rule, guard, nat or mss; use it or remove it", z.Name)})
		}
	}
	for _, g := range p.Groups {
		if !groups[g.Name] {
			out = append(out, finding{g.Pos, LintUnusedGroup, fmt.Sprintf("group %q is not used by any rule, guard, nat or used group; use it or remove it", g.Name)})
		}
		out = append(out, groupOverlaps(p, g)...)
	}
	for _, s := range p.Services {
		used := false
		for _, sp := range s.Specs {
			used = used || specs[sp.Pos]
		}
		if !used {
			out = append(out, finding{s.Pos, LintUnusedService, fmt.Sprintf("service %q is not used by any rule, guard or nat; use it or remove it", s.Name)})
		}
	}
	return out
}

// groupOverlaps reports the members of a group that another member
// already contains (HW007): a literal inside a literal, a literal inside
// an included group, an included group inside a literal or another
// included group. Of two equal members the later one is reported.
func groupOverlaps(p *model.Policy, g *model.Group) []finding {
	type mem struct {
		i     int
		m     model.Member
		rng   netipx.IPRange // literals
		set   *netipx.IPSet  // included groups
		empty bool
	}
	var lits, refs []mem
	for i, m := range g.Members {
		if m.Ref == "" {
			lits = append(lits, mem{i: i, m: m, rng: m.Range})
			continue
		}
		sub := p.Group(m.Ref)
		if sub == nil || sub.Addrs == nil || len(sub.Addrs.Ranges()) == 0 {
			continue // an empty group is reported where it is used
		}
		refs = append(refs, mem{i: i, m: m, set: sub.Addrs})
	}
	contained := map[int]mem{} // member index -> a member containing it
	// Literals in literals: sort by start, then longest first, then file
	// order; a literal ends within an earlier one iff it is contained.
	sorted := slices.Clone(lits)
	slices.SortFunc(sorted, func(a, b mem) int {
		return cmp.Or(a.rng.From().Compare(b.rng.From()), b.rng.To().Compare(a.rng.To()), cmp.Compare(a.i, b.i))
	})
	var best *mem
	for k := range sorted {
		x := &sorted[k]
		if best != nil && best.rng.From().BitLen() == x.rng.From().BitLen() && x.rng.To().Compare(best.rng.To()) <= 0 {
			contained[x.i] = *best
			continue
		}
		if best == nil || best.rng.From().BitLen() != x.rng.From().BitLen() || x.rng.To().Compare(best.rng.To()) > 0 {
			best = x
		}
	}
	// Literals in included groups and included groups in literals or in
	// other included groups.
	for _, r := range refs {
		for _, l := range lits {
			if _, done := contained[l.i]; !done && r.set.ContainsRange(l.rng) {
				contained[l.i] = r
			}
			if _, done := contained[r.i]; !done && setWithin(r.set, func(x netipx.IPRange) bool { return rangeContains(l.rng, x) }) {
				contained[r.i] = l
			}
		}
		for _, o := range refs {
			if o.i == r.i {
				continue
			}
			if _, done := contained[r.i]; done {
				break
			}
			if setWithin(r.set, o.set.ContainsRange) && (!setWithin(o.set, r.set.ContainsRange) || o.i < r.i) {
				contained[r.i] = o
			}
		}
	}
	var out []finding
	for i, m := range g.Members {
		by, ok := contained[i]
		if !ok {
			continue
		}
		out = append(out, finding{m.Pos, LintGroupOverlap, fmt.Sprintf(
			"group %q: %q is already contained in %q (%s), so it adds nothing; remove it (or fix it, if another address was meant)",
			g.Name, m.Text, by.m.Text, by.m.Pos)})
	}
	return out
}

// setWithin reports whether every range of s satisfies in.
func setWithin(s *netipx.IPSet, in func(netipx.IPRange) bool) bool {
	for _, r := range s.Ranges() {
		if !in(r) {
			return false
		}
	}
	return true
}

func rangeContains(outer, inner netipx.IPRange) bool {
	return outer.From().BitLen() == inner.From().BitLen() &&
		outer.From().Compare(inner.From()) <= 0 && inner.To().Compare(outer.To()) <= 0
}
