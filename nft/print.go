// Package nft is hostwall's nftables backend: the only code that writes nft
// syntax (Print) and, beside it, the netlink lowering and apply. It reads
// the compiled ruleset of package ir only.
package nft

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

// elemsPerLine is how many set elements Print writes on one line, so that
// a set of 100,000 elements stays a file of short lines.
const elemsPerLine = 4

// Print writes rs as an `nft -f` script in nft 1.0.6 syntax. The script
// creates the table if it is missing, deletes it and declares it anew, so
// that loading it with `nft -f` is one atomic replace of hostwall's table
// and touches no other table.
//
// Print checks the whole ruleset first: names must be nft identifiers,
// strings must be safe to quote, sets and chains must be declared in rs,
// and a rule's matches must agree on the family. On any problem it returns
// an error naming the chain and rule and writes nothing to w. The same
// ruleset always gives the same bytes.
func Print(w io.Writer, rs *ir.Ruleset) error {
	if rs == nil {
		return errors.New("nft: print: nil ruleset")
	}
	p := &printer{rs: rs, sets: map[*ir.Set]bool{}, chains: map[*ir.Chain]bool{}}
	if err := p.ruleset(); err != nil {
		return fmt.Errorf("nft: print table %q: %w", rs.Table, err)
	}
	_, err := w.Write(p.buf.Bytes())
	return err
}

// printer holds the output buffer and what has been declared, for one
// Print call.
type printer struct {
	buf    bytes.Buffer
	rs     *ir.Ruleset
	sets   map[*ir.Set]bool
	chains map[*ir.Chain]bool
}

func (p *printer) printf(format string, args ...any) { fmt.Fprintf(&p.buf, format, args...) }

func (p *printer) ruleset() error {
	rs := p.rs
	if err := checkName("table", rs.Table); err != nil {
		return err
	}
	names := map[string]string{}
	declare := func(kind, name string) error {
		if prev, ok := names[name]; ok {
			return fmt.Errorf("%s %q: name already used by a %s", kind, name, prev)
		}
		names[name] = kind
		return nil
	}
	for i, s := range rs.Sets {
		if s == nil {
			return fmt.Errorf("set %d is nil", i)
		}
		if err := declare("set", s.Name); err != nil {
			return err
		}
		p.sets[s] = true
	}
	chainNames := map[string]bool{}
	for i, c := range rs.Chains {
		if c == nil {
			return fmt.Errorf("chain %d is nil", i)
		}
		if chainNames[c.Name] {
			return fmt.Errorf("chain %q: declared twice", c.Name)
		}
		chainNames[c.Name] = true
		p.chains[c] = true
	}

	p.printf("table inet %s\ndelete table inet %s\ntable inet %s {\n", rs.Table, rs.Table, rs.Table)
	first := true
	sep := func() {
		if !first {
			p.printf("\n")
		}
		first = false
	}
	for _, s := range rs.Sets {
		sep()
		if err := p.set(s); err != nil {
			return err
		}
	}
	for _, c := range rs.Chains {
		sep()
		if err := p.chain(c); err != nil {
			return err
		}
	}
	p.printf("}\n")
	return nil
}

func (p *printer) set(s *ir.Set) error {
	if err := checkName("set", s.Name); err != nil {
		return err
	}
	var typ string
	switch s.Family {
	case ir.FamilyIPv4:
		typ = "ipv4_addr"
	case ir.FamilyIPv6:
		typ = "ipv6_addr"
	default:
		return fmt.Errorf("set %q: family must be IPv4 or IPv6, not %d", s.Name, s.Family)
	}
	elems, err := elements(s.Family, s.Elems)
	if err != nil {
		return fmt.Errorf("set %q: %w", s.Name, err)
	}
	p.printf("\tset %s {\n\t\ttype %s\n", s.Name, typ)
	if s.Interval() {
		p.printf("\t\tflags interval\n")
	}
	if s.Comment != "" {
		q, err := quote(kindComment, s.Comment)
		if err != nil {
			return fmt.Errorf("set %q: %w", s.Name, err)
		}
		p.printf("\t\tcomment %s\n", q)
	}
	if len(elems) > 0 {
		p.printf("\t\telements = { ")
		for i, e := range elems {
			switch {
			case i == 0:
			case i%elemsPerLine == 0:
				p.printf(",\n\t\t\t     ")
			default:
				p.printf(", ")
			}
			p.printf("%s", e)
		}
		p.printf(" }\n")
	}
	p.printf("\t}\n")
	return nil
}

// elements renders address ranges of family f as nft set elements: a
// single address, a prefix when the range is exactly one, else `a-b`. The
// ranges must be valid, of family f, sorted and non-overlapping (nft
// refuses overlapping intervals).
func elements(f ir.Family, rs []netipx.IPRange) ([]string, error) {
	out := make([]string, 0, len(rs))
	var prev netip.Addr
	for i, r := range rs {
		if !r.IsValid() {
			return nil, fmt.Errorf("element %d is not a valid address range", i)
		}
		if r.From().Is4In6() || r.To().Is4In6() || (f == ir.FamilyIPv4) != r.From().Is4() {
			return nil, fmt.Errorf("element %s is not an %s address range", r, familyWord(f))
		}
		if i > 0 && r.From().Compare(prev) <= 0 {
			return nil, fmt.Errorf("element %s overlaps or is out of order after %s", r, rs[i-1])
		}
		prev = r.To()
		out = append(out, rangeString(r))
	}
	return out, nil
}

func rangeString(r netipx.IPRange) string {
	if r.From() == r.To() {
		return r.From().String()
	}
	if pfx, ok := r.Prefix(); ok {
		return pfx.String()
	}
	return r.From().String() + "-" + r.To().String()
}

func familyWord(f ir.Family) string {
	switch f {
	case ir.FamilyIPv4:
		return "IPv4"
	case ir.FamilyIPv6:
		return "IPv6"
	}
	return "any-family"
}

var hookNames = [...]string{
	ir.HookPrerouting:  "prerouting",
	ir.HookInput:       "input",
	ir.HookForward:     "forward",
	ir.HookOutput:      "output",
	ir.HookPostrouting: "postrouting",
}

// HookName is the nft name of a hook (its number when it has none).
func HookName(h ir.Hook) string {
	if int(h) < len(hookNames) {
		return hookNames[h]
	}
	return fmt.Sprint(int(h))
}

func (p *printer) chain(c *ir.Chain) error {
	if err := checkName("chain", c.Name); err != nil {
		return err
	}
	p.printf("\tchain %s {\n", c.Name)
	if b := c.Base; b != nil {
		line, err := baseLine(b)
		if err != nil {
			return fmt.Errorf("chain %q: %w", c.Name, err)
		}
		p.printf("\t\t%s\n", line)
	}
	for i, r := range c.Rules {
		line, err := p.rule(r)
		if err != nil {
			if r != nil && r.Source.What != "" {
				return fmt.Errorf("chain %q rule %d (%s): %w", c.Name, i, r.Source.What, err)
			}
			return fmt.Errorf("chain %q rule %d: %w", c.Name, i, err)
		}
		p.printf("\t\t%s\n", line)
	}
	p.printf("\t}\n")
	return nil
}

// baseLine renders `type T hook H priority P; policy V;`.
func baseLine(b *ir.Base) (string, error) {
	var typ string
	switch b.Type {
	case ir.TypeFilter:
		typ = "filter"
	case ir.TypeNAT:
		typ = "nat"
	default:
		return "", fmt.Errorf("unknown chain type %d", b.Type)
	}
	if int(b.Hook) >= len(hookNames) {
		return "", fmt.Errorf("unknown hook %d", b.Hook)
	}
	if b.Type == ir.TypeNAT && b.Hook == ir.HookForward {
		return "", errors.New("a nat chain cannot hook forward")
	}
	var policy string
	switch b.Policy.(type) {
	case ir.Accept:
		policy = "accept"
	case ir.Drop:
		policy = "drop"
	default:
		return "", fmt.Errorf("base chain policy must be accept or drop, not %s", verdictKind(b.Policy))
	}
	return fmt.Sprintf("type %s hook %s priority %s; policy %s;", typ, hookNames[b.Hook], Priority(b.Hook, b.Priority), policy), nil
}

// namedPriorities are nft's standard priorities in family inet, with the
// one hook each is restricted to (or -1 for every hook).
var namedPriorities = []struct {
	name string
	val  int
	hook int
}{
	{"raw", ir.PriorityRaw, -1},
	{"mangle", ir.PriorityMangle, -1},
	{"dstnat", ir.PriorityDstNAT, int(ir.HookPrerouting)},
	{"filter", ir.PriorityFilter, -1},
	{"security", ir.PrioritySecurity, -1},
	{"srcnat", ir.PrioritySrcNAT, int(ir.HookPostrouting)},
}

// Priority renders a base chain priority the way nft 1.0.6 lists it: a
// standard name that nft accepts on this hook (dstnat only on prerouting,
// srcnat only on postrouting), with an offset of at most 10 (`dstnat - 10`
// for -110 on prerouting), or else the number (`-110` on output).
func Priority(h ir.Hook, prio int) string {
	for _, n := range namedPriorities {
		if n.hook >= 0 && n.hook != int(h) {
			continue
		}
		switch off := prio - n.val; {
		case off == 0:
			return n.name
		case off > 0 && off <= 10:
			return fmt.Sprintf("%s + %d", n.name, off)
		case off < 0 && off >= -10:
			return fmt.Sprintf("%s - %d", n.name, -off)
		}
	}
	return strconv.Itoa(prio)
}

// rule renders one rule on one line: matches, limit, counter, log,
// verdict, comment.
func (p *printer) rule(r *ir.Rule) (string, error) {
	if r == nil {
		return "", errors.New("nil rule")
	}
	fam, err := ruleFamily(r)
	if err != nil {
		return "", err
	}
	var parts []string
	for _, m := range r.Matches {
		s, err := p.match(m, fam)
		if err != nil {
			return "", err
		}
		if s != "" {
			parts = append(parts, s)
		}
	}
	if l := r.Limit; l != nil {
		s, err := limitString(l)
		if err != nil {
			return "", err
		}
		parts = append(parts, s)
	}
	if r.Counter {
		parts = append(parts, "counter")
	}
	if r.Log != nil {
		if r.Log.Prefix == "" {
			parts = append(parts, "log")
		} else {
			q, err := quote(kindLogPrefix, r.Log.Prefix)
			if err != nil {
				return "", err
			}
			parts = append(parts, "log prefix "+q)
		}
	}
	if r.Verdict != nil {
		s, err := p.verdict(r)
		if err != nil {
			return "", err
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		// Alone, `comment "..."` would be read by nft as the chain's
		// comment, not as a rule.
		return "", errors.New("rule has no match, statement or verdict")
	}
	if r.Comment != "" {
		q, err := quote(kindComment, r.Comment)
		if err != nil {
			return "", err
		}
		parts = append(parts, "comment "+q)
	}
	return strings.Join(parts, " "), nil
}

// implied is the family a match or verdict restricts a rule to, and
// whether that restriction is visible in nft's own words for it (so that a
// FamilyMatch beside it can be left out).
func implied(x any) (ir.Family, bool) {
	switch m := x.(type) {
	case ir.FamilyMatch:
		return m.Family, false
	case ir.AddrMatch:
		return m.Family, true
	case ir.ICMPMatch:
		return m.Family, true
	case ir.HopLimitMatch:
		return ir.FamilyIPv6, true
	case ir.ConcatMatch:
		return m.Family, true
	case ir.Reject:
		return m.With.Family(), false
	case ir.SNAT:
		return m.Family, false
	case ir.DNAT:
		return m.Family, false
	}
	return ir.FamilyAny, false
}

// ruleFamily returns the family a rule's own nft words already imply
// (FamilyAny when none does), and an error when its matches and verdict
// name two different families (nft refuses such a rule: "conflicting
// protocols specified").
func ruleFamily(r *ir.Rule) (ir.Family, error) {
	var fam, shown ir.Family
	check := func(x any) error {
		f, visible := implied(x)
		if f == ir.FamilyAny {
			return nil
		}
		if fam != ir.FamilyAny && f != fam {
			return fmt.Errorf("matches both %s and %s packets", familyWord(fam), familyWord(f))
		}
		fam = f
		if visible {
			shown = f
		}
		return nil
	}
	for _, m := range r.Matches {
		if err := check(m); err != nil {
			return 0, err
		}
	}
	if rej, ok := r.Verdict.(ir.Reject); ok {
		if err := check(rej); err != nil {
			return 0, fmt.Errorf("reject %s: %w", rejectWords[rej.With], err)
		}
	}
	switch v := r.Verdict.(type) {
	case ir.SNAT, ir.DNAT:
		// nft's nat statement ignores packets of the other family and the
		// next rule runs: the rule must name the family itself.
		if err := check(v); err != nil {
			return 0, fmt.Errorf("nat: %w", err)
		}
		if fam == ir.FamilyAny || !hasFamily(r, fam) {
			return 0, errors.New("nat: a snat or dnat rule must match its family (a family or address match)")
		}
	}
	return shown, nil
}

// match renders one match; fam is the family the rule's other words
// already imply (a FamilyMatch of that family prints nothing).
func (p *printer) match(m ir.Match, fam ir.Family) (string, error) {
	switch m := m.(type) {
	case ir.FamilyMatch:
		switch m.Family {
		case ir.FamilyIPv4, ir.FamilyIPv6:
		default:
			return "", fmt.Errorf("family match: family must be IPv4 or IPv6, not %d", m.Family)
		}
		if m.Family == fam {
			return "", nil
		}
		return "meta nfproto " + nfproto(m.Family), nil
	case ir.IfaceMatch:
		key, ok := dirWord(m.Dir, "iifname", "oifname")
		if !ok {
			return "", fmt.Errorf("interface match: unknown direction %d", m.Dir)
		}
		if len(m.Names) == 0 {
			return "", errors.New("interface match: no interface names")
		}
		qs := make([]string, len(m.Names))
		for i, n := range m.Names {
			q, err := quote(kindIface, n)
			if err != nil {
				return "", err
			}
			qs[i] = q
		}
		return key + neg(m.Negate) + oneOrSet(qs), nil
	case ir.AddrMatch:
		return p.addrMatch(m)
	case ir.ProtoMatch:
		if len(m.Protos) == 0 {
			return "", errors.New("protocol match: no protocols")
		}
		names := make([]string, len(m.Protos))
		for i, pr := range m.Protos {
			names[i] = protoWord(pr)
		}
		return "meta l4proto " + oneOrSet(names), nil
	case ir.PortMatch:
		if !m.Proto.HasPorts() {
			return "", fmt.Errorf("port match: protocol %s has no ports", m.Proto)
		}
		field, ok := dirWord(m.Field, "sport", "dport")
		if !ok {
			return "", fmt.Errorf("port match: unknown field %d", m.Field)
		}
		if len(m.Ranges) == 0 {
			return "", errors.New("port match: no ports")
		}
		ports := make([]string, len(m.Ranges))
		for i, r := range m.Ranges {
			if r.Lo > r.Hi {
				return "", fmt.Errorf("port match: range %d-%d has low above high", r.Lo, r.Hi)
			}
			if i > 0 && r.Lo <= m.Ranges[i-1].Hi {
				return "", fmt.Errorf("port match: range %s overlaps or is out of order after %s", r, m.Ranges[i-1])
			}
			ports[i] = r.String()
		}
		return m.Proto.String() + " " + field + " " + oneOrSet(ports), nil
	case ir.ICMPMatch:
		var key string
		switch m.Family {
		case ir.FamilyIPv4:
			key = "icmp type "
		case ir.FamilyIPv6:
			key = "icmpv6 type "
		default:
			return "", errors.New("icmp match: family must be IPv4 or IPv6")
		}
		if len(m.Types) == 0 {
			return "", errors.New("icmp match: no types")
		}
		names := make([]string, len(m.Types))
		for i, t := range m.Types {
			names[i] = ir.ICMPTypeName(m.Family, t)
		}
		return key + oneOrSet(names), nil
	case ir.CtStateMatch:
		known := ir.CtInvalid | ir.CtEstablished | ir.CtRelated | ir.CtNew | ir.CtUntracked
		if m.States == 0 || m.States&^known != 0 {
			return "", fmt.Errorf("ct state match: states %#x are not a non-empty set of known states", uint8(m.States))
		}
		return "ct state " + m.States.String(), nil
	case ir.FibLocalMatch:
		return "fib daddr type local", nil
	case ir.HopLimitMatch:
		return "ip6 hoplimit " + strconv.Itoa(int(m.Value)), nil
	case ir.CtStatusMatch:
		return ctStatusText(m)
	case ir.TCPFlagsMatch:
		return tcpFlagsMatchText(m)
	case ir.ConcatMatch:
		return concatText(m)
	case nil:
		return "", errors.New("nil match")
	}
	return "", fmt.Errorf("match of type %T has no nft form", m)
}

func (p *printer) addrMatch(m ir.AddrMatch) (string, error) {
	var key string
	switch m.Family {
	case ir.FamilyIPv4:
		key = "ip"
	case ir.FamilyIPv6:
		key = "ip6"
	default:
		return "", errors.New("address match: family must be IPv4 or IPv6")
	}
	field, ok := dirWord(m.Field, " saddr", " daddr")
	if !ok {
		return "", fmt.Errorf("address match: unknown field %d", m.Field)
	}
	key += field
	key += neg(m.Negate)
	switch {
	case m.Set != nil && len(m.Elems) > 0:
		return "", errors.New("address match: both a set and elements")
	case m.Set != nil:
		if !p.sets[m.Set] {
			return "", fmt.Errorf("address match: set %q is not a set of this ruleset", m.Set.Name)
		}
		if m.Set.Family != m.Family {
			return "", fmt.Errorf("address match: %s match on %s set %q", familyWord(m.Family), familyWord(m.Set.Family), m.Set.Name)
		}
		return key + "@" + m.Set.Name, nil
	case len(m.Elems) == 0:
		return "", errors.New("address match: neither a set nor elements")
	}
	elems, err := elements(m.Family, m.Elems)
	if err != nil {
		return "", fmt.Errorf("address match: %w", err)
	}
	return key + oneOrSet(elems), nil
}

// neg is the operator between a key and its value.
func neg(negate bool) string {
	if negate {
		return " != "
	}
	return " "
}

// oneOrSet renders one value as itself and several as an anonymous set.
func oneOrSet(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	return "{ " + strings.Join(vs, ", ") + " }"
}

func nfproto(f ir.Family) string {
	if f == ir.FamilyIPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// protoWord is the nft word for a protocol: its name, except where the
// name nft would look up in /etc/protocols means another number. IP in IP
// (4) is `ipencap` there, and `ipip` is 94, so 4 is written as a number.
func protoWord(p ir.Proto) string {
	if p == ir.ProtoIPIP {
		return strconv.Itoa(int(p))
	}
	return p.String()
}

var unitNames = [...]string{
	ir.PerSecond: "second",
	ir.PerMinute: "minute",
	ir.PerHour:   "hour",
	ir.PerDay:    "day",
}

func limitString(l *ir.Limit) (string, error) {
	if int(l.Unit) >= len(unitNames) {
		return "", fmt.Errorf("limit: unknown time unit %d", l.Unit)
	}
	if l.Rate == 0 {
		return "", errors.New("limit: rate 0 (the kernel refuses it)")
	}
	s := fmt.Sprintf("limit rate %d/%s", l.Rate, unitNames[l.Unit])
	if l.Burst > 0 {
		s += fmt.Sprintf(" burst %d packets", l.Burst)
	}
	return s, nil
}

// rejectWords are nft's words after `reject with` for each RejectType.
var rejectWords = map[ir.RejectType]string{
	ir.RejectICMPXAdminProhibited:  "icmpx admin-prohibited",
	ir.RejectICMPXPortUnreachable:  "icmpx port-unreachable",
	ir.RejectICMPXHostUnreachable:  "icmpx host-unreachable",
	ir.RejectICMPXNoRoute:          "icmpx no-route",
	ir.RejectICMPNetUnreachable:    "icmp net-unreachable",
	ir.RejectICMPHostProhibited:    "icmp host-prohibited",
	ir.RejectICMPNetProhibited:     "icmp net-prohibited",
	ir.RejectICMPv6AdminProhibited: "icmpv6 admin-prohibited",
	ir.RejectICMPv6NoRoute:         "icmpv6 no-route",
	ir.RejectTCPReset:              "tcp reset",
}

func (p *printer) verdict(r *ir.Rule) (string, error) {
	switch v := r.Verdict.(type) {
	case ir.Accept:
		return "accept", nil
	case ir.Drop:
		return "drop", nil
	case ir.Return:
		return "return", nil
	case ir.Reject:
		w, ok := rejectWords[v.With]
		if !ok {
			return "", fmt.Errorf("reject: unknown reject type %d", v.With)
		}
		if v.With == ir.RejectTCPReset {
			if err := onlyTCP(r); err != nil {
				return "", err
			}
		}
		return "reject with " + w, nil
	case ir.SNAT, ir.DNAT, ir.Masquerade, ir.ClampMSS:
		s, _, err := gatewayVerdict(r)
		return s, err
	case ir.VerdictMap:
		return p.verdictMap(v)
	case ir.Jump:
		if v.Chain == nil {
			return "", errors.New("jump: no chain")
		}
		if !p.chains[v.Chain] {
			return "", fmt.Errorf("jump: chain %q is not a chain of this ruleset", v.Chain.Name)
		}
		if v.Chain.Base != nil {
			return "", fmt.Errorf("jump: chain %q is a base chain", v.Chain.Name)
		}
		return "jump " + v.Chain.Name, nil
	}
	return "", fmt.Errorf("verdict of type %s has no nft form", verdictKind(r.Verdict))
}

// onlyTCP checks that a `reject with tcp reset` rule matches no protocol
// but TCP (nft adds `meta l4proto tcp` itself when the rule names none).
func onlyTCP(r *ir.Rule) error {
	for _, m := range r.Matches {
		switch m := m.(type) {
		case ir.PortMatch:
			if m.Proto != ir.ProtoTCP {
				return fmt.Errorf("reject with tcp reset: rule matches %s ports", m.Proto)
			}
		case ir.ProtoMatch:
			if len(m.Protos) != 1 || m.Protos[0] != ir.ProtoTCP {
				return fmt.Errorf("reject with tcp reset: rule matches protocols other than tcp")
			}
		case ir.ICMPMatch:
			return fmt.Errorf("reject with tcp reset: rule matches icmp")
		case ir.ConcatMatch:
			if m.Proto != ir.ProtoTCP {
				return fmt.Errorf("reject with tcp reset: rule matches %s ports", m.Proto)
			}
		}
	}
	return nil
}

func verdictKind(v ir.Verdict) string {
	if v == nil {
		return "none"
	}
	return fmt.Sprintf("%T", v)
}

// dirWord is in for ir.In (ir.Src), out for ir.Out (ir.Dst); false for
// any other direction.
func dirWord(d ir.Direction, in, out string) (string, bool) {
	switch d {
	case ir.In:
		return in, true
	case ir.Out:
		return out, true
	}
	return "", false
}
