package compiler

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// Lint rule ids (docs/lint.md explains each with an example). They are
// stable: a rule keeps its id, a removed rule's id is not reused.
const (
	// LintError marks what the model or the compiler rejects (an error).
	LintError = "HW000"
	// LintShadowed: earlier rules and defaults decide every packet the
	// rule matches, so it never decides one.
	LintShadowed = "HW001"
	// LintRedundant: without the rule, every packet it decides would get
	// the same verdict.
	LintRedundant = "HW002"
	// LintEmptyMatch: a rule or guard matches no packet at all.
	LintEmptyMatch = "HW003"
	// LintSSHLockout: input drops by default and no rule accepts new ssh
	// connections.
	LintSSHLockout = "HW004"
	// LintNoND: input drops by default with icmp = "none" and neighbour
	// discovery is not accepted.
	LintNoND = "HW005"
	// LintEmptyGroup: a rule, guard or NAT uses a group without addresses.
	LintEmptyGroup = "HW006"
	// LintGroupOverlap: a group member is contained in another member.
	LintGroupOverlap = "HW007"
	// LintUnusedZone: a zone no rule, guard, NAT or MSS clamp uses.
	LintUnusedZone = "HW008"
	// LintUnusedGroup: a group nothing uses.
	LintUnusedGroup = "HW009"
	// LintUnusedService: a service nothing uses.
	LintUnusedService = "HW010"
)

// LintOptions choose what Lint checks.
type LintOptions struct {
	// Node lints the policy as compiled for one node of [nodes]. Empty:
	// for every node (or once, when the policy has no [nodes]).
	Node string
}

// finding is one warning made for one node.
type finding struct {
	pos model.Pos
	id  string
	msg string
}

// Lint checks a policy the model loaded without errors and returns its
// warnings, and the compiler's errors if it cannot be compiled, sorted by
// position. Findings that depend on the node (shadowing, lockout) are
// computed for every node linted; one that holds only on some nodes says
// on which.
func Lint(p *model.Policy, opts LintOptions) model.Diags {
	var diags model.Diags
	nodes := []string{opts.Node}
	if opts.Node == "" {
		nodes = p.CompileNodes()
	}
	type key struct {
		pos     model.Pos
		id, msg string
	}
	var order []key
	onNodes := map[key][]string{}
	for _, name := range nodes {
		if _, d := Compile(p, Options{Node: name}); d.HasErrors() {
			for _, x := range d {
				if x.Severity == model.Error {
					x.ID = LintError
				}
				diags = append(diags, x)
			}
			continue
		}
		c := &compilation{pol: p, node: p.Node(name), sets: map[string]*ir.Set{}}
		for _, f := range c.lintNode() {
			k := key{f.pos, f.id, f.msg}
			if _, ok := onNodes[k]; !ok {
				order = append(order, k)
			}
			onNodes[k] = append(onNodes[k], name)
		}
	}
	if diags.HasErrors() {
		diags.Sort()
		return diags
	}
	for _, k := range order {
		msg := k.msg
		if ns := onNodes[k]; len(p.Nodes) > 0 && len(ns) < len(nodes) {
			what := "node"
			if len(ns) > 1 {
				what = "nodes"
			}
			msg += fmt.Sprintf(" (on %s %s)", what, strings.Join(ns, ", "))
		}
		diags.Warnf(k.pos, k.id, "%s", msg)
	}
	for _, f := range lintDefinitions(p) {
		diags.Warnf(f.pos, f.id, "%s", f.msg)
	}
	diags.Sort()
	return diags
}

// lintNode makes the findings that depend on the node being compiled.
func (c *compilation) lintNode() []finding {
	var out []finding
	emptyGroupRule := map[*model.Rule]bool{}
	for _, h := range []model.Hook{model.HookIn, model.HookOut, model.HookForward} {
		for _, r := range c.orderedRules(h) {
			for _, f := range c.emptyGroups(r.From, r.To) {
				out = append(out, f)
				emptyGroupRule[r] = true
			}
		}
	}
	for _, g := range c.pol.Guards {
		out = append(out, c.emptyGroups(g.From, model.AddrSpec{})...)
	}
	for _, n := range c.pol.NATs {
		out = append(out, c.emptyGroups(n.From, model.AddrSpec{})...)
	}
	for _, h := range []model.Hook{model.HookIn, model.HookOut, model.HookForward} {
		ch := c.lintChain(h)
		for _, f := range ch.analyse() {
			if f.id == LintEmptyMatch && emptyGroupRule[f.rule] {
				continue // the empty group says why
			}
			out = append(out, f.finding)
		}
		if h == model.HookIn && c.pol.Defaults.Input != model.ActionAccept {
			out = append(out, c.lintInputDefaults(ch)...)
		}
	}
	out = append(out, c.lintGuards()...)
	return out
}

// chainEntry is one IR rule of a filter chain and what wrote it.
type chainEntry struct {
	rule  *ir.Rule
	owner *model.Rule // nil for the defaults and the default verdict
}

// lintChainT is a filter chain as the analyses see it.
type lintChainT struct {
	c       *compilation
	hook    model.Hook
	entries []chainEntry
	policy  ir.Verdict    // the chain policy: the verdict when no rule decides
	defName string        // "input", "output", "forward"
	rules   []*model.Rule // the policy rules, in chain order (some may have no entry)
}

// lintChain builds the entries of a hook's chain exactly as filterChain
// does, keeping track of which policy rule wrote each IR rule.
func (c *compilation) lintChain(h model.Hook) *lintChainT {
	def, name := c.pol.Defaults.Input, "input"
	switch h {
	case model.HookOut:
		def, name = c.pol.Defaults.Output, "output"
	case model.HookForward:
		def, name = c.pol.Defaults.Forward, "forward"
	}
	ch := &lintChainT{c: c, hook: h, policy: chainPolicy(def), defName: name}
	for _, r := range c.defaultRules(h) {
		ch.entries = append(ch.entries, chainEntry{rule: r})
	}
	for _, mr := range c.orderedRules(h) {
		ch.rules = append(ch.rules, mr)
		for _, r := range c.rule(mr) {
			ch.entries = append(ch.entries, chainEntry{rule: r, owner: mr})
		}
	}
	for _, r := range c.defaultVerdict(h, def) {
		ch.entries = append(ch.entries, chainEntry{rule: r})
	}
	return ch
}

// famSpace is a chain's entries as boxes in one family.
type famSpace struct {
	u     *universe
	boxes []box
	ok    []bool // false: the entry matches no packet of the family
}

func (ch *lintChainT) spaces() [2]famSpace {
	rules := make([]*ir.Rule, len(ch.entries))
	for i, e := range ch.entries {
		rules[i] = e.rule
	}
	var out [2]famSpace
	for fi, f := range families {
		s := famSpace{u: newUniverse(f, rules), boxes: make([]box, len(rules)), ok: make([]bool, len(rules))}
		for i, r := range rules {
			s.boxes[i], s.ok[i] = s.u.box(r)
		}
		out[fi] = s
	}
	return out
}

// ruleFinding is a finding about one policy rule.
type ruleFinding struct {
	finding
	rule *model.Rule
}

// analyse finds the rules of the chain that match nothing (HW003), never
// decide (HW001) or decide nothing differently (HW002). A rule whose
// packets would go to a later rule that is itself shadowed is not called
// redundant: the later one is the one to remove.
func (ch *lintChainT) analyse() []ruleFinding {
	sp := ch.spaces()
	var results []ruleResult
	shadowed := map[*model.Rule]bool{}
	next := 0 // the first entry after the rules analysed so far
	for _, owner := range ch.rules {
		first := next
		for first < len(ch.entries) && ch.entries[first].owner == nil {
			first++
		}
		last := first - 1 // a rule that compiled to nothing has no entries
		for last+1 < len(ch.entries) && ch.entries[last+1].owner == owner {
			last++
		}
		if last >= first {
			next = last + 1
		} else {
			first, last = next, next-1
		}
		res := ch.analyseRule(sp, owner, first, last)
		if res.kind == LintShadowed {
			shadowed[owner] = true
		}
		if res.kind != "" {
			results = append(results, res)
		}
	}
	var out []ruleFinding
	for _, res := range results {
		r := res.rule
		var msg string
		switch res.kind {
		case LintEmptyMatch:
			msg = "rule matches no packet: " + ch.c.emptyReason(r) + "; fix its keys or remove it"
		case LintShadowed:
			msg = fmt.Sprintf("rule never decides a packet: every packet it matches is decided earlier, by %s; remove it, or give it a lower order than them if it should win",
				ch.describe(ch.essentialShadowers(sp, res), false))
		case LintRedundant:
			if slices.ContainsFunc(res.laters, func(j int) bool { return shadowed[ch.entries[j].owner] }) {
				continue
			}
			msg = fmt.Sprintf("rule changes no decision: without it, every packet it decides gets the same verdict (%s) from %s; remove it",
				verdictName(ch.entries[res.first:res.last+1]), ch.describe(res.laters, res.laterDefault))
		}
		out = append(out, ruleFinding{finding{r.Pos, res.kind, msg}, r})
	}
	return out
}

// ruleResult is what analyseRule found about one rule.
type ruleResult struct {
	rule         *model.Rule
	first, last  int
	kind         string // LintEmptyMatch, LintShadowed, LintRedundant or ""
	shadowers    []int  // entries that decide some of the rule's packets before it
	laters       []int  // entries that would decide the rule's packets without it
	laterDefault bool   // ... and the chain's default verdict
}

// essentialShadowers drops the defaults from a shadowed rule's list when
// the policy rules among them cover it on their own: "decided by rule X"
// says more than "by defaults.loopback, defaults.established and rule X".
func (ch *lintChainT) essentialShadowers(sp [2]famSpace, res ruleResult) []int {
	var rules []int
	for _, j := range res.shadowers {
		if ch.entries[j].owner != nil {
			rules = append(rules, j)
		}
	}
	if len(rules) == 0 || len(rules) == len(res.shadowers) {
		return res.shadowers
	}
	for _, s := range sp {
		for k := res.first; k <= res.last; k++ {
			if ch.entries[k].rule.Verdict == nil || !s.ok[k] {
				continue
			}
			rem := region{s.boxes[k]}
			for _, j := range rules {
				if !s.ok[j] {
					continue
				}
				var ok bool
				if rem, _, ok = rem.subtract(&s.boxes[j]); !ok {
					return res.shadowers
				}
			}
			if len(rem) > 0 {
				return res.shadowers
			}
		}
	}
	return rules
}

// decided is the part of a rule's packets one of its IR rules decides,
// with that IR rule's verdict.
type decided struct {
	verdict ir.Verdict
	reg     region
}

// analyseRule checks the rule whose IR rules are entries first..last.
func (ch *lintChainT) analyseRule(sp [2]famSpace, r *model.Rule, first, last int) ruleResult {
	res := ruleResult{rule: r, first: first, last: last}
	matches := false
	redundant := r.Log == nil // removing a logging rule changes the log
	anyDecided := false
	for _, s := range sp {
		var ds []decided
		for k := first; k <= last; k++ {
			e := ch.entries[k]
			if e.rule.Verdict == nil || !s.ok[k] {
				continue
			}
			matches = true
			rem := region{s.boxes[k]}
			for j := 0; j < k && len(rem) > 0; j++ {
				if ch.entries[j].rule.Verdict == nil || !s.ok[j] {
					continue
				}
				var hit, ok bool
				rem, hit, ok = rem.subtract(&s.boxes[j])
				if !ok {
					return ruleResult{} // too fragmented to be sure
				}
				if hit && j < first && !slices.Contains(res.shadowers, j) {
					res.shadowers = append(res.shadowers, j)
				}
			}
			if len(rem) > 0 {
				ds = append(ds, decided{e.rule.Verdict, rem})
			}
		}
		if len(ds) > 0 {
			anyDecided = true
		}
		for _, d := range ds {
			if !redundant {
				break
			}
			rem := d.reg
			for j := last + 1; j < len(ch.entries) && len(rem) > 0; j++ {
				if !s.ok[j] {
					continue
				}
				var hit, ok bool
				rem, hit, ok = rem.subtract(&s.boxes[j])
				if !ok {
					return ruleResult{}
				}
				if !hit {
					continue
				}
				v := ch.entries[j].rule.Verdict
				if v == nil || v != d.verdict {
					// a later rule would log them, or decide otherwise
					redundant = false
					break
				}
				if !slices.Contains(res.laters, j) {
					res.laters = append(res.laters, j)
				}
			}
			if redundant && len(rem) > 0 {
				if ch.policy != d.verdict {
					redundant = false
				}
				res.laterDefault = true
			}
		}
	}
	slices.Sort(res.shadowers)
	slices.Sort(res.laters)
	switch {
	case !matches:
		res.kind = LintEmptyMatch
	case !anyDecided:
		res.kind = LintShadowed
	case redundant:
		res.kind = LintRedundant
	}
	return res
}

// describe names chain entries for humans, each once, in chain order;
// withPolicy adds the chain's default verdict.
func (ch *lintChainT) describe(idx []int, withPolicy bool) string {
	var names []string
	for _, j := range idx {
		e := ch.entries[j]
		var n string
		if e.owner != nil {
			n = fmt.Sprintf("%s (%s)", ruleWhat(e.owner), e.owner.Pos)
		} else {
			n = e.rule.Source.What
			if e.rule.Source.File != "" {
				n += fmt.Sprintf(" (%s:%d:%d)", e.rule.Source.File, e.rule.Source.Line, e.rule.Source.Col)
			}
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if withPolicy {
		n := fmt.Sprintf("the %s default", ch.defName)
		if p, ok := ch.c.pol.Defaults.Keys[ch.defName]; ok {
			n += fmt.Sprintf(" (%s)", p)
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// verdictName names the verdict of a rule's IR rules: "accept", "drop" or
// "reject".
func verdictName(entries []chainEntry) string {
	for _, e := range entries {
		if n := ir.VerdictName(e.rule.Verdict); n != "none" {
			return n
		}
	}
	return "none"
}

// emptyReason says, per family, why a rule matches no packet.
func (c *compilation) emptyReason(r *model.Rule) string {
	src := c.resolveAddr(r.From, ir.Src)
	dst := c.resolveAddr(r.To, ir.Dst)
	var why []string
	for i := range families {
		fam := [2]string{"IPv4", "IPv6"}[i]
		switch {
		case src[i].none && dst[i].none:
			why = append(why, fmt.Sprintf("%s: neither \"from\" nor \"to\" has an %s address", fam, fam))
		case src[i].none:
			why = append(why, fmt.Sprintf("%s: \"from\" has no %s address", fam, fam))
		case dst[i].none:
			why = append(why, fmt.Sprintf("%s: \"to\" has no %s address", fam, fam))
		case len(r.Services) > 0:
			why = append(why, fmt.Sprintf("%s: \"service\" has no %s protocol", fam, fam))
		default:
			why = append(why, fmt.Sprintf("%s: its keys exclude each other", fam))
		}
	}
	return strings.Join(why, "; ")
}

// emptyGroups reports groups without addresses used in from/to.
func (c *compilation) emptyGroups(specs ...model.AddrSpec) []finding {
	var out []finding
	for _, spec := range specs {
		for _, it := range spec.Items {
			if it.Kind != model.AddrGroup {
				continue
			}
			g := c.pol.Group(it.Name)
			if g == nil || (g.Addrs != nil && len(g.Addrs.Ranges()) > 0) {
				continue
			}
			what := "matches no packet"
			if it.Negate {
				what = "matches every packet"
			}
			out = append(out, finding{it.Pos, LintEmptyGroup, fmt.Sprintf(
				"group %q (%s) has no addresses, so %q %s; add its addresses or remove it from here", g.Name, g.Pos, it.Text, what)})
		}
	}
	return out
}

// lintInputDefaults warns when a dropping input chain accepts no new ssh
// connection (HW004), or, with icmp = "none", no IPv6 neighbour discovery
// (HW005).
func (c *compilation) lintInputDefaults(ch *lintChainT) []finding {
	var out []finding
	sp := ch.spaces()
	pos := c.pol.Defaults.Keys["input"]
	if pos == (model.Pos{}) && len(c.pol.Files) > 0 {
		pos = model.Pos{File: c.pol.Files[0], Line: 1, Col: 1}
	}
	ssh := false
	for i := range sp {
		q := notLoopback(sp[i].u)
		q[dimProto] = point(uint32(ir.ProtoTCP))
		q[dimDPort] = point(22)
		q[dimState] = stateSpans(ir.CtNew)
		if ch.accepts(sp[i], q) {
			ssh = true
		}
	}
	verb := "drops"
	if c.pol.Defaults.Input == model.ActionReject {
		verb = "rejects"
	}
	if !ssh {
		out = append(out, finding{pos, LintSSHLockout,
			"input " + verb + " by default and no rule accepts new ssh connections (tcp/22) from anywhere: applying this policy over ssh locks you out; add an in rule with service = \"tcp/22\" from your management addresses"})
	}
	if c.pol.Defaults.ICMP == model.ICMPNone {
		v6 := sp[1]
		both := true
		for _, t := range []string{"nd-neighbor-solicit", "nd-neighbor-advert"} {
			typ, _ := ir.ParseICMPType(ir.FamilyIPv6, t)
			q := notLoopback(v6.u)
			q[dimProto] = point(uint32(ir.ProtoICMPv6))
			q[dimICMPType] = point(uint32(typ))
			q[dimHop] = point(255)
			q[dimState] = stateSpans(ir.CtNew | ir.CtUntracked)
			if !ch.accepts(v6, q) {
				both = false
			}
		}
		if !both {
			p := c.pol.Defaults.Keys["icmp"]
			out = append(out, finding{p, LintNoND,
				"input " + verb + " by default and icmp = \"none\" leaves IPv6 neighbour discovery (icmpv6 nd-neighbor-solicit and nd-neighbor-advert) unaccepted: IPv6 stops working; use icmp = \"essential\" or accept them in a rule"})
		}
	}
	return out
}

// notLoopback is every packet of the universe not arriving on lo.
func notLoopback(u *universe) box {
	q := u.full
	q[dimIIF] = q[dimIIF].minus(u.ifaceSpans([]string{"lo"}))
	return q
}

// accepts reports whether the chain accepts some packet of q.
func (ch *lintChainT) accepts(s famSpace, q box) bool {
	rem := region{q}
	for j := range ch.entries {
		v := ch.entries[j].rule.Verdict
		if v == nil || !s.ok[j] || len(rem) == 0 {
			continue
		}
		var hit, ok bool
		rem, hit, ok = rem.subtract(&s.boxes[j])
		if !ok {
			return true // unsure: do not warn
		}
		if hit && v == (ir.Verdict(ir.Accept{})) {
			return true
		}
	}
	return len(rem) > 0 && ch.policy == ir.Verdict(ir.Accept{})
}

// lintGuards reports guards that match no packet (HW003).
func (c *compilation) lintGuards() []finding {
	var out []finding
	for _, g := range c.pol.Guards {
		spec := filterSpec{
			src:        c.resolveAddr(g.From, ir.Src),
			services:   g.Services,
			state:      g.State,
			action:     g.Action,
			rejectWith: c.pol.Defaults.RejectWith,
		}
		zone, ok := c.zoneMatch(g.Zone, ir.In)
		spec.ifaces = appendMatch(nil, zone)
		rules := spec.expand()
		matches := false
		for _, f := range families {
			u := newUniverse(f, rules)
			for _, r := range rules {
				if _, ok := u.box(r); ok {
					matches = true
				}
			}
		}
		if ok && !matches && len(c.emptyGroups(g.From)) == 0 {
			out = append(out, finding{g.Pos, LintEmptyMatch, fmt.Sprintf(
				"guard %q matches no packet: its \"from\" and \"service\" have no family in common; fix them or remove the guard", g.Name)})
		}
	}
	return out
}
