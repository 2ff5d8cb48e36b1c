package compiler

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
)

// Zone dispatch by verdict map (issue 8). A run of rules of one chain that
// each hold only for one set of interface names (a zone's, through `zone`,
// `from_zone` or `to_zone`) is replaced by one rule
//
//	iifname vmap { "eth0" : jump input_iif_1, "wlan0" : jump input_iif_2 }
//
// and regular chains that hold the run's rules of each interface set, in
// their order. It keeps the first-match meaning exactly:
//
//   - Every rule of the run has exactly one interface match of the
//     dispatch direction, not negated, of exact names (a wildcard like
//     `vx*` cannot be a map key: such a rule ends the run). A packet has
//     one input (and one output) interface, so it can match only the rules
//     whose set holds its interface.
//   - The run's interface sets are pairwise identical or disjoint (a rule
//     whose set overlaps another without being equal ends the run). So the
//     rules a packet can match are exactly the rules of one chain, in
//     their order: the first of them that matches decides, as before.
//   - A packet that none of them decides (or whose interface is in no set)
//     leaves the chain, or misses the map, and goes on with the rule after
//     the run, where the plain list would go too. A rule whose verdict
//     would mean something else inside a jumped-to chain (return) ends the
//     run.
//   - The rules keep their own interface match (it holds for every packet
//     that reaches them), so each chain holds the policy's rules as
//     compiled and Eval reports them as deciding; the map rule's Merged
//     lists them in their first order, which a backend without maps
//     (iptables) writes in its place.

// minVmapRules is the shortest run worth a map: below it, checking the
// interface rule by rule costs no more than the lookup.
const minVmapRules = 4

// dispatch replaces runs of zone rules in the chains of rs by verdict maps;
// the chains it makes follow the chain they serve.
func dispatch(rs *ir.Ruleset) {
	used := map[string]bool{}
	for _, c := range rs.Chains {
		used[c.Name] = true
	}
	var chains []*ir.Chain
	for _, c := range rs.Chains {
		chains = append(chains, c)
		if c.Base != nil && c.Base.Type != ir.TypeFilter {
			continue
		}
		var made []*ir.Chain
		c.Rules, made = dispatchRules(c, used)
		chains = append(chains, made...)
	}
	rs.Chains = chains
}

// dispatchRules returns the rules of c with qualifying runs replaced, and
// the chains it made.
func dispatchRules(c *ir.Chain, used map[string]bool) ([]*ir.Rule, []*ir.Chain) {
	rules := c.Rules
	var out []*ir.Rule
	var made []*ir.Chain
	for i := 0; i < len(rules); {
		dir, ok := dispatchDir(rules[i])
		if !ok {
			out = append(out, rules[i])
			i++
			continue
		}
		// keys are the run's interface sets (names joined), in order of
		// first appearance; owner maps each name to its key.
		var keys []string
		owner := map[string]string{}
		j := i
		for ; j < len(rules); j++ {
			names, ok := dispatchNames(rules[j], dir)
			if !ok {
				break
			}
			key := strings.Join(names, "\x00")
			if !slices.Contains(keys, key) {
				fits := true
				for _, n := range names {
					if _, taken := owner[n]; taken {
						fits = false // overlaps another set without being equal
					}
				}
				if !fits {
					break
				}
				keys = append(keys, key)
				for _, n := range names {
					owner[n] = key
				}
			}
		}
		if j-i < minVmapRules || len(keys) < 2 {
			out = append(out, rules[i:j]...)
			i = j
			continue
		}
		r, chains := vmapRule(c, rules[i:j], dir, keys, owner, used)
		out = append(out, r)
		made = append(made, chains...)
		i = j
	}
	return out, made
}

// vmapRule builds the map rule of a run and its chains.
func vmapRule(c *ir.Chain, run []*ir.Rule, dir ir.Direction, keys []string, owner map[string]string, used map[string]bool) (*ir.Rule, []*ir.Chain) {
	side := "iif"
	if dir == ir.Out {
		side = "oif"
	}
	byKey := map[string]*ir.Chain{}
	var chains []*ir.Chain
	for _, k := range keys {
		name := ""
		for n := 1; ; n++ {
			name = fmt.Sprintf("%s_%s_%d", c.Name, side, n)
			if !used[name] {
				break
			}
		}
		used[name] = true
		ch := &ir.Chain{Name: name}
		byKey[k] = ch
		chains = append(chains, ch)
	}
	for _, r := range run {
		names, _ := dispatchNames(r, dir)
		ch := byKey[strings.Join(names, "\x00")]
		ch.Rules = append(ch.Rules, r)
	}
	var v ir.VerdictMap
	v.Dir = dir
	for n, k := range owner {
		v.Elems = append(v.Elems, ir.VmapElem{Name: n, Chain: byKey[k]})
	}
	slices.SortFunc(v.Elems, func(a, b ir.VmapElem) int { return strings.Compare(a.Name, b.Name) })
	first := run[0].Source
	what := "input"
	if dir == ir.Out {
		what = "output"
	}
	src := ir.Source{File: first.File, Line: first.Line, Col: first.Col,
		What: fmt.Sprintf("zone dispatch of %d rules by %s interface (from %s)", len(run), what, first.What)}
	var plain []*ir.Rule
	for _, r := range run {
		if len(r.Merged) > 0 {
			plain = append(plain, r.Merged...)
		} else {
			plain = append(plain, r)
		}
	}
	return &ir.Rule{Verdict: v, Source: src, Merged: plain}, chains
}

// dispatchDir returns the direction a run starting with r dispatches on:
// the input interface when r qualifies on it, else the output interface.
func dispatchDir(r *ir.Rule) (ir.Direction, bool) {
	for _, d := range []ir.Direction{ir.In, ir.Out} {
		if _, ok := dispatchNames(r, d); ok {
			return d, true
		}
	}
	return 0, false
}

// dispatchNames returns the names of r's one interface match of direction
// dir, when r can go into a dispatch chain: that match is not negated and
// has exact names only, and r's verdict means the same inside a jumped-to
// chain.
func dispatchNames(r *ir.Rule, dir ir.Direction) ([]string, bool) {
	if r == nil {
		return nil, false
	}
	switch v := r.Verdict.(type) {
	case nil, ir.Accept, ir.Drop, ir.Reject:
	case ir.Jump:
		if v.Chain == nil {
			return nil, false
		}
	default:
		return nil, false // return, maps, nat: not moved
	}
	var names []string
	n := 0
	for _, m := range r.Matches {
		im, ok := m.(ir.IfaceMatch)
		if !ok || im.Dir != dir {
			continue
		}
		n++
		if im.Negate || len(im.Names) == 0 {
			return nil, false
		}
		for _, name := range im.Names {
			if name == "" || strings.HasSuffix(name, "*") || len(name) > 15 {
				return nil, false
			}
		}
		names = im.Names
	}
	if n != 1 {
		return nil, false
	}
	s := slices.Clone(names)
	slices.Sort(s)
	return slices.Compact(s), true
}
