package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostwall/hostwall/compiler/ir"
)

// robustVersion is one of the policy versions the traffic test alternates:
// every version accepts tcp/80 and rejects tcp/81, but they differ in
// everything else (sets, rule order, other ports, comments), so a half
// applied table would show.
func robustVersion(v int) string {
	extra := fmt.Sprintf("tcp/%d", 9000+v)
	return fmt.Sprintf(`
[defaults]
input = "drop"

[groups]
others = [%s]

[[policy]]
name = "v%d"
  [[policy.in]]
  service = %q
  from = "others"
  comment = "version %d"
  [[policy.in]]
  service = "tcp/81"
  action = "reject"
  reject_with = "tcp-reset"
  comment = "blocked in every version %d"
  [[policy.in]]
  service = "tcp/80"
  comment = "allowed in every version %d"
`, robustGroup(v), v, extra, v, v, v)
}

func robustGroup(v int) string {
	var m []string
	for i := range 50 + 50*v {
		m = append(m, fmt.Sprintf("%q", fmt.Sprintf("198.19.%d.%d", i/250, i%250+1)))
	}
	return strings.Join(m, ", ")
}

// TestRobustTrafficDuringApply (design.md invariant 3): while a client
// keeps opening connections to a port every version allows and to one
// every version rejects, 200 applies alternate two versions. No packet may
// see a half state: zero blocked-port successes, zero allowed-port
// failures.
func TestRobustTrafficDuringApply(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	lab := newTrafficLab(t, "eth0")
	node, client := "198.18.42.1", "198.18.42.2"
	lab.addNodeAddr(t, netip.MustParseAddr(node))
	lab.addPeerAddr(t, netip.MustParseAddr(client))
	TCPListen(t, lab.node, ":80")
	TCPListen(t, lab.node, ":81")
	versions := []*ir.Ruleset{compilePolicy(t, robustVersion(0), ""), compilePolicy(t, robustVersion(1), "")}
	k := labKernel(t, lab.node)
	replace(t, k, versions[0])

	var (
		stop                       atomic.Bool
		allowedOK, allowedBad      atomic.Int64
		blockedRefused, blockedBad atomic.Int64
		mu                         sync.Mutex
		bad                        []string
	)
	var wg sync.WaitGroup
	for w := range 4 { // two clients per port
		wg.Add(1)
		go func() {
			defer wg.Done()
			port, want := "80", Accepted
			if w%2 == 1 {
				port, want = "81", Rejected
			}
			for !stop.Load() {
				got, err := Probe(lab.peer, "tcp", client, node+":"+port, 2*time.Second)
				switch {
				case got == want && port == "80":
					allowedOK.Add(1)
				case got == want:
					blockedRefused.Add(1)
				default:
					if port == "80" {
						allowedBad.Add(1)
					} else {
						blockedBad.Add(1)
					}
					mu.Lock()
					bad = append(bad, fmt.Sprintf("port %s: %s (%v)", port, got, err))
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // traffic before the first apply
	start := time.Now()
	const applies = 200
	for i := range applies {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := k.Replace(ctx, versions[(i+1)%2])
		cancel()
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	took := time.Since(start)
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d applies in %v while probing: tcp/80 %d accepted, %d not; tcp/81 %d rejected, %d not",
		applies, took.Round(time.Millisecond), allowedOK.Load(), allowedBad.Load(), blockedRefused.Load(), blockedBad.Load())
	if allowedBad.Load() != 0 || blockedBad.Load() != 0 {
		t.Errorf("%d allowed-port failures, %d blocked-port outcomes other than a reject; first: %v", allowedBad.Load(), blockedBad.Load(), bad[:min(len(bad), 5)])
	}
	if allowedOK.Load() < applies || blockedRefused.Load() < applies {
		t.Errorf("too little traffic to judge: %d and %d probes for %d applies", allowedOK.Load(), blockedRefused.Load(), applies)
	}
	if got := listInet(t, lab.node, "hostwall"); !strings.Contains(got, `comment "version 0"`) {
		t.Errorf("after an even number of applies the table is not version 0:\n%s", got)
	}
}

// commentRE2 finds the version comments of a listing.
var versionRE = regexp.MustCompile(`comment "p(\d+) r\d+"`)

// parallelPolicy i has i+1 rules, each with the comment "p<i> r<j>".
func parallelPolicy(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[policy]]\nname = \"p%d\"\n", i)
	for j := range i + 1 {
		fmt.Fprintf(&b, "  [[policy.in]]\n  service = \"tcp/%d\"\n  comment = \"p%d r%d\"\n", 10000+100*i+j, i, j)
	}
	return b.String()
}

// TestRobustParallelApplies: 10 `hostwall apply` processes with different
// policies, started together, end with exactly one complete policy in the
// kernel (all its rules, none of another's). Then a process that holds the
// lock is killed, and the next apply gets the lock at once.
func TestRobustParallelApplies(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	bin := buildHostwall(t)
	ns := NewNetns(t, "parallel")
	dir, state := t.TempDir(), t.TempDir()
	const n = 10
	paths := make([]string, n)
	for i := range n {
		paths[i] = filepath.Join(dir, fmt.Sprintf("p%d.toml", i))
		if err := os.WriteFile(paths[i], []byte(parallelPolicy(i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make([]error, n)
		outs := make([]string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				out, err := exec.CommandContext(ctx, bin, "apply", "--netns", ns.Name, "--state-dir", state, paths[i]).CombinedOutput()
				errs[i], outs[i] = err, string(out)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: apply p%d: %v\n%s", round, i, err, outs[i])
			}
		}
		list := ns.MustRun(t, "nft", "list", "table", "inet", "hostwall")
		seen := map[string]int{}
		for _, m := range versionRE.FindAllStringSubmatch(list, -1) {
			seen[m[1]]++
		}
		if len(seen) != 1 {
			t.Fatalf("round %d: rules of %d policies in the table (a mix): %v\n%s", round, len(seen), seen, list)
		}
		for v, c := range seen {
			var i int
			fmt.Sscan(v, &i)
			if c != i+1 {
				t.Errorf("round %d: policy p%d has %d of its %d rules in the table", round, i, c, i+1)
			}
			t.Logf("round %d: %d parallel applies all exited 0; the table holds policy p%d whole (%d rules), nothing of the others", round, n, i, c)
		}
	}

	// The lock is a flock: the kernel drops it when its holder dies. The
	// holder is one process (flock --no-fork execs sleep with the lock).
	RequireTool(t, "flock")
	holder := exec.Command("flock", "--exclusive", "--no-fork", "/run/hostwall.lock", "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	time.Sleep(300 * time.Millisecond) // let it take the lock
	waiting := exec.Command(bin, "apply", "--netns", ns.Name, "--state-dir", state, paths[0])
	if err := waiting.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- waiting.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("apply did not wait for the lock held by another process: %v", err)
	case <-time.After(time.Second):
	}
	if err := holder.Process.Kill(); err != nil { // SIGKILL: no chance to unlock
		t.Fatal(err)
	}
	killed := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("apply after the holder died: %v", err)
		}
		t.Logf("the lock holder was killed; the waiting apply finished %v later", time.Since(killed).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		_ = waiting.Process.Kill()
		t.Fatal("apply still waits 30s after the lock holder died")
	}
	if list := ns.MustRun(t, "nft", "list", "table", "inet", "hostwall"); !strings.Contains(list, `comment "p0 r0"`) {
		t.Errorf("the apply after the dead holder did not load p0:\n%s", list)
	}

	// An apply killed while it waits leaves the table as it was.
	before := listInet(t, ns, "hostwall")
	holder2 := exec.Command("flock", "--exclusive", "--no-fork", "/run/hostwall.lock", "sleep", "60")
	if err := holder2.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder2.Process.Kill(); _ = holder2.Wait() })
	time.Sleep(300 * time.Millisecond)
	victim := exec.Command(bin, "apply", "--netns", ns.Name, "--state-dir", state, paths[9])
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	_ = victim.Process.Kill()
	_ = victim.Wait()
	_ = holder2.Process.Kill()
	if after := listInet(t, ns, "hostwall"); after != before {
		t.Errorf("a killed apply changed the table")
	}
}
