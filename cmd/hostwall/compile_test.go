package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs hostwall with args and returns exit code, stdout, stderr.
func runCLI(args ...string) (int, string, string) {
	var out, errw bytes.Buffer
	code := run(args, Env{Stdout: &out, Stderr: &errw})
	return code, out.String(), errw.String()
}

func TestCompileExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[[policy]]\nname = \"p\"\n  [[policy.in]]\n  service = \"tcp/70000\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // a substring, "" for none expected
		stderr string // a substring
	}{
		{"example compiles", []string{"compile", "../../examples/mgmt-lockdown.toml"}, exitOK, "table inet hostwall {", ""},
		{"nodes without --node lists the nodes", []string{"compile", "../../examples/cluster-roles.toml"}, exitPolicy, "", "choose one with --node: node1, node2, node3, node4"},
		{"--node without [nodes]: no position, the command's name", []string{"compile", "--node", "x", "../../examples/mgmt-lockdown.toml"}, exitPolicy, "", "hostwall: node \"x\" was chosen, but the policy has no [nodes]"},
		{"node chosen", []string{"compile", "--node", "node2", "../../examples/cluster-roles.toml"}, exitOK, "chain input {", ""},
		{"bad policy: position and exit 1", []string{"compile", bad}, exitPolicy, "", bad + ":4:13: "},
		{"missing file", []string{"compile", filepath.Join(dir, "nope.toml")}, exitPolicy, "", "nope.toml"},
		{"usage error", []string{"compile"}, exitUsage, "", "expected"},
		{"unknown flag", []string{"compile", "--bogus", "x.toml"}, exitUsage, "", "unknown flag"},
		{"help shows an example", []string{"compile", "--help"}, exitOK, "Example:", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errs)
			}
			if tt.stdout != "" && !strings.Contains(out, tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, out)
			}
			if tt.stderr != "" && !strings.Contains(errs, tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, errs)
			}
			if code != exitOK && out != "" && tt.name != "help shows an example" {
				t.Errorf("a failed compile printed to stdout:\n%s", out)
			}
		})
	}
}
