package nft

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hostwall/hostwall/compiler/ir"
)

// vmapRuleset dispatches input and output by interface to regular chains.
func vmapRuleset() *ir.Ruleset {
	ssh := ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: []ir.PortRange{{Lo: 22, Hi: 22}}}
	lan := &ir.Chain{Name: "input_iif_1", Rules: []*ir.Rule{
		rule(ir.Accept{}, ir.IfaceMatch{Dir: ir.In, Names: []string{"eth1", "lan-0"}}, ssh),
	}}
	wan := &ir.Chain{Name: "input_iif_2", Rules: []*ir.Rule{
		{Matches: []ir.Match{ir.IfaceMatch{Dir: ir.In, Names: []string{"eth0"}}}, Counter: true, Verdict: ir.Reject{With: ir.RejectICMPXAdminProhibited}},
	}}
	out := &ir.Chain{Name: "output_oif_1", Rules: []*ir.Rule{rule(ir.Drop{}, ir.IfaceMatch{Dir: ir.Out, Names: []string{"wg0"}})}}
	return &ir.Ruleset{Table: "hostwall", Chains: []*ir.Chain{
		{Name: "input", Base: base(ir.HookInput, ir.PriorityFilter, ir.Drop{}), Rules: []*ir.Rule{
			{Verdict: ir.VerdictMap{Dir: ir.In, Elems: []ir.VmapElem{{Name: "eth0", Chain: wan}, {Name: "eth1", Chain: lan}, {Name: "lan-0", Chain: lan}}}},
		}},
		lan, wan,
		{Name: "output", Base: base(ir.HookOutput, ir.PriorityFilter, ir.Accept{}), Rules: []*ir.Rule{
			{Verdict: ir.VerdictMap{Dir: ir.Out, Elems: []ir.VmapElem{{Name: "wg0", Chain: out}}}},
		}},
		out,
	}}
}

func TestPrintVerdictMap(t *testing.T) {
	var buf bytes.Buffer
	if err := Print(&buf, vmapRuleset()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`iifname vmap { "eth0" : jump input_iif_2, "eth1" : jump input_iif_1, "lan-0" : jump input_iif_1 }`,
		`oifname vmap { "wg0" : jump output_oif_1 }`,
		"chain input_iif_1 {",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("printed ruleset lacks %q:\n%s", want, buf.String())
		}
	}
	if _, err := Lower(vmapRuleset()); err != nil {
		t.Errorf("Lower: %v", err)
	}
	// status names the map rule's verdict.
	f := &Fake{}
	if err := f.Replace(context.Background(), vmapRuleset()); err != nil {
		t.Fatal(err)
	}
	tb, err := f.List(context.Background(), "hostwall")
	if err != nil {
		t.Fatal(err)
	}
	if v := tb.Chains[0].Rules[0].Verdict; v != "vmap" {
		t.Errorf("status shows the map rule's verdict as %q, want vmap", v)
	}
}

// Maps the kernel or nft would refuse are refused by both the printer and
// the lowering.
func TestVerdictMapRefused(t *testing.T) {
	stray := &ir.Chain{Name: "stray"}
	for name, mutate := range map[string]func(v *ir.VerdictMap, rs *ir.Ruleset){
		"no elements":    func(v *ir.VerdictMap, _ *ir.Ruleset) { v.Elems = nil },
		"wildcard":       func(v *ir.VerdictMap, _ *ir.Ruleset) { v.Elems[0].Name = "eth*" },
		"long name":      func(v *ir.VerdictMap, _ *ir.Ruleset) { v.Elems[0].Name = "abcdefghijklmnop" },
		"duplicate":      func(v *ir.VerdictMap, _ *ir.Ruleset) { v.Elems[1].Name = v.Elems[0].Name },
		"no chain":       func(v *ir.VerdictMap, _ *ir.Ruleset) { v.Elems[0].Chain = nil },
		"foreign chain":  func(v *ir.VerdictMap, _ *ir.Ruleset) { v.Elems[0].Chain = stray },
		"base chain":     func(v *ir.VerdictMap, rs *ir.Ruleset) { v.Elems[0].Chain = rs.Chains[3] },
		"bad direction":  func(v *ir.VerdictMap, _ *ir.Ruleset) { v.Dir = 7 },
		"injection name": func(v *ir.VerdictMap, _ *ir.Ruleset) { v.Elems[0].Name = "a\" }; drop" },
	} {
		t.Run(name, func(t *testing.T) {
			rs := vmapRuleset()
			v := rs.Chains[0].Rules[0].Verdict.(ir.VerdictMap)
			v.Elems = append([]ir.VmapElem(nil), v.Elems...)
			mutate(&v, rs)
			rs.Chains[0].Rules[0].Verdict = v
			if err := Print(&bytes.Buffer{}, rs); err == nil {
				t.Error("Print accepted it")
			}
			if _, err := Lower(rs); err == nil {
				t.Error("Lower accepted it")
			}
		})
	}
}

// The netlink lowering of a map lists exactly as nft -f of the printed
// text does.
func TestVerdictMapListsLikeNft(t *testing.T) {
	needRoot(t)
	nsText, nsNL := testNetns(t, "vmaptext"), testNetns(t, "vmapnl")
	rs := vmapRuleset()
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
	if !strings.Contains(got, "vmap") {
		t.Errorf("no map in the listing:\n%s", got)
	}
}

// The drift check reads a verdict map back as it compiled it, and sees a
// map that jumps elsewhere.
func TestVerdictMapDiff(t *testing.T) {
	needRoot(t)
	k := testKernel(t, testNetns(t, "vmapdiff"))
	rs := vmapRuleset()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.Replace(ctx, rs); err != nil {
		t.Fatal(err)
	}
	live, err := k.View(ctx, rs.Table)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ViewOf(rs)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(live, want); len(d) != 0 {
		t.Errorf("a freshly applied map differs from its ruleset: %q", d)
	}
	other := vmapRuleset()
	v := other.Chains[0].Rules[0].Verdict.(ir.VerdictMap)
	v.Elems = append([]ir.VmapElem(nil), v.Elems...)
	v.Elems[0].Chain, v.Elems[1].Chain = v.Elems[1].Chain, v.Elems[0].Chain
	other.Chains[0].Rules[0].Verdict = v
	if want, err = ViewOf(other); err != nil {
		t.Fatal(err)
	}
	if d := Diff(live, want); len(d) == 0 {
		t.Error("a map whose elements jump elsewhere shows no drift")
	}
}
