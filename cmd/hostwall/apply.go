package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ApplyCmd is `hostwall apply`: compile, then replace hostwall's table in
// one netlink transaction.
type ApplyCmd struct {
	Node   string   `help:"Node of [nodes] to compile for (default: found by matching this host's addresses against [nodes])." placeholder:"NAME"`
	Netns  string   `help:"Apply inside this network namespace (a name from 'ip netns' or a path)." placeholder:"NAME"`
	DryRun bool     `help:"Compile and encode the transaction, print the ruleset, change nothing."`
	Policy []string `arg:"" name:"POLICY" help:"Policy files or directories." type:"path"`

	// InsecurePolicy skips the owner and mode checks of strict.go.
	InsecurePolicy bool `help:"Apply even when a policy file or its directory is writable by group or others, or owned by another user (see SECURITY.md)."`

	// kernel and addrs replace the system in tests; nil means netlink.
	kernel nft.Kernel
	addrs  func(netnsName string) ([]netip.Addr, error)
}

// Help shows an example.
func (c *ApplyCmd) Help() string {
	return "Example:\n  hostwall apply /etc/hostwall/policy.d\n  hostwall apply --netns lab --node node1 examples/cluster-roles.toml"
}

// Run loads and compiles the policy for the chosen or detected node and
// applies it.
func (c *ApplyCmd) Run(env *Env) error {
	pol, diags := model.Load(c.Policy...)
	if err := diags.Err(); err != nil {
		return err
	}
	if !c.InsecurePolicy && !c.DryRun {
		if err := checkPolicyFiles(pol); err != nil {
			return &policyError{err}
		}
	}
	printWarnings(env, diags)
	node := c.Node
	if node == "" && len(pol.Nodes) > 0 {
		addrs := c.addrs
		if addrs == nil {
			addrs = hostAddrs
		}
		own, err := addrs(c.Netns)
		if err != nil {
			return &systemError{fmt.Errorf("apply: find this host's addresses: %w", err)}
		}
		node, err = detectNode(pol, own)
		if err != nil {
			return &policyError{err}
		}
	}
	rs, diags := compiler.Compile(pol, compiler.Options{Node: node})
	if err := diags.Err(); err != nil {
		return err
	}
	printWarnings(env, diags)
	if c.DryRun {
		b, err := nft.Lower(rs)
		if err != nil {
			return &policyError{fmt.Errorf("apply: %w", err)}
		}
		if _, err := nft.ReplaceOps(b); err != nil {
			return &policyError{fmt.Errorf("apply: encode: %w", err)}
		}
		var buf bytes.Buffer
		if err := nft.Print(&buf, rs); err != nil {
			return &policyError{err}
		}
		_, err = env.Stdout.Write(buf.Bytes())
		return err
	}
	k := c.kernel
	if k == nil {
		k = &nft.Netlink{NetNS: c.Netns}
	}
	if err := k.Replace(context.Background(), rs); err != nil {
		var le *nft.LowerError
		if errors.As(err, &le) {
			return &policyError{fmt.Errorf("apply: %w", err)}
		}
		return &systemError{fmt.Errorf("apply: %w", err)}
	}
	where := ""
	if c.Netns != "" {
		where = " in network namespace " + c.Netns
	}
	if node != "" {
		where += " for node " + node
	}
	fmt.Fprintf(env.Stderr, "hostwall: applied table inet %s%s\n", rs.Table, where)
	return nil
}

func printWarnings(env *Env, diags model.Diags) {
	for _, d := range diags {
		if d.Severity == model.Warning {
			fmt.Fprintln(env.Stderr, d.String())
		}
	}
}

// detectNode returns the one node of [nodes] that has one of own's
// addresses.
func detectNode(pol *model.Policy, own []netip.Addr) (string, error) {
	var names, matched []string
	for _, n := range pol.Nodes {
		names = append(names, n.Name)
		for _, a := range n.Addresses {
			if slices.Contains(own, a.Unmap()) {
				matched = append(matched, n.Name)
				break
			}
		}
	}
	switch len(matched) {
	case 1:
		return matched[0], nil
	case 0:
		return "", fmt.Errorf("apply: no node of [nodes] has an address of this host; choose one with --node (nodes: %s)", strings.Join(names, ", "))
	}
	return "", fmt.Errorf("apply: nodes %s all have addresses of this host; choose one with --node", strings.Join(matched, ", "))
}

// hostAddrs lists the addresses of every interface in the network namespace
// (the current one when name is "").
func hostAddrs(name string) ([]netip.Addr, error) {
	var h *vnl.Handle
	var err error
	if name == "" {
		h, err = vnl.NewHandle()
	} else {
		var ns netns.NsHandle
		if strings.ContainsRune(name, '/') {
			ns, err = netns.GetFromPath(name)
		} else {
			ns, err = netns.GetFromName(name)
		}
		if err != nil {
			return nil, fmt.Errorf("open network namespace %q: %w", name, err)
		}
		defer ns.Close()
		h, err = vnl.NewHandleAt(ns)
	}
	if err != nil {
		return nil, err
	}
	defer h.Close()
	list, err := h.AddrList(nil, vnl.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}
