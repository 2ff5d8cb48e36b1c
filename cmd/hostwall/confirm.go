package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/hostwall/hostwall/nft"
	"golang.org/x/sys/unix"
)

// Timing of apply --confirm.
const (
	// helperPoll is how often the rollback helper and the waiting apply
	// look at the state directory.
	helperPoll = 100 * time.Millisecond
	// helperGrace is how long after the deadline the waiting apply gives
	// the helper before it rolls back itself (the helper died).
	helperGrace = 10 * time.Second
	// stalePending is how long after its deadline a pending record counts
	// as left over (its helper gone) rather than awaiting confirmation.
	stalePending = time.Minute
	// restoreTimeout bounds one restore transaction and its check.
	restoreTimeout = time.Minute
)

// applyConfirm applies rs with a safety net: it saves the table as it is,
// starts a detached helper that puts it back at the deadline, applies, and
// waits for `hostwall confirm` (or Enter on a terminal). The new table
// becomes the last known good one only when confirmed.
func (c *ApplyCmd) applyConfirm(env *Env, k nft.Kernel, pp *prepared, lg *nft.LastGood, where string) error {
	table := pp.table()
	nk, ok := k.(*nft.Netlink)
	if !ok {
		return fmt.Errorf("apply: --confirm needs the kernel (netlink)")
	}
	if c.State == "" {
		return fmt.Errorf("apply: --confirm needs a --state-dir")
	}
	st := nft.State{Dir: c.State}
	// The apply lock is held from before the check for an earlier pending
	// apply until the real deadline is set: two applies with --confirm
	// cannot both pass the check, and the helper (which waits for this
	// lock before it acts on a deadline) cannot restore before this
	// apply's transaction (a short --confirm, a slow lowering) and leave
	// the new table unconfirmed.
	unlockApply, err := st.ApplyLock()
	if err != nil {
		return &systemError{fmt.Errorf("apply: %w", err)}
	}
	applyLocked := true
	defer func() {
		if applyLocked {
			unlockApply()
		}
	}()
	if p, err := st.Pending(); err == nil {
		if time.Now().Before(p.Deadline.Add(stalePending)) {
			return &systemError{fmt.Errorf("apply: an earlier apply (%s) awaits confirmation until %s; run 'hostwall confirm' or 'hostwall rollback' first", p.ID, p.Deadline.Format(time.TimeOnly))}
		}
		fmt.Fprintf(env.Stderr, "hostwall: warning: dropping the left-over pending apply %s (deadline %s passed, its helper is gone)\n", p.ID, p.Deadline.Format(time.RFC3339))
		_ = st.DropPending(p.ID)
	} else if !errors.Is(err, nft.ErrNoState) {
		return &systemError{fmt.Errorf("apply: %w", err)}
	}
	ctx := context.Background()
	prev, err := nk.Snapshot(ctx, table)
	if err != nil {
		return &systemError{fmt.Errorf("apply: save the table as it is: %w", err)}
	}
	id, err := newID()
	if err != nil {
		return &systemError{fmt.Errorf("apply: %w", err)}
	}
	// A provisional deadline, in case this process dies during the apply;
	// the real one counts from the end of the apply.
	p := &nft.Pending{ID: id, Deadline: time.Now().Add(c.Confirm), NetNS: c.Netns, LockPath: nk.LockPath, Previous: prev}
	if err := st.WritePending(p); err != nil {
		return &systemError{fmt.Errorf("apply: %w", err)}
	}
	start := c.startHelper
	if start == nil {
		start = startRollbackHelper
	}
	if err := start(c.State, id); err != nil {
		_ = st.DropPending(id)
		return &systemError{fmt.Errorf("apply: start the rollback helper: %w", err)}
	}
	if err := c.replace(k, pp); err != nil {
		_ = st.DropPending(id) // nothing changed: nothing to roll back
		return c.onError(env, k, pp.policy(), err)
	}
	pp.store(env)
	if snap, err := nk.Snapshot(ctx, table); err == nil {
		lg.Time, lg.Snapshot = time.Now().UTC(), snap.ZeroCounters()
	} else {
		fmt.Fprintf(env.Stderr, "hostwall: warning: cannot read the new table back, so it will not become the last known good one: %v\n", err)
	}
	deadline := time.Now().Add(c.Confirm)
	ok, err = st.UpdatePending(id, func(p *nft.Pending) {
		p.Deadline = deadline
		if lg.Snapshot != nil {
			p.Candidate = lg
		}
	})
	unlockApply()
	applyLocked = false
	if err != nil || !ok {
		// The helper took it already (it can only have rolled back).
		return c.waitResult(env, st, id, table)
	}
	fmt.Fprintf(env.Stderr, "hostwall: applied table inet %s%s; run 'hostwall confirm' (or press Enter here) within %s, or the previous table comes back at %s\n",
		table, where, c.Confirm, deadline.Format(time.TimeOnly))
	return c.wait(env, st, id, table, deadline)
}

// wait waits for the pending apply id to be confirmed or rolled back.
func (c *ApplyCmd) wait(env *Env, st nft.State, id, table string, deadline time.Time) error {
	enter := make(chan struct{}, 1)
	if in := c.stdinTerminal(); in != nil {
		go func() {
			r := bufio.NewReader(in)
			if _, err := r.ReadString('\n'); err == nil {
				enter <- struct{}{}
			}
		}()
	}
	tick := time.NewTicker(helperPoll)
	defer tick.Stop()
	for {
		select {
		case <-enter:
			if _, err := st.Confirm(id); err == nil {
				fmt.Fprintf(env.Stderr, "hostwall: confirmed; table inet %s stays\n", table)
				return nil
			}
		case <-tick.C:
		}
		p, err := st.Pending()
		if err != nil && !errors.Is(err, nft.ErrNoState) {
			return &systemError{fmt.Errorf("apply: %w", err)}
		}
		if err != nil || p.ID != id {
			return c.waitResult(env, st, id, table)
		}
		if time.Now().After(deadline.Add(helperGrace)) {
			// The helper should have acted: it is gone, so roll back here.
			fmt.Fprintln(env.Stderr, "hostwall: warning: the rollback helper did not act; rolling back from here")
			if p, err := st.TakePending(id); err == nil {
				if err := rollbackPending(st, p); err != nil {
					return &systemError{fmt.Errorf("apply: not confirmed, and the rollback failed: %w", err)}
				}
				return &policyError{fmt.Errorf("apply: not confirmed within %s: the previous table inet %s is back", c.Confirm, table)}
			}
		}
	}
}

// waitResult reports how the pending apply id ended: confirmed, or rolled
// back by the helper (waiting for the rollback to end).
func (c *ApplyCmd) waitResult(env *Env, st nft.State, id, table string) error {
	rb, err := st.LastRollback()
	for end := time.Now().Add(restoreTimeout + helperGrace); err == nil && rb.ID == id && !rb.Done && time.Now().Before(end); {
		time.Sleep(helperPoll)
		rb, err = st.LastRollback()
	}
	if err == nil && rb.ID == id {
		if !rb.Done {
			return &systemError{fmt.Errorf("apply: not confirmed, and the rollback did not finish in time; check with hostwall status")}
		}
		if rb.Error != "" {
			return &systemError{fmt.Errorf("apply: not confirmed, and the rollback failed: %s", rb.Error)}
		}
		return &policyError{fmt.Errorf("apply: not confirmed within %s: the previous table inet %s is back", c.Confirm, table)}
	}
	fmt.Fprintf(env.Stderr, "hostwall: confirmed; table inet %s stays\n", table)
	return nil
}

// stdinTerminal returns the input to read Enter from: c.stdin, or os.Stdin
// when it is a terminal; nil otherwise.
func (c *ApplyCmd) stdinTerminal() io.Reader {
	if c.stdin != nil {
		return c.stdin
	}
	if _, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return os.Stdin
}

func newID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// startRollbackHelper re-executes this binary as `hostwall rollback-timer`
// in a session of its own (setsid), with stdio on /dev/null, so that it
// outlives this process, its terminal and its ssh session.
func startRollbackHelper(stateDir, id string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	cmd := exec.Command(exe, "rollback-timer", "--state-dir", stateDir, "--id", id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	// Reap it if it ends while we still run; never wait for it otherwise.
	go func() { _ = cmd.Wait() }()
	return nil
}

// rollbackPending puts back the table p saved and records the outcome.
func rollbackPending(st nft.State, p *nft.Pending) error {
	ctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
	defer cancel()
	k := &nft.Netlink{NetNS: p.NetNS, LockPath: p.LockPath}
	err := k.Restore(ctx, p.Previous)
	rb := &nft.Rollback{ID: p.ID, Time: time.Now().UTC(), Done: true}
	if err != nil {
		rb.Error = err.Error()
	}
	return errors.Join(err, st.RecordRollback(rb))
}

// ConfirmCmd is `hostwall confirm`: keep the table of a pending
// `apply --confirm`.
type ConfirmCmd struct {
	State string `name:"state-dir" help:"The state directory apply used." default:"/var/lib/hostwall" placeholder:"DIR"`
}

// Help shows an example.
func (c *ConfirmCmd) Help() string {
	return "Example:\n  hostwall apply --confirm 60s /etc/hostwall/policy.d &   # from a new ssh session:\n  hostwall confirm"
}

// Run confirms the pending apply; exit 1 when none is pending (too late:
// it was rolled back).
func (c *ConfirmCmd) Run(env *Env) error {
	st := nft.State{Dir: c.State}
	// An apply --confirm holds the apply lock until it has recorded its
	// table as the candidate: confirmed before, it would not become the
	// last known good one.
	unlock, err := st.ApplyLock()
	if err != nil {
		return &systemError{fmt.Errorf("confirm: %w", err)}
	}
	p, err := st.Confirm("")
	unlock()
	switch {
	case errors.Is(err, nft.ErrNoState):
		msg := "confirm: no apply awaits confirmation"
		if rb, err := st.LastRollback(); err == nil {
			msg += fmt.Sprintf(" (the last one, %s, was rolled back at %s)", rb.ID, rb.Time.Local().Format(time.TimeOnly))
		}
		return &policyError{errors.New(msg)}
	case p == nil && err != nil:
		return &systemError{fmt.Errorf("confirm: %w", err)}
	case err != nil:
		fmt.Fprintf(env.Stderr, "hostwall: confirmed apply %s, but: %v\n", p.ID, err)
		return nil
	}
	fmt.Fprintf(env.Stderr, "hostwall: confirmed apply %s; it is now the last known good table\n", p.ID)
	return nil
}

// RollbackTimerCmd is the detached helper of `apply --confirm`: at the
// deadline, unless confirmed, it puts the previous table back.
type RollbackTimerCmd struct {
	State string `name:"state-dir" required:"" help:"The state directory." placeholder:"DIR"`
	ID    string `required:"" help:"The pending apply to watch."`
}

// Run waits for the deadline of the pending apply and rolls it back; it
// ends early when the apply is confirmed.
func (c *RollbackTimerCmd) Run(env *Env) error {
	st := nft.State{Dir: c.State}
	for {
		p, err := st.Pending()
		if err != nil || p.ID != c.ID {
			return nil // confirmed, or taken by someone else
		}
		if wait := time.Until(p.Deadline); wait > 0 {
			time.Sleep(min(wait, helperPoll))
			continue
		}
		// The apply holds the apply lock until its transaction is done
		// and the real deadline set (or until it dies): look again
		// under it.
		unlock, err := st.ApplyLock()
		if err != nil {
			return &systemError{fmt.Errorf("rollback-timer: %w", err)}
		}
		p, err = st.Pending()
		if err != nil || p.ID != c.ID {
			unlock()
			return nil
		}
		if time.Now().Before(p.Deadline) {
			unlock()
			continue
		}
		p, err = st.TakePending(c.ID)
		unlock()
		if err != nil {
			return nil
		}
		if err := rollbackPending(st, p); err != nil {
			return &systemError{fmt.Errorf("rollback-timer: %w", err)}
		}
		return nil
	}
}
