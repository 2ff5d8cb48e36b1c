package iptables_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/examples"
	"github.com/hostwall/hostwall/iptables"
	"github.com/hostwall/hostwall/model"
)

// ExampleCase is one example policy compiled for one node.
type exampleCase struct {
	name string // golden base name: EXAMPLE or EXAMPLE.NODE
	path string
	node string
}

// exampleCases lists every policy under ../examples (a *.toml file or a
// directory) and every node of it.
func exampleCases(t *testing.T) []exampleCase {
	t.Helper()
	paths, err := examples.Policies("../examples")
	if err != nil {
		t.Fatal(err)
	}
	var out []exampleCase
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".toml")
		pol, diags := model.Load(path)
		if err := diags.Err(); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(pol.Nodes) == 0 {
			out = append(out, exampleCase{name, path, ""})
		}
		for _, n := range pol.Nodes {
			out = append(out, exampleCase{name + "." + n.Name, path, n.Name})
		}
	}
	if len(out) < 5 {
		t.Fatalf("found %d example cases in ../examples, want at least 5", len(out))
	}
	return out
}

func compileExample(t *testing.T, ec exampleCase) *ir.Ruleset {
	t.Helper()
	pol, diags := model.Load(ec.path)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	rs, diags := compiler.Compile(pol, compiler.Options{Node: ec.node})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestExamplesGolden exports every example for every node, both families,
// full and --ipset, with --guard-reject=mark, and compares with testdata/examples/NAME.rules.v4|v6
// (and NAME.ipset.rules.v4|v6, NAME.ipset.v4|v6); -update rewrites them.
func TestExamplesGolden(t *testing.T) {
	for _, ec := range exampleCases(t) {
		for _, fam := range []struct {
			f      ir.Family
			suffix string
		}{{ir.FamilyIPv4, "v4"}, {ir.FamilyIPv6, "v6"}} {
			t.Run(ec.name+"/"+fam.suffix, func(t *testing.T) {
				rs := compileExample(t, ec)
				// Guards that reject are written exactly, with marks.
				opts := iptables.Options{Family: fam.f, GuardReject: iptables.GuardRejectMark}
				var out bytes.Buffer
				if err := iptables.Export(&out, rs, opts); err != nil {
					t.Fatalf("Export: %v", err)
				}
				golden(t, filepath.Join("testdata", "examples", ec.name+".rules."+fam.suffix), out.Bytes())

				var sets, withSets bytes.Buffer
				opts.IPSet = &sets
				if err := iptables.Export(&withSets, rs, opts); err != nil {
					t.Fatalf("Export --ipset: %v", err)
				}
				golden(t, filepath.Join("testdata", "examples", ec.name+".ipset.rules."+fam.suffix), withSets.Bytes())
				golden(t, filepath.Join("testdata", "examples", ec.name+".ipset."+fam.suffix), sets.Bytes())
			})
		}
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if flag.Lookup("update").Value.String() == "true" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", path, diff)
	}
}
