package nft

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/model"
)

// FuzzPrint runs any policy through the loader, the compiler and both nft
// outputs. No input panics; whatever compiles prints (the model refused
// every string the printer would refuse), prints the same bytes twice, and
// lowers and encodes into a netlink transaction. The integration suite
// replays this corpus through `nft -c -f` (integration/robust_fuzz_test.go).
func FuzzPrint(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/*.toml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, policy []byte) {
		printPolicy(t, policy)
	})
}

// printPolicy loads and compiles policy (for each of its nodes) and returns
// the nft text of each compiled ruleset; it fails t when a backend refuses
// what the model and compiler accepted.
func printPolicy(t testing.TB, policy []byte) []string {
	t.Helper()
	p, d := model.LoadSources([]model.Source{{Name: "testdata/fuzz-nonexistent/p.toml", Data: policy}})
	if d.HasErrors() {
		return nil
	}
	nodes := p.CompileNodes()
	var out []string
	for _, node := range nodes {
		rs, d := compiler.Compile(p, compiler.Options{Node: node})
		if d.HasErrors() {
			continue
		}
		var a, b bytes.Buffer
		if err := Print(&a, rs); err != nil {
			t.Fatalf("node %q: the model accepted what Print refuses: %v", node, err)
		}
		if err := Print(&b, rs); err != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("node %q: two prints differ (%v)", node, err)
		}
		batch, err := Lower(rs)
		if err != nil {
			t.Fatalf("node %q: the model accepted what Lower refuses: %v", node, err)
		}
		if _, err := ReplaceOps(batch); err != nil {
			t.Fatalf("node %q: encode: %v", node, err)
		}
		out = append(out, a.String())
	}
	return out
}
