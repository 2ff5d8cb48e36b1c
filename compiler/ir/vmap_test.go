package ir

import "testing"

// A verdict map jumps by interface name; a miss, or a chain that ends
// without a verdict, goes on with the next rule; a decision inside is
// reported as the dispatching chain's.
func TestEvalVerdictMap(t *testing.T) {
	ssh := PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{Lo: 22, Hi: 22}}}
	lanRule := &Rule{Matches: []Match{IfaceMatch{Dir: In, Names: []string{"eth1", "eth2"}}, ssh}, Verdict: Accept{}}
	wanRule := &Rule{Matches: []Match{IfaceMatch{Dir: In, Names: []string{"eth0"}}}, Verdict: Reject{With: RejectICMPXAdminProhibited}}
	lan := &Chain{Name: "input_iif_1", Rules: []*Rule{lanRule}}
	wan := &Chain{Name: "input_iif_2", Rules: []*Rule{wanRule}}
	vm := &Rule{Verdict: VerdictMap{Dir: In, Elems: []VmapElem{{"eth0", wan}, {"eth1", lan}, {"eth2", lan}}}, Merged: []*Rule{lanRule, wanRule}}
	after := &Rule{Matches: []Match{ssh}, Verdict: Drop{}}
	rs := inputOnly(Accept{}, vm, after)
	rs.Chains = append(rs.Chains, lan, wan)
	for _, tc := range []struct {
		packet  string
		verdict string
		rule    *Rule
	}{
		{"tcp 198.18.0.1 -> 198.18.0.2:22 iif eth2", "accept", lanRule},
		{"tcp 198.18.0.1 -> 198.18.0.2:80 iif eth1", "accept", nil},     // lan chain ends: next rule, then policy
		{"tcp 198.18.0.1 -> 198.18.0.2:22 iif eth0", "reject", wanRule}, // wan
		{"tcp 198.18.0.1 -> 198.18.0.2:22 iif eth9", "drop", after},     // no element: the next rule
		{"tcp 198.18.0.1 -> 198.18.0.2:22 iif eth1", "accept", lanRule},
	} {
		res := Eval(rs, pkt(t, tc.packet))
		if res.Err != nil {
			t.Fatalf("%s: %v", tc.packet, res.Err)
		}
		if got := VerdictName(res.Verdict); got != tc.verdict || res.Rule != tc.rule {
			t.Errorf("%s: %s by %p, want %s by %p", tc.packet, got, res.Rule, tc.verdict, tc.rule)
		}
		if res.Chain == nil || res.Chain.Name != "input" {
			t.Errorf("%s: decided in chain %v, want input (the map's chains stand for it)", tc.packet, res.Chain)
		}
	}
	if got := vm.Verdict.(VerdictMap).Chains(); len(got) != 2 || got[0] != wan || got[1] != lan {
		t.Errorf("Chains() = %v, want wan, lan (order of first element)", got)
	}
}
