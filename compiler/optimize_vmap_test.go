package compiler

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// TestDispatchShapes checks which runs of zone rules become a verdict map,
// and what the map and its chains hold.
func TestDispatchShapes(t *testing.T) {
	rule := func(zone, svc, action string) string {
		s := "\n  [[policy.in]]\n  service = \"" + svc + "\"\n  action = \"" + action + "\"\n"
		if zone != "" {
			s += "  zone = \"" + zone + "\"\n"
		}
		return s
	}
	tests := []struct {
		name  string
		rules string
		// want describes the input chain's policy rules: "vmap NAME:CHAIN,...
		// [CHAIN: n rules; ...]" for a map, "rule" for any other rule.
		want []string
	}{
		{"zones alternate with different verdicts",
			rule("a", "tcp/22", "accept") + rule("b", "tcp/22", "drop") + rule("a", "tcp/80", "reject") + rule("ab", "tcp/443", "accept") + rule("b", "tcp/80", "accept"),
			[]string{"vmap eth0:input_iif_1 eth1:input_iif_2 eth2:input_iif_3 eth3:input_iif_3 [input_iif_1: 2 rules; input_iif_2: 2 rules; input_iif_3: 1 rules]"}},
		{"three rules are not worth a map",
			rule("a", "tcp/22", "accept") + rule("b", "tcp/22", "drop") + rule("a", "tcp/80", "reject"),
			[]string{"rule", "rule", "rule"}},
		{"a wildcard zone ends the run",
			rule("a", "tcp/22", "accept") + rule("b", "tcp/22", "drop") + rule("w", "tcp/80", "reject") + rule("a", "tcp/81", "drop") + rule("b", "tcp/82", "accept"),
			[]string{"rule", "rule", "rule", "rule", "rule"}},
		{"an overlapping zone ends the run",
			rule("a", "tcp/22", "accept") + rule("b", "tcp/22", "drop") + rule("a", "tcp/80", "reject") + rule("b", "tcp/81", "drop") + rule("x", "tcp/82", "accept") + rule("a", "tcp/83", "drop"),
			[]string{"vmap eth0:input_iif_1 eth1:input_iif_2 [input_iif_1: 2 rules; input_iif_2: 2 rules]", "rule", "rule"}},
		{"a rule without a zone ends the run",
			rule("a", "tcp/22", "accept") + rule("b", "tcp/22", "drop") + rule("", "tcp/80", "reject") + rule("a", "tcp/81", "drop") + rule("b", "tcp/82", "accept"),
			[]string{"rule", "rule", "rule", "rule", "rule"}},
		{"one zone is not a dispatch",
			rule("a", "tcp/22", "accept") + rule("a", "tcp/23", "drop") + rule("a", "tcp/80", "accept") + rule("a", "tcp/81", "drop"),
			[]string{"rule", "rule", "rule", "rule"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := "[defaults]\nicmp = \"none\"\nestablished = false\nloopback = false\ninvalid = \"accept\"\n" +
				"[zones]\na = { interfaces = [\"eth0\"] }\nb = { interfaces = [\"eth1\"] }\nab = { interfaces = [\"eth2\", \"eth3\"] }\n" +
				"x = { interfaces = [\"eth0\", \"eth9\"] }\nw = { interfaces = [\"vx*\"] }\n[[policy]]\nname = \"p\"\n" + tt.rules
			p, diags := model.LoadSources([]model.Source{{Name: "p.toml", Data: []byte(text)}})
			if err := diags.Err(); err != nil {
				t.Fatal(err)
			}
			rs, diags := Compile(p, Options{})
			if err := diags.Err(); err != nil {
				t.Fatal(err)
			}
			plain, _ := Compile(p, Options{NoOptimize: true})
			var got []string
			for _, c := range rs.Chains {
				if c.Name != ChainInput {
					continue
				}
				for _, r := range c.Rules {
					if r.Source.What == "" || strings.HasPrefix(r.Source.What, "defaults.") {
						continue
					}
					v, ok := r.Verdict.(ir.VerdictMap)
					if !ok {
						got = append(got, "rule")
						continue
					}
					s := "vmap"
					for _, e := range v.Elems {
						s += " " + e.Name + ":" + e.Chain.Name
					}
					var cs []string
					for _, ch := range v.Chains() {
						if !slices.Contains(rs.Chains, ch) {
							t.Errorf("chain %s is not in the ruleset", ch.Name)
						}
						cs = append(cs, fmt.Sprintf("%s: %d rules", ch.Name, len(ch.Rules)))
					}
					got = append(got, s+" ["+strings.Join(cs, "; ")+"]")
					// The map lists the run as the plain list has it.
					var want []ir.Source
					for _, q := range plainRules(plain) {
						if strings.HasPrefix(q.Source.What, "policy") {
							want = append(want, q.Source)
						}
					}
					var have []ir.Source
					for _, q := range r.Merged {
						have = append(have, q.Source)
					}
					if !slices.Equal(have, want[:len(have)]) {
						t.Errorf("the map's Merged is not the plain run in order:\n%v\n%v", have, want)
					}
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("input chain:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func plainRules(rs *ir.Ruleset) []*ir.Rule {
	for _, c := range rs.Chains {
		if c.Name == ChainInput {
			return c.Rules
		}
	}
	return nil
}
