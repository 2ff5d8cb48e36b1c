package main

import (
	"context"
	"fmt"

	"github.com/hostwall/hostwall/nft"
)

// FlushCmd is `hostwall flush`: delete hostwall's table, and nothing else.
type FlushCmd struct {
	Netns string `help:"Flush inside this network namespace (a name from 'ip netns' or a path)." placeholder:"NAME"`
	Table string `help:"Name of hostwall's table (settings.table)." default:"hostwall"`

	kernel nft.Kernel // nil: netlink
}

// Help shows an example.
func (c *FlushCmd) Help() string {
	return "Example:\n  hostwall flush            # other tables (kube-proxy, Docker, iptables-nft) are left alone"
}

// Run deletes the table; an absent table is not an error.
func (c *FlushCmd) Run(env *Env) error {
	k := c.kernel
	if k == nil {
		k = &nft.Netlink{NetNS: c.Netns}
	}
	if err := k.Delete(context.Background(), c.Table); err != nil {
		return &systemError{fmt.Errorf("flush: %w", err)}
	}
	fmt.Fprintf(env.Stderr, "hostwall: table inet %s is gone\n", c.Table)
	return nil
}
