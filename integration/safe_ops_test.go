package integration

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Policies of the safe-operations tests: A accepts tcp/80, B tcp/81
// instead; each drops the rest of input.
const (
	safePolicyA = `
[[policy]]
name = "web"
  [[policy.in]]
  service = "tcp/80"
  comment = "policy A"
`
	safePolicyB = `
[[policy]]
name = "web"
  [[policy.in]]
  service = "tcp/81"
  comment = "policy B"
`
)

// safeLab is a traffic lab with the hostwall binary, a state directory
// and helpers to run the binary against the node's namespace.
type safeLab struct {
	*trafficLab
	bin, state   string
	node, client string // addresses
}

func newSafeLab(t *testing.T, nodeAddr, clientAddr string) *safeLab {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "nft")
	l := &safeLab{trafficLab: newTrafficLab(t, "eth0"), bin: buildHostwall(t), state: filepath.Join(t.TempDir(), "state"), node: nodeAddr, client: clientAddr}
	l.addNodeAddr(t, netip.MustParseAddr(nodeAddr))
	l.addPeerAddr(t, netip.MustParseAddr(clientAddr))
	TCPListen(t, l.trafficLab.node, ":80")
	TCPListen(t, l.trafficLab.node, ":81")
	TCPListen(t, l.trafficLab.node, ":22")
	return l
}

// policy writes text to a fresh policy file.
func (l *safeLab) policy(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// hostwall runs the binary with env added, and returns its output and
// exit code.
func (l *safeLab) hostwall(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("hostwall %s: %v\n%s", strings.Join(args, " "), err, out)
	return "", -1
}

// list is `nft list table inet hostwall` in the node, with counters and
// without handles: what "byte for byte" compares.
func (l *safeLab) list(t *testing.T) string {
	t.Helper()
	out, err := l.trafficLab.node.Run("nft", "list", "table", "inet", "hostwall")
	if err != nil {
		if strings.Contains(out, "No such file or directory") {
			return "(no table)"
		}
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	return handles.ReplaceAllString(out, "")
}

// verdicts probes ports 80 and 81 from the client.
func (l *safeLab) verdicts(t *testing.T, stage string, want80, want81 Outcome) {
	t.Helper()
	for _, c := range []struct {
		port string
		want Outcome
	}{{"80", want80}, {"81", want81}} {
		if got, err := Probe(l.peer, "tcp", l.client, l.node+":"+c.port, time.Second); got != c.want {
			t.Errorf("%s: port %s: %s (%v), want %s", stage, c.port, got, err, c.want)
		}
	}
}

// waitFor polls cond every 50ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestSafeLockout: with SSH_CONNECTION naming a client the new policy
// drops, apply refuses (exit 1, naming the rule) and the kernel keeps the
// old table; --force applies.
func TestSafeLockout(t *testing.T) {
	l := newSafeLab(t, "198.18.70.1", "198.18.70.2")
	ns := l.trafficLab.node.Name
	if out, code := l.hostwall(t, nil, "apply", "--netns", ns, "--state-dir", l.state, l.policy(t, safePolicyA)); code != 0 {
		t.Fatalf("baseline apply: exit %d\n%s", code, out)
	}
	before := l.list(t)
	cuts := l.policy(t, `
[[policy]]
name = "ssh"
  [[policy.in]]
  from = "198.18.70.2"
  action = "drop"
  comment = "cuts the operator"
  [[policy.in]]
  service = "tcp/22"
`)
	sshEnv := []string{"SSH_CONNECTION=" + l.client + " 50022 " + l.node + " 22"}
	out, code := l.hostwall(t, sshEnv, "apply", "--netns", ns, "--state-dir", l.state, cuts)
	if code != 1 {
		t.Fatalf("apply that cuts the session: exit %d, want 1\n%s", code, out)
	}
	for _, w := range []string{cuts + `:4:3: policy "ssh" in[0] (chain input) drops the session's packet in 198.18.70.2:50022 -> 198.18.70.1:22 iif eth0`, "refused"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if after := l.list(t); after != before {
		t.Errorf("a refused apply changed the kernel:\n%s", cmp.Diff(before, after))
	}
	if got, err := Probe(l.peer, "tcp", l.client, l.node+":22", time.Second); got != Dropped {
		// Policy A has no ssh rule either, so ssh was dropped before too:
		// what matters is that the table is A's.
		t.Logf("ssh under policy A: %s (%v)", got, err)
	}
	// An allowed client passes the check.
	okEnv := []string{"SSH_CONNECTION=198.18.70.9 50022 " + l.node + " 22"}
	if out, code := l.hostwall(t, okEnv, "apply", "--dry-run", "--netns", ns, cuts); code != 0 {
		t.Errorf("session from another client: exit %d\n%s", code, out)
	}
	out, code = l.hostwall(t, sshEnv, "apply", "--force", "--netns", ns, "--state-dir", l.state, cuts)
	if code != 0 || !strings.Contains(out, "applying anyway (--force)") {
		t.Fatalf("--force: exit %d\n%s", code, out)
	}
	if !strings.Contains(l.list(t), "cuts the operator") {
		t.Error("--force did not apply")
	}
	if got, err := Probe(l.peer, "tcp", l.client, l.node+":22", time.Second); got != Dropped {
		t.Errorf("after --force, ssh from the cut client: %s (%v), want dropped", got, err)
	}
}

// TestSafeConfirm: apply --confirm without confirm restores the previous
// table byte for byte (counters too) and its verdicts; with confirm the
// new table stays; kill -9 of the applying process still rolls back; with
// no table before, the rollback leaves none.
func TestSafeConfirm(t *testing.T) {
	l := newSafeLab(t, "198.18.71.1", "198.18.71.2")
	ns := l.trafficLab.node.Name
	polA, polB := l.policy(t, safePolicyA), l.policy(t, safePolicyB)
	if out, code := l.hostwall(t, nil, "apply", "--netns", ns, "--state-dir", l.state, polA); code != 0 {
		t.Fatalf("apply A: exit %d\n%s", code, out)
	}
	l.verdicts(t, "policy A", Accepted, Dropped) // counters are no longer zero
	before := l.list(t)

	t.Run("no confirm", func(t *testing.T) {
		start := time.Now()
		out, code := l.hostwall(t, nil, "apply", "--confirm", "2s", "--netns", ns, "--state-dir", l.state, polB)
		if code != 1 || !strings.Contains(out, "not confirmed within 2s") {
			t.Fatalf("exit %d, want 1 (not confirmed)\n%s", code, out)
		}
		if took := time.Since(start); took < 2*time.Second {
			t.Errorf("rolled back after %s, before the deadline", took)
		}
		if after := l.list(t); after != before {
			t.Fatalf("the previous table is not back byte for byte:\n%s", cmp.Diff(before, after))
		}
		l.verdicts(t, "after the rollback", Accepted, Dropped)
	})

	t.Run("confirm", func(t *testing.T) {
		cmd := exec.Command(l.bin, "apply", "--confirm", "2s", "--netns", ns, "--state-dir", l.state, polB)
		var outb strings.Builder
		cmd.Stdout, cmd.Stderr = &outb, &outb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		if !waitFor(10*time.Second, func() bool { return strings.Contains(l.list(t), "policy B") }) {
			t.Fatal("policy B was not applied")
		}
		if out, code := l.hostwall(t, nil, "confirm", "--state-dir", l.state); code != 0 {
			t.Fatalf("confirm: exit %d\n%s", code, out)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("apply after confirm: %v\n%s", err, outb.String())
		}
		time.Sleep(2500 * time.Millisecond) // past the deadline
		if !strings.Contains(l.list(t), "policy B") {
			t.Fatal("the confirmed table did not stay")
		}
		l.verdicts(t, "confirmed policy B", Dropped, Accepted)
		if out, code := l.hostwall(t, nil, "confirm", "--state-dir", l.state); code != 1 {
			t.Errorf("a second confirm: exit %d, want 1\n%s", code, out)
		}
	})

	t.Run("kill -9", func(t *testing.T) {
		// Back to A, confirmed, as the table to come back to.
		if out, code := l.hostwall(t, nil, "apply", "--netns", ns, "--state-dir", l.state, polA); code != 0 {
			t.Fatalf("apply A: exit %d\n%s", code, out)
		}
		l.verdicts(t, "policy A again", Accepted, Dropped)
		before := l.list(t)
		cmd := exec.Command(l.bin, "apply", "--confirm", "2s", "--netns", ns, "--state-dir", l.state, polB)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if !waitFor(10*time.Second, func() bool { return strings.Contains(l.list(t), "policy B") }) {
			_ = cmd.Process.Kill()
			t.Fatal("policy B was not applied")
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if !waitFor(10*time.Second, func() bool { return l.list(t) == before }) {
			t.Fatalf("no rollback after kill -9:\n%s", cmp.Diff(before, l.list(t)))
		}
		l.verdicts(t, "after kill -9", Accepted, Dropped)
	})

	t.Run("no table before", func(t *testing.T) {
		if out, code := l.hostwall(t, nil, "flush", "--netns", ns); code != 0 {
			t.Fatalf("flush: exit %d\n%s", code, out)
		}
		out, code := l.hostwall(t, nil, "apply", "--confirm", "1s", "--netns", ns, "--state-dir", l.state, polB)
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, out)
		}
		if got := l.list(t); got != "(no table)" {
			t.Errorf("after the rollback: %s, want no table", got)
		}
	})
}

// TestSafeRollbackLastGood: `hostwall rollback` re-applies the table of
// the last successful apply, exactly (counters at zero).
func TestSafeRollbackLastGood(t *testing.T) {
	l := newSafeLab(t, "198.18.72.1", "198.18.72.2")
	ns := l.trafficLab.node.Name
	if out, code := l.hostwall(t, nil, "apply", "--netns", ns, "--state-dir", l.state, l.policy(t, safePolicyA)); code != 0 {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	want := l.list(t)
	if b, err := os.ReadFile(filepath.Join(l.state, "last-good.nft")); err != nil || !strings.Contains(string(b), "policy A") {
		t.Errorf("last-good.nft: %v\n%s", err, b)
	}
	l.trafficLab.node.MustRun(t, "nft", "insert", "rule", "inet", "hostwall", "input", "tcp", "dport", "81", "accept")
	l.verdicts(t, "drifted", Accepted, Accepted)
	if out, code := l.hostwall(t, nil, "rollback", "--netns", ns, "--state-dir", l.state); code != 0 {
		t.Fatalf("rollback: exit %d\n%s", code, out)
	}
	if got := l.list(t); got != want {
		t.Errorf("rollback did not restore the last known good table:\n%s", cmp.Diff(want, got))
	}
	l.verdicts(t, "rolled back", Accepted, Dropped)
}

// TestSafeDiff: diff is empty right after apply (exit 0) and reports a
// rule added with `nft add rule` as drift (exit 1).
func TestSafeDiff(t *testing.T) {
	l := newSafeLab(t, "198.18.73.1", "198.18.73.2")
	ns := l.trafficLab.node.Name
	pol := l.policy(t, safePolicyA)
	if out, code := l.hostwall(t, nil, "diff", "--netns", ns, pol); code != 1 || !strings.Contains(out, "not loaded") {
		t.Errorf("diff before apply: exit %d, want 1 (not loaded)\n%s", code, out)
	}
	if out, code := l.hostwall(t, nil, "apply", "--netns", ns, "--state-dir", l.state, pol); code != 0 {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	if out, code := l.hostwall(t, nil, "diff", "--netns", ns, pol); code != 0 {
		t.Errorf("diff right after apply: exit %d, want 0\n%s", code, out)
	}
	l.trafficLab.node.MustRun(t, "nft", "add", "rule", "inet", "hostwall", "input", "tcp", "dport", "9999", "accept")
	out, code := l.hostwall(t, nil, "diff", "--netns", ns, pol)
	if code != 1 || !regexp.MustCompile(`chain input: rule \d+ in the kernel only: not from hostwall:`).MatchString(out) {
		t.Errorf("diff after nft add rule: exit %d, want 1 naming the foreign rule\n%s", code, out)
	}
}

// TestSafeFailsafe: a broken policy with on_error = "failsafe" leaves a
// ruleset in which ssh from the failsafe group works and all other input
// is dropped.
func TestSafeFailsafe(t *testing.T) {
	l := newSafeLab(t, "198.18.74.1", "198.18.74.2")
	l.addPeerAddr(t, netip.MustParseAddr("198.18.74.3"))
	ns := l.trafficLab.node.Name
	dir := t.TempDir()
	for name, text := range map[string]string{
		"00-settings.toml": "[settings]\non_error = \"failsafe\"\nfailsafe_ssh_from = \"admins\"\n\n[groups]\nadmins = [\"198.18.74.2\"]\n",
		"10-broken.toml":   "[[policy]]\nname = \"web\"\n  [[policy.in]]\n  service = \"tcp/80\"\n  from = \"nosuchgroup\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, code := l.hostwall(t, nil, "apply", "--netns", ns, "--state-dir", l.state, dir)
	if code != 1 || !strings.Contains(out, "loaded the failsafe ruleset") || !strings.Contains(out, "nosuchgroup") {
		t.Fatalf("exit %d, want 1 with the error and the failsafe\n%s", code, out)
	}
	UDPListen(t, l.trafficLab.node, ":53")
	for _, c := range []struct {
		network, src, dst string
		want              Outcome
	}{
		{"tcp", "198.18.74.2", "198.18.74.1:22", Accepted},
		{"tcp", "198.18.74.3", "198.18.74.1:22", Dropped},
		{"tcp", "198.18.74.2", "198.18.74.1:80", Dropped},
		{"tcp", "198.18.74.3", "198.18.74.1:81", Dropped},
		{"udp", "198.18.74.2", "198.18.74.1:53", Dropped},
	} {
		if got, err := Probe(l.peer, c.network, c.src, c.dst, time.Second); got != c.want {
			t.Errorf("%s %s -> %s: %s (%v), want %s", c.network, c.src, c.dst, got, err, c.want)
		}
	}
}

// TestSystemdUnits: the example units pass `systemd-analyze verify` with no
// warning (the hostwall path is pointed at the built binary, which verify
// requires to exist).
func TestSystemdUnits(t *testing.T) {
	RequireTool(t, "systemd-analyze")
	bin := buildHostwall(t)
	dir := t.TempDir()
	units := []string{"hostwall.service", "hostwall.path", "hostwall-reload.service"}
	for _, u := range units {
		b, err := os.ReadFile(filepath.Join("..", "examples", "systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "/usr/sbin/hostwall", bin)
		if err := os.WriteFile(filepath.Join(dir, u), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "systemd-analyze", append([]string{"verify", "--man=no"}, units...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// And the unit really is what the issue asks for.
	b, _ := os.ReadFile(filepath.Join(dir, "hostwall.service"))
	for _, w := range []string{"Type=oneshot", "RemainAfterExit=yes", "Before=network-pre.target", "Wants=network-pre.target", "DefaultDependencies=no", "--on-error failsafe"} {
		if !strings.Contains(string(b), w) {
			t.Errorf("hostwall.service lacks %q", w)
		}
	}
}

// TestSafeStatusForeignHooks: status lists another table's base chains and
// warns when one with policy drop sits on a hook where hostwall accepts.
func TestSafeStatusForeignHooks(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	bin := buildHostwall(t)
	ns := NewNetns(t, "foreign")
	loadText(t, ns, "table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n\tchain OUTPUT {\n\t\ttype filter hook output priority filter; policy accept;\n\t}\n}\n")
	policy := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(policy, []byte(safePolicyA), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("hostwall %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("apply", "--netns", ns.Name, "--state-dir", filepath.Join(t.TempDir(), "state"), policy)
	out := run("status", "--netns", ns.Name)
	for _, re := range []string{
		`(?m)^\s+ip\s+filter\s+INPUT\s+filter\s+input\s+0\s+drop$`,
		`(?m)^\s+ip\s+filter\s+OUTPUT\s+filter\s+output\s+0\s+accept$`,
		`warning: ip table filter chain INPUT \(hook input priority 0\) has policy drop: it drops what hostwall's chain input accepts`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status lacks %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "chain OUTPUT (hook output") {
		t.Errorf("warned about an accepting chain:\n%s", out)
	}
}
