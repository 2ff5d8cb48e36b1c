package iptables

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

// maxInlineNegated is how many negated addresses a rule matches inline
// (`-m iprange ! --src-range` each); more go to a helper chain.
const maxInlineNegated = 16

// maxExpansion is how many iptables rules one IR rule may expand into
// before the export asks for --ipset instead.
const maxExpansion = 20000

// alt is one alternative of a match: the arguments of one iptables match.
type alt []string

// lowered is a rule's matches in iptables terms.
type lowered struct {
	// slots are conjuncts in output order; each is a list of alternatives
	// (one alternative: a plain match). Alternatives of a slot are
	// disjoint, so at most one of them holds for any packet.
	slots [][]alt
	// nots are negated lists too long to write inline: a packet that
	// matches any element is not matched by the rule.
	nots [][]alt
	// never is set when the rule can match no packet of the family.
	never bool
	// protos are the protocols the rule is restricted to (nil: any).
	protos []ir.Proto
}

// target is what an iptables rule does once it matches.
type target struct {
	// lines are the iptables targets, each one rule with the same
	// matches (a MARK before a RETURN); most targets are one line.
	lines [][]string
	// leave is set for RETURN meaning "leave the IR chain": it must not run
	// in a helper chain entered with -j (it would only leave the helper).
	leave bool
}

// inFamily reports whether a rule can match packets of the file's family.
func (x *exporter) inFamily(r *ir.Rule) bool {
	for _, m := range r.Matches {
		switch m := m.(type) {
		case ir.FamilyMatch:
			if m.Family != x.fam {
				return false
			}
		case ir.AddrMatch:
			if m.Family != x.fam {
				return false
			}
		case ir.ICMPMatch:
			if m.Family != x.fam {
				return false
			}
		case ir.HopLimitMatch:
			if x.fam != ir.FamilyIPv6 {
				return false
			}
		}
	}
	if rj, ok := r.Verdict.(ir.Reject); ok {
		if f := rj.With.Family(); f != ir.FamilyAny && f != x.fam {
			return false
		}
	}
	if f := natFamily(r.Verdict); f != ir.FamilyAny && f != x.fam {
		return false
	}
	return true
}

// lowerRule writes one IR rule as one or more iptables rules.
func (x *exporter) lowerRule(ctx *chainCtx, r *ir.Rule) {
	if !x.inFamily(r) {
		return
	}
	nerr := len(x.errs)
	lr := x.lowerMatches(r)
	tgt := x.target(ctx, r)
	var comment []string
	if r.Comment != "" {
		if len(r.Comment) > maxComment {
			x.errorf(r.Source, "comment is %d bytes; iptables allows at most %d", len(r.Comment), maxComment)
		} else if q, err := quote(r.Comment); err != nil {
			x.errorf(r.Source, "comment %v", err)
		} else {
			comment = []string{"-m", "comment", "--comment", q}
		}
	}
	limit := x.limitArgs(r)
	var logArgs []string
	if r.Log != nil {
		logArgs = []string{"-j", "LOG"}
		if p := r.Log.Prefix; p != "" {
			if len(p) > maxLogPrefix {
				x.errorf(r.Source, "log prefix %q is %d bytes; iptables LOG allows at most %d", p, len(p), maxLogPrefix)
			} else if q, err := quote(p); err != nil {
				x.errorf(r.Source, "log prefix %v", err)
			} else {
				logArgs = append(logArgs, "--log-prefix", q)
			}
		}
	}
	exactReject := !ctx.guard || x.opts.GuardReject == GuardRejectMark
	if rj, ok := r.Verdict.(ir.Reject); ok && rj.With == ir.RejectTCPReset && !lr.never && exactReject {
		if len(lr.protos) != 1 || lr.protos[0] != ir.ProtoTCP {
			x.errorf(r.Source, "reject with tcp-reset needs a rule that matches tcp only")
		}
	}
	if len(x.errs) > nerr || lr.never || (tgt == nil && logArgs == nil) {
		// A rule that never matches, or that neither logs nor decides, has
		// no effect on packets (its counter is all iptables would lose).
		return
	}
	x.emit(ctx, lr, comment, limit, logArgs, tgt, r.Source)
}

// cat joins argument lists.
func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// product is the cross product of the slots' alternatives, in slot order.
func product(slots [][]alt) []alt {
	out := []alt{nil}
	for _, s := range slots {
		var next []alt
		for _, prefix := range out {
			for _, a := range s {
				next = append(next, cat(prefix, a))
			}
		}
		out = next
	}
	return out
}

// emit writes the iptables rules of one IR rule into ctx.
//
// The plain case is one rule per alternative, with the same target: the
// alternatives are disjoint, so a packet meets at most one of them, and
// adjacent rules with the same target keep first-match meaning. A LOG
// without a rate limit is an extra rule with the same matches before the
// target rule.
//
// A rate limit shared by several alternatives, a limit on a rule that both
// logs and decides, and long negated lists need helper chains, so that the
// limit is one token bucket evaluated at most once per packet, as in nft:
// the rule's common matches enter a pipeline of stages (negated lists,
// alternatives, limit, action), each passing to the next with -g. A packet
// that fails a stage continues after the rule. When the target leaves the
// IR chain (RETURN), the pipeline is entered with -g, so RETURN leaves the
// chain, and the rules after this one move into a continuation chain that
// the stages go to on failure.
func (x *exporter) emit(ctx *chainCtx, lr lowered, comment, limit, logArgs []string, tgt *target, src ir.Source) {
	t := ctx.t
	var fixed []string
	var multi [][]alt
	for _, s := range lr.slots {
		if len(s) == 1 {
			fixed = append(fixed, s[0]...)
		} else {
			multi = append(multi, s)
		}
	}
	k := 1
	for _, s := range multi {
		k *= len(s)
		if k > maxExpansion {
			x.errorf(src, "expands into more than %d iptables rules; export with --ipset", maxExpansion)
			return
		}
	}
	var action [][]string
	if logArgs != nil {
		action = append(action, cat(comment, logArgs))
	}
	if tgt != nil {
		for _, l := range tgt.lines {
			action = append(action, cat(comment, l))
		}
	}
	// A limit must be evaluated once for all the action's lines.
	pipeline := len(lr.nots) > 0 || (limit != nil && (k > 1 || len(action) > 1))
	if !pipeline {
		// Matches other than limit are stateless: the same matches on
		// adjacent rules hold for the same packets.
		for _, a := range product(lr.slots) {
			for _, l := range action {
				t.add(ctx.cur, cat(a, limit, l)...)
			}
		}
		return
	}

	gotoMode := tgt != nil && tgt.leave
	var rest string
	if gotoMode {
		rest = t.helper()
	}
	// Stages before the action, in order.
	type stage struct {
		skipOn []alt // matched: the rule does not match
		passOn []alt // matched: go on (nil: go on unconditionally)
	}
	var stages []stage
	for _, n := range lr.nots {
		stages = append(stages, stage{skipOn: n})
	}
	if k > 1 {
		stages = append(stages, stage{passOn: product(multi)})
	} else {
		fixed = cat(fixed, product(multi)[0])
	}
	if limit != nil {
		stages = append(stages, stage{passOn: []alt{limit}})
	}
	// With a single target line, the last stage passes straight to it.
	merged := len(action) == 1 && tgt != nil
	names := make([]string, len(stages))
	for i := range stages {
		names[i] = t.helper()
	}
	actionName := ""
	if !merged {
		actionName = t.helper()
	}
	passTo := func(i int) []string {
		switch {
		case i+1 < len(stages):
			return []string{"-g", names[i+1]}
		case merged:
			return action[0]
		}
		return []string{"-g", actionName}
	}
	skip := []string{"-j", "RETURN"}
	if gotoMode {
		skip = []string{"-g", rest}
	}

	enter := "-j"
	if gotoMode {
		enter = "-g"
	}
	t.add(ctx.cur, cat(fixed, comment, []string{enter, names[0]})...)
	if gotoMode {
		if len(fixed) > 0 {
			t.add(ctx.cur, "-g", rest)
		}
	}
	for i, s := range stages {
		for _, a := range s.skipOn {
			t.add(names[i], cat(a, skip)...)
		}
		if s.passOn == nil {
			t.add(names[i], passTo(i)...)
			continue
		}
		for _, a := range s.passOn {
			t.add(names[i], cat(a, passTo(i))...)
		}
		if gotoMode {
			t.add(names[i], skip...)
		}
	}
	if !merged {
		for _, l := range action {
			t.add(actionName, l...)
		}
	}
	if gotoMode {
		ctx.cur = rest
	}
}

// target maps a rule's verdict to an iptables target in the chain's
// context; nil means no target (continue).
func (x *exporter) target(ctx *chainCtx, r *ir.Rule) *target {
	one := func(args ...string) *target { return &target{lines: [][]string{args}} }
	switch v := r.Verdict.(type) {
	case nil:
		return nil
	case ir.Accept:
		if !ctx.guard {
			return one("-j", "ACCEPT")
		}
		return x.guardAccept(ctx, r)
	case ir.Drop:
		return one("-j", "DROP")
	case ir.Reject:
		with, ok := rejectWith(x.fam, v.With)
		if !ok {
			x.errorf(r.Source, "reject type %d has no iptables equivalent", v.With)
			return nil
		}
		if !ctx.guard {
			return one("-j", "REJECT", "--reject-with", with)
		}
		switch x.opts.GuardReject {
		case GuardRejectDrop:
			return one("-j", "DROP")
		case GuardRejectMark:
			leave := x.guardAccept(ctx, r)
			if leave == nil {
				return nil
			}
			code := x.markReject(with)
			return &target{
				lines: append([][]string{{"-j", "MARK", "--set-xmark", fmt.Sprintf("%#x/%#x", code<<RejectMarkShift, RejectMarkMask)}}, leave.lines...),
				leave: leave.leave,
			}
		}
		x.errorf(r.Source, `reject is not possible in a guard: iptables allows REJECT only in the filter table and guards run in mangle PREROUTING/OUTPUT; use action = "drop", or export with --guard-reject=mark (exact) or --guard-reject=drop`)
		return nil
	case ir.SNAT, ir.DNAT, ir.Masquerade, ir.ClampMSS:
		args, err := gatewayTarget(r)
		if err != nil {
			x.errorf(r.Source, "%v", err)
			return nil
		}
		return one(args...)
	case ir.Jump:
		return one("-j", x.names[v.Chain])
	case ir.Return:
		if ctx.top && x.opts.NoFlush && ctx.policyDrop {
			// The chain policy is our chain's last rule in noflush mode.
			return one("-j", "DROP")
		}
		return &target{lines: [][]string{{"-j", "RETURN"}}, leave: true}
	}
	x.errorf(r.Source, "verdict %T has no iptables equivalent", r.Verdict)
	return nil
}

// guardAccept is a guard's accept: it ends only the guard chain (nft accept
// in one base chain), so later guards are skipped while nat, filter and
// everyone else's mangle rules still see the packet. RETURN from our top
// guard chain to the built-in chain is exactly that. In full mode, where we
// own the whole mangle table, ACCEPT is exact too, and it is what a nested
// chain or a top chain with a drop policy (which RETURN would hit) needs.
func (x *exporter) guardAccept(ctx *chainCtx, r *ir.Rule) *target {
	switch {
	case ctx.top && (x.opts.NoFlush || !ctx.policyDrop):
		return &target{lines: [][]string{{"-j", "RETURN"}}, leave: true}
	case !x.opts.NoFlush:
		return &target{lines: [][]string{{"-j", "ACCEPT"}}}
	}
	x.errorf(r.Source, "accept in chain %q reached from a guard cannot be written for iptables-restore --noflush (it would end everyone's mangle rules); export without --noflush", ctx.chain.Name)
	return nil
}

// markReject returns the mark code of a --reject-with value, registering
// it for the filter chains' reject rules.
func (x *exporter) markReject(with string) uint32 {
	if i := slices.Index(x.markRejects, with); i >= 0 {
		return uint32(i + 1)
	}
	x.markRejects = append(x.markRejects, with)
	return uint32(len(x.markRejects))
}

// rejectWith is the --reject-with value of a reject type for a family.
func rejectWith(f ir.Family, t ir.RejectType) (string, bool) {
	v4 := map[ir.RejectType]string{
		ir.RejectICMPXAdminProhibited: "icmp-admin-prohibited",
		ir.RejectICMPXPortUnreachable: "icmp-port-unreachable",
		ir.RejectICMPXHostUnreachable: "icmp-host-unreachable",
		ir.RejectICMPXNoRoute:         "icmp-net-unreachable", // nft icmpx no-route is net-unreachable on IPv4
		ir.RejectICMPNetUnreachable:   "icmp-net-unreachable",
		ir.RejectICMPHostProhibited:   "icmp-host-prohibited",
		ir.RejectICMPNetProhibited:    "icmp-net-prohibited",
		ir.RejectTCPReset:             "tcp-reset",
	}
	v6 := map[ir.RejectType]string{
		ir.RejectICMPXAdminProhibited:  "icmp6-adm-prohibited",
		ir.RejectICMPXPortUnreachable:  "icmp6-port-unreachable",
		ir.RejectICMPXHostUnreachable:  "icmp6-addr-unreachable", // nft icmpx host-unreachable is addr-unreachable on IPv6
		ir.RejectICMPXNoRoute:          "icmp6-no-route",
		ir.RejectICMPv6AdminProhibited: "icmp6-adm-prohibited",
		ir.RejectICMPv6NoRoute:         "icmp6-no-route",
		ir.RejectTCPReset:              "tcp-reset",
	}
	m := v4
	if f == ir.FamilyIPv6 {
		m = v6
	}
	s, ok := m[t]
	return s, ok
}

// limitArgs is `-m limit` for a rule's Limit, nil without one.
func (x *exporter) limitArgs(r *ir.Rule) []string {
	l := r.Limit
	if l == nil {
		return nil
	}
	units := map[ir.TimeUnit]struct {
		name string
		secs uint64
	}{ir.PerSecond: {"second", 1}, ir.PerMinute: {"minute", 60}, ir.PerHour: {"hour", 3600}, ir.PerDay: {"day", 86400}}
	u, ok := units[l.Unit]
	if !ok {
		x.errorf(r.Source, "limit unit %d has no iptables equivalent", l.Unit)
		return nil
	}
	// xt_limit keeps 10000ths of a second per packet: a faster rate is
	// refused by iptables ("Rate too fast").
	if l.Rate == 0 || l.Rate > 10000*u.secs {
		x.errorf(r.Source, "limit %d/%s: iptables accepts 1/day up to 10000/second", l.Rate, u.name)
		return nil
	}
	burst := l.Burst
	if burst == 0 {
		burst = 5 // nft's and iptables' default
	}
	if burst > maxLimitBurst {
		x.errorf(r.Source, "limit burst %d: iptables accepts at most %d", burst, maxLimitBurst)
		return nil
	}
	return []string{"-m", "limit", "--limit", fmt.Sprintf("%d/%s", l.Rate, u.name), "--limit-burst", strconv.Itoa(int(burst))}
}

// lowerMatches turns a rule's matches into slots, in the order iptables-save
// prints them: interfaces, addresses, protocol and ports, then the rest.
func (x *exporter) lowerMatches(r *ir.Rule) lowered {
	var lr lowered
	var ifIn, ifOut, addrs, proto, rest [][]alt
	slot := map[ir.Direction]bool{} // -s / -d used
	var ifSeen [2]bool
	var protoMs []ir.Match
	for _, m := range r.Matches {
		switch m := m.(type) {
		case ir.FamilyMatch:
			// Implied by the file.
		case ir.IfaceMatch:
			if m.Dir > ir.Out || len(m.Names) == 0 {
				x.errorf(r.Source, "malformed interface match")
				continue
			}
			if ifSeen[m.Dir] {
				x.errorf(r.Source, "two interface matches on the same direction cannot be written for iptables")
				continue
			}
			ifSeen[m.Dir] = true
			flag := "-i"
			if m.Dir == ir.Out {
				flag = "-o"
			}
			var alts []alt
			for _, n := range normIfaces(m.Names) {
				a, err := ifaceArg(n)
				if err != nil {
					x.errorf(r.Source, "%v", err)
					continue
				}
				alts = append(alts, alt{flag, a})
			}
			if len(alts) == 0 {
				continue
			}
			var s [][]alt
			switch {
			case !m.Negate:
				s = [][]alt{alts}
			case len(alts) == 1:
				s = [][]alt{{cat([]string{"!"}, alts[0])}}
			default:
				lr.nots = append(lr.nots, alts)
			}
			if m.Dir == ir.In {
				ifIn = append(ifIn, s...)
			} else {
				ifOut = append(ifOut, s...)
			}
		case ir.AddrMatch:
			s, never := x.addrSlots(r, m, slot, &lr)
			if never {
				lr.never = true
			}
			addrs = append(addrs, s...)
		case ir.ProtoMatch, ir.PortMatch, ir.ICMPMatch:
			protoMs = append(protoMs, m)
		case ir.CtStateMatch:
			if m.States == 0 {
				lr.never = true
				continue
			}
			names := m.States.Names()
			for i := range names {
				names[i] = strings.ToUpper(names[i])
			}
			if len(names) == 0 || m.States&^(ir.CtInvalid|ir.CtEstablished|ir.CtRelated|ir.CtNew|ir.CtUntracked) != 0 {
				x.errorf(r.Source, "conntrack state %#x has no iptables equivalent", uint8(m.States))
				continue
			}
			rest = append(rest, []alt{{"-m", "conntrack", "--ctstate", strings.Join(names, ",")}})
		case ir.FibLocalMatch:
			rest = append(rest, []alt{{"-m", "addrtype", "--dst-type", "LOCAL"}})
		case ir.HopLimitMatch:
			rest = append(rest, []alt{{"-m", "hl", "--hl-eq", strconv.Itoa(int(m.Value))}})
		case ir.CtStatusMatch:
			a, err := ctStatusArgs(m)
			if err != nil {
				x.errorf(r.Source, "%v", err)
				continue
			}
			rest = append(rest, []alt{a})
		case ir.TCPFlagsMatch:
			a, err := tcpFlagsArgs(m)
			if err != nil {
				x.errorf(r.Source, "%v", err)
				continue
			}
			protoMs = append(protoMs, ir.ProtoMatch{Protos: []ir.Proto{ir.ProtoTCP}})
			rest = append(rest, []alt{a})
		default:
			x.errorf(r.Source, "match %T has no iptables equivalent", m)
		}
	}
	if len(protoMs) > 0 {
		alts, protos, never := x.protoAlts(r, protoMs)
		if never {
			lr.never = true
		}
		lr.protos = protos
		if len(alts) > 0 {
			proto = append(proto, alts)
		}
	}
	lr.slots = slices.Concat(ifIn, ifOut, addrs, proto, rest)
	return lr
}

// normIfaces drops names that a wildcard of the list already covers, so
// that the remaining names are disjoint (`eth0` and `eth1*` under `eth*`).
func normIfaces(names []string) []string {
	var out []string
	for _, n := range names {
		covered := false
		for _, m := range names {
			base, wild := strings.CutSuffix(m, "*")
			if m != n && wild && strings.HasPrefix(strings.TrimSuffix(n, "*"), base) {
				covered = true
				break
			}
		}
		if !covered && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// addrSlots lowers an address match (of the file's family).
func (x *exporter) addrSlots(r *ir.Rule, m ir.AddrMatch, slot map[ir.Direction]bool, lr *lowered) (slots [][]alt, never bool) {
	dir := "src"
	if m.Field == ir.Dst {
		dir = "dst"
	}
	if m.Set != nil && x.opts.IPSet != nil {
		name, ok := x.ipsetName(r, m.Set)
		if !ok {
			return nil, false
		}
		a := alt{"-m", "set", "--match-set", name, dir}
		if m.Negate {
			a = alt{"-m", "set", "!", "--match-set", name, dir}
		}
		return [][]alt{{a}}, false
	}
	var elems []netipx.IPRange
	if m.Set != nil {
		if m.Set.Family != m.Family {
			x.errorf(r.Source, "set %q of the wrong family", m.Set.Name)
			return nil, false
		}
		elems = m.Set.Elems
	} else {
		var b netipx.IPSetBuilder
		for _, e := range m.Elems {
			b.AddRange(e)
		}
		s, err := b.IPSet()
		if err != nil {
			x.errorf(r.Source, "addresses: %v", err)
			return nil, false
		}
		elems = s.Ranges()
	}
	for _, e := range elems {
		if !e.IsValid() || ir.FamilyOf(e.From()) != m.Family {
			x.errorf(r.Source, "address %v is not an %s address range", e, famName(m.Family))
			return nil, false
		}
	}
	useSlot := !slot[m.Field] && (!m.Negate || len(elems) == 1)
	if useSlot {
		slot[m.Field] = true
	}
	one := func(e netipx.IPRange, neg bool) alt {
		var a alt
		if p, ok := e.Prefix(); ok && useSlot {
			flag := "-s"
			if m.Field == ir.Dst {
				flag = "-d"
			}
			a = alt{flag, p.String()}
		} else {
			a = alt{"-m", "iprange", "--" + dir + "-range", e.From().String() + "-" + e.To().String()}
		}
		if neg {
			at := 0
			if a[0] == "-m" {
				at = 2
			}
			a = slices.Insert(a, at, "!")
		}
		return a
	}
	switch {
	case !m.Negate && len(elems) == 0:
		return nil, true
	case !m.Negate:
		alts := make([]alt, len(elems))
		for i, e := range elems {
			alts[i] = one(e, false)
		}
		return [][]alt{alts}, false
	case len(elems) == 0:
		return nil, false
	case len(elems) <= maxInlineNegated:
		var a alt
		for _, e := range elems {
			a = cat(a, one(e, true))
		}
		return [][]alt{{a}}, false
	}
	alts := make([]alt, len(elems))
	for i, e := range elems {
		alts[i] = one(e, false)
	}
	lr.nots = append(lr.nots, alts)
	return nil, false
}

func famName(f ir.Family) string {
	if f == ir.FamilyIPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// protoArg is the iptables name of the protocols it knows without
// /etc/protocols; others are written as numbers.
var protoArg = map[ir.Proto]string{
	ir.ProtoTCP: "tcp", ir.ProtoUDP: "udp", ir.ProtoUDPLite: "udplite", ir.ProtoICMP: "icmp",
	ir.ProtoICMPv6: "ipv6-icmp", ir.ProtoESP: "esp", ir.ProtoAH: "ah", ir.ProtoSCTP: "sctp",
}

// protoAlts lowers the protocol, port and ICMP matches of a rule into one
// slot of disjoint alternatives: one per protocol, port chunk and ICMP type.
func (x *exporter) protoAlts(r *ir.Rule, ms []ir.Match) (alts []alt, protos []ir.Proto, never bool) {
	var allowed []ir.Proto // nil: any
	restrict := func(ps ...ir.Proto) {
		if allowed == nil {
			allowed = slices.Clone(ps)
			slices.Sort(allowed)
			allowed = slices.Compact(allowed)
			return
		}
		allowed = slices.DeleteFunc(allowed, func(p ir.Proto) bool { return !slices.Contains(ps, p) })
	}
	var sports, dports []ir.PortRange
	var hasS, hasD, hasICMP bool
	var types []ir.ICMPType
	for _, m := range ms {
		switch m := m.(type) {
		case ir.ProtoMatch:
			if len(m.Protos) == 0 {
				x.errorf(r.Source, "empty protocol match")
				return nil, nil, true
			}
			restrict(m.Protos...)
		case ir.PortMatch:
			if !m.Proto.HasPorts() || len(m.Ranges) == 0 {
				x.errorf(r.Source, "malformed port match for protocol %v", m.Proto)
				return nil, nil, true
			}
			for _, pr := range m.Ranges {
				if pr.Lo > pr.Hi {
					x.errorf(r.Source, "port range %d-%d is backwards", pr.Lo, pr.Hi)
					return nil, nil, true
				}
			}
			restrict(m.Proto)
			if m.Field == ir.Src {
				sports = intersectPorts(sports, hasS, m.Ranges)
				hasS = true
			} else {
				dports = intersectPorts(dports, hasD, m.Ranges)
				hasD = true
			}
		case ir.ICMPMatch:
			p := ir.ProtoICMP
			if m.Family == ir.FamilyIPv6 {
				p = ir.ProtoICMPv6
			}
			restrict(p)
			if hasICMP {
				types = slices.DeleteFunc(types, func(t ir.ICMPType) bool { return !slices.Contains(m.Types, t) })
			} else {
				types = slices.Clone(m.Types)
				slices.Sort(types)
				types = slices.Compact(types)
			}
			hasICMP = true
		}
	}
	if len(allowed) == 0 || (hasS && len(sports) == 0) || (hasD && len(dports) == 0) || (hasICMP && len(types) == 0) {
		return nil, allowed, true
	}
	for _, p := range allowed {
		if p == 0 {
			x.errorf(r.Source, "protocol 0 means every protocol to iptables; it cannot be matched")
			return nil, nil, true
		}
		name, ok := protoArg[p]
		if !ok {
			name = strconv.Itoa(int(p))
		}
		base := alt{"-p", name}
		var portAlts []alt
		switch {
		case hasS || hasD:
			portAlts = portArgs(p, sports, dports)
		case hasICMP && p == ir.ProtoICMP:
			for _, t := range types {
				portAlts = append(portAlts, alt{"-m", "icmp", "--icmp-type", strconv.Itoa(int(t))})
			}
		case hasICMP:
			for _, t := range types {
				portAlts = append(portAlts, alt{"-m", "icmp6", "--icmpv6-type", strconv.Itoa(int(t))})
			}
		default:
			portAlts = []alt{nil}
		}
		for _, pa := range portAlts {
			alts = append(alts, cat(base, pa))
		}
	}
	return alts, allowed, false
}

// intersectPorts intersects two sorted range lists (the first is "every
// port" when !have).
func intersectPorts(a []ir.PortRange, have bool, b []ir.PortRange) []ir.PortRange {
	if !have {
		return slices.Clone(b)
	}
	var out []ir.PortRange
	for _, x := range a {
		for _, y := range b {
			lo, hi := max(x.Lo, y.Lo), min(x.Hi, y.Hi)
			if lo <= hi {
				out = append(out, ir.PortRange{Lo: lo, Hi: hi})
			}
		}
	}
	return out
}

// portArgs writes source and destination port lists of protocol p as
// alternatives: `-m tcp --dport` for one port or range of tcp/udp,
// otherwise `-m multiport`, split into chunks of at most 15 ports (a range
// takes two).
func portArgs(p ir.Proto, sports, dports []ir.PortRange) []alt {
	simple := p == ir.ProtoTCP || p == ir.ProtoUDP
	field := func(rs []ir.PortRange, one, many string) []alt {
		if rs == nil {
			return []alt{nil}
		}
		if len(rs) == 1 && simple {
			return []alt{{one, portString(rs[0])}}
		}
		var out []alt
		for _, chunk := range chunkPorts(rs) {
			parts := make([]string, len(chunk))
			for i, r := range chunk {
				parts[i] = portString(r)
			}
			out = append(out, alt{"-m", "multiport", many, strings.Join(parts, ",")})
		}
		return out
	}
	var out []alt
	for _, s := range field(sports, "--sport", "--sports") {
		for _, d := range field(dports, "--dport", "--dports") {
			// `--sport`/`--dport` belong to the protocol's own match.
			var own, mp []string
			for _, part := range []alt{s, d} {
				if len(part) == 2 {
					own = append(own, part...)
				} else {
					mp = append(mp, part...)
				}
			}
			var a alt
			if own != nil {
				a = cat([]string{"-m", p.String()}, own)
			}
			out = append(out, cat(a, mp))
		}
	}
	return out
}

// chunkPorts splits ranges into multiport-sized chunks.
func chunkPorts(rs []ir.PortRange) [][]ir.PortRange {
	var out [][]ir.PortRange
	var cur []ir.PortRange
	used := 0
	for _, r := range rs {
		n := 1
		if r.Lo != r.Hi {
			n = 2
		}
		if used+n > maxMultiport {
			out = append(out, cur)
			cur, used = nil, 0
		}
		cur = append(cur, r)
		used += n
	}
	return append(out, cur)
}

// portString is `22` or `1024:65535`.
func portString(r ir.PortRange) string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d:%d", r.Lo, r.Hi)
}
