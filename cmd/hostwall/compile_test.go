package main

import (
	"bytes"
	"encoding/json"
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

// TestCompileJSON: the JSON form lists the same sets and rules as the nft
// text, each rule with the position of the TOML rule it came from.
func TestCompileJSON(t *testing.T) {
	for _, path := range examplePolicies(t) {
		args := []string{"compile", path}
		if strings.Contains(path, "cluster-roles") {
			args = []string{"compile", "--node", "node1", path}
		} else if strings.Contains(path, "nodeport-guard") {
			args = []string{"compile", "--node", "worker1", path}
		}
		code, text, errs := runCLI(args...)
		if code != exitOK {
			t.Fatalf("%s: exit %d\n%s", path, code, errs)
		}
		code, js, errs := runCLI(append([]string{"compile", "--format", "json"}, args[1:]...)...)
		if code != exitOK {
			t.Fatalf("%s json: exit %d\n%s", path, code, errs)
		}
		var got compiledJSON
		if err := json.Unmarshal([]byte(js), &got); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, js)
		}
		rules, positioned := 0, 0
		for _, c := range got.Chains {
			for _, r := range c.Rules {
				rules++
				if !strings.Contains(text, "\t\t"+r.Nft+"\n") {
					t.Errorf("%s: rule %q of chain %s is not in the nft text", path, r.Nft, c.Name)
				}
				if r.Source.What == "" {
					t.Errorf("%s: rule %q has no source", path, r.Nft)
				}
				if strings.HasPrefix(r.Source.What, "policy ") && r.Source.Line > 0 {
					positioned++
				}
			}
		}
		if want := chainRuleLines(text); rules != want {
			t.Errorf("%s: %d rules in json, %d in the nft text", path, rules, want)
		}
		if positioned == 0 {
			t.Errorf("%s: no rule carries the position of a policy rule", path)
		}
		if len(got.Sets) != strings.Count(text, "\n\tset ") {
			t.Errorf("%s: %d sets in json, %d in the nft text", path, len(got.Sets), strings.Count(text, "\n\tset "))
		}
	}
}

// chainRuleLines counts the rule lines inside chain blocks of nft text.
func chainRuleLines(text string) int {
	n, in := 0, false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, "\tchain "):
			in = true
		case in && l == "\t}":
			in = false
		case in && strings.HasPrefix(l, "\t\t") && !strings.HasPrefix(l, "\t\ttype "):
			n++
		}
	}
	return n
}
