// Package examples holds hostwall's example policies; this test keeps them
// honest: every example loads and compiles (for each of its nodes), every
// [[test]] it carries passes against the compiled ruleset, each example
// tests both an accept and a drop over IPv4 and IPv6, and nothing in it
// uses an address outside the lab ranges 198.18.0.0/15 and fd00::/8.
package examples

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
	"go4.org/netipx"
)

// labRanges are the only addresses examples may use: the integration lab
// replays their tests with real packets inside these ranges only.
var labRanges = []netip.Prefix{
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("fd00::/8"),
}

// exampleCase is one example: a .toml file or a directory of drop-ins.
type exampleCase struct {
	name string // file or directory name
	path string
}

// cases lists the examples in this directory, in lexical order.
func cases(t *testing.T) []exampleCase {
	t.Helper()
	paths, err := Policies(".")
	if err != nil {
		t.Fatal(err)
	}
	var out []exampleCase
	for _, p := range paths {
		out = append(out, exampleCase{name: p, path: p})
	}
	if len(out) < 6 {
		t.Fatalf("found %d examples, want at least 6", len(out))
	}
	return out
}

// verdictAction maps a simulator verdict to the action a test expects.
func verdictAction(v ir.Verdict) (model.Action, bool) {
	switch v.(type) {
	case ir.Accept:
		return model.ActionAccept, true
	case ir.Drop:
		return model.ActionDrop, true
	case ir.Reject:
		return model.ActionReject, true
	}
	return 0, false
}

var actionNames = []string{"accept", "drop", "reject"}

// TestExamplesPass compiles every example for each node its tests name
// and evaluates each [[test]] with ir.Eval, as `hostwall test` does.
func TestExamplesPass(t *testing.T) {
	for _, ex := range cases(t) {
		t.Run(ex.name, func(t *testing.T) {
			p, diags := model.Load(ex.path)
			if err := diags.Err(); err != nil {
				t.Fatalf("load: %v", err)
			}
			rulesets := map[string]*ir.Ruleset{}
			ruleset := func(node string) *ir.Ruleset {
				if rs, ok := rulesets[node]; ok {
					return rs
				}
				rs, diags := compiler.Compile(p, compiler.Options{Node: node})
				if err := diags.Err(); err != nil {
					t.Fatalf("compile for node %q: %v", node, err)
				}
				rulesets[node] = rs
				return rs
			}
			if len(p.Tests) == 0 {
				t.Fatal("the example has no [[test]]")
			}
			// What the tests cover: expected action x family.
			covered := map[string]bool{}
			for _, x := range p.Tests {
				rs := ruleset(x.Node)
				pkt := compiler.PacketOfTest(p, x)
				res := ir.Eval(rs, pkt)
				if res.Err != nil {
					t.Errorf("%s: test %q: eval: %v", x.Pos, x.Name, res.Err)
					continue
				}
				got, ok := verdictAction(res.Verdict)
				if !ok {
					t.Errorf("%s: test %q: verdict %T is not accept, drop or reject", x.Pos, x.Name, res.Verdict)
					continue
				}
				if got != x.Expect {
					t.Errorf("%s: test %q (%s): got %s, want %s", x.Pos, x.Name, pkt, actionNames[got], actionNames[x.Expect])
				}
				fam := "ipv4"
				if x.Src.Is6() {
					fam = "ipv6"
				}
				covered[actionNames[x.Expect]+"/"+fam] = true
				covered[actionNames[x.Expect]] = true
				covered[fam] = true
			}
			for _, want := range []string{"accept", "drop", "ipv4", "ipv6"} {
				if !covered[want] {
					t.Errorf("no test covers %s", want)
				}
			}
		})
	}
}

// TestExamplesCompileForEveryNode compiles each example for every node of
// its [[nodes]] (or once without), twice, and checks that the output is
// byte-identical and contains the policy's table.
func TestExamplesCompileForEveryNode(t *testing.T) {
	for _, ex := range cases(t) {
		t.Run(ex.name, func(t *testing.T) {
			p, diags := model.Load(ex.path)
			if err := diags.Err(); err != nil {
				t.Fatalf("load: %v", err)
			}
			nodes := p.CompileNodes()
			for _, node := range nodes {
				var outs [2][]byte
				for i := range outs {
					rs, diags := compiler.Compile(p, compiler.Options{Node: node})
					if err := diags.Err(); err != nil {
						t.Fatalf("compile for node %q: %v", node, err)
					}
					var buf bytes.Buffer
					if err := nft.Print(&buf, rs); err != nil {
						t.Fatalf("print for node %q: %v", node, err)
					}
					outs[i] = buf.Bytes()
				}
				if !bytes.Equal(outs[0], outs[1]) {
					t.Errorf("node %q: two compiles differ", node)
				}
				if !bytes.Contains(outs[0], []byte("table inet "+p.Settings.Table+" {")) {
					t.Errorf("node %q: output has no table inet %s", node, p.Settings.Table)
				}
			}
		})
	}
}

// inLab reports whether every address of r is in the lab ranges.
func inLab(r netipx.IPRange) bool {
	for _, pfx := range labRanges {
		if pfx.Contains(r.From()) && pfx.Contains(r.To()) {
			return true
		}
	}
	return false
}

// TestExamplesUseLabAddresses checks every address an example names:
// group members (files included), [nodes], rule and guard literals and
// test packets.
func TestExamplesUseLabAddresses(t *testing.T) {
	for _, ex := range cases(t) {
		t.Run(ex.name, func(t *testing.T) {
			p, diags := model.Load(ex.path)
			if err := diags.Err(); err != nil {
				t.Fatalf("load: %v", err)
			}
			check := func(what string, pos model.Pos, r netipx.IPRange) {
				if !inLab(r) {
					t.Errorf("%s: %s %s is outside 198.18.0.0/15 and fd00::/8", pos, what, r)
				}
			}
			for _, g := range p.Groups {
				if g.Addrs != nil {
					for _, r := range g.Addrs.Ranges() {
						check("group "+g.Name+" member", g.Pos, r)
					}
				}
			}
			for _, n := range p.Nodes {
				for _, a := range n.Addresses {
					check("node "+n.Name+" address", n.Pos, netipx.IPRangeFrom(a, a))
				}
			}
			literals := func(spec model.AddrSpec) {
				for _, it := range spec.Items {
					if it.Kind == model.AddrLiteral {
						check("literal", it.Pos, it.Range)
					}
				}
			}
			for _, pb := range p.Policies {
				for _, rules := range [][]*model.Rule{pb.In, pb.Out, pb.Forward} {
					for _, r := range rules {
						literals(r.From)
						literals(r.To)
					}
				}
			}
			for _, g := range p.Guards {
				literals(g.From)
			}
			for _, n := range p.NATs {
				literals(n.From)
				if n.ToAddr.IsValid() {
					check("nat target", n.Pos, netipx.IPRangeFrom(n.ToAddr, n.ToAddr))
				}
			}
			for _, x := range p.Tests {
				for _, e := range []*model.NATExpect{x.ExpectDNAT, x.ExpectSNAT} {
					if e != nil && e.Addr.IsValid() {
						check("test nat expectation", e.Pos, netipx.IPRangeFrom(e.Addr, e.Addr))
					}
				}
				check("test source", x.Pos, netipx.IPRangeFrom(x.Src, x.Src))
				if x.Dst.IsValid() {
					check("test destination", x.Pos, netipx.IPRangeFrom(x.Dst, x.Dst))
				}
			}
		})
	}
}

// TestExamplesExplainThemselves checks that every example's first file
// opens with a comment block that says what the situation is.
func TestExamplesExplainThemselves(t *testing.T) {
	for _, ex := range cases(t) {
		t.Run(ex.name, func(t *testing.T) {
			path := ex.path
			if fi, err := os.Stat(path); err == nil && fi.IsDir() {
				matches, err := filepath.Glob(filepath.Join(path, "*.toml"))
				if err != nil || len(matches) == 0 {
					t.Fatalf("directory example without *.toml files")
				}
				path = matches[0] // the first file in load order
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sc := bufio.NewScanner(f)
			comments := 0
			for sc.Scan() && strings.HasPrefix(sc.Text(), "#") {
				comments++
			}
			if comments < 5 {
				t.Errorf("%s opens with %d comment lines; explain the situation and the policy first", path, comments)
			}
		})
	}
}
