package compiler

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

// The optimiser (issue 8): it merges runs of rules of a filter chain that
// differ in one match, or in one address and one port match, into one rule
// whose set holds the union (nft looks a set up in constant time, so the
// per-packet cost no longer grows with the number of such rules). It keeps
// the first-match meaning exactly (design.md invariant 5):
//
//   - Only adjacent rules merge, with the same verdict, counter and comment
//     and no log or limit; every other match is identical. A packet matches
//     the merged rule iff it matches one of the rules, and gets the verdict
//     all of them have, so which verdict decides cannot change.
//   - A rule of the other family may be stepped over: an IPv4-only and an
//     IPv6-only rule never match the same packet, so their relative order
//     does not matter. (The IPv4 and IPv6 halves of policy rules alternate;
//     this lets each family's halves merge.)
//   - The merged rule keeps the rules in Rule.Merged, in order, so ir.Eval
//     reports the first of them that matches as the deciding rule, with its
//     own source: `hostwall test`, `explain` and the differential test see
//     the rule the policy author wrote.

// maxConcatPerRule bounds the address x port elements one rule may add to a
// concatenated set (a rule with 40 addresses and 40 ports would add 1,600).
const maxConcatPerRule = 256

// maxStepOver bounds how many rules of the other family a run may step
// over (they are written after the merged rule).
const maxStepOver = 1 << 16

// optimize merges rules in the filter chains of rs, in place.
func optimize(rs *ir.Ruleset) {
	for _, c := range rs.Chains {
		if c.Base != nil && c.Base.Type != ir.TypeFilter {
			continue // nat chains translate: left as written
		}
		// Two passes: the first merges one family's halves and moves the
		// other family's after them; the second merges those.
		for range 2 {
			c.Rules = optimizeRules(c.Rules)
		}
	}
	dispatch(rs) // optimize_vmap.go
}

// optimizeRules returns rules with runs merged.
func optimizeRules(rules []*ir.Rule) []*ir.Rule {
	out := make([]*ir.Rule, 0, len(rules))
	for i := 0; i < len(rules); {
		g := newGroup(rules[i])
		if g == nil {
			out = append(out, rules[i])
			i++
			continue
		}
		j := i + 1
		var over []*ir.Rule
		for ; j < len(rules); j++ {
			q := rules[j]
			if g.add(q) {
				continue
			}
			if g.fam != ir.FamilyAny && q != nil && otherFamily(g.fam, ruleFamily(q)) && len(over) < maxStepOver {
				over = append(over, q)
				continue
			}
			break
		}
		out = append(out, g.rule())
		out = append(out, over...)
		i = j
	}
	return out
}

// group is a run of rules being merged.
type group struct {
	rules []*ir.Rule
	fam   ir.Family
	// vary are the positions of Matches that differ between the rules
	// (nil until a second rule joins); concat is true when they are an
	// address and a port match, merged into a ConcatMatch.
	vary   []int
	concat bool
}

// newGroup starts a group with r, or returns nil when r cannot merge.
func newGroup(r *ir.Rule) *group {
	if r == nil || r.Verdict == nil || r.Log != nil || r.Limit != nil || len(r.Merged) > 0 {
		return nil
	}
	switch r.Verdict.(type) {
	case ir.Accept, ir.Drop, ir.Reject, ir.Jump, ir.Return:
	default:
		return nil
	}
	return &group{rules: []*ir.Rule{r}, fam: ruleFamily(r)}
}

// add adds q to the group when it fits; it reports whether it did.
func (g *group) add(q *ir.Rule) bool {
	t := g.rules[0]
	if q == nil || q.Log != nil || q.Limit != nil || len(q.Merged) > 0 || q.Counter != t.Counter ||
		q.Comment != t.Comment || len(q.Matches) != len(t.Matches) || !reflect.DeepEqual(q.Verdict, t.Verdict) {
		return false
	}
	var diff []int
	for k := range t.Matches {
		if !matchEqual(t.Matches[k], q.Matches[k]) {
			diff = append(diff, k)
		}
	}
	if g.vary == nil && len(diff) > 0 {
		switch {
		case len(diff) == 1 && mergeable1(t.Matches[diff[0]], q.Matches[diff[0]]):
		case len(diff) == 2 && concatPair(t.Matches[diff[0]], t.Matches[diff[1]]) && concatPair(q.Matches[diff[0]], q.Matches[diff[1]]) &&
			sameConcatShape(t, q, diff):
			g.concat = true
		default:
			return false
		}
		g.vary = diff
	} else {
		for _, k := range diff {
			if !slices.Contains(g.vary, k) {
				return false
			}
		}
		for _, k := range g.vary {
			if g.concat {
				if !concatPair(q.Matches[g.vary[0]], q.Matches[g.vary[1]]) || !sameConcatShape(t, q, g.vary) {
					return false
				}
			} else if !mergeable1(t.Matches[k], q.Matches[k]) {
				return false
			}
		}
	}
	if !g.concat && len(g.vary) == 1 && !g.ifacesDisjoint(q) {
		return false
	}
	g.rules = append(g.rules, q)
	return true
}

// ifacesDisjoint refuses to merge interface sets whose names overlap (a
// wildcard covering another name): nft refuses overlapping intervals.
func (g *group) ifacesDisjoint(q *ir.Rule) bool {
	k := g.vary[0]
	m, ok := q.Matches[k].(ir.IfaceMatch)
	if !ok {
		return true
	}
	var names []string
	for _, r := range g.rules {
		names = append(names, r.Matches[k].(ir.IfaceMatch).Names...)
	}
	for _, n := range m.Names {
		for _, o := range names {
			if n == o {
				continue
			}
			if pre, ok := strings.CutSuffix(n, "*"); ok && strings.HasPrefix(o, pre) {
				return false
			}
			if pre, ok := strings.CutSuffix(o, "*"); ok && strings.HasPrefix(n, pre) {
				return false
			}
		}
	}
	return true
}

// rule returns the merged rule of the group (its one rule when alone).
func (g *group) rule() *ir.Rule {
	t := g.rules[0]
	if len(g.rules) == 1 {
		return t
	}
	m := &ir.Rule{
		Matches: slices.Clone(t.Matches),
		Counter: t.Counter,
		Verdict: t.Verdict,
		Comment: t.Comment,
		Source:  t.Source,
		Merged:  g.rules,
	}
	m.Source.What = fmt.Sprintf("%s and %d more merged rules", t.Source.What, len(g.rules)-1)
	switch {
	case len(g.vary) == 0:
		// identical rules: the first decides every packet
	case g.concat:
		m.Matches[g.vary[0]] = g.concatMatch()
		m.Matches = slices.Delete(m.Matches, g.vary[1], g.vary[1]+1)
	default:
		m.Matches[g.vary[0]] = g.union(g.vary[0])
	}
	return m
}

// union merges the matches at position k of every rule.
func (g *group) union(k int) ir.Match {
	switch first := g.rules[0].Matches[k].(type) {
	case ir.PortMatch:
		var rs []ir.PortRange
		for _, r := range g.rules {
			rs = append(rs, r.Matches[k].(ir.PortMatch).Ranges...)
		}
		first.Ranges = mergeRanges(rs)
		return first
	case ir.AddrMatch:
		var b netipx.IPSetBuilder
		for _, r := range g.rules {
			for _, e := range r.Matches[k].(ir.AddrMatch).Elems {
				b.AddRange(e)
			}
		}
		s, _ := b.IPSet()
		first.Elems = s.Ranges()
		return first
	case ir.IfaceMatch:
		first.Names = unionAt(g, k, func(m ir.IfaceMatch) []string { return m.Names })
		return first
	case ir.ProtoMatch:
		first.Protos = unionAt(g, k, func(m ir.ProtoMatch) []ir.Proto { return m.Protos })
		return first
	case ir.ICMPMatch:
		first.Types = unionAt(g, k, func(m ir.ICMPMatch) []ir.ICMPType { return m.Types })
		return first
	}
	return g.rules[0].Matches[k] // unreachable: mergeable1 admits the kinds above only
}

// unionAt is the sorted, deduplicated union of the values that match k
// of every rule of g holds (the matches are all of kind M).
func unionAt[M ir.Match, T cmp.Ordered](g *group, k int, values func(M) []T) []T {
	var out []T
	for _, r := range g.rules {
		out = append(out, values(r.Matches[k].(M))...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// concatMatch builds the ConcatMatch of a concat group.
func (g *group) concatMatch() ir.ConcatMatch {
	var cm ir.ConcatMatch
	var elems []ir.AddrPort
	for _, r := range g.rules {
		a, p := concatParts(r.Matches[g.vary[0]], r.Matches[g.vary[1]])
		cm = ir.ConcatMatch{Family: a.Family, AddrField: a.Field, Proto: p.Proto, PortField: p.Field}
		for _, e := range a.Elems {
			for _, pr := range p.Ranges {
				elems = append(elems, ir.AddrPort{Addr: e.From(), Port: pr.Lo})
			}
		}
	}
	slices.SortFunc(elems, ir.CompareAddrPort)
	cm.Elems = slices.Compact(elems)
	return cm
}

// mergeable1 reports whether two matches of one position can merge into
// one set: the same kind on the same field, not negated, no named set.
func mergeable1(a, b ir.Match) bool {
	switch a := a.(type) {
	case ir.PortMatch:
		b, ok := b.(ir.PortMatch)
		return ok && a.Proto == b.Proto && a.Field == b.Field
	case ir.AddrMatch:
		b, ok := b.(ir.AddrMatch)
		return ok && a.Field == b.Field && a.Family == b.Family && !a.Negate && !b.Negate && a.Set == nil && b.Set == nil
	case ir.IfaceMatch:
		b, ok := b.(ir.IfaceMatch)
		return ok && a.Dir == b.Dir && !a.Negate && !b.Negate
	case ir.ProtoMatch:
		_, ok := b.(ir.ProtoMatch)
		return ok
	case ir.ICMPMatch:
		b, ok := b.(ir.ICMPMatch)
		return ok && a.Family == b.Family
	}
	return false
}

// concatParts returns the address and port match of a pair, in either
// order; ok is false unless it is one of each.
func concatParts(x, y ir.Match) (ir.AddrMatch, ir.PortMatch) {
	if a, ok := y.(ir.AddrMatch); ok {
		x, y = a, x
	}
	a, _ := x.(ir.AddrMatch)
	p, _ := y.(ir.PortMatch)
	return a, p
}

// concatPair reports whether x and y are an address match of single
// addresses (a literal, not negated) and a port match of single ports, with
// at most maxConcatPerRule combinations.
func concatPair(x, y ir.Match) bool {
	_, xa := x.(ir.AddrMatch)
	_, ya := y.(ir.AddrMatch)
	if xa == ya {
		return false
	}
	a, p := concatParts(x, y)
	if p.Proto == 0 || !p.Proto.HasPorts() || a.Set != nil || a.Negate || len(a.Elems) == 0 || len(p.Ranges) == 0 ||
		len(a.Elems)*len(p.Ranges) > maxConcatPerRule {
		return false
	}
	for _, e := range a.Elems {
		if e.From() != e.To() {
			return false
		}
	}
	for _, r := range p.Ranges {
		if r.Lo != r.Hi {
			return false
		}
	}
	return true
}

// sameConcatShape reports whether two rules' address and port matches at
// positions k agree on family, fields and protocol (and on which position
// holds which).
func sameConcatShape(t, q *ir.Rule, k []int) bool {
	ta, tp := concatParts(t.Matches[k[0]], t.Matches[k[1]])
	qa, qp := concatParts(q.Matches[k[0]], q.Matches[k[1]])
	_, tFirst := t.Matches[k[0]].(ir.AddrMatch)
	_, qFirst := q.Matches[k[0]].(ir.AddrMatch)
	return tFirst == qFirst && ta.Family == qa.Family && ta.Field == qa.Field && tp.Proto == qp.Proto && tp.Field == qp.Field
}

// matchEqual reports whether two matches are the same test. Named sets
// compare by identity (comparing 100,000 elements would be slow).
func matchEqual(a, b ir.Match) bool {
	if am, ok := a.(ir.AddrMatch); ok {
		bm, ok := b.(ir.AddrMatch)
		if !ok || am.Field != bm.Field || am.Family != bm.Family || am.Negate != bm.Negate || am.Set != bm.Set {
			return false
		}
		return slices.Equal(am.Elems, bm.Elems)
	}
	return reflect.DeepEqual(a, b)
}

// ruleFamily is the one family a rule's matches restrict it to, or
// FamilyAny.
func ruleFamily(r *ir.Rule) ir.Family {
	for _, m := range r.Matches {
		switch m := m.(type) {
		case ir.FamilyMatch:
			return m.Family
		case ir.AddrMatch:
			return m.Family
		case ir.ICMPMatch:
			return m.Family
		case ir.ConcatMatch:
			return m.Family
		case ir.HopLimitMatch:
			return ir.FamilyIPv6
		}
	}
	return ir.FamilyAny
}

// otherFamily reports whether a and b are the two different families.
func otherFamily(a, b ir.Family) bool {
	return a != ir.FamilyAny && b != ir.FamilyAny && a != b
}

// MergeStats counts, in a compiled ruleset, the merged rules of each kind
// and the rules they stand for: "ports", "addrs", "ifaces", "protos",
// "icmp" (one match's sets merged), "concat" (address . port), "same"
// (identical rules), and "vmap" (zone dispatch maps, and the rules of the
// chains they jump to). Tests and the benchmark print it.
func MergeStats(rs *ir.Ruleset) map[string][2]int {
	out := map[string][2]int{}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			if v, ok := r.Verdict.(ir.VerdictMap); ok {
				n := 0
				for _, ch := range v.Chains() {
					n += len(ch.Rules)
				}
				s := out["vmap"]
				out["vmap"] = [2]int{s[0] + 1, s[1] + n}
				continue
			}
			if len(r.Merged) == 0 {
				continue
			}
			k := mergeKind(r)
			s := out[k]
			out[k] = [2]int{s[0] + 1, s[1] + len(r.Merged)}
		}
	}
	return out
}

func mergeKind(r *ir.Rule) string {
	for _, m := range r.Matches {
		if _, ok := m.(ir.ConcatMatch); ok {
			return "concat"
		}
	}
	o := r.Merged[0]
	for k := range o.Matches {
		if matchEqual(o.Matches[k], r.Matches[k]) {
			continue
		}
		switch o.Matches[k].(type) {
		case ir.PortMatch:
			return "ports"
		case ir.AddrMatch:
			return "addrs"
		case ir.IfaceMatch:
			return "ifaces"
		case ir.ProtoMatch:
			return "protos"
		case ir.ICMPMatch:
			return "icmp"
		}
	}
	return "same"
}
