// Package examples holds hostwall's example policies. Policies lists them,
// so every test that runs "each example" sees the same set.
package examples

import (
	"os"
	"path/filepath"
	"strings"
)

// Policies returns the example policies under dir, sorted: each *.toml file,
// and each directory that holds *.toml files (a drop-in policy). Other
// entries (e.g. systemd/, test files) are not policies.
func Policies(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.IsDir():
			if m, _ := filepath.Glob(filepath.Join(p, "*.toml")); len(m) > 0 {
				out = append(out, p)
			}
		case strings.HasSuffix(e.Name(), ".toml"):
			out = append(out, p)
		}
	}
	return out, nil
}
