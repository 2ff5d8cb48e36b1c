package nft

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hostwall/hostwall/compiler/ir"
)

// foreignScript is a table written by hand with what hostwall never makes
// itself: a verdict map, a concatenated set, element comments, a regular
// chain reached by goto, a dormant-free table comment.
const foreignScript = `table inet hostwall {
	comment "made by hand"
	set allowed {
		type ipv4_addr . inet_service
		elements = { 198.18.0.1 . 22 comment "one", 198.18.0.2 . 443 }
	}
	map svc {
		type inet_service : verdict
		elements = { 80 : accept, 81 : jump extra }
	}
	chain extra {
		ip saddr { 198.18.1.0/24, 198.18.3.0-198.18.3.9 } counter packets 7 bytes 420 drop
		return
	}
	chain input {
		type filter hook input priority filter - 5; policy drop;
		ip saddr . tcp dport @allowed accept
		tcp dport vmap @svc
		iifname { "eth*", "lo" } goto extra
		counter packets 3 bytes 180 reject with icmpx admin-prohibited comment "last"
	}
}
`

// TestSnapshotRestore: a table saved with Snapshot and put back with
// Restore lists exactly as before (counters included), whatever replaced
// it in between; a missing table is restored as missing.
func TestSnapshotRestore(t *testing.T) {
	needRoot(t)
	ns := testNetns(t, "snapshot")
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
	other := sourcesRuleset()
	load := map[string]func(t *testing.T){}
	for _, name := range names {
		rs := cases[name]
		load[name] = func(t *testing.T) {
			if err := k.Replace(ctx, rs); err != nil {
				t.Fatalf("Replace: %v", err)
			}
			if rs.Table == "hostwall" && slices.ContainsFunc(rs.Chains, func(c *ir.Chain) bool { return c.Name == "input" }) {
				// A foreign rule is part of the table too.
				nftIn(t, ns, nil, "add", "rule", "inet", "hostwall", "input", "tcp", "dport", "9999", "counter", "packets", "5", "bytes", "300", "accept", "comment", `"foreign"`)
			}
		}
	}
	load["nft -f by hand"] = func(t *testing.T) { nftIn(t, ns, []byte(foreignScript), "-f", "-") }
	names = append(names, "nft -f by hand")
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			nftIn(t, ns, nil, "flush", "ruleset")
			load[name](t)
			table := "hostwall"
			if rs, ok := cases[name]; ok {
				table = rs.Table
			}
			before := listTable(t, ns, table)
			s, err := k.Snapshot(ctx, table)
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if !s.Exists {
				t.Fatal("Snapshot says the table does not exist")
			}
			other.Table = table
			if err := k.Replace(ctx, other); err != nil {
				t.Fatalf("Replace with another ruleset: %v", err)
			}
			if err := k.Restore(ctx, s); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if after := listTable(t, ns, table); after != before {
				t.Errorf("restored table differs (-before +after):\n%s", cmp.Diff(before, after))
			}
		})
	}
	t.Run("missing table", func(t *testing.T) {
		nftIn(t, ns, nil, "flush", "ruleset")
		s, err := k.Snapshot(ctx, "hostwall")
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		if s.Exists {
			t.Fatal("Snapshot of a missing table says it exists")
		}
		if err := k.Replace(ctx, other); err != nil {
			t.Fatal(err)
		}
		if err := k.Restore(ctx, s); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if out := nftIn(t, ns, nil, "list", "tables"); out != "" {
			t.Errorf("restoring a missing table left: %s", out)
		}
	})
}
