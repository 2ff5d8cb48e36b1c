package integration

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/examples"
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

// compiledExamples loads every example and compiles it for each of its nodes.
func compiledExamples(t *testing.T) []example {
	t.Helper()
	paths, err := examples.Policies(filepath.Join("..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	var out []example
	for _, path := range paths {
		pol, diags := model.Load(path)
		if err := diags.Err(); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		nodes := pol.CompileNodes()
		for _, node := range nodes {
			rs, diags := compiler.Compile(pol, compiler.Options{Node: node})
			if err := diags.Err(); err != nil {
				t.Fatalf("%s node %q: %v", path, node, err)
			}
			name := strings.TrimSuffix(filepath.Base(path), ".toml")
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
	for _, ex := range compiledExamples(t) {
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

// netlinkLoader applies a ruleset over netlink, as `hostwall apply` does.
func netlinkLoader(t *testing.T, ns *Netns, rs *ir.Ruleset) {
	t.Helper()
	replace(t, labKernel(t, ns), rs)
}

// TestApplyTraffic: for every example, every [[test]] is sent as a real
// packet through a lab whose node applied the example's table over
// netlink: in, out and forward (a client -- router -- server topology with
// the interface names the test gives), TCP and UDP, ICMP and ICMPv6 of the
// test's type, and other protocols (ESP, VRRP, IGMP) from raw sockets;
// established packets on a connection opened before the table was
// applied, invalid ones as a TCP SYN+FIN. The kernel's verdict must be the
// test's expectation and ir.Eval's. What cannot be sent is logged with its
// reason, and counted, per example.
func TestApplyTraffic(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	replayExamples(t, PacketSender{Load: netlinkLoader}, nil)
}
