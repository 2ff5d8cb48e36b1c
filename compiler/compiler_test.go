package compiler_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

// compileText loads one in-memory policy file and compiles it for node,
// returning the printed ruleset (or the diagnostics as text).
func compileText(t *testing.T, policy, node string) (string, *ir.Ruleset) {
	t.Helper()
	pol, diags := model.LoadSources([]model.Source{{Name: "policy.toml", Data: []byte(policy)}})
	if diags.HasErrors() {
		t.Fatalf("policy does not load:\n%v", diags.Err())
	}
	rs, diags := compiler.Compile(pol, compiler.Options{Node: node})
	if diags.HasErrors() {
		return diags.Err().Error(), nil
	}
	var buf bytes.Buffer
	if err := nft.Print(&buf, rs); err != nil {
		t.Fatalf("print: %v", err)
	}
	return buf.String(), rs
}

// chainBody returns the rule lines of one chain of printed nft text.
func chainBody(t *testing.T, text, chain string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(text, "\tchain "+chain+" {\n")
	if !ok {
		t.Fatalf("no chain %s in:\n%s", chain, text)
	}
	body, _, _ := strings.Cut(rest, "\n\t}")
	var rules []string
	for _, l := range strings.Split(body, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "type ") {
			continue
		}
		rules = append(rules, l)
	}
	return rules
}

// userRules drops the default rules (loopback, ct state, essential ICMP)
// and the default verdict, leaving what the policy's rules compiled to.
func userRules(lines []string) []string {
	var out []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "iifname \"lo\" accept"), strings.HasPrefix(l, "oifname \"lo\" accept"),
			strings.HasPrefix(l, "ct state"), strings.HasPrefix(l, "icmp type"), strings.HasPrefix(l, "icmpv6 type"),
			l == "counter drop", strings.HasPrefix(l, "counter reject"):
			continue
		}
		out = append(out, l)
	}
	return out
}

func TestRuleExpansion(t *testing.T) {
	head := `
[zones]
mgmt = { interfaces = ["eth0", "vxlan*"] }
[groups]
v4only = ["198.18.0.0/24"]
mixed  = ["198.18.1.1", "fd00::/64"]
[services]
ike = { proto = "udp", port = 500, sport = 500 }
`
	tests := []struct {
		name  string
		rules string
		chain string
		want  []string
	}{
		{
			name:  "ports of one protocol merge; bare protocols merge",
			rules: `service = ["tcp/80", "tcp/443", "tcp/81-90", "esp", "vrrp"]`,
			chain: "input",
			want: []string{
				"tcp dport { 80-90, 443 } counter accept",
				"meta l4proto { esp, vrrp } counter accept",
			},
		},
		{
			name:  "a group with members of one family matches only that family",
			rules: "from = \"v4only\"\nservice = \"tcp/22\"",
			chain: "input",
			want:  []string{"ip saddr @g_v4only_v4 tcp dport 22 counter accept"},
		},
		{
			name:  "negated group matches every packet of a family it has no member of",
			rules: "from = \"!v4only\"\nservice = \"tcp/22\"\naction = \"drop\"",
			chain: "input",
			want: []string{
				"ip saddr != @g_v4only_v4 tcp dport 22 counter drop",
				"meta nfproto ipv6 tcp dport 22 counter drop",
			},
		},
		{
			name:  "mixed group splits per family",
			rules: "from = \"mixed\"\nzone = \"mgmt\"",
			chain: "input",
			want: []string{
				`iifname { "eth0", "vxlan*" } ip saddr @g_mixed_v4 counter accept`,
				`iifname { "eth0", "vxlan*" } ip6 saddr @g_mixed_v6 counter accept`,
			},
		},
		{
			name:  "IPv4 source and IPv6 destination matches nothing",
			rules: "from = \"v4only\"\nto = \"fd00::1\"",
			chain: "input",
			want:  nil,
		},
		{
			name:  "icmp types stay in their family",
			rules: "from = \"mixed\"\nservice = [\"icmp/echo-request\", \"icmpv6/echo-request\"]",
			chain: "input",
			want: []string{
				"ip saddr @g_mixed_v4 icmp type echo-request counter accept",
				"ip6 saddr @g_mixed_v6 icmpv6 type echo-request counter accept",
			},
		},
		{
			name:  "table form keeps the source port",
			rules: `service = "ike"`,
			chain: "input",
			want:  []string{"udp sport 500 udp dport 500 counter accept"},
		},
		{
			name:  "host-prohibited differs per family",
			rules: "service = \"tcp/3306\"\naction = \"reject\"\nreject_with = \"host-prohibited\"",
			chain: "input",
			want: []string{
				"meta nfproto ipv4 tcp dport 3306 counter reject with icmp host-prohibited",
				"meta nfproto ipv6 tcp dport 3306 counter reject with icmpv6 admin-prohibited",
			},
		},
		{
			name:  "tcp-reset for a protocol mix answers tcp with a reset, the rest with ICMP",
			rules: "service = [\"tcp/53\", \"udp/53\"]\naction = \"reject\"\nreject_with = \"tcp-reset\"",
			chain: "input",
			want: []string{
				"tcp dport 53 counter reject with tcp reset",
				"udp dport 53 counter reject with icmpx port-unreachable",
			},
		},
		{
			name:  "the limit rate-limits the log only; the rule decides every matching packet",
			rules: "service = \"tcp/22\"\nstate = [\"new\"]\nlimit = \"10/second burst 20\"\nlog = \"ssh: \"\ncounter = false\ncomment = \"rate limited ssh\"",
			chain: "input",
			want: []string{
				`tcp dport 22 ct state new limit rate 10/second burst 20 packets log prefix "ssh: " comment "rate limited ssh"`,
				`tcp dport 22 ct state new accept comment "rate limited ssh"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policy := head + "\n[[policy]]\nname = \"p\"\n  [[policy.in]]\n" + tt.rules + "\n"
			text, rs := compileText(t, policy, "")
			if rs == nil {
				t.Fatalf("compile failed:\n%s", text)
			}
			got := userRules(chainBody(t, text, tt.chain))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("rules:\n%s\nwant:\n%s\nwhole ruleset:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"), text)
			}
		})
	}
}
