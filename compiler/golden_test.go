package compiler_test

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/examples"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

var update = flag.Bool("update", false, "rewrite golden files")

// examples returns the policies under ../examples: *.toml files and
// directories (drop-in style).
func examplePolicies(t *testing.T) []string {
	t.Helper()
	out, err := examples.Policies("../examples")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 5 {
		t.Fatalf("found %d examples in ../examples, want at least 5", len(out))
	}
	return out
}

// compileAll compiles a policy for each of its nodes (or once when it has
// none) and returns the printed rulesets by node name.
func compileAll(t *testing.T, paths ...string) map[string][]byte {
	t.Helper()
	pol, diags := model.Load(paths...)
	if err := diags.Err(); err != nil {
		t.Fatalf("load %v:\n%v", paths, err)
	}
	nodes := pol.CompileNodes()
	out := map[string][]byte{}
	for _, n := range nodes {
		rs, diags := compiler.Compile(pol, compiler.Options{Node: n})
		if err := diags.Err(); err != nil {
			t.Fatalf("compile %v for node %q:\n%v", paths, n, err)
		}
		var buf bytes.Buffer
		if err := nft.Print(&buf, rs); err != nil {
			t.Fatalf("print %v for node %q: %v", paths, n, err)
		}
		out[n] = buf.Bytes()
	}
	return out
}

// TestGoldenExamples compiles every example for every node and compares
// with testdata/examples/NAME[.NODE].nft (go test -update rewrites them).
// Integration re-checks each of these with nft -c -f and nft -f.
func TestGoldenExamples(t *testing.T) {
	for _, ex := range examplePolicies(t) {
		name := strings.TrimSuffix(filepath.Base(ex), ".toml")
		for node, got := range compileAll(t, ex) {
			golden := name
			if node != "" {
				golden += "." + node
			}
			path := filepath.Join("testdata", "examples", golden+".nft")
			t.Run(golden, func(t *testing.T) {
				if *update {
					if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./compiler -run Golden -update)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the compiled output; run with -update if the change is meant\n--- got\n%s", path, got)
				}
			})
		}
	}
}

// TestDeterminism compiles every example twice and compares bytes; then
// copies each example directory into a temporary one with its files created
// in a random order: a directory's files merge in lexical order, so the
// output must not change.
func TestDeterminism(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dirs := 0
	for _, ex := range examplePolicies(t) {
		first, second := compileAll(t, ex), compileAll(t, ex)
		for node := range first {
			if !bytes.Equal(first[node], second[node]) {
				t.Errorf("%s node %q: two compiles differ", ex, node)
			}
		}
		st, err := os.Stat(ex)
		if err != nil || !st.IsDir() {
			continue
		}
		dirs++
		entries, err := os.ReadDir(ex)
		if err != nil {
			t.Fatal(err)
		}
		rng.Shuffle(len(entries), func(i, j int) { entries[i], entries[j] = entries[j], entries[i] })
		tmp := t.TempDir()
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(ex, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tmp, e.Name()), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		shuffled := compileAll(t, tmp)
		for node := range first {
			// Positions name the files, which live elsewhere now.
			want := bytes.ReplaceAll(first[node], []byte(ex+"/"), []byte(tmp+"/"))
			if !bytes.Equal(want, shuffled[node]) {
				t.Errorf("%s node %q: output changed when the directory's files were created in another order", ex, node)
			}
		}
	}
	if dirs == 0 {
		t.Error("no example is a directory; the shuffled-directory check ran on nothing")
	}
}
