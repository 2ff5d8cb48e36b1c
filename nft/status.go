package nft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/hostwall/hostwall/compiler/ir"
	"golang.org/x/sys/unix"
)

// Table is hostwall's table as read back from the kernel: what `hostwall
// status` shows.
type Table struct {
	Name   string      `json:"name"`
	Sets   []SetInfo   `json:"sets"`
	Chains []ChainInfo `json:"chains"`
}

// SetInfo is one named set.
type SetInfo struct {
	Name string `json:"name"`
	// Type is the nft key type (ipv4_addr, ipv6_addr).
	Type     string `json:"type"`
	Interval bool   `json:"interval"`
	// Entries counts elements (an interval counts once, whatever its size).
	Entries int    `json:"entries"`
	Comment string `json:"comment,omitempty"`
}

// ChainInfo is one chain and its rules in order.
type ChainInfo struct {
	Name string `json:"name"`
	// Type, Hook, Priority and Policy are set for base chains.
	Type     string     `json:"type,omitempty"`
	Hook     string     `json:"hook,omitempty"`
	Priority *int       `json:"priority,omitempty"`
	Policy   string     `json:"policy,omitempty"`
	Rules    []RuleInfo `json:"rules"`
}

// RuleInfo is one rule with its counter. The rule is mapped back to the
// policy by the source hostwall stored in the rule's userdata (netlink
// apply); a table loaded with `nft -f` has no source, and rules are then
// known by their position only.
type RuleInfo struct {
	// Index is the 1-based position in the chain.
	Index  int    `json:"index"`
	Handle uint64 `json:"handle"`
	// Counter is false when the rule has no counter statement.
	Counter bool   `json:"counter"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// Verdict is accept, drop, reject, jump CHAIN, return, vmap (a zone
	// dispatch map), or "" (continue).
	Verdict string `json:"verdict,omitempty"`
	Comment string `json:"comment,omitempty"`
	// Source is `file:line:col what` of the policy rule, when known.
	Source string `json:"source,omitempty"`
}

var hookWords = map[nftables.ChainHook]string{
	*nftables.ChainHookPrerouting:  "prerouting",
	*nftables.ChainHookInput:       "input",
	*nftables.ChainHookForward:     "forward",
	*nftables.ChainHookOutput:      "output",
	*nftables.ChainHookPostrouting: "postrouting",
}

// readTable reads table (family inet) with google/nftables; nil when absent.
func readTable(c *nftables.Conn, name string) (*Table, error) {
	t, err := c.ListTableOfFamily(name, nftables.TableFamilyINet)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, &OpError{Op: "list table " + name, Err: err}
	}
	out := &Table{Name: name}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, &OpError{Op: "list sets of " + name, Err: err}
	}
	for _, s := range sets {
		if s.Anonymous {
			continue
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return nil, &OpError{Op: "list elements of set " + s.Name, Err: err}
		}
		n := 0
		for _, e := range elems {
			if !e.IntervalEnd {
				n++
			}
		}
		out.Sets = append(out.Sets, SetInfo{Name: s.Name, Type: s.KeyType.Name, Interval: s.Interval, Entries: n, Comment: s.Comment})
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, &OpError{Op: "list chains of " + name, Err: err}
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != name {
			continue
		}
		ci := ChainInfo{Name: ch.Name}
		if ch.Hooknum != nil {
			ci.Type = string(ch.Type)
			ci.Hook = hookWords[*ch.Hooknum]
			if ch.Priority != nil {
				p := int(*ch.Priority)
				ci.Priority = &p
			}
			if ch.Policy != nil {
				ci.Policy = "accept"
				if *ch.Policy == nftables.ChainPolicyDrop {
					ci.Policy = "drop"
				}
			}
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, &OpError{Op: "list rules of chain " + ch.Name, Err: err}
		}
		for i, r := range rules {
			ci.Rules = append(ci.Rules, ruleInfo(i, r))
		}
		out.Chains = append(out.Chains, ci)
	}
	return out, nil
}

func ruleInfo(i int, r *nftables.Rule) RuleInfo {
	ri := RuleInfo{Index: i + 1, Handle: r.Handle}
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Counter:
			ri.Counter, ri.Packets, ri.Bytes = true, e.Packets, e.Bytes
		case *expr.Reject:
			ri.Verdict = "reject"
		case *expr.Verdict:
			ri.Verdict = verdictWord(e)
		case *expr.Lookup:
			if e.IsDestRegSet && e.DestRegister == 0 {
				ri.Verdict = "vmap" // zone dispatch: a verdict map jumps
			}
		}
	}
	ri.Comment, _ = userdata.GetString(r.UserData, udataComment)
	ri.Source, _ = userdata.GetString(r.UserData, udataSource)
	return ri
}

func verdictWord(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	}
	return fmt.Sprintf("verdict %d", v.Kind)
}

// describe is what List would read back after Replace(rs), counters zero
// (the fake kernel's List).
func describe(rs *ir.Ruleset) (*Table, error) {
	b, err := Lower(rs)
	if err != nil {
		return nil, err
	}
	out := &Table{Name: rs.Table}
	for _, s := range b.Sets {
		n := 0
		for _, e := range s.Elems {
			if !e.IntervalEnd {
				n++
			}
		}
		out.Sets = append(out.Sets, SetInfo{Name: s.Set.Name, Type: s.Set.KeyType.Name, Interval: s.Set.Interval, Entries: n, Comment: s.Set.Comment})
	}
	for _, ch := range b.Chains {
		ci := ChainInfo{Name: ch.Name}
		if ch.Hooknum != nil {
			ci.Type, ci.Hook = string(ch.Type), hookWords[*ch.Hooknum]
			p := int(*ch.Priority)
			ci.Priority = &p
			ci.Policy = "accept"
			if *ch.Policy == nftables.ChainPolicyDrop {
				ci.Policy = "drop"
			}
		}
		for _, r := range b.Rules {
			if r.Chain == ch.Name {
				ci.Rules = append(ci.Rules, ruleInfo(len(ci.Rules), r.Rule))
			}
		}
		out.Chains = append(out.Chains, ci)
	}
	return out, nil
}

// WriteStatusText writes t for humans: sets, then each chain with its rules'
// counters and the policy source they came from.
func WriteStatusText(w io.Writer, t *Table) error {
	if t == nil {
		_, err := fmt.Fprintln(w, "no hostwall table is loaded")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "table inet %s\n", t.Name)
	for _, s := range t.Sets {
		kind := s.Type
		if s.Interval {
			kind += ", interval"
		}
		fmt.Fprintf(tw, "set %s (%s): %d entries", s.Name, kind, s.Entries)
		if s.Comment != "" {
			fmt.Fprintf(tw, " # %s", s.Comment)
		}
		fmt.Fprintln(tw)
	}
	for _, c := range t.Chains {
		fmt.Fprintf(tw, "\nchain %s", c.Name)
		if c.Hook != "" {
			prio := 0
			if c.Priority != nil {
				prio = *c.Priority
			}
			fmt.Fprintf(tw, " (type %s hook %s priority %d policy %s)", c.Type, c.Hook, prio, c.Policy)
		}
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "  #\tpackets\tbytes\tverdict\tsource")
		for _, r := range c.Rules {
			pk, by := "-", "-"
			if r.Counter {
				pk, by = fmt.Sprint(r.Packets), fmt.Sprint(r.Bytes)
			}
			src := r.Source
			if src == "" {
				src = "(no source recorded)"
			}
			if r.Comment != "" {
				src += fmt.Sprintf(" %q", r.Comment)
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", r.Index, pk, by, r.Verdict, src)
		}
	}
	return tw.Flush()
}

// WriteStatusJSON writes t as indented JSON (null when no table).
func WriteStatusJSON(w io.Writer, t *Table) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(t)
}

// sleepCtx waits a little, or until ctx is done.
func sleepCtx(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return nil
	}
}
