// Package compiler turns a validated policy and a chosen node into an
// ir.Ruleset: it selects rules by role, orders them, builds per-family sets,
// expands services and adds the defaults. Lint analyses live here too.
package compiler

import (
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// Options choose what to compile.
type Options struct {
	// Node is the [nodes] entry to compile for; required when the policy
	// has nodes, and an error when it has none.
	Node string
}

// Compile builds the ruleset of p for opts.Node. Errors come back as Diags
// with positions; the ruleset is nil when there is an error.
func Compile(p *model.Policy, opts Options) (*ir.Ruleset, model.Diags) {
	panic("compiler: not written yet")
}
