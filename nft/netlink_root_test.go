package nft

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hostwall/hostwall/compiler/ir"
)

// These tests need root and nft: they load rulesets into network
// namespaces they create, never the machine's own.

var nsCounter atomic.Int32

// needRoot skips loudly when the test cannot run.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration: needs root to create network namespaces")
	}
	for _, tool := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("integration: needs %s in PATH", tool)
		}
	}
}

// testNetns creates a network namespace hw-<purpose>-<pid>-<n> and deletes
// it when the test ends.
func testNetns(t *testing.T, purpose string) string {
	t.Helper()
	name := fmt.Sprintf("hw-%s-%d-%d", purpose, os.Getpid(), nsCounter.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	return name
}

// nftIn runs nft in namespace ns with stdin.
func nftIn(t *testing.T, ns string, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s in %s: %v\n%s", strings.Join(args, " "), ns, err, out)
	}
	return string(out)
}

var handleRE = regexp.MustCompile(` # handle \d+`)

// listTable is `nft list table inet NAME` in ns, handles dropped.
func listTable(t *testing.T, ns, table string) string {
	t.Helper()
	return handleRE.ReplaceAllString(nftIn(t, ns, nil, "list", "table", "inet", table), "")
}

func testKernel(t *testing.T, ns string) *Netlink {
	return &Netlink{NetNS: ns, LockPath: filepath.Join(t.TempDir(), "hostwall.lock")}
}

// lowerCases are the printer's golden rulesets plus rulesets that exercise
// what only the netlink path has (sources in userdata, chunked sets).
func lowerCases(t *testing.T) map[string]*ir.Ruleset {
	cases := goldenCases(t)
	cases["sources"] = sourcesRuleset()
	cases["chunked"] = bigSetRuleset(5000)
	return cases
}

// sourcesRuleset has rules with policy sources (kept in userdata) beside
// comments of the maximum length.
func sourcesRuleset() *ir.Ruleset {
	long := strings.Repeat("x", MaxCommentLen)
	src := ir.Source{File: "/etc/hostwall/" + strings.Repeat("d/", 80) + "policy.toml", Line: 12, Col: 3, What: `policy "web" in[2]`}
	return &ir.Ruleset{Table: "hostwall", Chains: []*ir.Chain{{
		Name: "input", Base: &ir.Base{Type: ir.TypeFilter, Hook: ir.HookInput, Policy: ir.Drop{}},
		Rules: []*ir.Rule{
			{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: []ir.PortRange{{Lo: 80, Hi: 80}}}},
				Counter: true, Verdict: ir.Accept{}, Comment: long, Source: src},
			{Counter: true, Verdict: ir.Accept{}, Source: ir.Source{File: "p.toml", Line: 1, Col: 1, What: "defaults.loopback"}},
			{Verdict: ir.Drop{}, Comment: "plain", Source: ir.Source{What: "defaults.input"}},
		},
	}}}
}

// TestNetlinkListsLikeNft is the equivalence check of the lowering: the
// same ruleset loaded with `nft -f` of Print's text and with Replace over
// netlink must list identically.
func TestNetlinkListsLikeNft(t *testing.T) {
	needRoot(t)
	nsText := testNetns(t, "lowertext")
	nsNL := testNetns(t, "lowernl")
	k := testKernel(t, nsNL)
	cases := lowerCases(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range cases {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		rs := cases[name]
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Print(&buf, rs); err != nil {
				t.Fatal(err)
			}
			nftIn(t, nsText, nil, "flush", "ruleset")
			nftIn(t, nsNL, nil, "flush", "ruleset")
			nftIn(t, nsText, buf.Bytes(), "-f", "-")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := k.Replace(ctx, rs); err != nil {
				t.Fatalf("Replace: %v", err)
			}
			want := listTable(t, nsText, rs.Table)
			got := listTable(t, nsNL, rs.Table)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("nft list differs (-nft -f, +netlink):\n%s", d)
			}
			// Re-applying replaces, never appends.
			if err := k.Replace(ctx, rs); err != nil {
				t.Fatalf("second Replace: %v", err)
			}
			if again := listTable(t, nsNL, rs.Table); again != got {
				t.Errorf("second Replace changed the listing:\n%s", cmp.Diff(got, again))
			}
		})
	}
}
