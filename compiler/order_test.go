package compiler_test

import (
	"strings"
	"testing"
)

func TestOrderAndRoles(t *testing.T) {
	policy := `
[nodes]
a = { addresses = ["198.18.0.1"], roles = ["etcd"] }
b = { addresses = ["198.18.0.2", "fd00::2"], roles = ["web"] }

[[policy]]
name = "late"
  [[policy.in]]
  service = "tcp/1"

[[policy]]
name = "early"
order = 10
  [[policy.in]]
  service = "tcp/2"
  [[policy.in]]
  service = "tcp/3"
  roles = ["web"]

[[policy]]
name = "etcd"
order = 10
roles = ["etcd"]
  [[policy.in]]
  service = "tcp/2379"
  from = "role:etcd"
  [[policy.in]]
  service = "tcp/22"
  from = "nodes"
`
	tests := []struct {
		node string
		want []string
	}{
		{"a", []string{
			"tcp dport 2 counter accept",
			"ip saddr @role_etcd_v4 tcp dport 2379 counter accept",
			"ip saddr @nodes_v4 tcp dport 22 counter accept",
			"ip6 saddr @nodes_v6 tcp dport 22 counter accept",
			"tcp dport 1 counter accept",
		}},
		{"b", []string{
			"tcp dport 2 counter accept",
			"tcp dport 3 counter accept",
			"tcp dport 1 counter accept",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.node, func(t *testing.T) {
			text, rs := compilePlainText(t, policy, tt.node) // the order as written: merging would hide it
			if rs == nil {
				t.Fatalf("compile failed:\n%s", text)
			}
			got := userRules(chainBody(t, text, "input"))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestNodeSelectionErrors(t *testing.T) {
	withNodes := "[nodes]\nnode2 = { addresses = [\"198.18.0.2\"] }\nnode1 = { addresses = [\"198.18.0.1\"] }\n"
	tests := []struct {
		name, policy, node, want string
	}{
		{"nodes and no --node", withNodes, "", `policy.toml:2:1: the policy has [nodes]; choose one with --node: node1, node2`},
		{"unknown node", withNodes, "node3", `policy.toml:2:1: unknown node "node3"; the policy's nodes are: node1, node2`},
		{"--node without nodes", "[defaults]\ninput = \"drop\"\n", "node1", `node "node1" was chosen, but the policy has no [nodes]; leave out --node`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rs := compileText(t, tt.policy, tt.node)
			if rs != nil {
				t.Fatalf("compiled, want error %q", tt.want)
			}
			if got != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		name, defaults, chain string
		want                  []string
	}{
		{
			name:  "built-in defaults",
			chain: "input",
			want: []string{
				`iifname "lo" accept`,
				"ct state established,related accept",
				"ct state invalid counter drop",
				"icmp type { destination-unreachable, echo-request, time-exceeded, parameter-problem } accept",
				"icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request } accept",
				"icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept",
				"counter drop",
			},
		},
		{
			name:     "everything off, reject with tcp-reset and log",
			defaults: "established = false\ninvalid = \"accept\"\nloopback = false\nicmp = \"all\"\ninput = \"reject\"\nreject_with = \"tcp-reset\"\nlog = { prefix = \"hw: \", rate = \"5/minute\" }",
			chain:    "input",
			want: []string{
				"ct state invalid counter accept",
				"meta l4proto { icmp, ipv6-icmp } accept",
				`limit rate 5/minute log prefix "hw: "`,
				"meta l4proto tcp counter reject with tcp reset",
				"counter reject with icmpx port-unreachable",
			},
		},
		{
			name:     "forward has no loopback rule and icmp none adds nothing",
			defaults: "icmp = \"none\"\nforward = \"accept\"",
			chain:    "forward",
			want: []string{
				"ct state established,related accept",
				"ct state invalid counter drop",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, rs := compileText(t, "[defaults]\n"+tt.defaults+"\n", "")
			if rs == nil {
				t.Fatalf("compile failed:\n%s", text)
			}
			got := chainBody(t, text, tt.chain)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestGuards(t *testing.T) {
	policy := `
[nodes]
n1 = { addresses = ["198.18.0.1", "fd00::1"] }
[zones]
public = { interfaces = ["eth1"] }
[[guard]]
name = "nodeport"
service = "tcp/31002"
from = "!nodes"
[[guard]]
name = "public-only"
service = "tcp/30000-32767"
zone = "public"
action = "reject"
local = false
`
	text, rs := compileText(t, policy, "n1")
	if rs == nil {
		t.Fatalf("compile failed:\n%s", text)
	}
	if !strings.Contains(text, "type filter hook prerouting priority dstnat - 10; policy accept;") {
		t.Errorf("guard_prerouting is not at dstnat - 10:\n%s", text)
	}
	if !strings.Contains(text, "type filter hook output priority -110; policy accept;") {
		t.Errorf("guard_output is not at numeric -110:\n%s", text)
	}
	wantPre := []string{
		"ip saddr != @nodes_v4 tcp dport 31002 fib daddr type local counter drop",
		"ip6 saddr != @nodes_v6 tcp dport 31002 fib daddr type local counter drop",
		`iifname "eth1" tcp dport 30000-32767 counter reject with icmpx admin-prohibited`,
	}
	if got := chainBody(t, text, "guard_prerouting"); strings.Join(got, "\n") != strings.Join(wantPre, "\n") {
		t.Errorf("guard_prerouting:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantPre, "\n"))
	}
	if got := chainBody(t, text, "guard_output"); strings.Join(got, "\n") != strings.Join(wantPre[:2], "\n") {
		t.Errorf("guard_output (a zone guard has no place on output):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantPre[:2], "\n"))
	}
}
