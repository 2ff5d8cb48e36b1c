package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

// ExplainCmd is `hostwall explain`: which rule decides a packet, and where
// it was written.
type ExplainCmd struct {
	Node   string   `help:"Node of [nodes] to compile for (required when the policy has nodes)." placeholder:"NAME"`
	Packet string   `arg:"" name:"PACKET" help:"The packet: '[in|out|forward] PROTO SRC[:SPORT] -> DST[:DPORT] [iif NAME] [oif NAME] [state STATE] [type ICMPTYPE] [hoplimit N]' (one argument: quote it)."`
	Policy []string `arg:"" name:"POLICY" help:"Policy files or directories (a directory contributes its *.toml files in lexical order)."`
}

// Help shows an example.
func (c *ExplainCmd) Help() string {
	return "Defaults: direction in, state new, source port 40000, icmp type echo-request. " +
		"IPv6 with a port is written [ADDR]:PORT.\n\nExample:\n" +
		"  hostwall explain 'tcp 203.0.113.9:40000 -> 192.0.2.10:3306 iif eth0' examples/mgmt-lockdown.toml\n" +
		"  hostwall explain --node node2 'out udp [fd00:18:1::12]:5353 -> [fd00:53::53]:53 oif eth1' examples/cluster-roles.toml"
}

// Run parses the packet, compiles the policy, evaluates the packet and
// prints its path through the chains.
func (c *ExplainCmd) Run(env *Env) error {
	pkt, err := ir.ParsePacket(c.Packet)
	if err != nil {
		return fmt.Errorf("PACKET: %w", err) // a usage error: exit 2
	}
	pol, diags := model.Load(c.Policy...)
	if err := diags.Err(); err != nil {
		return err
	}
	rs, diags := compiler.Compile(pol, compiler.Options{Node: c.Node})
	if err := diags.Err(); err != nil {
		return err
	}
	if pkt.Direction == ir.DirOut {
		if n := pol.Node(c.Node); n != nil {
			pkt.DstLocal = slices.Contains(n.Addresses, pkt.Dst)
		}
	}
	var buf bytes.Buffer
	explain(&buf, pol, c.Node, pkt, ir.Eval(rs, pkt))
	_, err = env.Stdout.Write(buf.Bytes())
	return err
}

// explain writes the path of pkt: each chain entered, each rule that
// matched (position, compiled nft rule), the deciding rule's TOML text,
// and the verdict.
func explain(w io.Writer, pol *model.Policy, node string, pkt ir.Packet, res ir.Result) {
	fmt.Fprintf(w, "packet:  %s\n", pkt)
	if node != "" {
		fmt.Fprintf(w, "node:    %s\n", node)
	}
	if pkt.Direction == ir.DirOut {
		fmt.Fprintf(w, "local:   %v (the destination is %san address of this node)\n", pkt.DstLocal, map[bool]string{true: "", false: "not "}[pkt.DstLocal])
	}
	fmt.Fprintln(w)
	files := snippets{}
	for _, s := range res.Trace {
		ind := strings.Repeat("  ", s.Depth)
		switch s.Kind {
		case ir.StepEnter:
			if b := s.Chain.Base; b != nil {
				fmt.Fprintf(w, "%schain %s (hook %s, priority %d, policy %s)\n", ind, s.Chain.Name, nft.HookName(b.Hook), b.Priority, ir.VerdictName(policyOf(b)))
			} else {
				fmt.Fprintf(w, "%s  chain %s (jumped to)\n", ind, s.Chain.Name)
			}
		case ir.StepSkip:
			fmt.Fprintf(w, "%schain %s skipped: %s\n", ind, s.Chain.Name, s.Note)
		case ir.StepRule:
			r := s.Rule
			deciding := r == res.Rule
			fmt.Fprintf(w, "%s  rule %d matched: %s\n", ind, s.Index, ruleWhere(r.Source))
			if text, err := nft.FormatRule(r); err == nil {
				fmt.Fprintf(w, "%s    nft:  %s\n", ind, text)
			} else {
				fmt.Fprintf(w, "%s    nft:  (cannot print: %v)\n", ind, err)
			}
			switch v := s.Verdict.(type) {
			case nil:
				fmt.Fprintf(w, "%s    no verdict (log or counter only): the next rule follows\n", ind)
			case ir.Jump:
				if v.Chain != nil {
					fmt.Fprintf(w, "%s    jump to %s\n", ind, v.Chain.Name)
				}
			case ir.VerdictMap:
				fmt.Fprintf(w, "%s    zone dispatch: jump to the chain of this interface's rules\n", ind)
			case ir.Return:
				fmt.Fprintf(w, "%s    return\n", ind)
			case ir.ClampMSS:
				fmt.Fprintf(w, "%s    mss clamped (a SYN's MSS is lowered, never raised); the next rule follows\n", ind)
			case ir.SNAT, ir.DNAT, ir.Masquerade:
				fmt.Fprintf(w, "%s    translated: this nat chain ends, later chains see the new address\n", ind)
			case ir.Accept:
				if !deciding && s.Chain.Base != nil {
					fmt.Fprintf(w, "%s    accept: this base chain ends, later chains still see the packet\n", ind)
				}
			}
			if deciding {
				if lines := files.lines(r.Source); len(lines) > 0 {
					fmt.Fprintf(w, "%s    toml:\n", ind)
					for _, l := range lines {
						fmt.Fprintf(w, "%s      %s\n", ind, l)
					}
				}
			}
		case ir.StepReturn:
			fmt.Fprintf(w, "%s  back from %s\n", ind, s.Chain.Name)
		case ir.StepPolicy:
			fmt.Fprintf(w, "%s  no rule decided: chain policy %s\n", ind, ir.VerdictName(s.Verdict))
		}
	}
	fmt.Fprintln(w)
	by := "no chain of hostwall's table saw the packet"
	switch {
	case res.Err != nil:
		by = "error: " + res.Err.Error()
	case res.Rule != nil:
		by = ruleWhere(res.Rule.Source)
	case res.Chain != nil && res.Chain.Base != nil && res.Chain.Base.Source.What != "":
		by = "the policy of chain " + res.Chain.Name + ": " + ruleWhere(res.Chain.Base.Source)
	case res.Chain != nil:
		by = "the policy of chain " + res.Chain.Name
	}
	fmt.Fprintf(w, "verdict: %s  (%s)\n", verdictText(res.Verdict), by)
	if t := res.DNAT; t != nil {
		fmt.Fprintf(w, "dnat:    destination rewritten to %s  (%s)\n", translationText(t, pkt.DPort, pkt.Proto.HasPorts()), ruleWhere(t.Rule.Source))
	}
	if t := res.SNAT; t != nil {
		to := "source rewritten to " + translationText(t, 0, false)
		if t.Masquerade {
			to = "source rewritten to the address of " + pkt.OIF + " (masquerade)"
		}
		fmt.Fprintf(w, "snat:    %s  (%s)\n", to, ruleWhere(t.Rule.Source))
	}
}

// ruleWhere is "file:line:col what", or what alone without a position.
func ruleWhere(s ir.Source) string {
	where := strings.TrimSpace(sourcePos(s) + " " + s.What)
	if where == "" {
		return "(no source)"
	}
	return where
}

// verdictText is the verdict's word, with the reject type in nft's words.
func verdictText(v ir.Verdict) string {
	if _, ok := v.(ir.Reject); ok {
		if s, err := nft.FormatRule(&ir.Rule{Verdict: v}); err == nil {
			return s
		}
	}
	return ir.VerdictName(v)
}

// policyOf is a base chain's policy (nil means accept, as in nft).
func policyOf(b *ir.Base) ir.Verdict {
	if b.Policy == nil {
		return ir.Accept{}
	}
	return b.Policy
}

// snippets reads policy files (once each) to quote the TOML a rule came
// from.
type snippets map[string][]string

// maxSnippet bounds a quoted TOML table.
const maxSnippet = 24

// lines returns the TOML text at a source position: the whole table when
// the position is a table header (`[[policy.in]]`, `[[guard]]`) — up to the
// next header, without trailing blank and comment lines — else the one
// line (a [defaults] key). Nothing when the file cannot be read.
func (s snippets) lines(src ir.Source) []string {
	if src.File == "" || src.Line <= 0 {
		return nil
	}
	all, ok := s[src.File]
	if !ok {
		all = readLines(src.File)
		s[src.File] = all
	}
	i := src.Line - 1
	if i >= len(all) {
		return nil
	}
	first := strings.TrimSpace(all[i])
	if !strings.HasPrefix(first, "[") {
		return []string{first}
	}
	out := []string{first}
	for _, l := range all[i+1:] {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") || len(out) >= maxSnippet {
			break
		}
		out = append(out, t)
	}
	for len(out) > 1 && (out[len(out)-1] == "" || strings.HasPrefix(out[len(out)-1], "#")) {
		out = out[:len(out)-1]
	}
	return out
}

// readLines reads a file's lines; nil when it cannot be read.
func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
