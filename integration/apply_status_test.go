package integration

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestApplyStatusCounters: after real traffic, the status read back over
// netlink shows the packets on the rule that accepted them, mapped back to
// the policy rule by the source stored in the rule's userdata.
func TestApplyStatusCounters(t *testing.T) {
	RequireRoot(t)
	lab := newTrafficLab(t, "eth0")
	lab.addNodeAddr(t, netip.MustParseAddr("198.18.41.1"))
	lab.addPeerAddr(t, netip.MustParseAddr("198.18.41.2"))
	TCPListen(t, lab.node, ":80")
	rs := compilePolicy(t, webPolicy, "")
	k := labKernel(t, lab.node)
	replace(t, k, rs)
	const conns = 3
	for i := 0; i < conns; i++ {
		if got, err := Probe(lab.peer, "tcp", "198.18.41.2", "198.18.41.1:80", time.Second); got != Accepted {
			t.Fatalf("probe %d: %s (%v)", i, got, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := k.List(ctx, rs.Table)
	if err != nil || st == nil {
		t.Fatalf("List = %v, %v", st, err)
	}
	found := false
	for _, c := range st.Chains {
		for _, r := range c.Rules {
			if !strings.Contains(r.Source, `policy "web" in[0]`) {
				continue
			}
			found = true
			if c.Name != "input" || !r.Counter || r.Packets != conns || r.Verdict != "accept" {
				t.Errorf("rule %+v in chain %s: want the %d new connections counted on an accept in input", r, c.Name, conns)
			}
		}
	}
	if !found {
		t.Errorf("no rule maps back to policy \"web\" in[0]: %+v", st)
	}
}
