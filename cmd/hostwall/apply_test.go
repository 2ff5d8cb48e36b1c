package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/nft"
	"golang.org/x/sys/unix"
)

const nodesPolicy = `
[nodes]
node1 = { addresses = ["198.18.0.11"], roles = ["web"] }
node2 = { addresses = ["198.18.0.12", "fd00:10::12"], roles = ["db"] }

[[policy]]
name = "web"
roles = ["web"]
  [[policy.in]]
  service = "tcp/80"
  comment = "http"
`

func writePolicy(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func addrsOf(ss ...string) func(string) ([]netip.Addr, error) {
	return func(string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out, nil
	}
}

// exitOf runs cmd.Run and maps its error to the exit code as main does.
func exitOf(t *testing.T, run func(*Env) error) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &errb}
	code := exitOK
	if err := run(env); err != nil {
		code = report(&errb, err)
	}
	return code, out.String(), errb.String()
}

func TestApplyDetectsNode(t *testing.T) {
	pol := writePolicy(t, nodesPolicy)
	for _, tc := range []struct {
		name     string
		node     string
		addrs    []string
		wantCode int
		wantErr  string
		wantRule bool // node1 has the web rule
	}{
		{"by address", "", []string{"127.0.0.1", "198.18.0.11"}, exitOK, "", true},
		{"by IPv6 address", "", []string{"fd00:10::12"}, exitOK, "", false},
		{"--node overrides", "node2", []string{"198.18.0.11"}, exitOK, "", false},
		{"no match lists nodes", "", []string{"198.18.9.9"}, exitPolicy, "nodes: node1, node2", false},
		{"two matches", "", []string{"198.18.0.11", "198.18.0.12"}, exitPolicy, "node1, node2 all have", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &nft.Fake{}
			c := &ApplyCmd{Node: tc.node, Policy: []string{pol}, kernel: f, addrs: addrsOf(tc.addrs...)}
			code, _, stderr := exitOf(t, c.Run)
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tc.wantCode, tc.wantErr)
			}
			if code != exitOK {
				if len(f.Tables) != 0 {
					t.Error("a failed apply changed the kernel")
				}
				return
			}
			st, err := f.List(t.Context(), "hostwall")
			if err != nil || st == nil {
				t.Fatalf("List = %v, %v", st, err)
			}
			found := false
			for _, ch := range st.Chains {
				for _, r := range ch.Rules {
					if r.Comment == "http" {
						found = true
					}
				}
			}
			if found != tc.wantRule {
				t.Errorf("web rule present = %v, want %v", found, tc.wantRule)
			}
		})
	}
}

func TestApplyKernelFailureExit3(t *testing.T) {
	pol := writePolicy(t, nodesPolicy)
	f := &nft.Fake{FailReplace: &nft.OpError{Op: "add rule to chain input (rule 7)", Err: unix.EINVAL}}
	c := &ApplyCmd{Node: "node1", Policy: []string{pol}, kernel: f}
	code, _, stderr := exitOf(t, c.Run)
	if code != exitSystem {
		t.Errorf("exit %d, want %d", code, exitSystem)
	}
	if want := "apply: add rule to chain input (rule 7): netlink: invalid argument"; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	var oe *nft.OpError
	if err := c.Run(&Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}); !errors.As(err, &oe) || !errors.Is(err, unix.EINVAL) {
		t.Errorf("error %v does not wrap the OpError and errno", err)
	}
}

func TestApplyDryRunTouchesNothing(t *testing.T) {
	pol := writePolicy(t, nodesPolicy)
	f := &nft.Fake{}
	c := &ApplyCmd{Node: "node1", DryRun: true, Policy: []string{pol}, kernel: f}
	code, out, stderr := exitOf(t, c.Run)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if len(f.Calls) != 0 {
		t.Errorf("dry run called the kernel: %v", f.Calls)
	}
	if !strings.Contains(out, "table inet hostwall {") || !strings.Contains(out, `comment "http"`) {
		t.Errorf("dry run printed:\n%s", out)
	}
}

func TestFlushAndStatus(t *testing.T) {
	pol := writePolicy(t, nodesPolicy)
	f := &nft.Fake{}
	if code, _, stderr := exitOf(t, (&ApplyCmd{Node: "node1", Policy: []string{pol}, kernel: f}).Run); code != exitOK {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	code, out, _ := exitOf(t, (&StatusCmd{Table: "hostwall", Format: "json", kernel: f}).Run)
	if code != exitOK {
		t.Fatalf("status exit %d", code)
	}
	var st nft.Table
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	var src string
	for _, ch := range st.Chains {
		for _, r := range ch.Rules {
			if r.Comment == "http" {
				src = r.Source
			}
		}
	}
	if !strings.Contains(src, "policy.toml:") || !strings.Contains(src, `policy "web"`) {
		t.Errorf("rule source %q does not point at the policy", src)
	}
	if code, _, _ := exitOf(t, (&FlushCmd{Table: "hostwall", kernel: f}).Run); code != exitOK {
		t.Fatalf("flush exit %d", code)
	}
	if code, _, _ := exitOf(t, (&FlushCmd{Table: "hostwall", kernel: f}).Run); code != exitOK {
		t.Fatalf("second flush (absent table) exit %d", code)
	}
	code, out, _ = exitOf(t, (&StatusCmd{Table: "hostwall", Format: "text", kernel: f}).Run)
	if code != exitOK || !strings.Contains(out, "no hostwall table") {
		t.Errorf("status after flush: exit %d, %q", code, out)
	}
}
