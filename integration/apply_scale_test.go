package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
	"github.com/vishvananda/netns"
)

const (
	scaleEntries = 100_000
	scaleRules   = 5_000
)

// scalePolicy writes a policy with a group of scaleEntries non-adjacent
// addresses (half IPv4, half IPv6) and scaleRules input rules, each on its
// own port and source.
func scalePolicy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var list strings.Builder
	a4 := netip.MustParseAddr("198.18.0.0")
	a6 := netip.MustParseAddr("fd00:1::")
	for i := 0; i < scaleEntries/2; i++ {
		fmt.Fprintf(&list, "%s\n%s\n", a4, a6)
		a4, a6 = a4.Next().Next(), a6.Next().Next()
	}
	if err := os.WriteFile(filepath.Join(dir, "big.txt"), []byte(list.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var p strings.Builder
	p.WriteString("[defaults]\ninput = \"drop\"\n\n[groups]\nbig = { file = \"big.txt\" }\n\n[[policy]]\nname = \"many\"\n")
	p.WriteString("  [[policy.in]]\n  from = \"big\"\n  action = \"drop\"\n  comment = \"the big group\"\n")
	for i := 1; i < scaleRules; i++ {
		fmt.Fprintf(&p, "  [[policy.in]]\n  service = \"tcp/%d\"\n  from = \"198.19.%d.%d\"\n", 1000+i, i/256, i%256)
	}
	path := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(path, []byte(p.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestApplyScale: a 100,000-entry group and 5,000 rules apply in one
// transaction, and the kernel then holds exactly the elements and rules
// sent (google/nftables alone truncates big element lists and overruns
// default socket buffers at this size).
func TestApplyScale(t *testing.T) {
	RequireRoot(t)
	pol, diags := model.Load(scalePolicy(t))
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	rs, diags := compiler.Compile(pol, compiler.Options{NoOptimize: true}) // 5,000 rules as written: the optimiser would merge them
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	b, err := nft.Lower(rs)
	if err != nil {
		t.Fatal(err)
	}
	wantRules := map[string]int{}
	groupEntries := 0
	for _, r := range b.Rules {
		wantRules[r.Chain]++
	}
	for _, s := range rs.Sets {
		if strings.Contains(s.Name, "big") {
			groupEntries += len(s.Elems)
		}
	}
	if groupEntries != scaleEntries {
		t.Fatalf("the compiled sets of group big hold %d entries, want %d", groupEntries, scaleEntries)
	}
	if wantRules["input"] < scaleRules {
		t.Fatalf("the input chain compiled to %d rules, want at least %d", wantRules["input"], scaleRules)
	}

	ns := NewNetns(t, "scale")
	start := time.Now()
	replace(t, labKernel(t, ns), rs)
	t.Logf("applied %d sets (%d group entries) and %d rules in %v", len(b.Sets), groupEntries, len(b.Rules), time.Since(start))

	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range b.Sets {
		got, err := c.GetSetElements(s.Set)
		if err != nil {
			t.Fatalf("set %s: %v", s.Set.Name, err)
		}
		if len(got) != len(s.Elems) {
			t.Errorf("set %s: kernel holds %d elements, want %d", s.Set.Name, len(got), len(s.Elems))
		}
	}
	for _, ch := range b.Chains {
		got, err := c.GetRules(b.Table, ch)
		if err != nil {
			t.Fatalf("chain %s: %v", ch.Name, err)
		}
		if len(got) != wantRules[ch.Name] {
			t.Errorf("chain %s: kernel holds %d rules, want %d", ch.Name, len(got), wantRules[ch.Name])
		}
	}
}
