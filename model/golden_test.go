package model

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestInvalidGolden loads each testdata/invalid/<case> directory (its *.toml
// files in lexical order) and compares the sorted diagnostics with want.err.
func TestInvalidGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/invalid/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			_, d := Load(dir)
			if !d.HasErrors() {
				t.Fatalf("Load(%s) reported no errors", dir)
			}
			var b strings.Builder
			for _, x := range d {
				b.WriteString(x.String() + "\n")
			}
			golden := filepath.Join(dir, "want.err")
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("diagnostics differ from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}
