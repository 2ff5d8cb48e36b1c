package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hostwall/hostwall/nft"
)

// RollbackCmd is `hostwall rollback`: put back the table from before a
// pending `apply --confirm` at once, or else re-apply the last known good
// table.
type RollbackCmd struct {
	Netns string `help:"Restore the last known good table inside this network namespace (a pending apply is rolled back where it was applied)." placeholder:"NAME"`
	State string `name:"state-dir" help:"The state directory apply used." default:"/var/lib/hostwall" placeholder:"DIR"`
}

// Help shows an example.
func (c *RollbackCmd) Help() string {
	return "Example:\n  hostwall rollback                 # the last known good table, exactly as it was applied\n  hostwall rollback --state-dir /srv/hw --netns lab"
}

// Run rolls back.
func (c *RollbackCmd) Run(env *Env) error {
	st := nft.State{Dir: c.State}
	// An apply --confirm holds the apply lock until its transaction is
	// done: taking the pending apply before would restore the previous
	// table ahead of it, and its transaction would then stay.
	unlock, err := st.ApplyLock()
	if err != nil {
		return &systemError{fmt.Errorf("rollback: %w", err)}
	}
	p, err := st.TakePending("")
	unlock()
	switch {
	case err == nil:
		if err := rollbackPending(st, p); err != nil {
			return &systemError{fmt.Errorf("rollback: %w", err)}
		}
		fmt.Fprintf(env.Stderr, "hostwall: rolled back the unconfirmed apply %s: table inet %s is as it was before it\n", p.ID, p.Previous.Table)
		return nil
	case !errors.Is(err, nft.ErrNoState):
		return &systemError{fmt.Errorf("rollback: %w", err)}
	}
	lg, err := st.LastGood()
	if errors.Is(err, nft.ErrNoState) {
		return &systemError{fmt.Errorf("rollback: no last known good table in %s (a successful apply stores one)", c.State)}
	}
	if err != nil {
		return &systemError{fmt.Errorf("rollback: %w", err)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
	defer cancel()
	k := &nft.Netlink{NetNS: c.Netns}
	if err := k.Restore(ctx, lg.Snapshot); err != nil {
		return &systemError{fmt.Errorf("rollback: %w", err)}
	}
	fmt.Fprintf(env.Stderr, "hostwall: restored the last known good table inet %s (applied %s, policy sha256 %s)\n",
		lg.Snapshot.Table, lg.Time.Local().Format(time.DateTime), lg.PolicyHash)
	return nil
}
