// Package compiler turns a validated policy and a chosen node into an
// ir.Ruleset: it selects rules by role, orders them, builds per-family sets,
// expands services and adds the defaults. Lint analyses live here too.
package compiler

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// Options choose what to compile.
type Options struct {
	// Node is the [nodes] entry to compile for; required when the policy
	// has nodes, and an error when it has none.
	Node string
	// NoOptimize turns the optimiser off (optimize.go): one IR rule per
	// rule part, as the plain first-match list reads. For comparisons and
	// benchmarks; both forms decide every packet alike.
	NoOptimize bool
}

// Chain names of the ruleset (policy-format.md, "What the table looks
// like").
const (
	ChainInput           = "input"
	ChainForward         = "forward"
	ChainOutput          = "output"
	ChainGuardPrerouting = "guard_prerouting"
	ChainGuardOutput     = "guard_output"
)

// Compile builds the ruleset of p for opts.Node. Errors come back as Diags
// with positions; the ruleset is nil when there is an error.
func Compile(p *model.Policy, opts Options) (*ir.Ruleset, model.Diags) {
	var diags model.Diags
	node := selectNode(p, opts.Node, &diags)
	if diags.HasErrors() {
		return nil, diags
	}
	c := &compilation{
		pol:  p,
		node: node,
		sets: map[string]*ir.Set{},
	}
	rs := &ir.Ruleset{Table: p.Settings.Table}
	if len(p.Guards) > 0 {
		rs.Chains = append(rs.Chains, c.guardChains()...)
	}
	rs.Chains = append(rs.Chains,
		c.filterChain(ChainInput, ir.HookInput, model.HookIn, p.Defaults.Input),
		c.filterChain(ChainForward, ir.HookForward, model.HookForward, p.Defaults.Forward),
		c.filterChain(ChainOutput, ir.HookOutput, model.HookOut, p.Defaults.Output),
	)
	rs.Chains = append(rs.Chains, c.natChains(&diags)...)
	if diags.HasErrors() {
		diags.Sort()
		return nil, diags
	}
	for _, name := range sortedKeys(c.sets) {
		rs.Sets = append(rs.Sets, c.sets[name])
	}
	if !opts.NoOptimize {
		optimize(rs)
	}
	return rs, diags
}

// compilation is the state of one Compile call.
type compilation struct {
	pol  *model.Policy
	node *model.Node // nil when the policy has no [nodes]
	sets map[string]*ir.Set
}

// CheckNode reports why name is not a node p can be compiled for: an
// unknown node, a node given to a policy without [nodes], or (for name "")
// a policy with [nodes]. Commands that take --node check it up front.
func CheckNode(p *model.Policy, name string) model.Diags {
	var diags model.Diags
	selectNode(p, name, &diags)
	return diags
}

// selectNode finds the node to compile for, or reports why there is none.
func selectNode(p *model.Policy, name string, diags *model.Diags) *model.Node {
	if len(p.Nodes) == 0 {
		if name != "" {
			diags.Errorf(model.Pos{}, "node %q was chosen, but the policy has no [nodes]; leave out --node", name)
		}
		return nil
	}
	names := make([]string, len(p.Nodes))
	for i, n := range p.Nodes {
		if n.Name == name {
			return n
		}
		names[i] = n.Name
	}
	slices.Sort(names)
	if name == "" {
		diags.Errorf(p.Nodes[0].Pos, "the policy has [nodes]; choose one with --node: %s", strings.Join(names, ", "))
	} else {
		diags.Errorf(p.Nodes[0].Pos, "unknown node %q; the policy's nodes are: %s", name, strings.Join(names, ", "))
	}
	return nil
}

// applies reports whether something limited to roles applies on the node
// being compiled (no roles: everywhere).
func (c *compilation) applies(roles []string) bool {
	if len(roles) == 0 {
		return true
	}
	if c.node == nil {
		return false
	}
	for _, r := range roles {
		if slices.Contains(c.node.Roles, r) {
			return true
		}
	}
	return false
}

// filterChain builds one of the input, forward and output base chains: the
// defaults, the policy's rules for hook in (order, position) order, then the
// default verdict.
func (c *compilation) filterChain(name string, hook ir.Hook, mhook model.Hook, def model.Action) *ir.Chain {
	ch := &ir.Chain{
		Name: name,
		Base: &ir.Base{Type: ir.TypeFilter, Hook: hook, Priority: ir.PriorityFilter, Policy: chainPolicy(def), Source: c.defaultsSource(defaultsKey(mhook))},
	}
	ch.Rules = append(ch.Rules, c.defaultRules(mhook)...)
	for _, r := range c.orderedRules(mhook) {
		ch.Rules = append(ch.Rules, c.rule(r)...)
	}
	ch.Rules = append(ch.Rules, c.defaultVerdict(mhook, def)...)
	return ch
}

// orderedRules returns the rules of a hook that apply on the node, in
// (order, position) order.
func (c *compilation) orderedRules(hook model.Hook) []*model.Rule {
	var rules []*model.Rule
	for _, pb := range c.pol.Policies {
		if !c.applies(pb.Roles) {
			continue
		}
		list := pb.In
		switch hook {
		case model.HookOut:
			list = pb.Out
		case model.HookForward:
			list = pb.Forward
		}
		for _, r := range list {
			if c.applies(r.Roles) {
				rules = append(rules, r)
			}
		}
	}
	slices.SortStableFunc(rules, func(a, b *model.Rule) int {
		return cmp.Or(cmp.Compare(a.Policy.Order, b.Policy.Order), cmp.Compare(a.Seq, b.Seq))
	})
	return rules
}

// chainPolicy is the nft chain policy for a default action: reject becomes
// drop (a reject rule ends the chain before the policy is reached).
func chainPolicy(a model.Action) ir.Verdict {
	if a == model.ActionAccept {
		return ir.Accept{}
	}
	return ir.Drop{}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// defaultsKey is the [defaults] key of a hook's default verdict.
func defaultsKey(h model.Hook) string {
	switch h {
	case model.HookOut:
		return "output"
	case model.HookForward:
		return "forward"
	}
	return "input"
}

// hookName is the policy key of a hook, for Source.What.
func hookName(h model.Hook) string {
	switch h {
	case model.HookOut:
		return "out"
	case model.HookForward:
		return "forward"
	}
	return "in"
}

// ruleWhat names a policy rule for humans.
func ruleWhat(r *model.Rule) string {
	// As fmt.Sprintf("policy %q %s[%d]", ...), without its cost per rule.
	return "policy " + strconv.Quote(r.Policy.Name) + " " + hookName(r.Hook) + "[" + strconv.Itoa(r.Index) + "]"
}
