package nft

import (
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

func TestDiffViews(t *testing.T) {
	mustView := func(rs *ir.Ruleset) *TableView {
		t.Helper()
		v, err := ViewOf(rs)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		edit   func(rs *ir.Ruleset) // applied to the "live" copy
		want   []string             // substrings, one per line, in order
		absent bool
	}{
		{"identical", func(*ir.Ruleset) {}, nil, false},
		{"table not loaded", nil, []string{"table inet hostwall: not loaded; apply would create it with 2 sets and 1 chains"}, true},
		{"elements removed and added, summarised", func(rs *ir.Ruleset) {
			s := rs.Sets[0]
			s.Elems = append([]netipx.IPRange(nil), s.Elems[15:]...)
			s.Elems = append(s.Elems, netipx.MustParseIPRange("198.18.0.0-198.18.0.255"))
		}, []string{
			"set big_v4: 15 elements to add: 10.0.0.0-10.0.0.2, 10.0.0.10-10.0.0.12, 10.0.0.14/31, ",
			", ... and 5 more\nset big_v4: 1 elements to remove: 198.18.0.0/24",
		}, false},
		{"foreign rule and changed policy", func(rs *ir.Ruleset) {
			c := rs.Chains[0]
			c.Base = &ir.Base{Type: ir.TypeFilter, Hook: ir.HookInput, Priority: ir.PriorityFilter, Policy: ir.Drop{}}
			c.Rules = append([]*ir.Rule{{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: []ir.PortRange{{Lo: 9999, Hi: 9999}}}}, Verdict: ir.Accept{}}}, c.Rules[1:]...)
		}, []string{
			`chain input: "type filter hook input priority 0 policy drop" in the kernel, "type filter hook input priority 0 policy accept" in the policy`,
			"chain input: rule 1 in the kernel only: not from hostwall: meta key 16",
			"chain input: rule 1 missing from the kernel: not from hostwall: meta key 15",
		}, false},
		{"extra chain and set", func(rs *ir.Ruleset) {
			rs.Sets = append(rs.Sets, &ir.Set{Name: "extra_v4", Family: ir.FamilyIPv4, Elems: []netipx.IPRange{netipx.MustParseIPRange("198.18.0.1-198.18.0.1")}})
			rs.Chains = append(rs.Chains, &ir.Chain{Name: "extra"})
		}, []string{"set extra_v4: in the kernel only (1 elements)", "chain extra: in the kernel only (0 rules)"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := mustView(bigSetRuleset(20))
			var live *TableView
			if !tc.absent {
				rs := bigSetRuleset(20)
				tc.edit(rs)
				live = mustView(rs)
			}
			got := Diff(live, want)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			all := strings.Join(got, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("diff lacks %q:\n%s", w, all)
				}
			}
		})
	}
}
