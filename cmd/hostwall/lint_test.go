package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLintCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	clean := write("clean.toml", "[[policy]]\nname = \"p\"\n  [[policy.in]]\n  service = \"tcp/22\"\n")
	warn := write("warn.toml", "[[policy]]\nname = \"p\"\n  [[policy.in]]\n  service = \"tcp/22\"\n  [[policy.in]]\n  service = \"tcp/22\"\n")
	bad := write("bad.toml", "[[policy]]\nname = \"p\"\n  [[policy.in]]\n  service = \"tcp/70000\"\n")
	nodes := write("nodes.toml", "[nodes]\na = { addresses = [\"198.18.0.1\"], roles = [\"web\"] }\nb = { addresses = [\"198.18.0.2\"] }\n"+
		"[[policy]]\nname = \"p\"\n  [[policy.in]]\n  service = \"tcp/22\"\n  [[policy.in]]\n  service = \"tcp/22\"\n  roles = [\"web\"]\n")

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string // substrings
		stderr string
	}{
		{"clean", []string{"lint", clean}, exitOK, nil, ""},
		{"clean strict", []string{"lint", "--strict", clean}, exitOK, nil, ""},
		{"warning passes without --strict", []string{"lint", warn}, exitOK, []string{warn + ":5:3: warning HW001: "}, ""},
		{"warning fails with --strict", []string{"lint", "--strict", warn}, exitPolicy, []string{"HW001"}, "1 warning"},
		{"errors exit 1 with position and id", []string{"lint", bad}, exitPolicy, []string{bad + ":4:13: error HW000: "}, "1 error"},
		{"errors of every file at once", []string{"lint", bad, warn, bad}, exitPolicy, []string{bad + ":4:13", "duplicate policy"}, ""},
		{"github annotations", []string{"lint", "--format", "github", warn}, exitOK,
			[]string{"::warning file=" + warn + ",line=5,col=3,title=HW001::HW001: rule never decides"}, ""},
		{"github error", []string{"lint", "--format=github", bad}, exitPolicy, []string{"::error file=" + bad + ",line=4,col=13,title=HW000::"}, ""},
		{"every node by default", []string{"lint", nodes}, exitOK, []string{"(on node a)"}, ""},
		{"--all-nodes", []string{"lint", "--all-nodes", nodes}, exitOK, []string{"(on node a)"}, ""},
		{"one node", []string{"lint", "--node", "b", nodes}, exitOK, nil, ""},
		{"unknown node", []string{"lint", "--node", "zz", nodes}, exitPolicy, []string{"unknown node \"zz\""}, ""},
		{"--node and --all-nodes", []string{"lint", "--node", "a", "--all-nodes", nodes}, exitUsage, nil, "--all-nodes"},
		{"bad format", []string{"lint", "--format", "xml", clean}, exitUsage, nil, "format"},
		{"no policy", []string{"lint"}, exitUsage, nil, "expected"},
		{"help shows an example", []string{"lint", "--help"}, exitOK, []string{"Example:", "docs/lint.md"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errs)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			if tt.stdout == nil && tt.code != exitUsage && tt.name != "help shows an example" && out != "" {
				t.Errorf("want no output, got:\n%s", out)
			}
			if tt.stderr != "" && !strings.Contains(errs, tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, errs)
			}
		})
	}
}

// TestLintJSON checks the documented schema (docs/lint.md).
func TestLintJSON(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "p.toml")
	if err := os.WriteFile(p, []byte("[zones]\nspare = { interfaces = [\"eth9\"] }\n[[policy]]\nname = \"p\"\n  [[policy.in]]\n  service = \"tcp/22\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path          string
		errors, warns int
		first         lintDiagJSON
		wantCode      int
	}{
		{p, 0, 1, lintDiagJSON{File: p, Line: 2, Col: 1, Severity: "warning", ID: "HW008"}, exitOK},
		{filepath.Join(dir, "missing.toml"), 1, 0, lintDiagJSON{File: filepath.Join(dir, "missing.toml"), Severity: "error", ID: "HW000"}, exitPolicy},
	} {
		code, out, errs := runCLI("lint", "--format", "json", tc.path)
		if code != tc.wantCode {
			t.Errorf("%s: exit %d, want %d (%s)", tc.path, code, tc.wantCode, errs)
		}
		var got lintJSON
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%s: output is not JSON: %v\n%s", tc.path, err, out)
		}
		if got.Errors != tc.errors || got.Warnings != tc.warns || len(got.Diagnostics) != tc.errors+tc.warns {
			t.Fatalf("%s: got %+v, want %d errors and %d warnings", tc.path, got, tc.errors, tc.warns)
		}
		d := got.Diagnostics[0]
		if d.Message == "" {
			t.Errorf("%s: empty message", tc.path)
		}
		d.Message = ""
		if d != tc.first {
			t.Errorf("%s: got %+v, want %+v", tc.path, d, tc.first)
		}
	}
	// A clean policy is an empty list, not null.
	clean := filepath.Join(dir, "clean.toml")
	if err := os.WriteFile(clean, []byte("[[policy]]\nname = \"p\"\n  [[policy.in]]\n  service = \"tcp/22\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, out, _ := runCLI("lint", "--format", "json", clean); !strings.Contains(out, `"diagnostics": []`) {
		t.Errorf("clean policy: want an empty diagnostics list, got:\n%s", out)
	}
}

// TestLintExamplesCommand: every example lints without errors.
func TestLintExamplesCommand(t *testing.T) {
	paths := examplePolicies(t)
	if len(paths) < 5 {
		t.Fatalf("found %d examples", len(paths))
	}
	for _, p := range paths {
		code, out, errs := runCLI("lint", p)
		if code != exitOK {
			t.Errorf("%s: exit %d\n%s%s", p, code, out, errs)
		}
	}
}
