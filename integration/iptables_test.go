package integration

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/iptables"
	"github.com/hostwall/hostwall/model"
)

// iptLegacyTools are the programs the iptables tests load files with. The
// lab uses iptables-legacy, so nothing here depends on the nft backend of
// iptables.
var iptLegacyTools = map[string]string{"v4": "iptables-legacy-restore", "v6": "ip6tables-legacy-restore"}

// iptSetsFile is the ipset file that goes with a golden rules file, or "".
func iptSetsFile(rules string) string {
	dir, base := filepath.Split(rules)
	switch {
	case strings.Contains(base, ".ipset.rules."): // examples/NAME.ipset.rules.v4
		return dir + strings.Replace(base, ".ipset.rules.", ".ipset.", 1)
	case strings.Contains(base, "-ipset.rules."): // CASE-ipset.rules.v4
		return dir + strings.Replace(base, ".rules.", ".ipset.", 1)
	}
	return ""
}

func iptRuleLines(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "-A ") {
			n++
		}
	}
	return n
}

// TestIptablesGoldens loads every golden file of package iptables (hand
// built cases and every example, both families, full, --noflush and
// --ipset) for real with iptables-legacy-restore / ip6tables-legacy-restore
// in a fresh namespace: the kernel, not `--test`, must take every rule
// (`--test` misses targets that are invalid in their table). Then
// iptables-save must list as many rules as the file has, and a --noflush
// file must load a second time without duplicating anything.
func TestIptablesGoldens(t *testing.T) {
	RequireRoot(t)
	for _, tool := range iptLegacyTools {
		RequireTool(t, tool)
	}
	var files []string
	for _, pat := range []string{"*.rules.v[46]", "examples/*.rules.v[46]"} {
		m, err := filepath.Glob(filepath.Join("..", "iptables", "testdata", pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 20 {
		t.Fatalf("found %d golden files under ../iptables/testdata, want at least 20", len(files))
	}
	for _, f := range files {
		rel, _ := filepath.Rel(filepath.Join("..", "iptables", "testdata"), f)
		t.Run(rel, func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			fam := f[len(f)-2:]
			tool := iptLegacyTools[fam]
			ns := NewNetns(t, "iptgold")
			if sets := iptSetsFile(f); sets != "" {
				RequireTool(t, "ipset")
				ns.MustRun(t, "ipset", "restore", "-file", sets)
			}
			args := []string{tool}
			noflush := strings.Contains(string(body), "--noflush`")
			if noflush {
				args = append(args, "--noflush")
			}
			args = append(args, f)
			ns.MustRun(t, args...)
			if noflush {
				ns.MustRun(t, args...) // again: chains are flushed, not doubled
			}
			saved := ns.MustRun(t, strings.TrimSuffix(tool, "-restore")+"-save")
			if got, want := iptRuleLines(saved), iptRuleLines(string(body)); got != want {
				t.Errorf("%s lists %d rules, the file has %d:\n%s", tool, got, want, saved)
			}
		})
	}
}

// iptProbe is one example [[test]] sent as a real packet.
type iptProbe struct {
	test     *model.Test
	src, dst netip.Addr
	iface    string
	in       bool
	eval     ir.Verdict // what ir.Eval says (the nftables meaning)
}

func iptHost(a netip.Addr) string {
	if a.Is4() {
		return a.String() + "/32"
	}
	return a.String() + "/128"
}

func iptOutcome(v ir.Verdict) Outcome {
	switch v.(type) {
	case ir.Accept:
		return Accepted
	case ir.Reject:
		return Rejected
	}
	return Dropped
}

func iptExpect(a model.Action) Outcome {
	switch a {
	case model.ActionAccept:
		return Accepted
	case model.ActionReject:
		return Rejected
	}
	return Dropped
}

// iptLab is a node namespace with one interface of a chosen name, joined to
// a peer namespace; addresses live on lo with host routes and permanent
// neighbour entries, so that ARP and ND decide nothing.
type iptLab struct {
	node, peer     *Netns
	nodeIf, peerIf string
}

func newIptLab(t *testing.T, iface string) *iptLab {
	t.Helper()
	node := NewNetns(t, "iptnode")
	peer := NewNetns(t, "iptpeer")
	nIf, pIf := Link(t, node, nil, peer, nil)
	node.MustRun(t, "ip", "link", "set", nIf, "down")
	node.MustRun(t, "ip", "link", "set", nIf, "name", iface)
	node.MustRun(t, "ip", "link", "set", iface, "up")
	return &iptLab{node: node, peer: peer, nodeIf: iface, peerIf: pIf}
}

func (l *iptLab) mac(t *testing.T, ns *Netns, dev string) string {
	t.Helper()
	return strings.TrimSpace(ns.MustRun(t, "cat", "/sys/class/net/"+dev+"/address"))
}

// addAddr puts a on lo of `on` and routes it from `from` over the link.
func (l *iptLab) addAddr(t *testing.T, on *Netns, onIf string, from *Netns, fromIf string, a netip.Addr) {
	t.Helper()
	on.MustRun(t, "ip", "addr", "add", iptHost(a), "dev", "lo", "nodad")
	from.MustRun(t, "ip", "route", "replace", iptHost(a), "dev", fromIf)
	from.MustRun(t, "ip", "neigh", "replace", a.String(), "lladdr", l.mac(t, on, onIf), "dev", fromIf, "nud", "permanent")
}

// iptLoad exports rs for both families (guard rejects written exactly, with
// marks) in a mode and loads the files into the node with iptables-legacy:
// "rules" (full files, groups expanded), "ipset" (full files, groups as
// ipsets) or "noflush" (only our chains, then the jumps from the file's
// header, run twice as an operator's script would be).
func iptLoad(t *testing.T, ns *Netns, rs *ir.Ruleset, mode string) {
	t.Helper()
	dir := t.TempDir()
	for _, fam := range []struct {
		f      ir.Family
		suffix string
	}{{ir.FamilyIPv4, "v4"}, {ir.FamilyIPv6, "v6"}} {
		opts := iptables.Options{Family: fam.f, GuardReject: iptables.GuardRejectMark, NoFlush: mode == "noflush"}
		var rules, sets bytes.Buffer
		if mode == "ipset" {
			opts.IPSet = &sets
		}
		if err := iptables.Export(&rules, rs, opts); err != nil {
			t.Fatalf("export %s: %v", fam.suffix, err)
		}
		path := filepath.Join(dir, "rules."+fam.suffix)
		if err := os.WriteFile(path, rules.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if mode == "ipset" {
			sp := filepath.Join(dir, "ipset."+fam.suffix)
			if err := os.WriteFile(sp, sets.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			ns.MustRun(t, "ipset", "restore", "-file", sp)
		}
		if mode != "noflush" {
			ns.MustRun(t, iptLegacyTools[fam.suffix], path)
			continue
		}
		ns.MustRun(t, iptLegacyTools[fam.suffix], "--noflush", path)
		var jumps []string
		for _, l := range strings.Split(rules.String(), "\n") {
			if cmd, ok := strings.CutPrefix(l, "#   "); ok {
				cmd = strings.ReplaceAll(cmd, "ip6tables -", "ip6tables-legacy -")
				cmd = strings.ReplaceAll(cmd, "iptables -", "iptables-legacy -")
				jumps = append(jumps, cmd)
			}
		}
		if len(jumps) == 0 {
			t.Fatalf("the --noflush %s file names no jumps:\n%s", fam.suffix, rules.String())
		}
		for range 2 {
			for _, j := range jumps {
				ns.MustRun(t, "sh", "-c", j)
			}
		}
		saved := ns.MustRun(t, strings.TrimSuffix(iptLegacyTools[fam.suffix], "-restore")+"-save")
		if n := strings.Count(saved, " -j HOSTWALL-INPUT\n"); n != 1 {
			t.Fatalf("%d jumps to HOSTWALL-INPUT after installing them twice:\n%s", n, saved)
		}
	}
}

// TestIptablesTraffic sends the examples' [[test]]s (direction in or out,
// tcp or udp, state new: what the netlink apply test sends too) as real
// packets through a node namespace that loaded the exported rules.v4 and
// rules.v6 into iptables-legacy: with groups expanded into rules, with
// --ipset, and with --noflush plus the jumps its header lists. Every verdict must be the one ir.Eval gives for the
// compiled ruleset (the meaning the nftables backend implements) and the
// one the test expects. IPv4 and IPv6, guards (NodePort) included.
func TestIptablesTraffic(t *testing.T) {
	RequireRoot(t)
	for _, tool := range iptLegacyTools {
		RequireTool(t, tool)
	}
	const timeout = 1500 * time.Millisecond
	var mu sync.Mutex
	ran, skipped := 0, map[string]int{}
	entries, err := os.ReadDir(filepath.Join("..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	// The groups run concurrently (most of the time is drop timeouts);
	// "examples" returns when all of them are done.
	t.Run("examples", func(t *testing.T) { iptTrafficExamples(t, entries, timeout, &mu, &ran, skipped) })
	t.Logf("probes sent: %d; tests not sendable here: %v", ran, skipped)
	if ran == 0 {
		t.Fatal("no example test could be sent")
	}
}

// iptTrafficExamples runs TestIptablesTraffic's groups as subtests, at
// most 8 at once (t.Run may be called from several goroutines; -parallel
// would bound them by the CPU count, and they mostly wait).
func iptTrafficExamples(t *testing.T, entries []os.DirEntry, timeout time.Duration, mu *sync.Mutex, ran *int, skipped map[string]int) {
	var wgGroups sync.WaitGroup
	defer wgGroups.Wait()
	sem := make(chan struct{}, 8)
	for _, e := range entries {
		if !e.IsDir() && !strings.HasSuffix(e.Name(), ".toml") {
			continue
		}
		pol, diags := model.Load(filepath.Join("..", "examples", e.Name()))
		if err := diags.Err(); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		nodes := []string{""}
		if len(pol.Nodes) > 0 {
			nodes = nil
			for _, n := range pol.Nodes {
				nodes = append(nodes, n.Name)
			}
		}
		for _, node := range nodes {
			rs, diags := compiler.Compile(pol, compiler.Options{Node: node})
			if err := diags.Err(); err != nil {
				t.Fatalf("%s node %q: %v", e.Name(), node, err)
			}
			groups := map[string][]iptProbe{}
			for _, tc := range pol.Tests {
				if tc.Node != node {
					continue
				}
				switch {
				case tc.Direction == model.HookForward:
					skipped["forward"]++
					continue
				case tc.Proto != ir.ProtoTCP && tc.Proto != ir.ProtoUDP:
					skipped["protocol "+tc.Proto.String()]++
					continue
				case tc.State != ir.CtNew:
					skipped["state "+tc.State.String()]++
					continue
				case tc.DPort == nil:
					skipped["no dport"]++
					continue
				}
				pkt := compiler.PacketOfTest(pol, tc)
				p := iptProbe{test: tc, src: pkt.Src, dst: pkt.Dst, in: tc.Direction == model.HookIn, eval: ir.Eval(rs, pkt).Verdict}
				if p.in {
					p.iface = iptOr(tc.IIF, "eth0")
				} else {
					p.iface = iptOr(tc.OIF, "eth0")
				}
				if !p.dst.IsValid() || p.dst.IsUnspecified() {
					skipped["no destination address"]++
					continue
				}
				key := fmt.Sprintf("%s-%s", map[bool]string{true: "in", false: "out"}[p.in], p.iface)
				groups[key] = append(groups[key], p)
			}
			name := strings.TrimSuffix(e.Name(), ".toml")
			if node != "" {
				name += "/" + node
			}
			for _, key := range slices.Sorted(func(yield func(string) bool) {
				for k := range groups {
					if !yield(k) {
						return
					}
				}
			}) {
				probes := groups[key]
				for _, mode := range []string{"rules", "ipset", "noflush"} {
					wgGroups.Add(1)
					go func() {
						defer wgGroups.Done()
						sem <- struct{}{}
						defer func() { <-sem }()
						t.Run(name+"/"+key+"/"+mode, func(t *testing.T) {
							if mode == "ipset" {
								RequireTool(t, "ipset")
							}
							lab := newIptLab(t, probes[0].iface)
							in := probes[0].in
							listen := lab.node
							if !in {
								listen = lab.peer
							}
							added, ports := map[string]bool{}, map[string]bool{}
							for _, p := range probes {
								local, remote := p.dst, p.src
								if !in {
									local, remote = p.src, p.dst
								}
								if !added["n"+local.String()] {
									added["n"+local.String()] = true
									lab.addAddr(t, lab.node, lab.nodeIf, lab.peer, lab.peerIf, local)
								}
								if !added["p"+remote.String()] {
									added["p"+remote.String()] = true
									lab.addAddr(t, lab.peer, lab.peerIf, lab.node, lab.nodeIf, remote)
								}
								pk := fmt.Sprintf("%s/%d", p.test.Proto, *p.test.DPort)
								if !ports[pk] {
									ports[pk] = true
									if p.test.Proto == ir.ProtoTCP {
										TCPListen(t, listen, fmt.Sprintf(":%d", *p.test.DPort))
									} else {
										UDPListen(t, listen, fmt.Sprintf(":%d", *p.test.DPort))
									}
								}
							}
							iptLoad(t, lab.node, rs, mode)
							var wg sync.WaitGroup
							for _, p := range probes {
								wg.Add(1)
								go func() {
									defer wg.Done()
									from := lab.peer
									if !in {
										from = lab.node
									}
									got, err := ProbeFrom(from, p.test.Proto.String(), p.src.String(), portOf(p.test.SPort), netip.AddrPortFrom(p.dst, *p.test.DPort).String(), timeout)
									if want := iptOutcome(p.eval); got != want {
										t.Errorf("%s (%s:%d): %s %s -> %s port %d: iptables %s (%v), ir.Eval %s",
											p.test.Name, p.test.Pos.File, p.test.Pos.Line, p.test.Proto, p.src, p.dst, *p.test.DPort, got, err, want)
									}
									if want := iptExpect(p.test.Expect); got != want {
										t.Errorf("%s (%s:%d): iptables %s, the test expects %s", p.test.Name, p.test.Pos.File, p.test.Pos.Line, got, want)
									}
									mu.Lock()
									*ran++
									mu.Unlock()
								}()
							}
							wg.Wait()
						})
					}()
				}
			}
		}
	}
}

func iptOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
