package compiler_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/model"
)

// lintText loads the policy files or directories and lints them as
// `hostwall lint` does, one diagnostic per line.
func lintText(paths ...string) (string, model.Diags) {
	p, diags := model.Load(paths...)
	for i := range diags {
		if diags[i].Severity == model.Error {
			diags[i].ID = compiler.LintError
		}
	}
	if !diags.HasErrors() {
		diags = append(diags, compiler.Lint(p, compiler.LintOptions{})...)
		diags.Sort()
	}
	var b strings.Builder
	for _, d := range diags {
		fmt.Fprintf(&b, "%s: %s %s: %s\n", d.Pos, d.Severity, d.ID, d.Msg)
	}
	return b.String(), diags
}

// TestGoldenLint lints every testdata/lint/<case>/ directory (its *.toml
// files, in lexical order) and compares the diagnostics, with ids and
// positions, with want.txt. Every lint id must be covered by some case.
func TestGoldenLint(t *testing.T) {
	dirs, err := filepath.Glob("testdata/lint/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 40 {
		t.Errorf("found %d lint cases, want at least 40", len(dirs))
	}
	covered := map[string]int{}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got, diags := lintText(dir)
			for _, d := range diags {
				covered[d.ID]++
			}
			want := filepath.Join(dir, "want.txt")
			if *update {
				if err := os.WriteFile(want, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			w, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(w) {
				t.Errorf("diagnostics differ from %s\n--- got:\n%s--- want:\n%s", want, got, w)
			}
		})
	}
	ids := []string{compiler.LintError, compiler.LintShadowed, compiler.LintRedundant, compiler.LintEmptyMatch,
		compiler.LintSSHLockout, compiler.LintNoND, compiler.LintEmptyGroup, compiler.LintGroupOverlap,
		compiler.LintUnusedZone, compiler.LintUnusedGroup, compiler.LintUnusedService}
	for _, id := range ids {
		if covered[id] == 0 {
			t.Errorf("no golden case covers %s", id)
		}
	}
	t.Logf("%d cases; diagnostics per id: %v", len(dirs), covered)
}

// TestLintExamples: every example lints without errors; the warnings are
// logged (the examples' owner decides about them; scripts/test.sh runs
// `hostwall lint --strict` on each).
func TestLintExamples(t *testing.T) {
	for _, path := range examplePolicies(t) {
		out, diags := lintText(path)
		if diags.HasErrors() {
			t.Errorf("%s: lint errors:\n%s", path, out)
		}
		if out != "" {
			t.Logf("%s:\n%s", path, out)
		}
	}
}

// TestLintDeterminism: the same policy lints to the same bytes.
func TestLintDeterminism(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/lint/*")
	for _, dir := range dirs {
		a, _ := lintText(dir)
		b, _ := lintText(dir)
		if a != b {
			t.Errorf("%s: two lints differ:\n%s\n---\n%s", dir, a, b)
		}
	}
}

// TestLintNodeOption: naming a node lints only that node; naming an
// unknown one is an error.
func TestLintNodeOption(t *testing.T) {
	src := `
[nodes]
a = { addresses = ["198.18.0.1"], roles = ["web"] }
b = { addresses = ["198.18.0.2"], roles = ["db"] }

[[policy]]
name = "p"
  [[policy.in]]
  service = "tcp/22"
  [[policy.in]]
  service = "tcp/22"
  roles = ["web"]
`
	p, diags := model.LoadSources([]model.Source{{Name: "n.toml", Data: []byte(src)}})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		node string
		want []string // substrings, one per diagnostic
	}{
		{"", []string{"HW001 n.toml:10:3 (on node a)"}},
		{"a", []string{"HW001 n.toml:10:3"}},
		{"b", nil},
		{"c", []string{"HW000"}},
	}
	for _, tt := range tests {
		d := compiler.Lint(p, compiler.LintOptions{Node: tt.node})
		var got []string
		for _, x := range d {
			got = append(got, x.ID+" "+x.Pos.String()+" "+x.Msg)
		}
		if len(got) != len(tt.want) {
			t.Errorf("node %q: got %q, want %d diagnostics like %q", tt.node, got, len(tt.want), tt.want)
			continue
		}
		for i, w := range tt.want {
			id, rest, _ := strings.Cut(w, " ")
			if !strings.HasPrefix(got[i], id) {
				t.Errorf("node %q: got %q, want id %s", tt.node, got[i], id)
			}
			pos, suffix, _ := strings.Cut(rest, " ")
			if pos != "" && !strings.Contains(got[i], pos) {
				t.Errorf("node %q: got %q, want position %s", tt.node, got[i], pos)
			}
			if suffix != "" && !strings.HasSuffix(got[i], suffix) {
				t.Errorf("node %q: got %q, want it to end in %q", tt.node, got[i], suffix)
			}
			if suffix == "" && strings.Contains(got[i], "(on node") {
				t.Errorf("node %q: got %q, want no node list", tt.node, got[i])
			}
		}
	}
}

// genLintPolicy writes a 1,000-rule policy like a large site's: many
// hosts, services and zones, some overlap.
func genLintPolicy(n int) []byte {
	var b bytes.Buffer
	b.WriteString("[zones]\n")
	for z := range 8 {
		fmt.Fprintf(&b, "z%d = { interfaces = [\"eth%d\", \"vlan%d*\"] }\n", z, z, z)
	}
	b.WriteString("[groups]\n")
	for g := range 40 {
		fmt.Fprintf(&b, "g%d = [\"10.%d.0.0/16\", \"fd00:%x::/48\", \"192.0.2.%d\"]\n", g, g, g, g)
	}
	b.WriteString("[[policy]]\nname = \"big\"\n")
	for i := range n {
		fmt.Fprintf(&b, "  [[policy.in]]\n  zone = \"z%d\"\n  from = \"g%d\"\n  service = [\"tcp/%d\", \"udp/%d-%d\"]\n", i%8, i%40, 1000+i, 2000+i, 2010+i)
		if i%7 == 0 {
			b.WriteString("  action = \"drop\"\n")
		}
		if i%11 == 0 {
			b.WriteString("  state = \"new\"\n")
		}
	}
	return b.Bytes()
}

func BenchmarkLint1000(b *testing.B) {
	p, diags := model.LoadSources([]model.Source{{Name: "big.toml", Data: genLintPolicy(1000)}})
	if err := diags.Err(); err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, pb := range p.Policies {
		n += len(pb.In)
	}
	if n != 1000 {
		b.Fatalf("generated %d rules, want 1000", n)
	}
	b.ResetTimer()
	for b.Loop() {
		d := compiler.Lint(p, compiler.LintOptions{})
		if d.HasErrors() {
			b.Fatal(d.Err())
		}
	}
}
