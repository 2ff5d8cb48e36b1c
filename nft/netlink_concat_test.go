package nft

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hostwall/hostwall/compiler/ir"
)

// concatRuleset has concatenated lookups of both families, both address
// fields and both port fields, one big enough to be sent in chunks.
func concatRuleset(n int) *ir.Ruleset {
	var big []ir.AddrPort
	a := netip.MustParseAddr("198.18.64.0")
	for i := range n {
		big = append(big, ir.AddrPort{Addr: a, Port: uint16(20000 + i%7)})
		if i%7 == 6 {
			a = a.Next()
		}
	}
	v6 := []ir.AddrPort{{Addr: netip.MustParseAddr("fd00::1"), Port: 53}, {Addr: netip.MustParseAddr("fd00::1"), Port: 443}, {Addr: netip.MustParseAddr("fd00::2"), Port: 22}}
	return &ir.Ruleset{Table: "hostwall", Chains: []*ir.Chain{{
		Name: "forward", Base: &ir.Base{Type: ir.TypeFilter, Hook: ir.HookForward, Policy: ir.Drop{}},
		Rules: []*ir.Rule{
			{Matches: []ir.Match{ir.IfaceMatch{Dir: ir.In, Names: []string{"eth0"}}, ir.ConcatMatch{Family: ir.FamilyIPv4, AddrField: ir.Src, Proto: ir.ProtoTCP, PortField: ir.Dst, Elems: big}},
				Counter: true, Verdict: ir.Accept{}, Source: ir.Source{File: "p.toml", Line: 3, Col: 3, What: `policy "x" forward[1] and 4999 more merged rules`}},
			{Matches: []ir.Match{ir.ConcatMatch{Family: ir.FamilyIPv6, AddrField: ir.Dst, Proto: ir.ProtoUDP, PortField: ir.Src, Elems: v6}, ir.CtStateMatch{States: ir.CtNew}},
				Verdict: ir.Reject{With: ir.RejectICMPv6AdminProhibited}},
			{Matches: []ir.Match{ir.ConcatMatch{Family: ir.FamilyIPv4, AddrField: ir.Dst, Proto: ir.ProtoTCP, PortField: ir.Dst, Elems: big[:1]}},
				Verdict: ir.Reject{With: ir.RejectTCPReset}},
		},
	}}}
}

func TestConcatPrint(t *testing.T) {
	var buf bytes.Buffer
	if err := Print(&buf, concatRuleset(5)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`iifname "eth0" ip saddr . tcp dport { 198.18.64.0 . 20000, 198.18.64.0 . 20001, 198.18.64.0 . 20002, 198.18.64.0 . 20003,` + "\n\t\t\t198.18.64.0 . 20004 } counter accept",
		`ip6 daddr . udp sport { fd00::1 . 53, fd00::1 . 443, fd00::2 . 22 } ct state new reject with icmpv6 admin-prohibited`,
		`ip daddr . tcp dport { 198.18.64.0 . 20000 } reject with tcp reset`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("printed ruleset lacks %q:\n%s", want, buf.String())
		}
	}
	bad := []ir.ConcatMatch{
		{Family: ir.FamilyIPv4, Proto: ir.ProtoTCP},
		{Family: ir.FamilyIPv4, Proto: ir.ProtoESP, Elems: []ir.AddrPort{{Addr: netip.MustParseAddr("198.18.0.1"), Port: 1}}},
		{Family: ir.FamilyIPv6, Proto: ir.ProtoTCP, Elems: []ir.AddrPort{{Addr: netip.MustParseAddr("198.18.0.1"), Port: 1}}},
		{Family: ir.FamilyIPv4, Proto: ir.ProtoTCP, Elems: []ir.AddrPort{{Addr: netip.MustParseAddr("198.18.0.2"), Port: 1}, {Addr: netip.MustParseAddr("198.18.0.1"), Port: 1}}},
	}
	for _, m := range bad {
		rs := &ir.Ruleset{Table: "t", Chains: []*ir.Chain{{Name: "c", Rules: []*ir.Rule{{Matches: []ir.Match{m}, Verdict: ir.Accept{}}}}}}
		if err := Print(&bytes.Buffer{}, rs); err == nil {
			t.Errorf("Print accepted %+v", m)
		}
		if _, err := Lower(rs); err == nil {
			t.Errorf("Lower accepted %+v", m)
		}
	}
}

// TestConcatListsLikeNft: concatenations loaded over netlink list exactly
// as `nft -f` of their text does (the equivalence check of
// TestNetlinkListsLikeNft, for the optimiser's IR).
func TestConcatListsLikeNft(t *testing.T) {
	needRoot(t)
	nsText, nsNL := testNetns(t, "concattext"), testNetns(t, "concatnl")
	rs := concatRuleset(5000)
	var buf bytes.Buffer
	if err := Print(&buf, rs); err != nil {
		t.Fatal(err)
	}
	nftIn(t, nsText, buf.Bytes(), "-f", "-")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := testKernel(t, nsNL).Replace(ctx, rs); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	want, got := listTable(t, nsText, rs.Table), listTable(t, nsNL, rs.Table)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("nft list differs (-nft -f, +netlink):\n%s", d)
	}
	if !strings.Contains(got, "198.18.66.185 . 20006") {
		t.Errorf("the last element is missing:\n%.2000s", got)
	}
}
