package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// dialOnce opens one TCP connection and resets it (SO_LINGER 0), so that
// neither side keeps it in TIME_WAIT; it reports whether it connected.
func dialOnce(dst string) bool {
	c, err := net.DialTimeout("tcp", dst, time.Second)
	if err != nil {
		return false
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
	return true
}

// machine describes the machine the benchmark ran on.
func machine() []string {
	osrel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	cpu := "unknown"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	nftv := "not found"
	if b, err := exec.Command("nft", "--version").Output(); err == nil {
		nftv = strings.TrimSpace(string(b))
	}
	iptv := "not found"
	if b, err := exec.Command("iptables-legacy", "--version").Output(); err == nil {
		iptv = strings.TrimSpace(string(b))
	}
	return []string{
		"- date: " + time.Now().UTC().Format("2006-01-02 15:04 MST"),
		fmt.Sprintf("- CPUs (nproc): %d; CPU: %s", runtime.NumCPU(), cpu),
		"- kernel: " + strings.TrimSpace(string(osrel)),
		"- " + runtime.Version() + "; " + nftv + "; " + iptv,
	}
}

func (r *report) markdown(s run) string {
	var b strings.Builder
	w := func(lines ...string) {
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	w("# hostwall benchmarks", "", "Written by `just bench` (`go test ./bench -run TestBench -args -full`); do not edit.", "")
	w(machine()...)
	w("", "The policy of size N (bench/gen.go): a `block` group of N addresses (a third IPv4,",
		"the rest IPv6, none adjacent) dropped on forward, then N forward rules",
		"`from = \"198.18.X.Y\"`, `service = \"tcp/P\"` (each a distinct pair), then the accept",
		"of the benchmark's own traffic, so a new connection crosses every rule before it.",
		"\"Plain\" is the same policy compiled with the optimisation off (one IR rule per",
		"policy rule, as before issue 8).", "")
	w("## Compile", "", fmt.Sprintf("`hostwall compile POLICY > /dev/null`, median of %d runs; peak RSS is the", s.compileRep),
		"largest maximum resident set size of those runs, measured by bench/peakrss, a small",
		"parent (a child of the large test process would report the test's own peak: Go starts",
		"children with vfork, and the kernel folds the parent's high-water mark into the child's",
		"at exec; results before issue 8's second round were inflated so).", "")
	w(r.compile...)
	w("", "## Apply", "",
		fmt.Sprintf("Median of %d runs each (31 at N <= 1,000), in milliseconds, into a fresh network namespace", s.applyRep),
		"whose hostwall table is deleted before every run. `hostwall apply` is the whole",
		"command, a separate process like `nft -f`. \"Cached\" is a re-apply of unchanged",
		"policy files (at boot, on a reload, a second apply): it reads and hashes the files,",
		"takes the compiled ruleset, its encoded transaction and the last known good table's",
		"snapshot from the cache in the state directory (filled by one apply before the runs),",
		"sends the transaction, checks the set counts and saves the last known good table.",
		"`--no-cache` is the first apply of an edited policy: load, compile, lower, encode,",
		"send, check, read back, save. The netlink transaction is `nft.Netlink.Replace` of the",
		"compiled ruleset in the benchmark's process (lower, encode, send, verify), the part",
		"`nft -f` of the printed ruleset does. Commands run under `ip netns exec`. iptables:",
		"the `hostwall export --ipset` files loaded into empty legacy tables. The kernel's",
		"commit ends with an RCU grace period that the closing of the netlink socket waits for",
		"(nf_tables' NETLINK_URELEASE notifier), for `nft -f` and hostwall alike: on this",
		"machine's 250 Hz clock the small-N times step by about 4 ms.", "")
	w(r.apply...)
	w("", "### `hostwall apply`, step by step", "",
		fmt.Sprintf("The steps of the command (cmd/hostwall/apply.go) run in the benchmark's process"),
		fmt.Sprintf("(bench/profile_test.go, applySteps), median of %d runs, in milliseconds: load (read", s.applyRep),
		"the files, decode the TOML, scan positions, validate), compile, print (the nft text: the",
		"state reservation's estimate and the last known good text), reserve (room in the state",
		"directory), transaction (`nft.Netlink.Replace`: lower, encode, send, verify the set",
		"counts), snapshot (the table read back as the last known good) and save (written to",
		"the state directory).", "")
	w(r.steps...)
	w("", "## Packet path", "",
		fmt.Sprintf("TCP connections per second from a client namespace through a router namespace"),
		fmt.Sprintf("(forwarding, where the ruleset is loaded) to a server namespace: %d clients", s.workers),
		fmt.Sprintf("connect and reset for %s, median of %d runs after a warm-up. Each new", s.packetDur, s.packetRep),
		"connection's first packet crosses the whole chain; later packets are accepted by",
		"`ct state established,related` near its top. \"vs empty\" compares with no ruleset",
		"at all (no conntrack either); \"vs the N=0 policy, paired\" with the same policy without",
		"generated rules, loaded and measured in turn with the optimised ruleset (N=0, N, N=0,",
		"N, ...), so that the shared machine's drift weighs on both alike.", "")
	w(r.packet...)
	w("", "## Targets", "")
	w(r.targets()...)
	return b.String()
}

func (r *report) targets() []string {
	var out []string
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	if c := r.compileBig; c.addrs > 0 {
		mib := float64(c.rssKiB) / 1024
		out = append(out, fmt.Sprintf("- Compile of %d addresses + %d rules under 1 s and 200 MiB: %s ms, %.1f MiB: %s.",
			c.addrs, c.rules, ms(c.wall), mib, verdict(c.wall < time.Second && mib < 200)))
	}
	var ns []int
	for n := range r.applyRatios {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	for _, n := range ns {
		ra := r.applyRatios[n]
		out = append(out, fmt.Sprintf("- Apply N=%d, ratio to `nft -f` <= 1.0: `hostwall apply` of a cached policy %.2f (%s); `hostwall apply --no-cache` (load and compile, as the first apply of an edited policy) %.2f (%s); netlink transaction %.2f (%s).",
			n, ra[0], verdict(ra[0] <= 1), ra[1], verdict(ra[1] <= 1), ra[2], verdict(ra[2] <= 1)))
	}
	if opt, ok := r.connOpt[10000]; ok {
		for _, b := range []struct {
			name string
			v    float64
		}{{"no ruleset", r.connEmpty}, {"the N=0 policy, measured in turn with it", r.connPaired0[10000]}} {
			d := 100 * (opt - b.v) / b.v
			out = append(out, fmt.Sprintf("- Packet path, 10,000 rules within 10%% of %s: %.0f vs %.0f connections/s (%+.1f%%): %s.",
				b.name, opt, b.v, d, verdict(d >= -10)))
		}
		if ipt, ok := r.connIPTables[10000]; ok {
			out = append(out, fmt.Sprintf("- For comparison, the iptables-legacy export with 10,000 rules: %.0f connections/s (%+.1f%% vs no ruleset); hostwall's nftables ruleset with the optimisation off: %.0f (%+.1f%%).",
				ipt, 100*(ipt-r.connEmpty)/r.connEmpty, r.connPlain[10000], 100*(r.connPlain[10000]-r.connEmpty)/r.connEmpty))
		}
	}
	growth := func(name string, m map[int]time.Duration) {
		a, okA := m[10000]
		b, okB := m[100000]
		if okA && okB && a > 0 {
			out = append(out, fmt.Sprintf("- Growth of %s from N=10,000 to N=100,000 (10x): %.1fx (linear is 10x; below 10x means fixed costs still weigh).",
				name, float64(b)/float64(a)))
		}
	}
	growth("compile time", r.compileTimes)
	growth("`hostwall apply` time (cached)", r.applyTimes)
	growth("`hostwall apply --no-cache` time", r.coldApplyTimes)
	out = append(out, r.notes...)
	for _, n := range []int{10000, 100000} {
		st, ok := r.stepTimes[n]
		if !ok {
			continue
		}
		var total time.Duration
		for _, d := range st {
			total += d
		}
		front := st["load"] + st["compile"]
		out = append(out, fmt.Sprintf("- Steps of `hostwall apply` at N=%d: load and compile take %s of %s ms (%.0f%%); the kernel steps (transaction, snapshot, save) %s ms.",
			n, ms(front), ms(total), 100*float64(front)/float64(total), ms(st["transaction"]+st["snapshot"]+st["save"])))
	}
	out = append(out, "", "Why the misses, and what issue 8's second round changed (as measured when this was written; the numbers above are this run's):", "",
		"- `hostwall apply --no-cache` against `nft -f`: `nft -f` reads the compiled text, a few",
		"  dozen rules and two sets; `hostwall apply` first reads the policy, N [[policy.forward]]",
		"  tables of TOML, and compiles it. The load is most of the command (see the steps):",
		"  BurntSushi/toml's decoding is about a third of it in CPU profiles. That is the cost of",
		"  the first apply after an edit; round 3 cut the loader's and compiler's allocations",
		"  (positions in a tree instead of maps of path strings: 8.2M to 4.9M allocations at",
		"  N=100,000), but matching `nft -f` would need a TOML decoder several times faster",
		"  than the one the project uses.",
		"- `hostwall apply` of a cached policy (round 3): the cache of compiled policies keeps,",
		"  per policy files' bytes, binary and node, the IR (read only for a lockout check),",
		"  the encoded transaction, the nft text, and per kernel release the snapshot an earlier",
		"  apply read back; the lowering now fills one key buffer (its CPU time per apply halved),",
		"  and netlink sockets close in the background, beside the state files' writing, instead",
		"  of waiting for the commit's RCU grace period first (8-14 ms of a 14 ms transaction at",
		"  N=100).",
		"- Removed in round 2: the second read-back (every set's elements were dumped once to",
		"  check counts and again for the last known good table; the counts now come from the",
		"  kernel's NFTA_SET_COUNT, one small dump, after each encoded element message was",
		"  checked to carry its whole chunk); the quadratic snapshot dump (mdlayher/netlink",
		"  reads one page at a time, so the kernel sent 4 KiB parts and walked the rbtree set",
		"  again for every part: 500 ms at N=100,000, now 75 ms with 64 KiB reads); the second",
		"  print of the ruleset; in the loader, the position scan runs beside the TOML decoding",
		"  and maps, member lists and file buffers are sized up front.",
		"- Compile memory: earlier runs read the peak RSS of `hostwall compile` from wait4 in the",
		"  test process, which folds the test's own high-water mark into the child's (vfork,",
		"  then exec); bench/peakrss measures from a small parent. The live heap at 100,000",
		"  addresses + 10,000 rules is about 50 MiB (the group's members kept for lint, its",
		"  IPSet, the IR sets, the rules); the rest is the collector's headroom.",
		"- Packet path against no ruleset at all: any table with `ct state` makes the router track",
		"  connections; on this shared machine that cost, and the machine's other work, varied",
		"  between runs (0% to 20% of the connection rate, with 23 IR rules at every N). The",
		"  fair baseline is the same policy with no generated rules measured in turn with the",
		"  optimised ruleset (the last column): the optimised ruleset stays within the noise of",
		"  it at every N, the plain one and the iptables export do not.",
		"- Zone dispatch (verdict maps) does not show here: the benchmark's policy has no zones.",
		"  The compiler tests and the differential test cover it; examples/ipsec-gateway.toml and",
		"  examples/webserver dispatch their zones so.",
		"- Growth: compile and apply --no-cache grow about linearly, dominated by the TOML",
		"  decoding of N [[policy.forward]] tables; a cached apply grows with the kernel's work.")
	return out
}
