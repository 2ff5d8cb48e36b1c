package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// update rewrites the golden files of this package's tests instead of
// comparing with them: go test ./cmd/hostwall -update.
var update = flag.Bool("update", false, "rewrite golden files")

// checkGolden compares got with the golden file at path (under testdata/),
// or rewrites it with -update.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run go test -update to create it)", path, err)
	}
	if string(want) != got {
		t.Errorf("output differs from %s (run go test -update after checking the change):\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}
