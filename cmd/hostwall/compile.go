package main

import (
	"bytes"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

// CompileCmd is `hostwall compile`: the dry run.
type CompileCmd struct {
	Node   string   `help:"Node of [nodes] to compile for (required when the policy has nodes)." placeholder:"NAME"`
	Format string   `help:"Output format: nft (an nft -f script) or json (sets, chains and each rule's nft text with the policy position it came from)." enum:"nft,json" default:"nft"`
	Policy []string `arg:"" name:"POLICY" help:"Policy files or directories (a directory contributes its *.toml files in lexical order)."`
}

// Help shows an example.
func (c *CompileCmd) Help() string {
	return "Example:\n  hostwall compile examples/mgmt-lockdown.toml > ruleset.nft && nft -c -f ruleset.nft"
}

// Run loads, compiles and prints the policy.
func (c *CompileCmd) Run(env *Env) error {
	rs, err := loadAndCompile(c.Policy, c.Node)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if c.Format == "json" {
		err = writeCompiledJSON(&buf, rs)
	} else {
		err = nft.Print(&buf, rs)
	}
	if err != nil {
		return err
	}
	_, err = env.Stdout.Write(buf.Bytes())
	return err
}

// loadAndCompile is the front half every command shares: load the policy
// files and compile them for node. Errors are Diags (exit 1).
func loadAndCompile(paths []string, node string) (*ir.Ruleset, error) {
	pol, diags := model.Load(paths...)
	if err := diags.Err(); err != nil {
		return nil, err
	}
	rs, diags := compiler.Compile(pol, compiler.Options{Node: node})
	if err := diags.Err(); err != nil {
		return nil, err
	}
	return rs, nil
}
