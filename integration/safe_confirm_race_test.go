package integration

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSafeConfirmShortDeadline: with a deadline shorter than the apply
// itself (--confirm 1ms, a group of 100,000 addresses to lower), the
// rollback helper reaches the provisional deadline while the apply still
// lowers its ruleset. It must wait for the apply's transaction: a restore
// ahead of it would put the previous state back first, and the apply's
// transaction would then leave the new table in the kernel, unconfirmed,
// with nothing pending, while apply reports that the previous table is
// back.
func TestSafeConfirmShortDeadline(t *testing.T) {
	l := newSafeLab(t, "198.18.75.1", "198.18.75.2")
	ns := l.trafficLab.node.Name
	pol := bigPolicy(t)
	for i := range 3 {
		if out, code := l.hostwall(t, nil, "flush", "--netns", ns); code != 0 {
			t.Fatalf("flush: exit %d\n%s", code, out)
		}
		out, code := l.hostwall(t, nil, "apply", "--confirm", "1ms", "--netns", ns, "--state-dir", l.state, pol)
		if code != 1 || !strings.Contains(out, "not confirmed within 1ms") {
			t.Fatalf("run %d: exit %d, want 1 (not confirmed)\n%s", i, code, out)
		}
		if got := l.list(t); got != "(no table)" {
			t.Fatalf("run %d: apply reports a rollback, but the unconfirmed table stayed:\n%.400s", i, got)
		}
		if _, err := os.Stat(filepath.Join(l.state, "pending.json")); err == nil {
			t.Fatalf("run %d: a pending apply is left over", i)
		}
	}
}

// TestSafeRollbackDuringApply: `hostwall rollback` run while an apply
// --confirm still lowers its ruleset waits for that apply's transaction
// and then undoes it; taken at once, its restore went first and the
// apply's new table stayed, with nothing pending.
func TestSafeRollbackDuringApply(t *testing.T) {
	l := newSafeLab(t, "198.18.76.1", "198.18.76.2")
	ns := l.trafficLab.node.Name
	pol := bigPolicy(t)
	pending := filepath.Join(l.state, "pending.json")
	for i := range 3 {
		if out, code := l.hostwall(t, nil, "flush", "--netns", ns); code != 0 {
			t.Fatalf("flush: exit %d\n%s", code, out)
		}
		apply := exec.Command(l.bin, "apply", "--confirm", "30s", "--netns", ns, "--state-dir", l.state, pol)
		var outb strings.Builder
		apply.Stdout, apply.Stderr = &outb, &outb
		if err := apply.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = apply.Process.Kill() })
		if !waitFor(10*time.Second, func() bool { _, err := os.Stat(pending); return err == nil }) {
			t.Fatalf("run %d: apply recorded no pending apply\n%s", i, outb.String())
		}
		if out, code := l.hostwall(t, nil, "rollback", "--netns", ns, "--state-dir", l.state); code != 0 {
			t.Fatalf("run %d: rollback: exit %d\n%s", i, code, out)
		}
		done := make(chan error, 1)
		go func() { done <- apply.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("run %d: apply did not end after the rollback\n%s", i, outb.String())
		}
		if !strings.Contains(outb.String(), "not confirmed") {
			t.Errorf("run %d: apply does not report the rollback:\n%s", i, outb.String())
		}
		if got := l.list(t); got != "(no table)" {
			t.Fatalf("run %d: rolled back, but the apply's table stayed:\n%.400s", i, got)
		}
	}
}

// TestSafeConfirmDuringApply: `hostwall confirm` run while an apply
// --confirm still lowers its ruleset waits for the apply to record its
// table, which then becomes the last known good one (confirmed at once,
// the last known good table stayed the old one).
func TestSafeConfirmDuringApply(t *testing.T) {
	l := newSafeLab(t, "198.18.77.1", "198.18.77.2")
	ns := l.trafficLab.node.Name
	pol := bigPolicy(t)
	pending := filepath.Join(l.state, "pending.json")
	apply := exec.Command(l.bin, "apply", "--confirm", "30s", "--netns", ns, "--state-dir", l.state, pol)
	var outb strings.Builder
	apply.Stdout, apply.Stderr = &outb, &outb
	if err := apply.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = apply.Process.Kill() })
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(pending); return err == nil }) {
		t.Fatalf("apply recorded no pending apply\n%s", outb.String())
	}
	if out, code := l.hostwall(t, nil, "confirm", "--state-dir", l.state); code != 0 {
		t.Fatalf("confirm: exit %d\n%s", code, out)
	}
	done := make(chan error, 1)
	go func() { done <- apply.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("apply after confirm: %v\n%s", err, outb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("apply did not end after the confirm\n%s", outb.String())
	}
	b, err := os.ReadFile(filepath.Join(l.state, "last-good.json"))
	if err != nil {
		t.Fatalf("confirmed, but no last known good table: %v", err)
	}
	if !strings.Contains(string(b), pol) {
		t.Errorf("the last known good table is not the confirmed one:\n%.400s", b)
	}
	if got := l.list(t); !strings.Contains(got, "policy B") {
		t.Errorf("the confirmed table is not in place:\n%.400s", got)
	}
}

// bigPolicy writes policy B with a source group of 100,000 addresses (so
// that lowering it takes a while) and returns its path.
func bigPolicy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	a := netip.MustParseAddr("198.19.0.0")
	for range 100_000 {
		fmt.Fprintln(&b, a)
		a = a.Next().Next()
	}
	if err := os.WriteFile(filepath.Join(dir, "big.txt"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.toml")
	text := safePolicyB + "  from = \"big\"\n[groups]\nbig = { file = \"big.txt\" }\n"
	if err := os.WriteFile(pol, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return pol
}
