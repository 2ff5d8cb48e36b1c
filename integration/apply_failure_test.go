package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/nft"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const webPolicy = `
[defaults]
input = "drop"

[[policy]]
name = "web"
  [[policy.in]]
  service = "tcp/80"
`

// withJumpLoop returns a copy of rs with two regular chains that jump to
// each other, reached from the input chain: every step passes Lower, and
// the kernel refuses the batch (ELOOP or EMLINK) when it validates the
// jumps.
func withJumpLoop(rs *ir.Ruleset) *ir.Ruleset {
	a := &ir.Chain{Name: "loop_a"}
	b := &ir.Chain{Name: "loop_b", Rules: []*ir.Rule{{Verdict: ir.Jump{Chain: a}}}}
	a.Rules = []*ir.Rule{{Verdict: ir.Jump{Chain: b}}}
	out := &ir.Ruleset{Table: rs.Table, Sets: rs.Sets}
	for _, c := range rs.Chains {
		if c.Name == "input" {
			c2 := *c
			c2.Rules = append([]*ir.Rule{{Verdict: ir.Jump{Chain: a}, Source: ir.Source{What: "injected loop"}}}, c.Rules...)
			c = &c2
		}
		out.Chains = append(out.Chains, c)
	}
	out.Chains = append(out.Chains, a, b)
	return out
}

// TestApplyFailureLeavesThePast: a ruleset the kernel refuses leaves the
// previous table (handle for handle) and its traffic behaviour in place,
// and the error names the operation and wraps the errno.
func TestApplyFailureLeavesThePast(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	lab := newTrafficLab(t, "eth0")
	node, client := "198.18.40.1", "198.18.40.2"
	lab.addNodeAddr(t, netip.MustParseAddr(node))
	lab.addPeerAddr(t, netip.MustParseAddr(client))
	TCPListen(t, lab.node, ":80")
	TCPListen(t, lab.node, ":81")
	probe := func(stage string) {
		t.Helper()
		for _, c := range []struct {
			port string
			want Outcome
		}{{"80", Accepted}, {"81", Dropped}} {
			if got, err := Probe(lab.peer, "tcp", client, node+":"+c.port, time.Second); got != c.want {
				t.Errorf("%s: port %s: got %s (%v), want %s", stage, c.port, got, err, c.want)
			}
		}
	}

	good := compilePolicy(t, webPolicy, "")
	k := labKernel(t, lab.node)
	replace(t, k, good)
	probe("after the good apply")
	before := lab.node.MustRun(t, "nft", "-a", "list", "table", "inet", good.Table)

	bad := withJumpLoop(good)
	if _, err := nft.Lower(bad); err != nil {
		t.Fatalf("the injected ruleset must pass lowering, so that the kernel is what refuses it: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := k.Replace(ctx, bad)
	var oe *nft.OpError
	switch {
	case err == nil:
		t.Fatal("the kernel accepted a jump loop")
	case !errors.As(err, &oe) || !(errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EMLINK)):
		// Kernels report a jump loop as ELOOP or, when the jump stack
		// overflows first, EMLINK.
		t.Fatalf("error %v (%T): want an *nft.OpError wrapping ELOOP or EMLINK", err, err)
	case !strings.Contains(oe.Op, "add rule to chain loop_") && !strings.Contains(oe.Op, "add rule to chain input"):
		t.Errorf("error names %q, want the rule that closes the loop", oe.Op)
	}
	t.Logf("kernel refusal: %v", err)
	after := lab.node.MustRun(t, "nft", "-a", "list", "table", "inet", good.Table)
	if d := cmp.Diff(before, after); d != "" {
		t.Errorf("a refused apply changed the table (-before +after):\n%s", d)
	}
	probe("after the refused apply")
}

// ownTable creates table inet NAME in ns flagged NFT_TABLE_F_OWNER on a
// socket that stays open until the test ends: the kernel then refuses
// every other process's change to the table, as it does for a table
// another firewall daemon owns.
func ownTable(t *testing.T, ns *Netns, name string) {
	t.Helper()
	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ops, err := nft.DeleteOps(name) // [create-if-missing, delete]
	if err != nil {
		t.Fatal(err)
	}
	msg := ops[0].Msg
	data := append([]byte(nil), msg.Data...)
	// Set NFTA_TABLE_FLAGS (type 2, big-endian u32) to NFT_TABLE_F_OWNER.
	patched := false
	for off := 4; off+4 <= len(data); {
		alen := int(binary.NativeEndian.Uint16(data[off:]))
		if binary.NativeEndian.Uint16(data[off+2:]) == unix.NFTA_TABLE_FLAGS && alen == 8 {
			binary.BigEndian.PutUint32(data[off+4:], nftTableFOwner)
			patched = true
		}
		off += (alen + 3) &^ 3
	}
	if !patched {
		t.Fatal("no table flags attribute to patch")
	}
	hdr := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}
	msgs := []netlink.Message{
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request}, Data: hdr},
		{Header: netlink.Header{Type: msg.Header.Type, Flags: msg.Header.Flags}, Data: data},
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request}, Data: hdr},
	}
	if _, err := c.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Receive(); err != nil {
		t.Fatalf("create owned table: %v", err)
	}
}

// TestApplyCLIExitCodes: the hostwall binary exits 3 with the operation
// named when the kernel refuses (hostwall's table is owned by another
// process) or the system fails (no such namespace), and leaves the table
// alone.
func TestApplyCLIExitCodes(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	bin := buildHostwall(t)
	policy := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(policy, []byte(webPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := NewNetns(t, "exitcode")
	ownTable(t, ns, "hostwall")
	before := ns.MustRun(t, "nft", "-a", "list", "ruleset")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"kernel refuses", []string{"apply", "--netns", ns.Name, "--state-dir", t.TempDir(), policy},
			[]string{"hostwall: apply: create table hostwall if missing: netlink: operation not permitted"}},
		{"flush refused", []string{"flush", "--netns", ns.Name},
			[]string{"hostwall: flush: create table hostwall if missing: netlink: operation not permitted"}},
		{"no such namespace", []string{"apply", "--netns", ns.Name + "-missing", "--state-dir", t.TempDir(), policy},
			[]string{"hostwall: apply: open network namespace", "no such file or directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Fatalf("exit: %v, want 3\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
		})
	}
	if after := ns.MustRun(t, "nft", "-a", "list", "ruleset"); after != before {
		t.Errorf("refused commands changed the ruleset:\n%s", cmp.Diff(before, after))
	}
}

// nftTableFOwner is NFT_TABLE_F_OWNER (linux/netfilter/nf_tables.h), which
// x/sys/unix v0.28 does not define.
const nftTableFOwner = 0x2

// buildHostwall builds the hostwall binary into the test's temp dir.
func buildHostwall(t *testing.T) string {
	t.Helper()
	RequireTool(t, "go")
	bin := filepath.Join(t.TempDir(), "hostwall")
	build := exec.Command("go", "build", "-o", bin, "../cmd/hostwall")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
