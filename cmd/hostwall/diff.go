package main

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

// viewer reads hostwall's table back in the form nft.Diff compares.
type viewer interface {
	View(ctx context.Context, table string) (*nft.TableView, error)
}

// DiffCmd is `hostwall diff`: what apply would change in the kernel, for
// drift detection (exit 0: identical, 1: different).
type DiffCmd struct {
	Node   string   `help:"Node of [nodes] to compile for (default: found by matching this host's addresses against [nodes])." placeholder:"NAME"`
	Netns  string   `help:"Read inside this network namespace (a name from 'ip netns' or a path)." placeholder:"NAME"`
	Policy []string `arg:"" name:"POLICY" help:"Policy files or directories." type:"path"`

	kernel viewer // nil: netlink
	addrs  func(netnsName string) ([]netip.Addr, error)
}

// Help shows an example.
func (c *DiffCmd) Help() string {
	return "Example:\n  hostwall diff /etc/hostwall/policy.d || echo 'drift: run hostwall apply'"
}

// Run compiles the policy, reads the live table and prints the
// differences.
func (c *DiffCmd) Run(env *Env) error {
	pol, diags := model.Load(c.Policy...)
	if err := diags.Err(); err != nil {
		return err
	}
	node := c.Node
	if node == "" && len(pol.Nodes) > 0 {
		addrs := c.addrs
		if addrs == nil {
			addrs = hostAddrs
		}
		own, err := addrs(c.Netns)
		if err != nil {
			return &systemError{fmt.Errorf("diff: find this host's addresses: %w", err)}
		}
		if node, err = detectNode(pol, own); err != nil {
			return &policyError{err}
		}
	}
	rs, diags := compiler.Compile(pol, compiler.Options{Node: node})
	if err := diags.Err(); err != nil {
		return err
	}
	return c.compare(env, rs)
}

func (c *DiffCmd) compare(env *Env, rs *ir.Ruleset) error {
	want, err := nft.ViewOf(rs)
	if err != nil {
		return &policyError{fmt.Errorf("diff: %w", err)}
	}
	k := c.kernel
	if k == nil {
		k = &nft.Netlink{NetNS: c.Netns}
	}
	live, err := k.View(context.Background(), rs.Table)
	if err != nil {
		return &systemError{fmt.Errorf("diff: %w", err)}
	}
	lines := nft.Diff(live, want)
	if err := nft.WriteDiff(env.Stdout, rs.Table, lines); err != nil {
		return err
	}
	if len(lines) > 0 {
		return &policyError{fmt.Errorf("diff: %d differences between the kernel's table inet %s and the policy", len(lines), rs.Table)}
	}
	return nil
}
