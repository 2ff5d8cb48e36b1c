package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/examples"
)

// examplePolicies lists the examples as POLICY arguments (files and
// directories), relative to this package.
func examplePolicies(t *testing.T) []string {
	t.Helper()
	out, err := examples.Policies("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no examples")
	}
	return out
}

// TestTestExamples: every example's tests pass (exit 0), each example has
// at least one expected accept and one expected drop, and the text output
// matches its golden.
func TestTestExamples(t *testing.T) {
	for _, path := range examplePolicies(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".toml")
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCLI("test", path)
			if code != exitOK {
				t.Errorf("exit %d, want 0\n%s%s", code, out, errs)
			}
			if strings.Contains(out, "FAIL") || !strings.Contains(out, " 0 failed\n") {
				t.Errorf("failing tests:\n%s", out)
			}
			if !strings.Contains(out, "expect accept, got accept") || !strings.Contains(out, "expect drop, got drop") {
				t.Errorf("the example needs a test that expects accept and one that expects drop:\n%s", out)
			}
			checkGolden(t, filepath.Join("testdata", "test", name+".txt"), out)

			code, js, errs := runCLI("test", "--format", "json", path)
			if code != exitOK {
				t.Fatalf("json: exit %d\n%s", code, errs)
			}
			var rep testReport
			if err := json.Unmarshal([]byte(js), &rep); err != nil {
				t.Fatalf("json output does not parse: %v\n%s", err, js)
			}
			if rep.Version != 1 || rep.Failed != 0 || rep.Passed == 0 || len(rep.Tests) != rep.Passed {
				t.Errorf("json report: version %d, %d passed, %d failed, %d tests", rep.Version, rep.Passed, rep.Failed, len(rep.Tests))
			}
			for _, r := range rep.Tests {
				if r.Pos == "" || r.Packet == "" || r.Got != r.Expect || !r.Pass {
					t.Errorf("json test %+v", r)
				}
			}
		})
	}
}

func TestTestJSONGolden(t *testing.T) {
	code, out, errs := runCLI("test", "--format", "json", "../../examples/nodeport-guard.toml")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	checkGolden(t, filepath.Join("testdata", "test", "nodeport-guard.json"), out)
}

// TestTestFailuresAndErrors: failing tests exit 1 and say why; tests that
// name an unknown node or an impossible packet are errors with positions.
func TestTestFailuresAndErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := `
[[policy]]
name = "web"
  [[policy.in]]
  service = "tcp/443"
`
	failing := write("failing.toml", base+`
[[test]]
name   = "https is open"
proto  = "tcp"
src    = "198.18.0.1"
dport  = 443
expect = "accept"

[[test]]
name   = "ssh is open (wrong)"
proto  = "tcp"
src    = "198.18.0.1"
dst    = "198.18.0.2"
dport  = 22
expect = "accept"
`)
	mixed := write("mixed.toml", base+`
[[test]]
name   = "impossible"
proto  = "tcp"
src    = "fd00::1"
dst    = "198.18.0.2"
dport  = 443
expect = "accept"
`)
	nodes := write("nodes.toml", base+`
[nodes]
a = { addresses = ["198.18.0.2"] }
b = { addresses = ["198.18.0.3"] }

[[test]]
name   = "unknown node"
node   = "c"
proto  = "tcp"
src    = "198.18.0.1"
dport  = 443
expect = "accept"

[[test]]
name   = "icmpv6 from IPv4"
node   = "a"
proto  = "icmpv6"
src    = "198.18.0.1"
expect = "accept"
`)
	ok2 := write("twonodes.toml", base+`
[nodes]
a = { addresses = ["198.18.0.2"] }
b = { addresses = ["198.18.0.3"] }

[[test]]
name   = "https on a"
node   = "a"
proto  = "tcp"
src    = "198.18.0.1"
dport  = 443
expect = "accept"

[[test]]
name   = "ssh on b is dropped"
node   = "b"
proto  = "tcp"
src    = "198.18.0.1"
dport  = 22
expect = "drop"
`)
	empty := write("empty.toml", base)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"a failing test fails the command", []string{"test", failing}, exitPolicy,
			[]string{"PASS  https is open  expect accept, got accept  (" + failing + ":4:3 policy \"web\" in[0])",
				"FAIL  ssh is open (wrong)  expect accept, got drop  (defaults.input (default))",
				"      test at " + failing + ":14:1: in tcp 198.18.0.1:40000 -> 198.18.0.2:22 state new",
				"1 passed, 1 failed"},
			[]string{"1 of 2 tests failed"}},
		{"families differ", []string{"test", mixed}, exitPolicy, nil,
			[]string{mixed + ":11:10: ", "different families"}},
		{"unknown node and impossible icmp", []string{"test", nodes}, exitPolicy, nil,
			[]string{nodes + ":13:10: undefined node \"c\"", nodes + ":23:10: proto ipv6-icmp needs an IPv6 src"}},
		{"--node selects the tests of a node", []string{"test", "--node", "b", ok2}, exitOK,
			[]string{"PASS  ssh on b is dropped", "1 passed, 0 failed"}, nil},
		{"all nodes", []string{"test", "--all-nodes", ok2}, exitOK,
			[]string{"PASS  https on a", "PASS  ssh on b is dropped", "2 passed, 0 failed"}, nil},
		{"--node of no node", []string{"test", "--node", "zz", ok2}, exitPolicy, nil,
			[]string{`unknown node "zz"; the policy's nodes are: a, b`}},
		{"--node and --all-nodes", []string{"test", "--node", "a", "--all-nodes", ok2}, exitUsage, nil, []string{"--node", "--all-nodes"}},
		{"no tests", []string{"test", empty}, exitOK, []string{"0 passed, 0 failed"}, []string{"no [[test]]"}},
		{"bad format", []string{"test", "--format", "xml", ok2}, exitUsage, nil, []string{"--format"}},
		{"help", []string{"test", "--help"}, exitOK, []string{"Example:"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errs)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errs, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errs)
				}
			}
		})
	}
}
