package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
