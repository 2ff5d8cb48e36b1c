package nft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/hostwall/hostwall/compiler/ir"
	"golang.org/x/sys/unix"
)

// TableView is a table reduced to what decides packets, in a form both the
// kernel's table (read over netlink) and a compiled ruleset (lowered) can
// be put in, so that Diff can compare them: named sets with their
// elements, chains with their base-chain settings and rules, each rule as
// the canonical text of its expressions (counter values left out,
// anonymous sets by their elements).
type TableView struct {
	Name   string
	Sets   []SetView
	Chains []ChainView
}

// SetView is one named set.
type SetView struct {
	Name string
	// Kind is the key type and flags, e.g. "ipv4_addr interval".
	Kind string
	// Elems are the elements as text (addresses and ranges), sorted.
	Elems []string
}

// ChainView is one chain.
type ChainView struct {
	Name string
	// Base is "type filter hook input priority 0 policy drop" for a base
	// chain, "" for a regular chain.
	Base  string
	Rules []RuleView
}

// RuleView is one rule.
type RuleView struct {
	// Key is the canonical text of the rule's expressions and comment:
	// two rules decide alike when their keys are equal.
	Key string
	// Source is the policy source hostwall stored with the rule, if any.
	Source  string
	Comment string
}

// describeRule names a rule for humans.
func (r RuleView) describeRule() string {
	var parts []string
	if r.Source != "" {
		parts = append(parts, r.Source)
	}
	if r.Comment != "" {
		parts = append(parts, fmt.Sprintf("comment %q", r.Comment))
	}
	if len(parts) == 0 {
		parts = append(parts, "not from hostwall: "+r.Key)
	}
	return strings.Join(parts, " ")
}

// ViewOf lowers rs and describes the table it would make.
func ViewOf(rs *ir.Ruleset) (*TableView, error) {
	b, err := Lower(rs)
	if err != nil {
		return nil, err
	}
	anon := map[uint32]*BatchSet{}
	named := map[string]*BatchSet{}
	for _, s := range b.Sets {
		named[s.Set.Name] = s
	}
	for _, r := range b.Rules {
		for _, s := range r.AnonSets {
			anon[s.Set.ID] = s
		}
	}
	lookup := func(l *expr.Lookup) string {
		if s, ok := anon[l.SetID]; ok && s.Set.Anonymous {
			return "{" + strings.Join(elemTexts(s.Set, s.Elems), ", ") + "}"
		}
		return "@" + l.SetName
	}
	v := &TableView{Name: rs.Table}
	for _, s := range b.Sets {
		v.Sets = append(v.Sets, SetView{Name: s.Set.Name, Kind: setKind(s.Set), Elems: elemTexts(s.Set, s.Elems)})
	}
	for _, ch := range b.Chains {
		cv := ChainView{Name: ch.Name, Base: chainBase(ch)}
		for _, r := range b.Rules {
			if r.Chain == ch.Name {
				cv.Rules = append(cv.Rules, ruleView(r.Rule, lookup))
			}
		}
		v.Chains = append(v.Chains, cv)
	}
	return v, nil
}

// View reads table (family inet) over netlink and describes it; nil when
// the table does not exist.
func (k *Netlink) View(ctx context.Context, table string) (*TableView, error) {
	c, closeNS, err := k.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer closeNS()
	t, err := c.ListTableOfFamily(table, nftables.TableFamilyINet)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, &OpError{Op: "list table " + table, Err: err}
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, &OpError{Op: "list sets of " + table, Err: err}
	}
	v := &TableView{Name: table}
	anon := map[string]string{}
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			return nil, &OpError{Op: "list elements of set " + s.Name, Err: err}
		}
		texts := elemTexts(s, elems)
		if s.Anonymous {
			anon[s.Name] = "{" + strings.Join(texts, ", ") + "}"
			continue
		}
		v.Sets = append(v.Sets, SetView{Name: s.Name, Kind: setKind(s), Elems: texts})
	}
	lookup := func(l *expr.Lookup) string {
		if a, ok := anon[l.SetName]; ok {
			return a
		}
		return "@" + l.SetName
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, &OpError{Op: "list chains of " + table, Err: err}
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != table {
			continue
		}
		cv := ChainView{Name: ch.Name, Base: chainBase(ch)}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, &OpError{Op: "list rules of chain " + ch.Name, Err: err}
		}
		for _, r := range rules {
			cv.Rules = append(cv.Rules, ruleView(r, lookup))
		}
		v.Chains = append(v.Chains, cv)
	}
	return v, nil
}

func setKind(s *nftables.Set) string {
	k := s.KeyType.Name
	if s.IsMap {
		k += " : " + s.DataType.Name
	}
	if s.Interval {
		k += " interval"
	}
	return k
}

func chainBase(ch *nftables.Chain) string {
	if ch.Hooknum == nil {
		return ""
	}
	prio := 0
	if ch.Priority != nil {
		prio = int(*ch.Priority)
	}
	policy := "accept"
	if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
		policy = "drop"
	}
	hook, ok := hookWords[*ch.Hooknum]
	if !ok {
		hook = fmt.Sprintf("%d", *ch.Hooknum)
	}
	return fmt.Sprintf("type %s hook %s priority %d policy %s", ch.Type, hook, prio, policy)
}

// ruleView gives a rule's canonical key.
func ruleView(r *nftables.Rule, lookup func(*expr.Lookup) string) RuleView {
	var parts []string
	for _, e := range r.Exprs {
		if !decodable(e) {
			continue
		}
		parts = append(parts, exprText(e, lookup))
	}
	rv := RuleView{}
	rv.Comment, _ = userdata.GetString(r.UserData, udataComment)
	rv.Source, _ = userdata.GetString(r.UserData, udataSource)
	rv.Key = strings.Join(parts, " ")
	if rv.Comment != "" {
		rv.Key += fmt.Sprintf(" comment %q", rv.Comment)
	}
	return rv
}

// exprText is the canonical text of one expression: its type and the
// fields that decide packets.
func exprText(e expr.Any, lookup func(*expr.Lookup) string) string {
	switch e := e.(type) {
	case *expr.Counter:
		return "counter"
	case *expr.Lookup:
		s := fmt.Sprintf("lookup reg %d", e.SourceRegister)
		if e.Invert {
			s += " !="
		}
		s += " " + lookup(e)
		if e.IsDestRegSet {
			s += fmt.Sprintf(" dreg %d", e.DestRegister)
		}
		return s
	case *expr.Log:
		return fmt.Sprintf("log prefix %q group %d snaplen %d", e.Data, e.Group, e.Snaplen)
	case *expr.Verdict:
		return verdictWord(e)
	case *expr.Cmp:
		return fmt.Sprintf("cmp reg %d op %d %x", e.Register, e.Op, e.Data)
	case *expr.Meta:
		return fmt.Sprintf("meta key %d reg %d sreg %v", e.Key, e.Register, e.SourceRegister)
	case *expr.Payload:
		return fmt.Sprintf("payload base %d offset %d len %d reg %d", e.Base, e.Offset, e.Len, e.DestRegister)
	case *expr.NAT:
		n := *e
		n.Specified = false // the decoder sets it from the flags the kernel adds
		return fmt.Sprintf("%T%+v", e, n)
	}
	return fmt.Sprintf("%T%+v", e, e)
}

// decodable reports whether google/nftables v0.3.0 decodes the expression
// kind when it reads rules back (it silently leaves out rt, byteorder and
// others it does not know). Diff leaves such kinds out of the compiled
// side too, so both sides are seen through the same decoder.
func decodable(e expr.Any) bool {
	switch e.(type) {
	case *expr.Ct, *expr.Range, *expr.Meta, *expr.Cmp, *expr.Counter, *expr.Objref,
		*expr.Payload, *expr.Lookup, *expr.Immediate, *expr.Verdict, *expr.Bitwise,
		*expr.Redir, *expr.NAT, *expr.Limit, *expr.Quota, *expr.Dynset, *expr.Log,
		*expr.Exthdr, *expr.Match, *expr.Target, *expr.Connlimit, *expr.Queue,
		*expr.FlowOffload, *expr.Reject, *expr.Masq, *expr.Hash, *expr.CtHelper,
		*expr.SynProxy, *expr.CtExpect, *expr.SecMark, *expr.CtTimeout, *expr.Fib,
		*expr.Numgen:
		return true
	}
	return false
}

// elemTexts renders a set's elements (kernel encoding: an interval set has
// start and end+1 elements) as sorted text.
func elemTexts(s *nftables.Set, elems []nftables.SetElement) []string {
	var out []string
	keyText := func(b []byte) string {
		if a, ok := netip.AddrFromSlice(b); ok && (len(b) == 4 || len(b) == 16) {
			return a.String()
		}
		return fmt.Sprintf("0x%x", b)
	}
	withVal := func(text string, e nftables.SetElement) string {
		if e.VerdictData != nil {
			return text + " : " + verdictWord(e.VerdictData)
		}
		if v, ok := rawVerdict(e.Val); ok && s.IsMap {
			return text + " : " + verdictWord(v) // a verdict map element as read back
		}
		if len(e.Val) > 0 {
			return text + fmt.Sprintf(" : 0x%x", e.Val)
		}
		return text
	}
	if !s.Interval {
		for _, e := range elems {
			out = append(out, withVal(keyText(e.Key), e))
		}
		slices.Sort(out)
		return out
	}
	sorted := slices.Clone(elems)
	slices.SortStableFunc(sorted, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		// At one key, the end of a range comes before the start of the next.
		switch {
		case a.IntervalEnd && !b.IntervalEnd:
			return -1
		case !a.IntervalEnd && b.IntervalEnd:
			return 1
		}
		return 0
	})
	for i := 0; i < len(sorted); i++ {
		e := sorted[i]
		if e.IntervalEnd {
			continue // nft's leading zero element, or a stray end
		}
		last := ""
		if i+1 < len(sorted) && sorted[i+1].IntervalEnd {
			end := slices.Clone(sorted[i+1].Key)
			decBE(end)
			last = keyText(end)
			i++
		} else {
			end := bytes.Repeat([]byte{0xff}, len(e.Key))
			last = keyText(end)
		}
		first := keyText(e.Key)
		if first == last {
			out = append(out, withVal(first, e))
		} else {
			out = append(out, withVal(rangeText(first, last), e))
		}
	}
	slices.Sort(out)
	return out
}

// rangeText writes a range as a prefix when it is one.
func rangeText(first, last string) string {
	a, err1 := netip.ParseAddr(first)
	b, err2 := netip.ParseAddr(last)
	if err1 == nil && err2 == nil {
		for bits := 0; bits <= a.BitLen(); bits++ {
			p := netip.PrefixFrom(a, bits).Masked()
			if p.Addr() == a && lastOf(p) == b {
				return p.String()
			}
		}
	}
	return first + "-" + last
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// decBE decrements a big-endian number in place.
func decBE(b []byte) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i]--
		if b[i] != 0xff {
			return
		}
	}
}

// maxListed is how many elements or rules of one change Diff lists before
// it summarises the rest.
const maxListed = 10

// Diff compares the live table with the table want describes and returns
// one line per difference (nil when they are the same): sets added,
// removed or changed (with the elements added and removed, summarised for
// large sets), chains added, removed or changed, and rules added or
// removed per chain. Lines name what the kernel has as "live" and what the
// policy asks for as "policy". live is nil when the table is not loaded.
func Diff(live, want *TableView) []string {
	var out []string
	if live == nil {
		out = append(out, fmt.Sprintf("table inet %s: not loaded; apply would create it with %d sets and %d chains", want.Name, len(want.Sets), len(want.Chains)))
		return out
	}
	liveSets := map[string]SetView{}
	for _, s := range live.Sets {
		liveSets[s.Name] = s
	}
	wantSets := map[string]SetView{}
	for _, s := range want.Sets {
		wantSets[s.Name] = s
		l, ok := liveSets[s.Name]
		if !ok {
			out = append(out, fmt.Sprintf("set %s: missing from the kernel (policy has %d elements)", s.Name, len(s.Elems)))
			continue
		}
		if l.Kind != s.Kind {
			out = append(out, fmt.Sprintf("set %s: type %s in the kernel, %s in the policy", s.Name, l.Kind, s.Kind))
		}
		add, del := setDiff(s.Elems, l.Elems)
		if len(add) > 0 {
			out = append(out, fmt.Sprintf("set %s: %d elements to add: %s", s.Name, len(add), summary(add)))
		}
		if len(del) > 0 {
			out = append(out, fmt.Sprintf("set %s: %d elements to remove: %s", s.Name, len(del), summary(del)))
		}
	}
	for _, s := range live.Sets {
		if _, ok := wantSets[s.Name]; !ok {
			out = append(out, fmt.Sprintf("set %s: in the kernel only (%d elements)", s.Name, len(s.Elems)))
		}
	}
	liveChains := map[string]ChainView{}
	for _, c := range live.Chains {
		liveChains[c.Name] = c
	}
	wantChains := map[string]bool{}
	for _, c := range want.Chains {
		wantChains[c.Name] = true
		l, ok := liveChains[c.Name]
		if !ok {
			out = append(out, fmt.Sprintf("chain %s: missing from the kernel (policy has %d rules)", c.Name, len(c.Rules)))
			continue
		}
		if l.Base != c.Base {
			out = append(out, fmt.Sprintf("chain %s: %q in the kernel, %q in the policy", c.Name, orRegular(l.Base), orRegular(c.Base)))
		}
		out = append(out, ruleDiff(c.Name, l.Rules, c.Rules)...)
	}
	for _, c := range live.Chains {
		if !wantChains[c.Name] {
			out = append(out, fmt.Sprintf("chain %s: in the kernel only (%d rules)", c.Name, len(c.Rules)))
		}
	}
	return out
}

func orRegular(base string) string {
	if base == "" {
		return "regular chain"
	}
	return base
}

// setDiff returns the elements of want not in live (to add) and of live
// not in want (to remove); both inputs are sorted.
func setDiff(want, live []string) (add, del []string) {
	i, j := 0, 0
	for i < len(want) || j < len(live) {
		switch {
		case j == len(live) || (i < len(want) && want[i] < live[j]):
			add = append(add, want[i])
			i++
		case i == len(want) || live[j] < want[i]:
			del = append(del, live[j])
			j++
		default:
			i++
			j++
		}
	}
	return add, del
}

func summary(items []string) string {
	if len(items) <= maxListed {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:maxListed], ", ") + fmt.Sprintf(", ... and %d more", len(items)-maxListed)
}

// maxLCS bounds the rule lists ruleDiff aligns exactly (quadratic); longer
// differing stretches are reported as replaced.
const maxLCS = 4000

// ruleDiff lines up the rules of a chain (longest common subsequence of
// their keys, after the common head and tail) and reports the rest.
func ruleDiff(chain string, live, want []RuleView) []string {
	head := 0
	for head < len(live) && head < len(want) && live[head].Key == want[head].Key {
		head++
	}
	tail := 0
	for tail < len(live)-head && tail < len(want)-head && live[len(live)-1-tail].Key == want[len(want)-1-tail].Key {
		tail++
	}
	l, w := live[head:len(live)-tail], want[head:len(want)-tail]
	if len(l) == 0 && len(w) == 0 {
		return nil
	}
	keep := make([]bool, len(l))
	keepW := make([]bool, len(w))
	if len(l) <= maxLCS && len(w) <= maxLCS {
		// dp[i][j]: LCS length of l[i:] and w[j:].
		dp := make([][]int32, len(l)+1)
		for i := range dp {
			dp[i] = make([]int32, len(w)+1)
		}
		for i := len(l) - 1; i >= 0; i-- {
			for j := len(w) - 1; j >= 0; j-- {
				if l[i].Key == w[j].Key {
					dp[i][j] = dp[i+1][j+1] + 1
				} else {
					dp[i][j] = max(dp[i+1][j], dp[i][j+1])
				}
			}
		}
		for i, j := 0, 0; i < len(l) && j < len(w); {
			switch {
			case l[i].Key == w[j].Key:
				keep[i], keepW[j] = true, true
				i++
				j++
			case dp[i+1][j] >= dp[i][j+1]:
				i++
			default:
				j++
			}
		}
	}
	var out []string
	var dels, adds []string
	for i, r := range l {
		if !keep[i] {
			dels = append(dels, fmt.Sprintf("chain %s: rule %d in the kernel only: %s", chain, head+i+1, r.describeRule()))
		}
	}
	for j, r := range w {
		if !keepW[j] {
			adds = append(adds, fmt.Sprintf("chain %s: rule %d missing from the kernel: %s", chain, head+j+1, r.describeRule()))
		}
	}
	for _, group := range [][]string{dels, adds} {
		if len(group) > maxListed {
			out = append(out, group[:maxListed]...)
			out = append(out, fmt.Sprintf("chain %s: ... and %d more such rules", chain, len(group)-maxListed))
		} else {
			out = append(out, group...)
		}
	}
	return out
}

// WriteDiff writes Diff's lines, or "no differences".
func WriteDiff(w io.Writer, table string, lines []string) error {
	if len(lines) == 0 {
		_, err := fmt.Fprintf(w, "table inet %s: the kernel holds exactly what the policy compiles to\n", table)
		return err
	}
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}
