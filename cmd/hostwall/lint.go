package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/model"
)

// LintCmd is `hostwall lint`: every error and warning of a policy, for CI.
type LintCmd struct {
	Format   string   `help:"Output format: text, json or github (workflow annotations)." enum:"text,json,github" default:"text"`
	Strict   bool     `help:"Exit 1 on warnings too, not only on errors."`
	Node     string   `help:"Lint for this node of [nodes] only." placeholder:"NAME" xor:"nodes"`
	AllNodes bool     `help:"Lint for every node of [nodes] (the default when no node is named)." xor:"nodes"`
	Policy   []string `arg:"" name:"POLICY" help:"Policy files or directories (a directory contributes its *.toml files in lexical order)."`
}

// Help shows an example.
func (c *LintCmd) Help() string {
	return "Rule ids and their reasons: docs/lint.md.\n\nExample:\n  hostwall lint --strict --format github policy.d/"
}

// Run loads and lints the policy and prints what it found.
func (c *LintCmd) Run(env *Env) error {
	pol, diags := model.Load(c.Policy...)
	for i := range diags {
		if diags[i].Severity == model.Error {
			diags[i].ID = compiler.LintError
		}
	}
	if !diags.HasErrors() {
		diags = append(diags, compiler.Lint(pol, compiler.LintOptions{Node: c.Node})...)
		diags.Sort()
	}
	var buf bytes.Buffer
	if err := writeLint(&buf, c.Format, diags); err != nil {
		return err
	}
	if _, err := env.Stdout.Write(buf.Bytes()); err != nil {
		return err
	}
	if diags.HasErrors() || (c.Strict && len(diags) > 0) {
		// The diagnostics are printed; the error only sums them up (exit 1).
		nerr := 0
		for _, d := range diags {
			if d.Severity == model.Error {
				nerr++
			}
		}
		return &policyError{fmt.Errorf("lint: %d error(s), %d warning(s)", nerr, len(diags)-nerr)}
	}
	return nil
}

// lintJSON is the documented JSON schema of `lint --format json`
// (docs/lint.md): one object with every diagnostic, sorted by position.
type lintJSON struct {
	Diagnostics []lintDiagJSON `json:"diagnostics"`
	Errors      int            `json:"errors"`
	Warnings    int            `json:"warnings"`
}

type lintDiagJSON struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Col      int    `json:"col"`
	Severity string `json:"severity"`
	ID       string `json:"id"`
	Message  string `json:"message"`
}

// writeLint prints diags in a format.
func writeLint(w io.Writer, format string, diags model.Diags) error {
	switch format {
	case "json":
		out := lintJSON{Diagnostics: []lintDiagJSON{}}
		for _, d := range diags {
			out.Diagnostics = append(out.Diagnostics, lintDiagJSON{
				File: d.Pos.File, Line: d.Pos.Line, Col: d.Pos.Col,
				Severity: d.Severity.String(), ID: d.ID, Message: d.Msg,
			})
			if d.Severity == model.Error {
				out.Errors++
			} else {
				out.Warnings++
			}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "github":
		for _, d := range diags {
			var props []string
			if d.Pos.File != "" {
				props = append(props, "file="+ghProp(d.Pos.File))
			}
			if d.Pos.Line > 0 {
				props = append(props, fmt.Sprintf("line=%d", d.Pos.Line), fmt.Sprintf("col=%d", d.Pos.Col))
			}
			props = append(props, "title="+ghProp(d.ID))
			fmt.Fprintf(w, "::%s %s::%s\n", d.Severity, strings.Join(props, ","), ghData(d.ID+": "+d.Msg))
		}
		return nil
	}
	for _, d := range diags {
		fmt.Fprintf(w, "%s: %s %s: %s\n", d.Pos, d.Severity, d.ID, d.Msg)
	}
	return nil
}

// ghData escapes a workflow command's message (GitHub's toolkit rules).
func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// ghProp escapes a workflow command's property value.
func ghProp(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
