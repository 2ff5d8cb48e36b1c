package nft

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDiffLive: right after Replace, the live table and the compiled
// ruleset have no differences, for every lowering case; a rule added by
// `nft add rule` and a set element added by `nft add element` are drift.
func TestDiffLive(t *testing.T) {
	needRoot(t)
	ns := testNetns(t, "difflive")
	k := testKernel(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
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
			nftIn(t, ns, nil, "flush", "ruleset")
			if err := k.Replace(ctx, rs); err != nil {
				t.Fatalf("Replace: %v", err)
			}
			want, err := ViewOf(rs)
			if err != nil {
				t.Fatal(err)
			}
			live, err := k.View(ctx, rs.Table)
			if err != nil {
				t.Fatal(err)
			}
			if d := Diff(live, want); len(d) != 0 {
				t.Fatalf("differences right after apply:\n%s", strings.Join(d, "\n"))
			}
			if len(rs.Chains) == 0 {
				return
			}
			chain := rs.Chains[0].Name
			nftIn(t, ns, nil, "add", "rule", "inet", rs.Table, chain, "tcp", "dport", "9999", "accept")
			live, err = k.View(ctx, rs.Table)
			if err != nil {
				t.Fatal(err)
			}
			d := Diff(live, want)
			wantLine := "chain " + chain + ": rule " + fmt.Sprint(len(rs.Chains[0].Rules)+1) + " in the kernel only: not from hostwall:"
			if len(d) != 1 || !strings.HasPrefix(d[0], wantLine) {
				t.Errorf("after nft add rule: got\n%s\nwant one line starting %q", strings.Join(d, "\n"), wantLine)
			}
		})
	}
}
