package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const twoNodes = `
[defaults]
input = "drop"

[nodes]
alpha = { addresses = ["198.18.42.1"], roles = ["web"] }
beta  = { addresses = ["198.18.42.2", "fd00:42::2"], roles = ["db"] }

[[policy]]
name = "db"
roles = ["db"]
  [[policy.in]]
  service = "tcp/5432"
  comment = "postgres on db nodes"
`

// TestApplyCLINodeDetection: `hostwall apply --netns` finds the node by the
// namespace's own addresses, applies, and `status` and `flush` work on it.
func TestApplyCLINodeDetection(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	bin := buildHostwall(t)
	policy := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(policy, []byte(twoNodes), 0o600); err != nil {
		t.Fatal(err)
	}
	node := NewNetns(t, "clinode")
	peer := NewNetns(t, "clipeer")
	Link(t, node, []string{"fd00:42::2/64"}, peer, []string{"fd00:42::9/64"})
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("hostwall %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("apply", "--netns", node.Name, "--state-dir", t.TempDir(), policy); !strings.Contains(out, "for node beta") {
		t.Errorf("apply detected the wrong node: %s", out)
	}
	if l := listInet(t, node, "hostwall"); !strings.Contains(l, "postgres on db nodes") {
		t.Errorf("beta's rule is not loaded:\n%s", l)
	}
	st := run("status", "--netns", node.Name)
	if !strings.Contains(st, `policy "db" in[0]`) || !strings.Contains(st, "chain input") {
		t.Errorf("status:\n%s", st)
	}
	run("flush", "--netns", node.Name)
	if out, _ := node.Run("nft", "list", "tables"); strings.Contains(out, "hostwall") {
		t.Errorf("flush left: %s", out)
	}
}
