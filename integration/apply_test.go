package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

// example is one policy of ../examples compiled for one node.
type example struct {
	name string // file or directory, and node
	pol  *model.Policy
	node string
	rs   *ir.Ruleset
}

// examples loads every example and compiles it for each of its nodes.
func examples(t *testing.T) []example {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	var out []example
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
			name := strings.TrimSuffix(e.Name(), ".toml")
			if node != "" {
				name += "/" + node
			}
			out = append(out, example{name: name, pol: pol, node: node, rs: rs})
		}
	}
	if len(out) == 0 {
		t.Fatal("no examples in ../examples")
	}
	return out
}

// labKernel is the netlink Kernel of ns, with a lock file of the test's own
// (so parallel test binaries never wait on the machine's lock).
func labKernel(t *testing.T, ns *Netns) *nft.Netlink {
	return &nft.Netlink{NetNS: ns.Name, LockPath: filepath.Join(t.TempDir(), "hostwall.lock")}
}

func replace(t *testing.T, k nft.Kernel, rs *ir.Ruleset) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := k.Replace(ctx, rs); err != nil {
		t.Fatalf("Replace: %v", err)
	}
}

var handles = regexp.MustCompile(` # handle \d+`)

// listInet is `nft list table inet NAME` inside ns, handles dropped.
func listInet(t *testing.T, ns *Netns, table string) string {
	t.Helper()
	return handles.ReplaceAllString(ns.MustRun(t, "nft", "list", "table", "inet", table), "")
}

// loadText loads an nft script into ns with `nft -f`.
func loadText(t *testing.T, ns *Netns, script string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.MustRun(t, "nft", "-f", path)
}

// TestApplyEquivalence: for every example and node, the table applied over
// netlink lists exactly like the one `nft -f` loads from `hostwall
// compile`'s text.
func TestApplyEquivalence(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	a := NewNetns(t, "eqtext")
	b := NewNetns(t, "eqnetlink")
	k := labKernel(t, b)
	for _, ex := range examples(t) {
		t.Run(ex.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := nft.Print(&buf, ex.rs); err != nil {
				t.Fatal(err)
			}
			loadText(t, a, buf.String())
			replace(t, k, ex.rs)
			want, got := listInet(t, a, ex.rs.Table), listInet(t, b, ex.rs.Table)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("nft list table inet %s differs (-nft -f +netlink):\n%s", ex.rs.Table, d)
			}
			if n := strings.Count(got, "\n"); n < 10 {
				t.Errorf("listing has only %d lines:\n%s", n, got)
			}
		})
	}
}

// labProbe is one [[test]] turned into a packet.
type labProbe struct {
	test  *model.Test
	iface string // the node's interface the packet crosses (iif or oif)
	dst   netip.Addr
	src   netip.Addr
}

// nodeDefaultAddr is the node's address when a test gives no dst (in) or
// src (out) and the policy has no [nodes] address of that family.
func nodeDefaultAddr(pol *model.Policy, node string, fam ir.Family) netip.Addr {
	for _, n := range pol.Nodes {
		if n.Name != node {
			continue
		}
		for _, a := range n.Addresses {
			if ir.FamilyOf(a) == fam {
				return a
			}
		}
	}
	if fam == ir.FamilyIPv6 {
		return netip.MustParseAddr("fd00:ff::fe")
	}
	return netip.MustParseAddr("198.18.255.254")
}

func hostPrefix(a netip.Addr) string {
	if a.Is4() {
		return a.String() + "/32"
	}
	return a.String() + "/128"
}

func mac(t *testing.T, ns *Netns, dev string) string {
	t.Helper()
	out := ns.MustRun(t, "cat", "/sys/class/net/"+dev+"/address")
	return strings.TrimSpace(out)
}

// trafficLab is a node namespace with one interface named iface, joined to
// a peer namespace. Addresses are host routes with permanent neighbour
// entries, so no ARP or ND decides anything.
type trafficLab struct {
	node, peer *Netns
	nodeIf     string
	peerIf     string
}

func newTrafficLab(t *testing.T, iface string) *trafficLab {
	t.Helper()
	node := NewNetns(t, "node")
	peer := NewNetns(t, "peer")
	nIf, pIf := Link(t, node, nil, peer, nil)
	node.MustRun(t, "ip", "link", "set", nIf, "down")
	node.MustRun(t, "ip", "link", "set", nIf, "name", iface)
	node.MustRun(t, "ip", "link", "set", iface, "up")
	for _, ns := range []*Netns{node, peer} {
		ns.MustRun(t, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	return &trafficLab{node: node, peer: peer, nodeIf: iface, peerIf: pIf}
}

// addNodeAddr puts a on the node's lo, and makes the peer send to it over
// the link.
func (l *trafficLab) addNodeAddr(t *testing.T, a netip.Addr) {
	l.node.MustRun(t, "ip", "addr", "add", hostPrefix(a), "dev", "lo", "nodad")
	l.peer.MustRun(t, "ip", "route", "replace", hostPrefix(a), "dev", l.peerIf)
	l.peer.MustRun(t, "ip", "neigh", "replace", a.String(), "lladdr", mac(t, l.node, l.nodeIf), "dev", l.peerIf, "nud", "permanent")
}

// addPeerAddr puts a on the peer's lo, and makes the node send to it over
// the link.
func (l *trafficLab) addPeerAddr(t *testing.T, a netip.Addr) {
	l.peer.MustRun(t, "ip", "addr", "add", hostPrefix(a), "dev", "lo", "nodad")
	l.node.MustRun(t, "ip", "route", "replace", hostPrefix(a), "dev", l.nodeIf)
	l.node.MustRun(t, "ip", "neigh", "replace", a.String(), "lladdr", mac(t, l.peer, l.peerIf), "dev", l.nodeIf, "nud", "permanent")
}

func outcomeOf(a model.Action) Outcome {
	switch a {
	case model.ActionAccept:
		return Accepted
	case model.ActionReject:
		return Rejected
	}
	return Dropped
}

// TestApplyTraffic: for every example, every [[test]] of direction in or
// out with protocol tcp or udp and state new is sent as a real packet
// through a node namespace whose table was applied over netlink, over IPv4
// and IPv6 as the tests say; the verdict must be the test's expectation.
func TestApplyTraffic(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	const timeout = 1500 * time.Millisecond
	ran, skipped, byWant := 0, map[string]int{}, map[string]int{}
	var mu sync.Mutex
	for _, ex := range examples(t) {
		// Group the example's tests for this node by (direction, interface).
		groups := map[string][]labProbe{}
		for _, tc := range ex.pol.Tests {
			if tc.Node != ex.node {
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
			p := labProbe{test: tc, src: tc.Src, dst: tc.Dst}
			if tc.Direction == model.HookIn {
				p.iface = cmpOr(tc.IIF, "eth0")
				if !p.dst.IsValid() {
					p.dst = nodeDefaultAddr(ex.pol, ex.node, ir.FamilyOf(p.src))
				}
			} else {
				p.iface = cmpOr(tc.OIF, "eth0")
				if !p.dst.IsValid() {
					skipped["out without dst"]++
					continue
				}
			}
			key := fmt.Sprintf("%d/%s", tc.Direction, p.iface)
			groups[key] = append(groups[key], p)
		}
		for _, key := range slices.Sorted(mapKeys(groups)) {
			probes := groups[key]
			t.Run(ex.name+"/"+key, func(t *testing.T) {
				lab := newTrafficLab(t, probes[0].iface)
				in := probes[0].test.Direction == model.HookIn
				// Local and remote ends of every probe.
				listenNS := lab.node
				if !in {
					listenNS = lab.peer
				}
				added := map[string]bool{}
				ports := map[string]bool{}
				for _, p := range probes {
					local, remote := p.dst, p.src // in: node has dst
					if !in {
						local, remote = p.src, p.dst // out: node has src
					}
					if !added["n"+local.String()] {
						added["n"+local.String()] = true
						lab.addNodeAddr(t, local)
					}
					if !added["p"+remote.String()] {
						added["p"+remote.String()] = true
						lab.addPeerAddr(t, remote)
					}
					pk := fmt.Sprintf("%s/%d", p.test.Proto, *p.test.DPort)
					if !ports[pk] {
						ports[pk] = true
						addr := fmt.Sprintf(":%d", *p.test.DPort)
						if p.test.Proto == ir.ProtoTCP {
							TCPListen(t, listenNS, addr)
						} else {
							UDPListen(t, listenNS, addr)
						}
					}
				}
				replace(t, labKernel(t, lab.node), ex.rs)
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
						want := outcomeOf(p.test.Expect)
						if got != want {
							t.Errorf("%s (%s:%d): %s %s -> %s port %d: got %s (%v), want %s",
								p.test.Name, p.test.Pos.File, p.test.Pos.Line, p.test.Proto, p.src, p.dst, *p.test.DPort, got, err, want)
						}
						mu.Lock()
						ran++
						byWant[want.String()+"/"+p.test.Proto.String()+"/"+familyWord(p.src)]++
						mu.Unlock()
					}()
				}
				wg.Wait()
			})
		}
	}
	t.Logf("probes sent: %d %v; tests not sendable here: %v", ran, byWant, skipped)
	if ran == 0 {
		t.Fatal("no example test could be sent")
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func familyWord(a netip.Addr) string {
	if a.Is4() {
		return "ipv4"
	}
	return "ipv6"
}
