package main

import (
	"context"
	"fmt"

	"github.com/hostwall/hostwall/nft"
)

// StatusCmd is `hostwall status`: what is loaded, read back over netlink,
// with each rule's counters and the policy rule it came from.
type StatusCmd struct {
	Netns  string `help:"Read inside this network namespace (a name from 'ip netns' or a path)." placeholder:"NAME"`
	Table  string `help:"Name of hostwall's table (settings.table)." default:"hostwall"`
	Format string `help:"Output format: text or json." enum:"text,json" default:"text"`

	kernel nft.Kernel // nil: netlink
}

// Help shows an example.
func (c *StatusCmd) Help() string {
	return "Example:\n  hostwall status --format json | jq '.chains[].rules[] | select(.packets > 0)'"
}

// Run reads the table back and prints it.
func (c *StatusCmd) Run(env *Env) error {
	k := c.kernel
	if k == nil {
		k = &nft.Netlink{NetNS: c.Netns}
	}
	t, err := k.List(context.Background(), c.Table)
	if err != nil {
		return &systemError{fmt.Errorf("status: %w", err)}
	}
	if c.Format == "json" {
		return nft.WriteStatusJSON(env.Stdout, t)
	}
	if err := nft.WriteStatusText(env.Stdout, t); err != nil {
		return err
	}
	// Other tables' base chains see the same packets: list them, and warn
	// where one drops what hostwall accepts.
	fl, ok := k.(interface {
		ForeignChains(ctx context.Context, table string) ([]nft.ForeignChain, error)
	})
	if !ok {
		return nil
	}
	foreign, err := fl.ForeignChains(context.Background(), c.Table)
	if err != nil {
		return &systemError{fmt.Errorf("status: %w", err)}
	}
	return nft.WriteForeignText(env.Stdout, foreign, nft.ForeignWarnings(t, foreign))
}
