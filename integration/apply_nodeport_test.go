package integration

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// nodePortPolicy guards NodePort 31002 from everything but the nodes and
// 31004 from everyone (the node itself included); 31003 is published too
// and stays unguarded. The node under test is
// "self"; "peer" is a cluster node whose client the guard exempts.
const nodePortPolicy = `
[settings]
guard_priority = -110

[defaults]
input   = "drop"
forward = "accept"
output  = "accept"

[nodes]
self = { addresses = ["198.18.5.1", "fd00:5::1"] }
peer = { addresses = ["198.18.7.2", "fd00:7::2"] }

[[guard]]
name    = "nodeport-31002"
service = "tcp/31002"
from    = "!nodes"

[[guard]]
name    = "nodeport-31004"
service = "tcp/31004"
`

func compilePolicy(t *testing.T, text, node string) *ir.Ruleset {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, diags := model.Load(path)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	rs, diags := compiler.Compile(pol, compiler.Options{Node: node})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return rs
}

// nodePortLab is client -- node -- backend, plus a client that is a
// cluster node, with a kube-proxy-like DNAT on the node.
type nodePortLab struct {
	node, client, peer, backend *Netns
}

func newNodePortLab(t *testing.T) *nodePortLab {
	t.Helper()
	l := &nodePortLab{
		node:    NewNetns(t, "npnode"),
		client:  NewNetns(t, "npclient"),
		peer:    NewNetns(t, "nppeer"),
		backend: NewNetns(t, "npbackend"),
	}
	for _, ns := range []*Netns{l.node, l.client, l.peer, l.backend} {
		ns.MustRun(t, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	l.node.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	Link(t, l.client, []string{"198.18.5.2/24", "fd00:5::2/64"}, l.node, []string{"198.18.5.1/24", "fd00:5::1/64"})
	Link(t, l.peer, []string{"198.18.7.2/24", "fd00:7::2/64"}, l.node, []string{"198.18.7.1/24", "fd00:7::1/64"})
	Link(t, l.backend, []string{"198.18.6.2/24", "fd00:6::2/64"}, l.node, []string{"198.18.6.1/24", "fd00:6::1/64"})
	l.client.MustRun(t, "ip", "route", "add", "default", "via", "198.18.5.1")
	l.client.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd00:5::1")
	l.peer.MustRun(t, "ip", "route", "add", "default", "via", "198.18.7.1")
	l.peer.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd00:7::1")
	l.backend.MustRun(t, "ip", "route", "add", "default", "via", "198.18.6.1")
	l.backend.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd00:6::1")
	TCPListen(t, l.backend, ":8080")
	return l
}

// kubeProxyDNAT installs, with the given iptables flavour, what kube-proxy
// does for three NodePorts: DNAT tcp/31002-31004 to backend:8080, on
// PREROUTING and on OUTPUT (for the node's own connections).
func kubeProxyDNAT(t *testing.T, ns *Netns, ipt, ip6t string) {
	t.Helper()
	for _, port := range []string{"31002", "31003", "31004"} {
		for _, chain := range []string{"PREROUTING", "OUTPUT"} {
			ns.MustRun(t, ipt, "-t", "nat", "-A", chain, "-p", "tcp", "--dport", port, "-m", "addrtype", "--dst-type", "LOCAL",
				"-j", "DNAT", "--to-destination", "198.18.6.2:8080")
			ns.MustRun(t, ip6t, "-t", "nat", "-A", chain, "-p", "tcp", "--dport", port, "-m", "addrtype", "--dst-type", "LOCAL",
				"-j", "DNAT", "--to-destination", "[fd00:6::2]:8080")
		}
	}
}

type npCase struct {
	name string
	from *Netns
	src  string
	dst  string
	want Outcome
}

func (l *nodePortLab) check(t *testing.T, stage string, cases []npCase) {
	t.Helper()
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := Probe(c.from, "tcp", c.src, c.dst, 1500*time.Millisecond)
			if got != c.want {
				t.Errorf("%s: %s (%s -> %s): got %s (%v), want %s", stage, c.name, c.src, c.dst, got, err, c.want)
			}
		}()
	}
	wg.Wait()
}

// TestApplyNodePortGuard: a kube-proxy-like DNAT (iptables-legacy, then
// iptables-nft) publishes tcp/31002 and tcp/31003. A plain input-hook drop
// does not stop 31002 (DNAT rewrote the port); hostwall's guard does, from
// another namespace and from the node to its own address, over IPv4 and
// IPv6, while a client that is a cluster node still gets through and the
// unguarded 31003 stays open.
func TestApplyNodePortGuard(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	for _, flavour := range []struct{ name, ipt, ip6t string }{
		{"legacy", "iptables-legacy", "ip6tables-legacy"},
		{"nft", "iptables-nft", "ip6tables-nft"},
	} {
		t.Run(flavour.name, func(t *testing.T) {
			RequireTool(t, flavour.ipt)
			RequireTool(t, flavour.ip6t)
			l := newNodePortLab(t)
			kubeProxyDNAT(t, l.node, flavour.ipt, flavour.ip6t)

			guarded := func(want Outcome) []npCase {
				return []npCase{
					{"client v4", l.client, "198.18.5.2", "198.18.5.1:31002", want},
					{"client v6", l.client, "fd00:5::2", "[fd00:5::1]:31002", want},
					{"client v4, guard without from", l.client, "198.18.5.2", "198.18.5.1:31004", want},
					{"node to itself v4", l.node, "198.18.5.1", "198.18.5.1:31004", want},
					{"node to itself v6", l.node, "fd00:5::1", "[fd00:5::1]:31004", want},
				}
			}
			open := []npCase{
				// The node is in nodes, so from = "!nodes" exempts it too.
				{"node to itself, exempt as a node", l.node, "198.18.5.1", "198.18.5.1:31002", Accepted},
				{"cluster node v4", l.peer, "198.18.7.2", "198.18.5.1:31002", Accepted},
				{"cluster node v6", l.peer, "fd00:7::2", "[fd00:5::1]:31002", Accepted},
				{"unguarded nodeport v4", l.client, "198.18.5.2", "198.18.5.1:31003", Accepted},
				{"unguarded nodeport v6", l.client, "fd00:5::2", "[fd00:5::1]:31003", Accepted},
			}

			// The DNAT works at all.
			l.check(t, "no filter", append(guarded(Accepted), open...))

			// A plain input-hook drop of the NodePort does not block it.
			loadText(t, l.node, "table inet plain {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport { 31002, 31004 } drop\n\t}\n}\n")
			l.check(t, "plain input drop", guarded(Accepted))
			l.node.MustRun(t, "nft", "delete", "table", "inet", "plain")

			// hostwall's guard on prerouting/output at -110 does.
			rs := compilePolicy(t, nodePortPolicy, "self")
			k := labKernel(t, l.node)
			replace(t, k, rs)
			l.check(t, "hostwall guard", append(guarded(Dropped), open...))

			// Flush gives the NodePort back.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := k.Delete(ctx, rs.Table); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			l.check(t, "after flush", guarded(Accepted))
		})
	}
}
