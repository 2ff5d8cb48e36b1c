package integration

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// replayTally counts what a replay sent and skipped.
type replayTally struct {
	sent, resent int
	findings     int            // sent, with a known kernel finding (see kernelFindings)
	byOutcome    map[string]int // "accepted/tcp/ipv4"...
	skipped      map[string]int // reason -> count
}

func newReplayTally() *replayTally {
	return &replayTally{byOutcome: map[string]int{}, skipped: map[string]int{}}
}

func (r *replayTally) add(o *replayTally) {
	r.sent += o.sent
	r.resent += o.resent
	r.findings += o.findings
	for k, v := range o.byOutcome {
		r.byOutcome[k] += v
	}
	for k, v := range o.skipped {
		r.skipped[k] += v
	}
}

func (r *replayTally) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d (%d resent to confirm a drop; %d known findings)", r.sent, r.resent, r.findings)
	n := 0
	for _, v := range r.skipped {
		n += v
	}
	fmt.Fprintf(&b, ", skipped %d", n)
	for _, k := range sortedKeys(r.skipped) {
		fmt.Fprintf(&b, "\n      %d x %s", r.skipped[k], k)
	}
	return b.String()
}

// kernelFindings are disagreements this suite found between an example's
// expectation (which ir.Eval shares) and what the kernel does with the
// compiled table, keyed "example[/node]: test name (file:line)". They are
// real findings for the part of hostwall that owns them, not lab
// artefacts; the replay asserts the outcome the kernel gives today, so a
// fix shows up as a failure that asks for the entry's removal.
var kernelFindings = map[string]struct {
	got Outcome
	why string
}{
	"ipsec-gateway: MLD from the WAN is rejected (../examples/ipsec-gateway.toml:208)": {Dropped,
		"conntrack leaves MLD untracked, so the ICMPv6 error the input reject sends quotes a packet of no connection and is ct state invalid on the output hook, where the table's own `ct state invalid drop` discards it: the sender sees silence"},
}

// rewritten says why p is not sent through the generic lab: a NAT
// statement in a nat chain on prerouting or output (DNAT) matches it, so
// its destination changes to an address the generic lab does not route.
// Empty when p is not rewritten that way.
func rewritten(rs *ir.Ruleset, p ir.Packet) string {
	for _, st := range ir.Eval(rs, p).Trace {
		if st.Kind != ir.StepRule || st.Chain == nil || st.Chain.Base == nil || st.Chain.Base.Type != ir.TypeNAT {
			continue
		}
		if st.Chain.Base.Hook != ir.HookPrerouting && st.Chain.Base.Hook != ir.HookOutput {
			continue
		}
		switch st.Verdict.(type) {
		case nil, ir.Accept, ir.Drop, ir.Reject, ir.Jump, ir.Return:
			continue
		}
		return "destination NAT: the new destination needs the NAT lab's routes (integration/nat_test.go)"
	}
	return ""
}

// exampleCases turns the [[test]]s of one example node into packets, each
// expecting what the test expects. An in test without dst goes to the
// lab node's own address.
func exampleCases(ex example) []PacketCase {
	var cases []PacketCase
	for _, tc := range ex.pol.Tests {
		if tc.Node != ex.node {
			continue
		}
		p := compiler.PacketOfTest(ex.pol, tc)
		if p.Direction == ir.DirIn && (!p.Dst.IsValid() || p.Dst.IsUnspecified()) {
			p.Dst = labNode4
			if p.Src.Is6() {
				p.Dst = labNode6
			}
		}
		cases = append(cases, PacketCase{
			Name: fmt.Sprintf("%s (%s:%d)", tc.Name, tc.Pos.File, tc.Pos.Line),
			Pkt:  p,
			Want: outcomeOf(tc.Expect),
		})
	}
	return cases
}

// replayExamples sends every [[test]] of every example node through labs
// that s loads, and checks each outcome against the test's expectation and
// against ir.Eval of the packet as sent. It logs, per example and in
// total, how many were sent and how many skipped, with the reasons.
func replayExamples(t *testing.T, s PacketSender, filter func(ex example) string) *replayTally {
	total := newReplayTally()
	for _, ex := range compiledExamples(t) {
		if filter != nil {
			if why := filter(ex); why != "" {
				t.Logf("%s: not replayed: %s", ex.name, why)
				continue
			}
		}
		tally := newReplayTally()
		var cases []PacketCase
		var keys []string
		for _, c := range exampleCases(ex) {
			if why := rewritten(ex.rs, c.Pkt); why != "" {
				tally.skipped[why]++
				continue
			}
			cases = append(cases, c)
			keys = append(keys, ex.name+": "+c.Name)
		}
		if len(cases) == 0 {
			continue
		}
		t.Run(ex.name, func(t *testing.T) {
			results := s.Send(t, ex.rs, cases)
			for i, r := range results {
				c := cases[i]
				if r.Skip != "" {
					tally.skipped[r.Skip]++
					continue
				}
				tally.sent++
				if r.Resent {
					tally.resent++
				}
				tally.byOutcome[fmt.Sprintf("%s/%s/%s", r.Got, r.Sent.Proto, familyWord(r.Sent.Src))]++
				eval := outcomeOfVerdict(ir.Eval(ex.rs, r.Sent).Verdict)
				if f, ok := kernelFindings[keys[i]]; ok {
					// A known disagreement: the kernel must still do what
					// was found, or the entry is stale.
					if r.Got != f.got {
						t.Errorf("%s: %s: kernel %s (%v); kernelFindings says %s (%s): the finding is gone, remove its entry", c.Name, r.Sent, r.Got, r.Err, f.got, f.why)
					} else {
						t.Logf("KNOWN FINDING %s: %s: the test expects %s, ir.Eval says %s, the kernel %s: %s", c.Name, r.Sent, c.Want, eval, r.Got, f.why)
						tally.findings++
					}
					continue
				}
				if r.Got != c.Want || r.Got != eval {
					t.Errorf("%s: %s: kernel %s (%v), the test expects %s, ir.Eval says %s", c.Name, r.Sent, r.Got, r.Err, c.Want, eval)
				}
			}
		})
		t.Logf("%s: %s", ex.name, tally)
		total.add(tally)
	}
	t.Logf("all examples: %s\n    outcomes: %v", total, total.byOutcome)
	if total.sent == 0 {
		t.Fatal("no example test could be sent")
	}
	return total
}

func outcomeOfVerdict(v ir.Verdict) Outcome {
	switch v.(type) {
	case ir.Accept:
		return Accepted
	case ir.Reject:
		return Rejected
	}
	return Dropped
}

func familyWord(a netip.Addr) string {
	if a.Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// nodeAddrs are the addresses of an example node, or the lab node's
// defaults when the policy has no [nodes].
func nodeAddrs(pol *model.Policy, node string) []netip.Addr {
	var out []netip.Addr
	for _, n := range pol.Nodes {
		if n.Name == node {
			out = append(out, n.Addresses...)
		}
	}
	has := func(v4 bool) bool {
		return slices.ContainsFunc(out, func(a netip.Addr) bool { return a.Is4() == v4 })
	}
	if !has(true) {
		out = append(out, labNode4)
	}
	if !has(false) {
		out = append(out, labNode6)
	}
	return out
}
