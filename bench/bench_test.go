package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/integration"
	"github.com/hostwall/hostwall/iptables"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

// `just bench` runs TestBench with -full; without it (as in CI) TestBench
// is a smoke run of N = 100 that checks the harness and that the
// optimised ruleset passes the benchmark's traffic, and writes nothing.
var (
	full = flag.Bool("full", false, "run the full benchmark (N = 100 to 100,000) and write -out")
	out  = flag.String("out", "results.md", "where -full writes its results")
)

// run is one benchmark run's settings.
type run struct {
	sizes      []int         // N: addresses and rules
	compileRep int           // runs of hostwall compile per size
	applyRep   int           // runs of each apply method per size
	packetRep  int           // runs of the connection benchmark per ruleset
	packetDur  time.Duration // length of one connection run
	workers    int           // concurrent clients
}

func settings() run {
	if *full {
		return run{sizes: []int{100, 1000, 10000, 100000}, compileRep: 5, applyRep: 9, packetRep: 3, packetDur: 1500 * time.Millisecond, workers: 2}
	}
	return run{sizes: []int{100}, compileRep: 1, applyRep: 1, packetRep: 1, packetDur: 200 * time.Millisecond, workers: 2}
}

// report collects the tables of results.md.
type report struct {
	compile []string
	apply   []string
	steps   []string
	packet  []string
	notes   []string
	// for the targets
	compileBig     compileResult
	applyRatios    map[int][3]float64               // N: hostwall apply (cached) / nft -f, apply --no-cache / nft -f, transaction / nft -f
	applyTimes     map[int]time.Duration            // hostwall apply, cached
	coldApplyTimes map[int]time.Duration            // hostwall apply --no-cache
	stepTimes      map[int]map[string]time.Duration // N: step of applySteps: median
	compileTimes   map[int]time.Duration
	connEmpty      float64
	connPolicy0    float64
	connOpt        map[int]float64
	connPaired0    map[int]float64 // N: the N=0 policy, measured in turn with connOpt[N]
	connPlain      map[int]float64
	connIPTables   map[int]float64
	connIPTables0  float64
	ruleCountOpt   map[int]int
	ruleCountPlain map[int]int
}

func TestBench(t *testing.T) {
	s := settings()
	rep := &report{
		applyRatios: map[int][3]float64{}, applyTimes: map[int]time.Duration{}, coldApplyTimes: map[int]time.Duration{}, compileTimes: map[int]time.Duration{},
		stepTimes: map[int]map[string]time.Duration{},
		connOpt:   map[int]float64{}, connPlain: map[int]float64{}, connIPTables: map[int]float64{}, connPaired0: map[int]float64{},
		ruleCountOpt: map[int]int{}, ruleCountPlain: map[int]int{},
	}
	bin := buildHostwall(t)
	wrap := buildPeakRSS(t)
	dirs := map[int]string{}
	for _, n := range s.sizes {
		dir := t.TempDir()
		if _, err := Write(dir, Spec{Addrs: n, Rules: n}); err != nil {
			t.Fatal(err)
		}
		dirs[n] = dir
	}
	t.Run("compile", func(t *testing.T) { benchCompile(t, s, wrap, bin, dirs, rep) })
	t.Run("apply", func(t *testing.T) { benchApply(t, s, bin, dirs, rep) })
	t.Run("packet", func(t *testing.T) { benchPacket(t, s, dirs, rep) })
	if *full {
		if err := os.WriteFile(*out, []byte(rep.markdown(s)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", *out)
	} else {
		t.Logf("smoke run (no -full):\n%s", rep.markdown(s))
	}
}

// runsAt is how many times each apply method runs at size n: at N <= 1,000
// an apply takes a few ticks of the kernel's 250 Hz clock (the commit's
// RCU grace period ends on one), so single runs step by 4 ms and a median
// of a few flips between neighbouring ticks; 31 runs, cheap at that size,
// give a stable median.
func runsAt(s run, n int) int {
	if n <= 1000 && s.applyRep > 1 {
		return max(s.applyRep, 31)
	}
	return s.applyRep
}

// buildHostwall builds the hostwall binary the benchmark runs, as `just
// build` does: static (CGO_ENABLED=0), which starts about 1 ms sooner than
// a binary linked against libc.
func buildHostwall(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hostwall")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/hostwall/hostwall/cmd/hostwall")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if outb, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, outb)
	}
	return bin
}

// buildPeakRSS builds bench/peakrss, which measures a command's peak RSS
// (see its doc comment for why wait4 in this process cannot).
func buildPeakRSS(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "peakrss")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/hostwall/hostwall/bench/peakrss")
	if outb, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, outb)
	}
	return bin
}

// timedRSS runs a command under peakrss and returns its wall time and
// peak RSS (KiB) as peakrss measured them.
func timedRSS(t *testing.T, wrap string, name string, args ...string) (time.Duration, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, wrap, append([]string{name}, args...)...)
	cmd.Env = benchEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	var wall, rss int64
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if _, err := fmt.Sscanf(lines[len(lines)-1], "peakrss: wall_ns=%d maxrss_kib=%d", &wall, &rss); err != nil {
		t.Fatalf("peakrss output %q: %v", stderr.String(), err)
	}
	return time.Duration(wall), rss
}

// timed runs a command and returns its wall time.
func timed(t *testing.T, stdin string, name string, args ...string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = benchEnv()
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return d
}

// benchEnv is the environment of the commands the benchmark runs: no ssh
// session (hostwall apply's lockout check has nothing to keep).
func benchEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SSH_CONNECTION=") {
			env = append(env, e)
		}
	}
	return env
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

// compileResult is one compile measurement.
type compileResult struct {
	addrs, rules int
	wall         time.Duration
	rssKiB       int64
}

// load compiles the policy in dir, optimised or plain.
func load(t *testing.T, dir string, plain bool) *ir.Ruleset {
	t.Helper()
	pol, diags := model.Load(filepath.Join(dir, "policy.toml"))
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	rs, diags := compiler.Compile(pol, compiler.Options{NoOptimize: plain})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return rs
}

func countRules(rs *ir.Ruleset) int {
	n := 0
	for _, c := range rs.Chains {
		n += len(c.Rules)
	}
	return n
}

func benchCompile(t *testing.T, s run, wrap, bin string, dirs map[int]string, rep *report) {
	specs := []Spec{}
	for _, n := range s.sizes {
		specs = append(specs, Spec{Addrs: n, Rules: n})
	}
	if *full {
		specs = append(specs, Spec{Addrs: 100000, Rules: 10000}) // the target
	}
	rep.compile = append(rep.compile,
		"| addresses | rules | IR rules (optimised) | IR rules (plain) | `hostwall compile` median (ms) | peak RSS (MiB) |",
		"|---:|---:|---:|---:|---:|---:|")
	for _, sp := range specs {
		dir, ok := dirs[sp.Addrs]
		if !ok || sp.Rules != sp.Addrs {
			dir = t.TempDir()
			if _, err := Write(dir, sp); err != nil {
				t.Fatal(err)
			}
		}
		policy := filepath.Join(dir, "policy.toml")
		var walls []time.Duration
		var peak int64
		for range s.compileRep {
			d, rss := timedRSS(t, wrap, bin, "compile", policy)
			walls = append(walls, d)
			peak = max(peak, rss)
		}
		opt, plain := countRules(load(t, dir, false)), countRules(load(t, dir, true))
		r := compileResult{sp.Addrs, sp.Rules, median(walls), peak}
		if sp.Rules == sp.Addrs {
			rep.compileTimes[sp.Addrs] = r.wall
			rep.ruleCountOpt[sp.Addrs], rep.ruleCountPlain[sp.Addrs] = opt, plain
		}
		if sp.Addrs == 100000 && sp.Rules == 10000 {
			rep.compileBig = r
		}
		rep.compile = append(rep.compile, fmt.Sprintf("| %d | %d | %d | %d | %s | %.1f |", sp.Addrs, sp.Rules, opt, plain, ms(r.wall), float64(peak)/1024))
		t.Logf("compile %d addresses %d rules: %s ms, %.1f MiB, %d IR rules (plain %d)", sp.Addrs, sp.Rules, ms(r.wall), float64(peak)/1024, opt, plain)
	}
}

// needLab skips unless the machine can run the kernel benchmarks.
func needLab(t *testing.T, tools ...string) {
	t.Helper()
	integration.RequireRoot(t)
	for _, tool := range tools {
		integration.RequireTool(t, tool)
	}
}

// exportFiles writes the iptables export of rs (IPv4, IPv6 and the ipset
// file) into dir.
func exportFiles(t *testing.T, rs *ir.Ruleset, dir string) (v4, v6, sets string) {
	t.Helper()
	v4, v6, sets = filepath.Join(dir, "rules.v4"), filepath.Join(dir, "rules.v6"), filepath.Join(dir, "ipsets")
	var set bytes.Buffer
	for _, f := range []struct {
		fam  ir.Family
		path string
	}{{ir.FamilyIPv4, v4}, {ir.FamilyIPv6, v6}} {
		var b bytes.Buffer
		opts := iptables.Options{Family: f.fam, IPSet: &set}
		if err := iptables.Export(&b, rs, opts); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(sets, set.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return v4, v6, sets
}

// emptyIPTables resets the legacy iptables and ipsets of a namespace.
func emptyIPTables(t *testing.T, ns *integration.Netns, dir string) {
	t.Helper()
	empty := filepath.Join(dir, "empty.rules")
	if err := os.WriteFile(empty, []byte("*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"iptables-legacy-restore", "ip6tables-legacy-restore"} {
		if out, err := ns.Run("sh", "-c", tool+" < "+empty); err != nil {
			t.Fatalf("%s: %v: %s", tool, err, out)
		}
	}
	if out, err := ns.Run("ipset", "destroy"); err != nil {
		t.Fatalf("ipset destroy: %v: %s", err, out)
	}
}

func deleteTable(ns *integration.Netns) { _, _ = ns.Run("nft", "delete", "table", "inet", "hostwall") }

func benchApply(t *testing.T, s run, bin string, dirs map[int]string, rep *report) {
	needLab(t, "ip", "nft", "iptables-legacy-restore", "ip6tables-legacy-restore", "ipset")
	ns := integration.NewNetns(t, "benchapply")
	lock := filepath.Join(t.TempDir(), "lock")
	k := &nft.Netlink{NetNS: ns.Name, LockPath: lock}
	rep.apply = append(rep.apply,
		"| N | `hostwall apply` (cached) | `hostwall apply --no-cache` | netlink transaction | `nft -f` | cached / nft | no-cache / nft | transaction / nft | `iptables-legacy-restore` v4 + v6 | `ipset restore` |",
		"|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	head, rule := "| N |", "|---:|"
	for _, name := range stepNames {
		head += " " + name + " |"
		rule += "---:|"
	}
	rep.steps = append(rep.steps, head+" `nft -f` (for comparison) |", rule+"---:|")
	for _, n := range s.sizes {
		dir := dirs[n]
		rs := load(t, dir, false)
		var text bytes.Buffer
		if err := nft.Print(&text, rs); err != nil {
			t.Fatal(err)
		}
		script := filepath.Join(dir, "ruleset.nft")
		if err := os.WriteFile(script, text.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		v4, v6, sets := exportFiles(t, rs, dir)
		state, cached := t.TempDir(), t.TempDir()
		hostwallApply := func(state string, flags ...string) time.Duration {
			args := append([]string{"netns", "exec", ns.Name, bin, "apply", "--state-dir", state, "--insecure-policy", "--force"}, flags...)
			return timed(t, "", "ip", append(args, filepath.Join(dir, "policy.toml"))...)
		}
		// Fill the cache: the first apply of a policy compiles it and
		// reads the table back.
		deleteTable(ns)
		hostwallApply(cached)
		var apply, cold, trans, nftf, ipt, ips []time.Duration
		for range runsAt(s, n) {
			deleteTable(ns)
			apply = append(apply, hostwallApply(cached))

			deleteTable(ns)
			cold = append(cold, hostwallApply(state, "--no-cache"))

			deleteTable(ns)
			start := time.Now()
			if err := k.Replace(context.Background(), rs); err != nil {
				t.Fatal(err)
			}
			trans = append(trans, time.Since(start))

			deleteTable(ns)
			d := timed(t, "", "ip", "netns", "exec", ns.Name, "nft", "-f", script)
			nftf = append(nftf, d)

			emptyIPTables(t, ns, dir)
			d = timed(t, sets, "ip", "netns", "exec", ns.Name, "ipset", "restore")
			ips = append(ips, d)
			d4 := timed(t, v4, "ip", "netns", "exec", ns.Name, "iptables-legacy-restore")
			d6 := timed(t, v6, "ip", "netns", "exec", ns.Name, "ip6tables-legacy-restore")
			ipt = append(ipt, d4+d6)
		}
		// The steps of hostwall apply, in this process.
		steps := make([][]time.Duration, len(stepNames))
		for range s.applyRep {
			for i, d := range applySteps(t, ns, k, nft.State{Dir: state}, filepath.Join(dir, "policy.toml")) {
				steps[i] = append(steps[i], d)
			}
		}
		row := fmt.Sprintf("| %d |", n)
		for i := range stepNames {
			m := median(steps[i])
			row += " " + ms(m) + " |"
			if rep.stepTimes[n] == nil {
				rep.stepTimes[n] = map[string]time.Duration{}
			}
			rep.stepTimes[n][stepNames[i]] = m
		}
		rep.steps = append(rep.steps, row+" "+ms(median(nftf))+" |")
		deleteTable(ns)
		emptyIPTables(t, ns, dir)
		ma, mc, mt, mn := median(apply), median(cold), median(trans), median(nftf)
		ra, rc, rt := float64(ma)/float64(mn), float64(mc)/float64(mn), float64(mt)/float64(mn)
		rep.applyRatios[n] = [3]float64{ra, rc, rt}
		rep.applyTimes[n] = ma
		rep.coldApplyTimes[n] = mc
		rep.apply = append(rep.apply, fmt.Sprintf("| %d | %s | %s | %s | %s | %.2f | %.2f | %.2f | %s | %s |", n, ms(ma), ms(mc), ms(mt), ms(mn), ra, rc, rt, ms(median(ipt)), ms(median(ips))))
		t.Logf("apply N=%d: hostwall apply %s ms (cached), %s ms (--no-cache), transaction %s ms, nft -f %s ms, iptables %s ms, ipset %s ms", n, ms(ma), ms(mc), ms(mt), ms(mn), ms(median(ipt)), ms(median(ips)))
	}
}

// packetLab is the router lab of the packet-path benchmark.
type packetLab struct {
	client, router, server *integration.Netns
	k                      *nft.Netlink
}

func newPacketLab(t *testing.T) *packetLab {
	t.Helper()
	l := &packetLab{
		client: integration.NewNetns(t, "benchclient"),
		router: integration.NewNetns(t, "benchrouter"),
		server: integration.NewNetns(t, "benchserver"),
	}
	integration.Link(t, l.client, []string{ClientAddr + "/24"}, l.router, []string{RouterLAN + "/24"})
	integration.Link(t, l.router, []string{RouterWAN + "/24"}, l.server, []string{ServerAddr + "/24"})
	l.client.MustRun(t, "ip", "route", "add", "default", "via", RouterLAN)
	l.server.MustRun(t, "ip", "route", "add", "default", "via", RouterWAN)
	l.router.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.k = &nft.Netlink{NetNS: l.router.Name, LockPath: filepath.Join(t.TempDir(), "lock")}
	integration.TCPListen(t, l.server, fmt.Sprintf("%s:%d", ServerAddr, ServerPort))
	return l
}

// connRate opens and resets TCP connections from the client to the server
// with s.workers clients for s.packetDur, and returns connections per
// second (and failed attempts).
func (l *packetLab) connRate(t *testing.T, s run) (float64, int) {
	t.Helper()
	type res struct{ ok, bad int }
	ch := make(chan res, s.workers)
	dst := fmt.Sprintf("%s:%d", ServerAddr, ServerPort)
	start := time.Now()
	for range s.workers {
		go func() {
			var r res
			err := l.client.Do(func() error {
				deadline := time.Now().Add(s.packetDur)
				for time.Now().Before(deadline) {
					if dialOnce(dst) {
						r.ok++
					} else {
						r.bad++
					}
				}
				return nil
			})
			if err != nil {
				r.bad++
			}
			ch <- r
		}()
	}
	var total res
	for range s.workers {
		r := <-ch
		total.ok += r.ok
		total.bad += r.bad
	}
	return float64(total.ok) / time.Since(start).Seconds(), total.bad
}

// measure runs the connection benchmark s.packetRep times after a short
// warm-up and returns the median rate.
func (l *packetLab) measure(t *testing.T, s run, what string) float64 {
	t.Helper()
	warm := s
	warm.packetDur = 200 * time.Millisecond
	l.connRate(t, warm)
	var rates []float64
	for range s.packetRep {
		r, bad := l.connRate(t, s)
		if bad > 0 {
			t.Logf("%s: %d connection attempts failed", what, bad)
		}
		rates = append(rates, r)
	}
	m := medianF(rates)
	if m == 0 {
		t.Errorf("%s: no connection got through: the ruleset blocks the benchmark's traffic", what)
	}
	t.Logf("packet path %s: %.0f connections/s (runs %v)", what, m, rates)
	return m
}

// paired measures two rulesets in turn, s.packetRep times each (base,
// then rs, then base again...), after a warm-up of each, and returns the
// median rates: the machine's drift between runs (other work on a shared
// machine) then weighs on both alike.
func (l *packetLab) paired(t *testing.T, s run, base, rs *ir.Ruleset, what string) (float64, float64) {
	t.Helper()
	load := func(r *ir.Ruleset) {
		if err := l.k.Replace(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	warm := s
	warm.packetDur = 200 * time.Millisecond
	var a, b []float64
	for i := range s.packetRep {
		for j, r := range []*ir.Ruleset{base, rs} {
			load(r)
			if i == 0 {
				l.connRate(t, warm)
			}
			rate, bad := l.connRate(t, s)
			if bad > 0 {
				t.Logf("%s: %d connection attempts failed", what, bad)
			}
			if j == 0 {
				a = append(a, rate)
			} else {
				b = append(b, rate)
			}
		}
	}
	ma, mb := medianF(a), medianF(b)
	if ma == 0 || mb == 0 {
		t.Errorf("%s: no connection got through: the ruleset blocks the benchmark's traffic", what)
	}
	t.Logf("packet path %s: N=0 policy %.0f, hostwall nft %.0f connections/s (runs %v, %v)", what, ma, mb, a, b)
	return ma, mb
}

func benchPacket(t *testing.T, s run, dirs map[int]string, rep *report) {
	needLab(t, "ip", "nft", "iptables-legacy-restore", "ipset", "sysctl")
	if runtime.NumCPU() < 2 {
		t.Log("fewer than 2 CPUs: the connection rates are noisy")
	}
	l := newPacketLab(t)
	tmp := t.TempDir()
	nftLoad := func(rs *ir.Ruleset) {
		if err := l.k.Replace(context.Background(), rs); err != nil {
			t.Fatal(err)
		}
	}
	iptLoad := func(rs *ir.Ruleset, dir string) {
		v4, _, sets := exportFiles(t, rs, dir)
		if out, err := l.router.Run("sh", "-c", "ipset restore < "+sets+" && iptables-legacy-restore < "+v4); err != nil {
			t.Fatalf("load iptables export: %v: %s", err, out)
		}
	}
	row := func(what string, n int, rate, base float64) {
		rep.packet = append(rep.packet, fmt.Sprintf("| %s | %d | %.0f | %+.1f%% |", what, n, rate, 100*(rate-base)/base))
	}
	rep.packet = append(rep.packet, "| ruleset | N | connections/s | vs empty | vs the N=0 policy, paired |", "|---|---:|---:|---:|---:|")

	rep.connEmpty = l.measure(t, s, "no ruleset")
	rep.packet = append(rep.packet, fmt.Sprintf("| no ruleset | - | %.0f | |", rep.connEmpty))

	zero := t.TempDir()
	if _, err := Write(zero, Spec{}); err != nil {
		t.Fatal(err)
	}
	rs0 := load(t, zero, false)
	nftLoad(rs0)
	rep.connPolicy0 = l.measure(t, s, "hostwall nft, N=0")
	row("hostwall nftables, no generated rules", 0, rep.connPolicy0, rep.connEmpty)
	deleteTable(l.router)
	iptLoad(rs0, zero)
	rep.connIPTables0 = l.measure(t, s, "iptables export, N=0")
	row("iptables-legacy export, no generated rules", 0, rep.connIPTables0, rep.connEmpty)
	emptyIPTables(t, l.router, tmp)

	for _, n := range s.sizes {
		dir := dirs[n]
		rs := load(t, dir, false)
		nftLoad(rs)
		rep.connPaired0[n], rep.connOpt[n] = l.paired(t, s, rs0, rs, fmt.Sprintf("N=%d", n))
		row("hostwall nftables (optimised)", n, rep.connOpt[n], rep.connEmpty)
		rep.packet[len(rep.packet)-1] += fmt.Sprintf(" %+.1f%% |", 100*(rep.connOpt[n]-rep.connPaired0[n])/rep.connPaired0[n])

		plain := load(t, dir, true)
		nftLoad(plain)
		rep.connPlain[n] = l.measure(t, s, fmt.Sprintf("hostwall nft plain N=%d", n))
		row("hostwall nftables, optimisation off", n, rep.connPlain[n], rep.connEmpty)
		deleteTable(l.router)

		iptLoad(rs, dir)
		rep.connIPTables[n] = l.measure(t, s, fmt.Sprintf("iptables export N=%d", n))
		row("iptables-legacy export", n, rep.connIPTables[n], rep.connEmpty)
		emptyIPTables(t, l.router, tmp)
	}
}
