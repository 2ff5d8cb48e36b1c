package nft

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler/ir"
)

// TestFormatRule: every rule of the printer's golden rulesets formats to
// exactly the line Print writes for it.
func TestFormatRule(t *testing.T) {
	n := 0
	for name, rs := range goldenCases(t) {
		var buf bytes.Buffer
		if err := Print(&buf, rs); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		lines := map[string]bool{}
		for _, l := range strings.Split(buf.String(), "\n") {
			lines[strings.TrimSpace(l)] = true
		}
		for _, c := range rs.Chains {
			for i, r := range c.Rules {
				s, err := FormatRule(r)
				if err != nil {
					t.Errorf("%s: chain %s rule %d: %v", name, c.Name, i, err)
					continue
				}
				n++
				if !lines[s] {
					t.Errorf("%s: chain %s rule %d: %q is not a line Print writes", name, c.Name, i, s)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no rules formatted")
	}
}

func TestFormatRuleRefuses(t *testing.T) {
	bad := []*ir.Rule{
		nil,
		{},
		{Matches: []ir.Match{ir.AddrMatch{Field: ir.Src, Family: ir.FamilyIPv4, Set: &ir.Set{Name: "bad name", Family: ir.FamilyIPv4}}}, Verdict: ir.Accept{}},
		{Verdict: ir.Jump{Chain: &ir.Chain{Name: "x;y"}}},
		{Verdict: ir.Accept{}, Comment: "a\"b"},
	}
	for i, r := range bad {
		if s, err := FormatRule(r); err == nil {
			t.Errorf("case %d: %q, want an error", i, s)
		}
	}
}
