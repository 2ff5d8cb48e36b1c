package nft

import (
	"strings"
	"testing"
)

func TestForeignWarnings(t *testing.T) {
	ours := &Table{Name: "hostwall", Chains: []ChainInfo{
		{Name: "input", Hook: "input", Policy: "drop", Rules: []RuleInfo{{Verdict: "accept"}, {Verdict: "drop"}}},
		{Name: "forward", Hook: "forward", Policy: "drop", Rules: []RuleInfo{{Verdict: "drop"}}},
		{Name: "output", Hook: "output", Policy: "accept"},
	}}
	for _, tc := range []struct {
		name string
		f    ForeignChain
		want string // "" for no warning
	}{
		{"drop on input", ForeignChain{Family: "ip", Table: "filter", Chain: "INPUT", Hook: "input", Policy: "drop"}, "ip table filter chain INPUT (hook input priority 0) has policy drop: it drops what hostwall's chain input accepts"},
		{"accept on input", ForeignChain{Family: "ip", Table: "filter", Chain: "INPUT", Hook: "input", Policy: "accept"}, ""},
		{"drop on forward, ours accepts nothing there", ForeignChain{Family: "ip", Table: "filter", Chain: "FORWARD", Hook: "forward", Policy: "drop"}, ""},
		{"drop on output", ForeignChain{Family: "inet", Table: "firewalld", Chain: "filter_OUTPUT", Hook: "output", Priority: 10, Policy: "drop"}, "hook output priority 10"},
		{"bridge family is another path", ForeignChain{Family: "bridge", Table: "b", Chain: "in", Hook: "input", Policy: "drop"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ForeignWarnings(ours, []ForeignChain{tc.f})
			if tc.want == "" {
				if len(got) != 0 {
					t.Errorf("unexpected warning: %v", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Errorf("got %v, want one containing %q", got, tc.want)
			}
		})
	}
	if got := ForeignWarnings(nil, []ForeignChain{{Family: "ip", Hook: "input", Policy: "drop"}}); len(got) != 0 {
		t.Errorf("no hostwall table: got %v", got)
	}
}
