package ir

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// maxJumpDepth bounds nested jumps, as the kernel does (it refuses deeper
// nesting and loops when the ruleset is loaded).
const maxJumpDepth = 16

// StepKind says what a Step of a trace records.
type StepKind uint8

const (
	// StepEnter: the packet entered a chain (a base chain at its hook, or a
	// regular chain by a jump).
	StepEnter StepKind = iota
	// StepRule: a rule matched (Rule, Index); Verdict is its verdict, nil
	// for a log-only rule.
	StepRule
	// StepReturn: the packet left a regular chain without a verdict (a
	// return, or falling off its end) and goes on after the jump.
	StepReturn
	// StepPolicy: a base chain ended without a verdict and its policy
	// (Verdict) applied.
	StepPolicy
	// StepSkip: a base chain was not run (Note says why, e.g. NAT chains
	// only see the first packet of a connection).
	StepSkip
)

// Step is one entry of an evaluation's trace.
type Step struct {
	Kind  StepKind
	Chain *Chain
	// Rule and Index (its index in Chain.Rules) are set for StepRule.
	Rule  *Rule
	Index int
	// Verdict is the verdict of a StepRule or StepPolicy.
	Verdict Verdict
	// Depth is the jump depth: 0 in a base chain.
	Depth int
	// Note explains a StepSkip or an odd case; empty otherwise.
	Note string
}

// Result is Eval's answer for one packet.
type Result struct {
	// Verdict is Accept{}, Drop{} or Reject{...}.
	Verdict Verdict
	// Rule is the rule that decided, nil when a chain's policy decided (or
	// no base chain saw the packet: then Chain is nil too and the packet
	// is accepted, as by a kernel without hostwall's table).
	Rule *Rule
	// Chain is the chain Rule is in, or whose policy decided.
	Chain *Chain
	// Trace lists every chain entered and every rule that matched, in
	// order.
	Trace []Step
	// Err is set when the ruleset cannot be evaluated (a jump to nothing,
	// jumps nested deeper than the kernel allows, an unknown match or
	// verdict kind); Verdict is then Drop{}, and Rule the rule at fault.
	Err error
	// DNAT is the destination translation the packet got (nil: none);
	// chains after it saw the new destination.
	DNAT *Translation
	// SNAT is the source translation (SNAT or Masquerade) the packet got
	// on postrouting (nil: none).
	SNAT *Translation
}

// hooksOf lists the hooks a packet crosses, in order.
func hooksOf(d PacketDir) []Hook {
	switch d {
	case DirOut:
		return []Hook{HookOutput, HookPostrouting}
	case DirForward:
		return []Hook{HookPrerouting, HookForward, HookPostrouting}
	}
	return []Hook{HookPrerouting, HookInput}
}

// mainHook is the filter hook of a direction: the hook whose base chain
// decides an accepted packet (see Eval).
func mainHook(d PacketDir) Hook {
	switch d {
	case DirOut:
		return HookOutput
	case DirForward:
		return HookForward
	}
	return HookInput
}

// Eval decides a packet the way the kernel runs rs: hook by hook in the
// order the packet crosses them (in: prerouting, input; forward:
// prerouting, forward, postrouting; out: output, postrouting), and within
// a hook every base chain by ascending priority (declaration order among
// equal priorities). An accept ends only its base chain: the next base
// chain still sees the packet. Drop and reject end everything. A jump runs
// the target chain; a return, or the end of a regular chain, goes back to
// the rule after the jump; a base chain that ends without a verdict applies
// its policy. Rules without a verdict (log only) and ClampMSS statements
// go on.
//
// NAT: nat chains (type nat) run for the first packet of a connection
// (state new), as in the kernel; a NAT statement (SNAT, DNAT, Masquerade)
// ends its nat chain as an accept, and from then on the packet carries the
// new address: a DNAT rewrites the destination (and port) that later
// chains see and sets CtStatusDNAT in the packet's CtStatus; the result
// records both translations (Result.DNAT, Result.SNAT). A NAT statement of
// the other family than the packet's does nothing and the next rule runs,
// as in the kernel. Only the first translation of each kind counts (nat
// chains of the same hook after it are skipped). Established and related
// packets are translated as their connection's first packet was: Eval
// finds that translation by running the nat chains for the packet as if
// it were new, without tracing them (it takes every packet for one of the
// original direction: a reply, which the kernel translates back, is
// evaluated untranslated). Invalid and untracked packets are never
// translated.
//
// Limits: Eval answers for a packet under every rate limit (a rule with a
// Limit matches). The return trip of a packet the host sends to itself
// (over lo to prerouting and input) is not simulated: evaluate it as a
// separate in packet with iif lo.
//
// When every base chain accepts, the deciding rule is that of the last
// base chain on the direction's filter hook (input, forward or output),
// so that a guard that accepts does not hide the input chain's decision.
func Eval(rs *Ruleset, p Packet) Result {
	var res Result
	if rs == nil {
		res.Verdict = Accept{}
		return res
	}
	var mainDecided, lastDecided *decision
	for _, h := range hooksOf(p.Direction) {
		var chains []*Chain
		for _, c := range rs.Chains {
			if c != nil && c.Base != nil && c.Base.Hook == h {
				chains = append(chains, c)
			}
		}
		slices.SortStableFunc(chains, func(a, b *Chain) int { return cmp.Compare(a.Base.Priority, b.Base.Priority) })
		for _, c := range chains {
			if c.Base.Type == TypeNAT {
				if d, ok := evalNAT(c, &p, &res); !ok {
					res.Verdict, res.Rule, res.Chain, res.Err = d.verdict, d.rule, d.chain, d.err
					if d.err != nil {
						res.Verdict = Drop{}
					}
					return res
				}
				continue
			}
			d := runBase(c, p, &res.Trace)
			if d.err != nil {
				res.Verdict, res.Rule, res.Chain, res.Err = Drop{}, d.rule, d.chain, d.err
				return res
			}
			if _, ok := d.verdict.(Accept); !ok {
				res.Verdict, res.Rule, res.Chain = d.verdict, d.rule, d.chain
				return res
			}
			lastDecided = &d
			if h == mainHook(p.Direction) {
				mainDecided = &d
			}
		}
	}
	res.Verdict = Accept{}
	d := cmp.Or(mainDecided, lastDecided)
	if d != nil {
		res.Rule, res.Chain = d.rule, d.chain
	}
	return res
}

// decision is how one base chain ended.
type decision struct {
	verdict Verdict // Accept, Drop or Reject
	rule    *Rule   // nil: the policy
	chain   *Chain
	err     error
	// nat is the NAT statement that ended a nat chain (verdict Accept).
	nat Verdict
}

// evalNAT runs one nat base chain for p (see Eval) and applies the
// translation it makes to p and res. ok is false when evaluation ends
// there: the chain dropped or rejected the packet, or cannot be evaluated
// (d.err says why).
func evalNAT(c *Chain, p *Packet, res *Result) (d decision, ok bool) {
	dnat := c.Base.Hook == HookPrerouting || c.Base.Hook == HookOutput
	switch {
	case p.State&(CtInvalid|CtUntracked) != 0:
		res.Trace = append(res.Trace, Step{Kind: StepSkip, Chain: c, Note: "invalid and untracked packets are never translated"})
		return d, true
	case (dnat && res.DNAT != nil) || (!dnat && res.SNAT != nil):
		res.Trace = append(res.Trace, Step{Kind: StepSkip, Chain: c, Note: "the connection is already translated"})
		return d, true
	case p.State != CtNew:
		first := *p
		first.State = CtNew
		var discard []Step
		d = runBase(c, first, &discard)
		note := "nat chains only see the first packet of a connection"
		if d.err == nil && d.nat != nil {
			note += "; this packet is translated as the first one was, by " + ruleWhere(d.rule)
		}
		res.Trace = append(res.Trace, Step{Kind: StepSkip, Chain: c, Note: note})
	default:
		d = runBase(c, *p, &res.Trace)
	}
	if d.err != nil {
		return d, false
	}
	if _, isAccept := d.verdict.(Accept); !isAccept {
		return d, false // a drop or reject in a nat chain ends everything
	}
	t := &Translation{Rule: d.rule, Chain: c}
	switch v := d.nat.(type) {
	case nil:
		return d, true
	case DNAT:
		if !dnat {
			d.err = fmt.Errorf("chain %s: dnat on a chain of hook %d (only prerouting and output)", c.Name, c.Base.Hook)
			return d, false
		}
		t.Addr, t.Port = v.Addr, v.Port
		p.Dst = v.Addr
		if v.Port != 0 && p.Proto.HasPorts() {
			p.DPort = v.Port
		}
		p.CtStatus |= CtStatusDNAT
		res.DNAT = t
	case SNAT:
		if dnat {
			d.err = fmt.Errorf("chain %s: snat on a chain of hook %d (only postrouting and input)", c.Name, c.Base.Hook)
			return d, false
		}
		t.Addr = v.Addr
		p.Src = v.Addr
		res.SNAT = t
	case Masquerade:
		if c.Base.Hook != HookPostrouting {
			d.err = fmt.Errorf("chain %s: masquerade on a chain of hook %d (only postrouting)", c.Name, c.Base.Hook)
			return d, false
		}
		t.Masquerade = true
		res.SNAT = t
	}
	return d, true
}

// ruleWhere names a rule for a trace note.
func ruleWhere(r *Rule) string {
	if r == nil {
		return "the chain policy"
	}
	s := r.Source
	switch {
	case s.File != "" && s.What != "":
		return fmt.Sprintf("%s:%d:%d %s", s.File, s.Line, s.Col, s.What)
	case s.What != "":
		return s.What
	case r.Comment != "":
		return fmt.Sprintf("rule %q", r.Comment)
	}
	return "a rule"
}

// runBase runs one base chain to its end.
func runBase(c *Chain, p Packet, trace *[]Step) decision {
	d, done := runChain(c, p, trace, 0)
	if done {
		return d
	}
	var v Verdict = Accept{}
	if _, ok := c.Base.Policy.(Drop); ok {
		v = Drop{}
	}
	*trace = append(*trace, Step{Kind: StepPolicy, Chain: c, Verdict: v})
	return decision{verdict: v, chain: c}
}

// runChain runs the rules of c; done is false when the chain ended without
// a verdict (a return or its end).
func runChain(c *Chain, p Packet, trace *[]Step, depth int) (decision, bool) {
	*trace = append(*trace, Step{Kind: StepEnter, Chain: c, Depth: depth})
	for i, r := range c.Rules {
		if r == nil {
			continue
		}
		ok, err := matchAll(r.Matches, p)
		if err != nil {
			return decision{rule: r, chain: c, err: err}, true
		}
		if !ok {
			continue
		}
		if v, ok := r.Verdict.(VerdictMap); ok {
			// Zone dispatch (vmap.go): the map itself decides where the
			// packet goes, not the rules it lists in Merged.
			target := v.Lookup(p.IIF)
			if v.Dir == Out {
				target = v.Lookup(p.OIF)
			}
			if target == nil {
				continue // no element: the rule does not match
			}
			*trace = append(*trace, Step{Kind: StepRule, Chain: c, Rule: r, Index: i, Verdict: v, Depth: depth})
			if depth+1 > maxJumpDepth {
				return decision{rule: r, chain: c, err: fmt.Errorf("jumps nested deeper than %d at rule %d of chain %s (a loop?)", maxJumpDepth, i, c.Name)}, true
			}
			if d, done := runChain(target, p, trace, depth+1); done {
				// The map's chains hold rules of c: a decision there is
				// reported as c's, as the plain list would.
				if d.chain == target {
					d.chain = c
				}
				return d, true
			}
			continue
		}
		// A merged rule is reported as the first of its rules that
		// matches (concat.go); its verdict is theirs.
		orig, err := MergedRule(r, p)
		if err != nil || orig == nil {
			if err == nil {
				err = fmt.Errorf("rule %d of chain %s matches, but none of the %d rules it merges does", i, c.Name, len(r.Merged))
			}
			return decision{rule: r, chain: c, err: err}, true
		}
		r := orig
		*trace = append(*trace, Step{Kind: StepRule, Chain: c, Rule: r, Index: i, Verdict: r.Verdict, Depth: depth})
		switch v := r.Verdict.(type) {
		case nil, ClampMSS:
			continue
		case SNAT, DNAT, Masquerade:
			if c.Base == nil || c.Base.Type != TypeNAT || depth > 0 {
				return decision{rule: r, chain: c, err: fmt.Errorf("rule %d of chain %s: %T outside a nat base chain", i, c.Name, v)}, true
			}
			if f := natFamily(v); f != FamilyAny && f != p.Family() {
				// The kernel's nat statement ignores a packet of the
				// other family; the next rule runs.
				continue
			}
			return decision{verdict: Accept{}, rule: r, chain: c, nat: v}, true
		case Accept, Drop, Reject:
			return decision{verdict: v, rule: r, chain: c}, true
		case Return:
			if depth > 0 {
				*trace = append(*trace, Step{Kind: StepReturn, Chain: c, Depth: depth})
			}
			return decision{}, false
		case Jump:
			if v.Chain == nil {
				return decision{rule: r, chain: c, err: fmt.Errorf("rule %d of chain %s jumps to no chain", i, c.Name)}, true
			}
			if depth+1 > maxJumpDepth {
				return decision{rule: r, chain: c, err: fmt.Errorf("jumps nested deeper than %d at rule %d of chain %s (a loop?)", maxJumpDepth, i, c.Name)}, true
			}
			if d, done := runChain(v.Chain, p, trace, depth+1); done {
				return d, true
			}
		default:
			return decision{rule: r, chain: c, err: fmt.Errorf("rule %d of chain %s: unknown verdict kind %T", i, c.Name, v)}, true
		}
	}
	if depth > 0 {
		*trace = append(*trace, Step{Kind: StepReturn, Chain: c, Depth: depth})
	}
	return decision{}, false
}

// matchAll reports whether every match holds for p.
func matchAll(ms []Match, p Packet) (bool, error) {
	for _, m := range ms {
		ok, err := Matches(m, p)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// Matches reports whether one match holds for p, per the semantics
// documented on each match kind. It fails only for a match kind it does
// not know.
func Matches(m Match, p Packet) (bool, error) {
	fam := p.Family()
	switch m := m.(type) {
	case FamilyMatch:
		return m.Family == FamilyAny || m.Family == fam, nil
	case IfaceMatch:
		name := p.IIF
		if m.Dir == Out {
			name = p.OIF
		}
		return ifaceIn(name, m.Names) != m.Negate, nil
	case AddrMatch:
		if m.Family != fam {
			return false, nil
		}
		a := p.Src
		if m.Field == Dst {
			a = p.Dst
		}
		elems := m.Elems
		if m.Set != nil {
			if m.Set.Family != fam {
				return false, nil
			}
			elems = m.Set.Elems
		}
		in := false
		for _, r := range elems {
			if r.Contains(a) {
				in = true
				break
			}
		}
		return in != m.Negate, nil
	case ProtoMatch:
		return slices.Contains(m.Protos, p.Proto), nil
	case PortMatch:
		if p.Proto != m.Proto || !p.Proto.HasPorts() {
			return false, nil
		}
		port := p.SPort
		if m.Field == Dst {
			port = p.DPort
		}
		for _, r := range m.Ranges {
			if r.Lo <= port && port <= r.Hi {
				return true, nil
			}
		}
		return false, nil
	case ICMPMatch:
		want, ok := map[Family]Proto{FamilyIPv4: ProtoICMP, FamilyIPv6: ProtoICMPv6}[m.Family]
		if !ok || m.Family != fam || p.Proto != want {
			return false, nil
		}
		return slices.Contains(m.Types, p.ICMPType), nil
	case CtStateMatch:
		return m.States&p.State != 0, nil
	case FibLocalMatch:
		return p.DstLocal, nil
	case HopLimitMatch:
		return fam == FamilyIPv6 && p.HopLimit == m.Value, nil
	case CtStatusMatch:
		return m.Status&p.CtStatus != 0, nil
	case TCPFlagsMatch:
		return p.Proto == ProtoTCP && tcpFlagsOf(p)&m.Mask == m.Value, nil
	case ConcatMatch:
		return matchConcat(m, p), nil
	}
	return false, fmt.Errorf("unknown match kind %T", m)
}

// ifaceIn reports whether name is one of names; a name ending in '*'
// matches by prefix. An empty name (no interface) matches nothing.
func ifaceIn(name string, names []string) bool {
	if name == "" {
		return false
	}
	for _, n := range names {
		if pre, ok := strings.CutSuffix(n, "*"); ok {
			if strings.HasPrefix(name, pre) {
				return true
			}
		} else if n == name {
			return true
		}
	}
	return false
}
