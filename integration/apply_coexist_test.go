package integration

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hostwall/hostwall/compiler/ir"
)

// foreignTables is what other tools keep in a node: a kube-proxy-like nft
// table, a Docker-like one, a Calico-like one, and tables named like
// hostwall's in other families (which must not be mistaken for it).
const foreignTables = `
table ip kube-proxy {
	set nodeport-ips { type ipv4_addr; elements = { 198.18.0.1, 198.18.0.2 } }
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 31002 ip daddr @nodeport-ips counter dnat to 198.18.6.2:8080
	}
}
table inet docker-like {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "docker0" counter accept comment "docker"
	}
}
table ip6 calico-like {
	chain prerouting {
		type filter hook prerouting priority raw; policy accept;
		ip6 saddr fd00:99::/64 counter drop
	}
}
table ip hostwall {
	chain input {
		type filter hook input priority filter; policy accept;
		counter
	}
}
table bridge hostwall {
	chain forward {
		type filter hook forward priority filter; policy accept;
	}
}
`

var iptablesDate = regexp.MustCompile(`(?m)^# (Generated|Completed) .*$`)

// snapshot is everything in ns that is not hostwall's inet table: the nft
// ruleset with handles (so a table deleted and recreated with the same
// content would show), iptables-legacy and ip6tables-legacy.
func snapshot(t *testing.T, ns *Netns, table string) string {
	t.Helper()
	ruleset := ns.MustRun(t, "nft", "-a", "list", "ruleset")
	// Cut hostwall's own inet table out of the listing.
	var b strings.Builder
	skip := false
	for _, line := range strings.SplitAfter(ruleset, "\n") {
		if strings.HasPrefix(line, "table inet "+table+" ") {
			skip = true
		}
		if !skip {
			b.WriteString(line)
		}
		if skip && line == "}\n" {
			skip = false
		}
	}
	out := b.String()
	for _, tool := range []string{"iptables-legacy-save", "ip6tables-legacy-save"} {
		out += "\n### " + tool + "\n" + iptablesDate.ReplaceAllString(ns.MustRun(t, tool), "")
	}
	return out
}

// TestApplyCoexistence: foreign nft tables, iptables-nft rules (tables ip
// filter and ip nat) and iptables-legacy rules survive apply, re-apply of
// another ruleset, and flush, byte for byte and handle for handle.
func TestApplyCoexistence(t *testing.T) {
	RequireRoot(t)
	for _, tool := range []string{"nft", "iptables-nft", "iptables-legacy", "iptables-legacy-save", "ip6tables-legacy-save"} {
		RequireTool(t, tool)
	}
	ns := NewNetns(t, "coexist")
	loadText(t, ns, foreignTables)
	ns.MustRun(t, "iptables-nft", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
	ns.MustRun(t, "iptables-nft", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "8443", "-j", "DNAT", "--to-destination", "198.18.6.2:443")
	ns.MustRun(t, "ip6tables-nft", "-A", "FORWARD", "-s", "fd00:1::/64", "-j", "DROP")
	ns.MustRun(t, "iptables-legacy", "-A", "INPUT", "-s", "198.18.9.0/24", "-j", "DROP")
	ns.MustRun(t, "iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-s", "198.18.8.0/24", "-j", "MASQUERADE")
	ns.MustRun(t, "ip6tables-legacy", "-A", "INPUT", "-s", "fd00:9::/64", "-j", "DROP")

	exs := compiledExamples(t)
	first, second := exs[0].rs, (*ir.Ruleset)(nil)
	for _, ex := range exs[1:] {
		if ex.rs.Table == first.Table {
			second = ex.rs
		}
	}
	if second == nil {
		t.Fatalf("no second example with table %q", first.Table)
	}
	before := snapshot(t, ns, first.Table)
	if !strings.Contains(before, "table ip filter") || !strings.Contains(before, "table ip kube-proxy") || !strings.Contains(before, "-A INPUT -s 198.18.9.0/24 -j DROP") || !strings.Contains(before, "table ip hostwall") {
		t.Fatalf("foreign state is not what the test set up:\n%s", before)
	}
	k := labKernel(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	steps := []struct {
		name string
		do   func() error
	}{
		{"apply", func() error { return k.Replace(ctx, first) }},
		{"re-apply another ruleset", func() error { return k.Replace(ctx, second) }},
		{"re-apply the same ruleset", func() error { return k.Replace(ctx, second) }},
		{"flush", func() error { return k.Delete(ctx, first.Table) }},
		{"flush of an absent table", func() error { return k.Delete(ctx, first.Table) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if d := cmp.Diff(before, snapshot(t, ns, first.Table)); d != "" {
			t.Errorf("%s changed foreign state (-before +after):\n%s", s.name, d)
		}
		has := strings.Contains(ns.MustRun(t, "nft", "list", "tables"), "table inet "+first.Table+"\n")
		if wantTable := s.name != "flush" && s.name != "flush of an absent table"; has != wantTable {
			t.Errorf("%s: table inet %s present = %v, want %v", s.name, first.Table, has, wantTable)
		}
	}
}
