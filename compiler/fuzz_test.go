package compiler

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/internal/text"
	"github.com/hostwall/hostwall/model"
	"go4.org/netipx"
)

// fuzzDir is a fixed, empty directory: `file =` group lists of fuzzed
// policies can't reach real files by relative path.
const fuzzDir = "testdata/fuzz-nonexistent"

// FuzzCompile loads and compiles any policy for each of its nodes. No
// input panics; a policy the model accepts compiles to a ruleset whose
// every string passes the shared checks of package text (so no backend
// refuses it), compiling twice gives equal rulesets, and ir.Eval decides
// random packets as the plain first-match Reference does.
func FuzzCompile(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/*.toml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, policy []byte) {
		p, d := model.LoadSources([]model.Source{{Name: fuzzDir + "/p.toml", Data: policy}})
		if d.HasErrors() {
			return
		}
		nodes := p.CompileNodes()
		for _, node := range nodes {
			rs, d := Compile(p, Options{Node: node})
			if d.HasErrors() {
				for _, x := range d {
					if x.Severity == model.Error && x.Pos.File == "" {
						t.Errorf("compile error without a file: %v", x)
					}
				}
				return // e.g. a feature the compiler refuses with a position
			}
			checkRulesetStrings(t, rs)
			again, _ := Compile(p, Options{Node: node})
			if diff := cmp.Diff(rs, again, cmp.Comparer(func(a, b netipx.IPRange) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Fatalf("node %q: two compiles differ:\n%s", node, diff)
			}
		}
		differential(t, "fuzz", string(policy), p, rand.New(rand.NewPCG(uint64(len(policy)), 9)), 20, map[string]int{})
	})
}

// checkRulesetStrings holds every string of rs to package text's checks:
// what the model accepted, every backend must accept.
func checkRulesetStrings(t *testing.T, rs *ir.Ruleset) {
	t.Helper()
	if err := text.Table(rs.Table); err != nil {
		t.Errorf("table %q %v", rs.Table, err)
	}
	for _, s := range rs.Sets {
		if err := text.Ident(s.Name, 255); err != nil {
			t.Errorf("set %q: %v", s.Name, err)
		}
		if err := text.Comment(s.Comment); err != nil {
			t.Errorf("set %q comment %q %v", s.Name, s.Comment, err)
		}
	}
	for _, c := range rs.Chains {
		if err := text.Ident(c.Name, 255); err != nil {
			t.Errorf("chain %q: %v", c.Name, err)
		}
		for _, r := range c.Rules {
			if err := text.Comment(r.Comment); err != nil {
				t.Errorf("%s: comment %q %v", r.Source.What, r.Comment, err)
			}
			if r.Log != nil {
				if err := text.LogPrefix(r.Log.Prefix); err != nil {
					t.Errorf("%s: log prefix %q %v", r.Source.What, r.Log.Prefix, err)
				}
			}
			for _, m := range r.Matches {
				if im, ok := m.(ir.IfaceMatch); ok {
					for _, n := range im.Names {
						if err := text.Iface(n, true); err != nil {
							t.Errorf("%s: interface %q %v", r.Source.What, n, err)
						}
					}
				}
			}
		}
	}
}
