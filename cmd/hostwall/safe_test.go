package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

const sshAdminsPolicy = `
[settings]
on_error = "failsafe"
failsafe_ssh_from = "admins"

[groups]
admins = ["198.18.5.0/24"]
blocked = ["198.18.6.0/24"]

[[policy]]
name = "block"
  [[policy.in]]
  from = "blocked"
  action = "drop"

[[policy]]
name = "ssh"
  [[policy.in]]
  service = "tcp/22"
`

func routeStub(src, iface string) func(string, netip.Addr) (netip.Addr, string, error) {
	return func(string, netip.Addr) (netip.Addr, string, error) {
		return netip.MustParseAddr(src), iface, nil
	}
}

// TestApplyLockoutScoped: a link-local session's scope names its
// interface; the route lookup (which cannot tell fe80::/64 of one
// interface from another's) does not override it.
func TestApplyLockoutScoped(t *testing.T) {
	pol := writePolicy(t, `
[zones]
mgmt = { interfaces = ["mgmt0"] }
[[policy]]
name = "ssh"
zone = "mgmt"
  [[policy.in]]
  service = "tcp/22"
`)
	for _, tc := range []struct {
		name     string
		cmd      ApplyCmd
		wantCode int
	}{
		{"SSH_CONNECTION over mgmt0", ApplyCmd{SSHConnection: "fe80::7%mgmt0 50022 fe80::1%mgmt0 22"}, exitOK},
		{"SSH_CONNECTION over eth0", ApplyCmd{SSHConnection: "fe80::7%eth0 50022 fe80::1%eth0 22"}, exitPolicy},
		{"--keep over mgmt0", ApplyCmd{Keep: "[fe80::7%mgmt0]:50022"}, exitOK},
		{"--keep over eth0", ApplyCmd{Keep: "[fe80::7%eth0]:50022"}, exitPolicy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &nft.Fake{}
			c := tc.cmd
			c.Policy, c.kernel, c.route = []string{pol}, f, routeStub("fe80::1", "eth0")
			if code, _, stderr := exitOf(t, c.Run); code != tc.wantCode {
				t.Errorf("exit %d, want %d\n%s", code, tc.wantCode, stderr)
			}
		})
	}
}

func TestApplyLockout(t *testing.T) {
	pol := writePolicy(t, sshAdminsPolicy)
	for _, tc := range []struct {
		name     string
		cmd      ApplyCmd
		wantCode int
		applied  bool
		wantErr  []string
	}{
		{"SSH_CONNECTION from an admin", ApplyCmd{SSHConnection: "198.18.5.7 50022 198.18.0.1 22"}, exitOK, true, nil},
		{"SSH_CONNECTION from a blocked client", ApplyCmd{SSHConnection: "198.18.6.7 50022 198.18.0.1 22"}, exitPolicy, false,
			[]string{`policy.toml:12:3: policy "block" in[0] (chain input) drops the session's packet in 198.18.6.7:50022 -> 198.18.0.1:22 iif eth0 (new connection, client to server)`,
				"refused: the new ruleset would cut the ssh session 198.18.6.7:50022 -> 198.18.0.1:22 (SSH_CONNECTION); nothing was changed"}},
		{"--force applies anyway", ApplyCmd{SSHConnection: "198.18.6.7 50022 198.18.0.1 22", Force: true}, exitOK, true,
			[]string{"applying anyway (--force)"}},
		{"--keep from a blocked client", ApplyCmd{Keep: "198.18.6.7:50022"}, exitPolicy, false, []string{"(--keep)"}},
		{"--keep with --keep-server", ApplyCmd{Keep: "198.18.6.7:50022", Server: "198.18.0.9"}, exitPolicy, false, []string{"-> 198.18.0.9:22"}},
		{"--keep malformed", ApplyCmd{Keep: "198.18.6.7"}, exitUsage, false, []string{"want CLIENT_IP:PORT"}},
		{"SSH_CONNECTION malformed", ApplyCmd{SSHConnection: "garbage"}, exitUsage, false, []string{"use --force"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &nft.Fake{}
			c := tc.cmd
			c.Policy, c.kernel, c.route = []string{pol}, f, routeStub("198.18.0.1", "eth0")
			code, _, stderr := exitOf(t, c.Run)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d\n%s", code, tc.wantCode, stderr)
			}
			if got := len(f.Tables) == 1; got != tc.applied {
				t.Errorf("applied %v, want %v (calls %v)", got, tc.applied, f.Calls)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestSSHConnectionFromEnv: kong fills apply's session from SSH_CONNECTION.
func TestSSHConnectionFromEnv(t *testing.T) {
	t.Setenv("SSH_CONNECTION", "198.18.6.7 50022 198.18.0.1 22")
	var cli CLI
	p, err := kong.New(&cli, kong.Name("hostwall"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse([]string{"apply", "--dry-run", "x.toml"}); err != nil {
		t.Fatal(err)
	}
	if cli.Apply.SSHConnection != "198.18.6.7 50022 198.18.0.1 22" {
		t.Errorf("SSHConnection = %q", cli.Apply.SSHConnection)
	}
}

func TestApplyOnError(t *testing.T) {
	broken := "[[policy]]\nname = \"x\"\n  [[policy.in]]\n  service = \"tcp/99999\"\n"
	for _, tc := range []struct {
		name    string
		files   map[string]string
		onError string
		// probes: packet -> accepted, when the failsafe ruleset is expected
		failsafe map[string]bool
	}{
		{"keep by default", map[string]string{"a.toml": broken}, "", nil},
		{"failsafe from the flag, ssh from anywhere", map[string]string{"a.toml": broken}, "failsafe", map[string]bool{
			"tcp 198.18.9.9 -> 198.18.0.1:22 iif eth0": true,
			"tcp 198.18.9.9 -> 198.18.0.1:80 iif eth0": false,
		}},
		{"failsafe from settings, ssh from the group", map[string]string{"a.toml": sshAdminsPolicy, "b.toml": broken}, "", map[string]bool{
			"tcp 198.18.5.7 -> 198.18.0.1:22 iif eth0":                   true,
			"tcp 198.18.9.9 -> 198.18.0.1:22 iif eth0":                   false,
			"udp 198.18.5.7 -> 198.18.0.1:53 iif eth0":                   false,
			"tcp 198.18.9.9 -> 198.18.0.1:80 iif eth0 state established": true,
		}},
		{"the flag says keep", map[string]string{"a.toml": sshAdminsPolicy, "b.toml": broken}, "keep", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range tc.files {
				writeFile(t, filepath.Join(dir, name), text)
			}
			f := &nft.Fake{}
			c := &ApplyCmd{Policy: []string{dir}, kernel: f, OnError: tc.onError}
			code, _, stderr := exitOf(t, c.Run)
			if code != exitPolicy || !strings.Contains(stderr, "port 99999") {
				t.Errorf("exit %d, want %d with the policy's error:\n%s", code, exitPolicy, stderr)
			}
			rs := f.Tables["hostwall"]
			if tc.failsafe == nil {
				if rs != nil {
					t.Errorf("on_error keep changed the kernel: %v", f.Calls)
				}
				return
			}
			if rs == nil {
				t.Fatalf("no failsafe table; stderr:\n%s", stderr)
			}
			if !strings.Contains(stderr, "loaded the failsafe ruleset") {
				t.Errorf("stderr does not say so:\n%s", stderr)
			}
			for pkt, want := range tc.failsafe {
				p, err := ir.ParsePacket(pkt)
				if err != nil {
					t.Fatal(err)
				}
				_, got := ir.Eval(rs, p).Verdict.(ir.Accept)
				if got != want {
					t.Errorf("%s: accepted %v, want %v", pkt, got, want)
				}
			}
		})
	}
}

func TestConfirmWithoutPending(t *testing.T) {
	dir := t.TempDir()
	c := &ConfirmCmd{State: dir}
	code, _, stderr := exitOf(t, c.Run)
	if code != exitPolicy || !strings.Contains(stderr, "no apply awaits confirmation") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	st := nft.State{Dir: dir}
	if err := st.RecordRollback(&nft.Rollback{ID: "abc", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, _, stderr := exitOf(t, c.Run); !strings.Contains(stderr, "the last one, abc, was rolled back") {
		t.Errorf("stderr %q does not name the rollback", stderr)
	}
	cand := &nft.LastGood{PolicyHash: "h1", Snapshot: &nft.Snapshot{Table: "hostwall"}}
	if err := st.WritePending(&nft.Pending{ID: "def", Deadline: time.Now().Add(time.Hour), Previous: &nft.Snapshot{Table: "hostwall"}, Candidate: cand}); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := exitOf(t, c.Run); code != exitOK || !strings.Contains(stderr, "confirmed apply def") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if lg, err := st.LastGood(); err != nil || lg.PolicyHash != "h1" {
		t.Errorf("last good after confirm: %v, %v", lg, err)
	}
}

func TestRollbackWithoutState(t *testing.T) {
	c := &RollbackCmd{State: t.TempDir()}
	code, _, stderr := exitOf(t, c.Run)
	if code != exitSystem || !strings.Contains(stderr, "no last known good table") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

type fakeViewer struct{ v *nft.TableView }

func (f fakeViewer) View(context.Context, string) (*nft.TableView, error) { return f.v, nil }

func TestDiffCmd(t *testing.T) {
	pol := writePolicy(t, sshAdminsPolicy)
	other := writePolicy(t, strings.Replace(sshAdminsPolicy, "198.18.6.0/24", "198.18.7.0/24", 1))
	c := &DiffCmd{}
	_, rs, err := compileFiles(other)
	if err != nil {
		t.Fatal(err)
	}
	live, err := nft.ViewOf(rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		policy string
		live   *nft.TableView
		code   int
		out    string
	}{
		{"identical", other, live, exitOK, "exactly what the policy compiles to"},
		{"set changed", pol, live, exitPolicy, "set g_blocked_v4: 1 elements to add: 198.18.6.0/24\nset g_blocked_v4: 1 elements to remove: 198.18.7.0/24\n"},
		{"not loaded", pol, nil, exitPolicy, "not loaded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.Policy, c.kernel = []string{tc.policy}, fakeViewer{tc.live}
			code, stdout, stderr := exitOf(t, c.Run)
			if code != tc.code || !strings.Contains(stdout, tc.out) {
				t.Errorf("exit %d (want %d), stdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
		})
	}
}

func compileFiles(files ...string) (string, *ir.Ruleset, error) {
	pol, diags := model.Load(files...)
	if err := diags.Err(); err != nil {
		return "", nil, err
	}
	rs, diags := compiler.Compile(pol, compiler.Options{})
	return "", rs, diags.Err()
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
