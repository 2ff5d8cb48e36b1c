// Package iptables is hostwall's iptables backend: the only code that writes
// iptables-restore syntax. Export turns a compiled ir.Ruleset into the
// rules.v4 or rules.v6 file of one family, deciding every packet as the
// nftables ruleset does; what iptables cannot express is an error naming the
// rule's position, never a silently different firewall.
//
// Mapping (see README.md beside this file):
//   - filter base chains on the input, forward and output hooks become
//     HOSTWALL-INPUT, HOSTWALL-FORWARD and HOSTWALL-OUTPUT in table filter,
//     jumped to from INPUT, FORWARD and OUTPUT;
//   - guard chains (filter base chains on prerouting or output before
//     dstnat, priority < -100) become HOSTWALL-GUARD-PRE and
//     HOSTWALL-GUARD-OUT in table mangle (after conntrack, before nat),
//     jumped to from PREROUTING and OUTPUT;
//   - nat chains on prerouting and postrouting become HOSTWALL-NAT-PRE and
//     HOSTWALL-NAT-POST in table nat (DNAT, SNAT, MASQUERADE), and the MSS
//     clamping chain (a filter chain on postrouting before srcnat) becomes
//     HOSTWALL-MSS in table mangle (TCPMSS), jumped to from PREROUTING and
//     POSTROUTING;
//   - regular chains become HOSTWALL-<NAME> user chains in every table that
//     jumps to them;
//   - a rule that needs more than one iptables rule (several interfaces,
//     protocols, addresses or port chunks) becomes adjacent rules with the
//     same target, or, when a rate limit must be shared, helper chains
//     HOSTWALL-H<n> that keep the rule's meaning exact.
package iptables

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
)

// Options choose what Export writes.
type Options struct {
	// Family is the family of the file: ir.FamilyIPv4 (rules.v4, for
	// iptables-restore) or ir.FamilyIPv6 (rules.v6, for ip6tables-restore).
	Family ir.Family
	// NoFlush writes a file for `iptables-restore --noflush`: only
	// hostwall's own chains are declared (and so flushed); built-in chains,
	// their policies and the jumps into hostwall's chains are left alone.
	// A chain policy of drop becomes a final DROP rule in hostwall's chain.
	NoFlush bool
	// IPSet, when not nil, receives an `ipset restore` file with the
	// family's named sets, and rules match them with `-m set` instead of
	// one rule per element.
	IPSet io.Writer
	// GuardReject says how a guard's reject is written: iptables allows
	// REJECT only in the filter table, and guards live in mangle.
	GuardReject GuardReject
}

// GuardReject is how the export writes a reject in a guard.
type GuardReject uint8

const (
	// GuardRejectError makes such a guard an error naming its position
	// (the default).
	GuardRejectError GuardReject = iota
	// GuardRejectDrop writes DROP instead: the client sees a timeout, not
	// an answer.
	GuardRejectDrop
	// GuardRejectMark is exact: the guard sets a reject code in the packet
	// mark bits RejectMarkMask and ends the guard chain; the first rules of
	// hostwall's filter chains (INPUT, FORWARD, OUTPUT) reject packets
	// carrying a code, with the guard's reject type. Nothing but the guard
	// decides such a packet in between (DNAT may rewrite it; conntrack
	// translates the answer back). The mark bits must not be used by
	// other tools on the host.
	GuardRejectMark
)

// The packet mark bits GuardRejectMark uses: a 4-bit reject code.
const (
	RejectMarkMask  = 0x00f00000
	RejectMarkShift = 20
)

// Error is one thing of the ruleset that the export cannot write, at the
// position of the policy text it came from.
type Error struct {
	Source ir.Source
	Msg    string
}

// Error returns "file:line:col: what: msg".
func (e *Error) Error() string {
	var b strings.Builder
	s := e.Source
	switch {
	case s.File != "" && s.Line > 0:
		fmt.Fprintf(&b, "%s:%d:%d: ", s.File, s.Line, s.Col)
	case s.File != "":
		fmt.Fprintf(&b, "%s: ", s.File)
	}
	if s.What != "" {
		b.WriteString(s.What + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem of one export, sorted by position.
type ErrorList []*Error

// Error returns one problem per line.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Export writes rs as an iptables-restore file for opts.Family to w (and,
// with opts.IPSet, the ipset restore file). Rules of the other family are
// left out; rules of both families go to both files. On any problem it
// returns an ErrorList (every problem at once, sorted by position) and
// writes nothing. The same input always gives the same bytes.
func Export(w io.Writer, rs *ir.Ruleset, opts Options) error {
	if rs == nil {
		return errors.New("iptables: export: nil ruleset")
	}
	if opts.Family != ir.FamilyIPv4 && opts.Family != ir.FamilyIPv6 {
		return errors.New("iptables: export: family must be IPv4 or IPv6")
	}
	x := newExporter(rs, opts)
	x.run()
	if len(x.errs) > 0 {
		slices.SortStableFunc(x.errs, func(a, b *Error) int {
			return cmp.Or(cmp.Compare(a.Source.File, b.Source.File), cmp.Compare(a.Source.Line, b.Source.Line),
				cmp.Compare(a.Source.Col, b.Source.Col), cmp.Compare(a.Msg, b.Msg))
		})
		x.errs = slices.CompactFunc(x.errs, func(a, b *Error) bool { return *a == *b })
		return x.errs
	}
	var buf bytes.Buffer
	x.write(&buf)
	var setBuf bytes.Buffer
	if opts.IPSet != nil {
		x.writeIPSet(&setBuf)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return err
	}
	if opts.IPSet != nil {
		if _, err := opts.IPSet.Write(setBuf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// table is one `*table ... COMMIT` block being built.
type table struct {
	name string
	// builtins are the built-in chains of the table, in kernel order.
	builtins []string
	// policy is the full-mode policy of a built-in chain (ACCEPT unless one
	// of hostwall's base chains sets it).
	policy map[string]string
	// jumps are the jumps from built-in chains into hostwall's base chains:
	// written in full mode, documented in noflush mode.
	jumps []jump
	// chains are hostwall's chains, in declaration order.
	chains []string
	lines  []string
	// helpers counts helper chains, for their names.
	helpers int
	// used reports whether the table has any of hostwall's chains.
	used bool
}

func newTable(name string, builtins ...string) *table {
	t := &table{name: name, builtins: builtins, policy: map[string]string{}}
	for _, b := range builtins {
		t.policy[b] = "ACCEPT"
	}
	return t
}

// helper declares a new helper chain and returns its name.
func (t *table) helper() string {
	t.helpers++
	name := fmt.Sprintf("HOSTWALL-H%d", t.helpers)
	t.chains = append(t.chains, name)
	return name
}

// add appends `-A chain args...`.
func (t *table) add(chain string, args ...string) {
	t.lines = append(t.lines, "-A "+chain+" "+strings.Join(args, " "))
}

// jump is `-A From -j To`.
type jump struct{ From, To string }

// placement says where a base chain of the IR goes.
type placement struct {
	table   *table
	builtin string // INPUT, FORWARD, OUTPUT, PREROUTING
	name    string // HOSTWALL-INPUT, ...
	guard   bool
}

// exporter holds the state of one Export call.
type exporter struct {
	rs   *ir.Ruleset
	opts Options
	fam  ir.Family
	errs ErrorList

	mangle, nat, filter *table
	// names are the iptables names of the IR chains.
	names map[*ir.Chain]string
	// sets are the ipset names of the IR sets used by the file, and
	// setOrder their order of first use.
	sets     map[*ir.Set]string
	setOrder []*ir.Set
	setNames map[string]*ir.Set
	// markRejects are the --reject-with values of guard rejects written
	// with GuardRejectMark; code i+1 in the mark is markRejects[i].
	markRejects []string
}

func newExporter(rs *ir.Ruleset, opts Options) *exporter {
	return &exporter{
		rs: rs, opts: opts, fam: opts.Family,
		mangle:   newTable("mangle", "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
		nat:      newTable("nat", "PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
		filter:   newTable("filter", "INPUT", "FORWARD", "OUTPUT"),
		names:    map[*ir.Chain]string{},
		sets:     map[*ir.Set]string{},
		setNames: map[string]*ir.Set{},
	}
}

func (x *exporter) errorf(src ir.Source, format string, args ...any) {
	x.errs = append(x.errs, &Error{Source: src, Msg: fmt.Sprintf(format, args...)})
}

// chainSource names a chain for errors that belong to no rule.
func chainSource(c *ir.Chain) ir.Source { return ir.Source{What: fmt.Sprintf("chain %q", c.Name)} }

// place decides where a base chain goes, or reports why it cannot.
func (x *exporter) place(c *ir.Chain) (placement, bool) {
	b := c.Base
	if b.Type == ir.TypeNAT {
		switch b.Hook {
		case ir.HookPrerouting:
			return placement{x.nat, "PREROUTING", "HOSTWALL-NAT-PRE", false}, true
		case ir.HookPostrouting:
			return placement{x.nat, "POSTROUTING", "HOSTWALL-NAT-POST", false}, true
		}
		x.errorf(chainSource(c), "a nat chain on hook %d has no iptables equivalent here (only prerouting and postrouting)", b.Hook)
		return placement{}, false
	}
	if b.Type != ir.TypeFilter {
		x.errorf(chainSource(c), "iptables export supports only filter and nat chains; this chain has type %d", b.Type)
		return placement{}, false
	}
	switch {
	case b.Hook == ir.HookPostrouting && b.Priority < ir.PrioritySrcNAT:
		return placement{x.mangle, "POSTROUTING", "HOSTWALL-MSS", false}, true
	case b.Hook == ir.HookInput:
		return placement{x.filter, "INPUT", "HOSTWALL-INPUT", false}, true
	case b.Hook == ir.HookForward:
		return placement{x.filter, "FORWARD", "HOSTWALL-FORWARD", false}, true
	case b.Hook == ir.HookOutput && b.Priority > ir.PriorityDstNAT:
		return placement{x.filter, "OUTPUT", "HOSTWALL-OUTPUT", false}, true
	case b.Hook == ir.HookPrerouting && b.Priority < ir.PriorityDstNAT:
		return placement{x.mangle, "PREROUTING", "HOSTWALL-GUARD-PRE", true}, true
	case b.Hook == ir.HookOutput && b.Priority < ir.PriorityDstNAT:
		return placement{x.mangle, "OUTPUT", "HOSTWALL-GUARD-OUT", true}, true
	}
	x.errorf(chainSource(c), "a filter chain on hook %d at priority %d has no iptables equivalent (only input, forward, output at filter, and prerouting/output before dstnat)", b.Hook, b.Priority)
	return placement{}, false
}

// chainCtx is the chain being lowered: where its rules go and what its
// verdicts mean there.
type chainCtx struct {
	t     *table
	chain *ir.Chain
	// cur is the iptables chain that receives the next rule: the chain
	// itself, or a continuation helper after a rule that had to be split
	// with goto helpers.
	cur   string
	guard bool
	// top is set for a base chain (entered from a built-in chain).
	top bool
	// policyDrop is set when the base chain's policy is drop.
	policyDrop bool
}

func (x *exporter) run() {
	// Base chains first: where they go, and their names.
	type baseChain struct {
		c *ir.Chain
		p placement
	}
	var bases []baseChain // in declaration order
	taken := map[string]*ir.Chain{}
	for _, c := range x.rs.Chains {
		if c == nil {
			x.errorf(ir.Source{}, "nil chain in ruleset")
			continue
		}
		if c.Base == nil {
			continue
		}
		p, ok := x.place(c)
		if !ok {
			continue
		}
		if prev := taken[p.name]; prev != nil {
			x.errorf(chainSource(c), "chains %q and %q both map to %s; iptables has one chain per hook", prev.Name, c.Name, p.name)
			continue
		}
		taken[p.name] = c
		x.names[c] = p.name
		bases = append(bases, baseChain{c, p})
	}
	// Regular chains: names, in declaration order.
	for i, c := range x.rs.Chains {
		if c == nil || c.Base != nil {
			continue
		}
		name := "HOSTWALL-" + strings.ToUpper(strings.ReplaceAll(c.Name, "_", "-"))
		if !validName(name, maxChainName) || taken[name] != nil || strings.HasPrefix(name, "HOSTWALL-H") && isHelperName(name) {
			name = fmt.Sprintf("HOSTWALL-C%d", i)
		}
		taken[name] = c
		x.names[c] = name
	}
	if len(x.errs) > 0 {
		return
	}
	// Which tables each regular chain is reached from (guard -> mangle,
	// filter hooks -> filter), in a deterministic walk.
	reach := map[*table][]*ir.Chain{}
	for _, b := range bases {
		x.walk(b.c, b.p.table, reach, nil)
	}
	if len(x.errs) > 0 {
		return
	}
	// Guards first: the filter chains reject what they marked.
	for _, t := range []*table{x.mangle, x.nat, x.filter} {
		var tb []baseChain
		for _, b := range bases {
			if b.p.table == t {
				tb = append(tb, b)
			}
		}
		if t == x.filter && len(x.markRejects) > 0 {
			// Every packet a guard marked reaches INPUT, FORWARD or OUTPUT:
			// each needs our chain, even when the policy has none there.
			for _, p := range []placement{
				{x.filter, "INPUT", "HOSTWALL-INPUT", false},
				{x.filter, "FORWARD", "HOSTWALL-FORWARD", false},
				{x.filter, "OUTPUT", "HOSTWALL-OUTPUT", false},
			} {
				if taken[p.name] == nil {
					c := &ir.Chain{Name: strings.ToLower(p.builtin), Base: &ir.Base{Policy: ir.Accept{}}}
					taken[p.name] = c
					tb = append(tb, baseChain{c, p})
				}
			}
		}
		for _, b := range tb {
			t.used = true
			t.chains = append(t.chains, b.p.name)
			t.jumps = append(t.jumps, jump{b.p.builtin, b.p.name})
			if _, isDrop := b.c.Base.Policy.(ir.Drop); isDrop {
				t.policy[b.p.builtin] = "DROP"
			} else if _, isAccept := b.c.Base.Policy.(ir.Accept); !isAccept {
				x.errorf(chainSource(b.c), "a base chain policy must be accept or drop")
			}
		}
		for _, c := range reach[t] {
			t.chains = append(t.chains, x.names[c])
		}
		for _, b := range tb {
			_, drop := b.c.Base.Policy.(ir.Drop)
			ctx := &chainCtx{t: t, chain: b.c, cur: b.p.name, guard: b.p.guard, top: true, policyDrop: drop}
			if t == x.filter {
				x.markRejectRules(ctx)
			}
			x.lowerChain(ctx)
			if x.opts.NoFlush && drop {
				// We do not own the built-in chain's policy: the policy
				// becomes the last rule of our chain.
				t.add(ctx.cur, "-j", "DROP")
			}
		}
		for _, c := range reach[t] {
			x.lowerChain(&chainCtx{t: t, chain: c, cur: x.names[c], guard: t == x.mangle})
		}
	}
}

// markRejectRules are the first rules of a filter base chain with
// GuardRejectMark: reject what a guard marked, with the guard's type.
func (x *exporter) markRejectRules(ctx *chainCtx) {
	for i, with := range x.markRejects {
		var args []string
		if with == "tcp-reset" {
			args = []string{"-p", "tcp"}
		}
		args = append(args, "-m", "mark", "--mark", fmt.Sprintf("%#x/%#x", uint32(i+1)<<RejectMarkShift, RejectMarkMask),
			"-m", "comment", "--comment", `"rejected by a guard"`, "-j", "REJECT", "--reject-with", with)
		ctx.t.add(ctx.cur, args...)
	}
}

// isHelperName reports whether name has the form of a helper chain.
func isHelperName(name string) bool {
	rest, ok := strings.CutPrefix(name, "HOSTWALL-H")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// walk records the regular chains reachable from c in table t, and refuses
// jumps to base chains and loops.
func (x *exporter) walk(c *ir.Chain, t *table, reach map[*table][]*ir.Chain, stack []*ir.Chain) {
	if slices.Contains(stack, c) {
		x.errorf(chainSource(c), "chain %q jumps to itself through %d chains; iptables refuses loops", c.Name, len(stack))
		return
	}
	stack = append(stack, c)
	var rules []*ir.Rule
	for _, r := range c.Rules {
		if r != nil {
			rules = append(rules, unmerged(r)...) // a map's rules are written inline
		}
	}
	for _, r := range rules {
		if r == nil {
			continue
		}
		j, ok := r.Verdict.(ir.Jump)
		if !ok {
			continue
		}
		if j.Chain == nil {
			x.errorf(r.Source, "jump to a nil chain")
			continue
		}
		if j.Chain.Base != nil {
			x.errorf(r.Source, "jump to base chain %q", j.Chain.Name)
			continue
		}
		if _, named := x.names[j.Chain]; !named {
			x.errorf(r.Source, "jump to chain %q, which is not declared in the ruleset", j.Chain.Name)
			continue
		}
		if !slices.Contains(reach[t], j.Chain) {
			reach[t] = append(reach[t], j.Chain)
		}
		x.walk(j.Chain, t, reach, stack)
	}
}

// lowerChain writes the rules of one chain.
func (x *exporter) lowerChain(ctx *chainCtx) {
	for _, r := range ctx.chain.Rules {
		if r == nil {
			x.errorf(chainSource(ctx.chain), "nil rule")
			continue
		}
		for _, r := range unmerged(r) {
			x.lowerRule(ctx, r)
		}
	}
}

// write prints the tables: mangle (in noflush mode only when it has
// guards), then filter.
func (x *exporter) write(b *bytes.Buffer) {
	famName, tool := "IPv4", "iptables-restore"
	if x.fam == ir.FamilyIPv6 {
		famName, tool = "IPv6", "ip6tables-restore"
	}
	mode := ""
	if x.opts.NoFlush {
		mode = " --noflush"
	}
	fmt.Fprintf(b, "# hostwall export (%s): load with `%s%s`. Generated; do not edit.\n", famName, tool, mode)
	if x.opts.NoFlush {
		b.WriteString("# Only hostwall's chains are declared (and flushed). Jump to them once from the\n")
		b.WriteString("# built-in chains (see `hostwall export --help`):\n")
		cmd := strings.TrimSuffix(tool, "-restore")
		for _, t := range []*table{x.mangle, x.nat, x.filter} {
			for _, j := range t.jumps {
				fmt.Fprintf(b, "#   %s -t %s -C %s -j %s 2>/dev/null || %s -t %s -I %s 1 -j %s\n",
					cmd, t.name, j.From, j.To, cmd, t.name, j.From, j.To)
			}
		}
	}
	for _, t := range []*table{x.mangle, x.nat, x.filter} {
		// Full mode writes every table hostwall may use, so loading a
		// policy without guards also flushes an earlier export's guards;
		// except nat, written only when the policy has NAT: an empty *nat
		// would flush Docker's and kube-proxy's DNAT rules on hosts whose
		// policy never asked for NAT.
		if !t.used && (x.opts.NoFlush || t == x.nat) {
			continue
		}
		fmt.Fprintf(b, "*%s\n", t.name)
		if !x.opts.NoFlush {
			for _, bi := range t.builtins {
				fmt.Fprintf(b, ":%s %s [0:0]\n", bi, t.policy[bi])
			}
		}
		for _, c := range t.chains {
			fmt.Fprintf(b, ":%s - [0:0]\n", c)
		}
		if !x.opts.NoFlush {
			for _, j := range t.jumps {
				fmt.Fprintf(b, "-A %s -j %s\n", j.From, j.To)
			}
		}
		for _, l := range t.lines {
			b.WriteString(l + "\n")
		}
		b.WriteString("COMMIT\n")
	}
}
