package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// TestCmd is `hostwall test`: it runs the policy's [[test]]s against the
// compiled ruleset with the simulator (ir.Eval).
//
// Text output is one line per test,
//
//	PASS  NAME  expect ACTION, got ACTION  (FILE:LINE:COL WHAT)
//
// (with NAT, each side also names the translation: `expect accept dnat
// 198.18.64.80:443, got accept dnat 198.18.64.80:443 masquerade`),
// where the parenthesis names the rule that decided (or `chain NAME
// policy ACTION`), a failing test is followed by an indented line with the
// test's position and its packet, and a last line counts them:
// `N passed, M failed`.
//
// JSON output is one object (schema version 1, stable):
//
//	{"version": 1, "passed": N, "failed": M, "tests": [{
//	  "name": "...", "pos": "file:line:col", "node": "node1" (omitted without [nodes]),
//	  "packet": "in tcp 203.0.113.9:40000 -> 192.0.2.10:3306 iif eth0 state new",
//	  "expect": "accept|drop|reject", "got": "accept|drop|reject", "pass": true,
//	  "expect_dnat", "expect_snat": the test's NAT expectations (omitted when not set),
//	  "dnat": "198.18.64.80:443", "snat": "198.19.0.1" or "masquerade" (the translations
//	          the packet got; omitted when none),
//	  "decided_by": {"pos": "file:line:col" ("" for none), "what": "policy \"web\" in[2]",
//	                 "chain": "input", "policy": false (true when the chain policy decided)},
//	  "error": "..." (only when the ruleset could not be evaluated)}]}
type TestCmd struct {
	Node     string   `help:"Run only the tests of this node of [nodes]." placeholder:"NAME" xor:"nodes"`
	AllNodes bool     `help:"Run the tests of every node (the default)." xor:"nodes"`
	Format   string   `help:"Output format: text or json." enum:"text,json" default:"text"`
	Policy   []string `arg:"" name:"POLICY" help:"Policy files or directories (a directory contributes its *.toml files in lexical order)."`
}

// Help shows an example.
func (c *TestCmd) Help() string {
	return "Each [[test]] is compiled for its node and evaluated hook by hook (guards first); " +
		"a failing test fails the command (exit 1).\n\nExample:\n  hostwall test examples/mgmt-lockdown.toml\n  hostwall test --format json examples/cluster-roles.toml"
}

// testResult is one test's outcome; its JSON form is the documented schema.
type testResult struct {
	Name      string    `json:"name"`
	Pos       string    `json:"pos"`
	Node      string    `json:"node,omitempty"`
	Packet    string    `json:"packet"`
	Expect    string    `json:"expect"`
	Got       string    `json:"got"`
	ExpDNAT   string    `json:"expect_dnat,omitempty"`
	ExpSNAT   string    `json:"expect_snat,omitempty"`
	DNAT      string    `json:"dnat,omitempty"`
	SNAT      string    `json:"snat,omitempty"`
	Pass      bool      `json:"pass"`
	DecidedBy decidedBy `json:"decided_by"`
	Error     string    `json:"error,omitempty"`
}

// decidedBy names what decided a packet.
type decidedBy struct {
	Pos    string `json:"pos"`
	What   string `json:"what"`
	Chain  string `json:"chain"`
	Policy bool   `json:"policy"`
}

// testReport is the JSON document of `hostwall test --format json`.
type testReport struct {
	Version int          `json:"version"`
	Passed  int          `json:"passed"`
	Failed  int          `json:"failed"`
	Tests   []testResult `json:"tests"`
}

// Run loads the policy, compiles it once per node its tests name, runs
// every test and prints the results; any failing test makes it exit 1.
func (c *TestCmd) Run(env *Env) error {
	pol, diags := model.Load(c.Policy...)
	if err := diags.Err(); err != nil {
		return err
	}
	if c.Node != "" {
		if err := compiler.CheckNode(pol, c.Node).Err(); err != nil {
			return err
		}
	}
	results, err := runTests(pol, c.Node)
	if err != nil {
		return err
	}
	rep := testReport{Version: 1, Tests: results}
	for _, r := range results {
		if r.Pass {
			rep.Passed++
		} else {
			rep.Failed++
		}
	}
	if c.Format == "json" {
		if rep.Tests == nil {
			rep.Tests = []testResult{}
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		writeTestText(env.Stdout, rep)
	}
	if len(results) == 0 {
		fmt.Fprintln(env.Stderr, "hostwall: the policy has no [[test]] to run; add some (policy-format.md, \"Tests\")")
	}
	if rep.Failed > 0 {
		return &policyError{err: fmt.Errorf("%d of %d tests failed", rep.Failed, len(results))}
	}
	return nil
}

// runTests evaluates the tests of pol (only node's when node is set),
// compiling the ruleset once per node.
func runTests(pol *model.Policy, node string) ([]testResult, error) {
	rulesets := map[string]*ir.Ruleset{}
	var diags model.Diags
	var out []testResult
	for _, x := range pol.Tests {
		if node != "" && x.Node != node {
			continue
		}
		rs, ok := rulesets[x.Node]
		if !ok {
			var d model.Diags
			rs, d = compiler.Compile(pol, compiler.Options{Node: x.Node})
			diags = append(diags, d...)
			rulesets[x.Node] = rs
		}
		if rs == nil {
			continue
		}
		pkt := compiler.PacketOfTest(pol, x)
		res := ir.Eval(rs, pkt)
		r := testResult{
			Name:      x.Name,
			Pos:       x.Pos.String(),
			Node:      x.Node,
			Packet:    pkt.String(),
			Expect:    actionName(x.Expect),
			Got:       ir.VerdictName(res.Verdict),
			DecidedBy: decider(res),
		}
		if res.Err != nil {
			r.Error = res.Err.Error()
		}
		natOK := r.setNAT(x, pkt, res)
		r.Pass = r.Error == "" && r.Got == r.Expect && natOK
		out = append(out, r)
	}
	if diags.HasErrors() {
		diags.Sort()
		return nil, diags.Err()
	}
	return out, nil
}

// writeTestText prints the text form.
func writeTestText(w io.Writer, rep testReport) {
	for _, r := range rep.Tests {
		status := "PASS"
		if !r.Pass {
			status = "FAIL"
		}
		fmt.Fprintf(w, "%s  %s  expect %s%s, got %s%s  (%s)\n", status, r.Name, r.Expect, natWords(r.ExpDNAT, r.ExpSNAT), r.Got, natWords(r.DNAT, r.SNAT), r.DecidedBy.text(r.Got))
		if !r.Pass {
			node := ""
			if r.Node != "" {
				node = " on node " + r.Node
			}
			fmt.Fprintf(w, "      test at %s%s: %s\n", r.Pos, node, r.Packet)
			if r.Error != "" {
				fmt.Fprintf(w, "      error: %s\n", r.Error)
			}
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", rep.Passed, rep.Failed)
}

// text is the parenthesis of a test line: position and what, or the chain
// whose policy decided.
func (d decidedBy) text(verdict string) string {
	if d.Policy {
		return fmt.Sprintf("chain %s policy %s", d.Chain, verdict)
	}
	return strings.TrimSpace(d.Pos + " " + d.What)
}

// decider describes what decided an evaluation.
func decider(res ir.Result) decidedBy {
	var d decidedBy
	if res.Chain != nil {
		d.Chain = res.Chain.Name
	}
	if res.Rule == nil {
		if b := res.Chain; b != nil && b.Base != nil && b.Base.Source.What != "" {
			d.Pos = sourcePos(b.Base.Source)
			d.What = b.Base.Source.What
			return d
		}
		d.Policy = true
		return d
	}
	d.Pos = sourcePos(res.Rule.Source)
	d.What = res.Rule.Source.What
	return d
}

// sourcePos is "file:line:col" of a Source, or "" when it has none.
func sourcePos(s ir.Source) string {
	if s.File == "" && s.Line == 0 {
		return ""
	}
	return model.Pos{File: s.File, Line: s.Line, Col: s.Col}.String()
}

// actionName is the policy word of an action.
func actionName(a model.Action) string {
	switch a {
	case model.ActionDrop:
		return "drop"
	case model.ActionReject:
		return "reject"
	}
	return "accept"
}
