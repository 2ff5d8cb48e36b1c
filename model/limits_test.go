package model

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestLoadLimits: inputs that would take unbounded memory or time are
// refused with a clear limit and a position, never read whole.
func TestLoadLimits(t *testing.T) {
	sparse := func(t *testing.T, path string, size int64) {
		t.Helper()
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil { // sparse: no disk, no time
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // writes list.txt or policy.toml
		group bool                           // the policy uses list.txt
		want  []string                       // fragments of the diags, in order
		max   int                            // at most this many diags
	}{
		{"1 GiB group file", func(t *testing.T, dir string) { sparse(t, filepath.Join(dir, "list.txt"), 1<<30) }, true,
			[]string{"p.toml:2:", "larger than the limit of 67108864 bytes (64 MiB)"}, 1},
		{"1 GiB policy file", func(t *testing.T, dir string) { sparse(t, filepath.Join(dir, "p.toml"), 1<<30) }, false,
			[]string{"p.toml: cannot read policy file: file is larger than the limit of 67108864 bytes (64 MiB)"}, 1},
		{"group file of garbage stops after 50 errors", func(t *testing.T, dir string) {
			writeTestFile(t, filepath.Join(dir, "list.txt"), strings.Repeat("not-an-address!\n", 100000))
		}, true, []string{"list.txt:1:1:", "list.txt:51:1: group \"big\": too many errors"}, maxFileErrors + 1},
		{"more group file entries than the limit", func(t *testing.T, dir string) {
			writeTestFile(t, filepath.Join(dir, "list.txt"), strings.Repeat("198.18.0.1\n", maxGroupFileEntries+10))
		}, true, []string{"list.txt:1048577:1: group \"big\": more than 1048576 addresses"}, 1},
		{"a FIFO is not read", func(t *testing.T, dir string) {
			if err := mkfifo(filepath.Join(dir, "list.txt")); err != nil {
				t.Skip("no mkfifo: ", err)
			}
		}, true, []string{"not a regular file"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pol := filepath.Join(dir, "p.toml")
			if tc.group {
				writeTestFile(t, pol, "[groups]\nbig = { file = \"list.txt\" }\n")
			}
			tc.setup(t, dir)
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			_, d := Load(pol)
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if len(d) == 0 || len(d) > tc.max {
				t.Fatalf("%d diags, want 1 to %d:\n%v", len(d), tc.max, d.Err())
			}
			all := d.Err().Error()
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("diags lack %q:\n%s", w, all)
				}
			}
			// Nothing near the 1 GiB inputs was allocated (the entries
			// case parses 1M addresses on the way to its limit).
			if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<20 && !strings.Contains(tc.name, "entries") {
				t.Errorf("the load allocated %d MiB", grown>>20)
			}
		})
	}
}

func writeTestFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
