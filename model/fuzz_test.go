package model

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzLoadSources checks that no input panics the loader and that the
// diagnostics always come back sorted, each with a file.
func FuzzLoadSources(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*/*.toml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, []byte("[groups]\nx = [\"10.0.0.1\"]\n"))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		// A fixed, empty directory: `file =` lists can't reach real files
		// by relative path.
		dir := "testdata/fuzz-nonexistent"
		_, d := LoadSources([]Source{{Name: dir + "/a.toml", Data: a}, {Name: dir + "/b.toml", Data: b}})
		sorted := slices.IsSortedFunc(d, func(x, y Diag) int {
			return cmp.Or(x.Pos.Compare(y.Pos), cmp.Compare(x.Severity, y.Severity), cmp.Compare(x.Msg, y.Msg))
		})
		if !sorted {
			t.Errorf("diags not sorted:\n%v", d.Err())
		}
		for _, x := range d {
			if x.Pos.File == "" {
				t.Errorf("diag without a file: %v", x)
			}
		}
	})
}
