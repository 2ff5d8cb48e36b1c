package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// RouterLab is a node namespace whose interfaces carry the names a policy
// uses (eth0, bond0.7, vxlan.calico...), each joined by a veth pair to a
// peer namespace of its own: the hosts "behind" that interface. With
// forwarding on, the node routes between its peers, so a packet can enter
// on one named interface and leave on another (a client -- node -- server
// topology for forward probes).
//
// Addresses live on the lo of their namespace as host routes, and every
// other namespace of the lab reaches them through static routes and
// permanent neighbour entries (the MACs are chosen, not learnt): no ARP or
// neighbour discovery ever decides anything. Setup commands are queued and
// run by Commit with one `ip -batch` per namespace.
type RouterLab struct {
	Node *Netns
	// Links are the node's interfaces, by name.
	Links map[string]*RouterLink

	pending map[*Netns][]string
	// owner says which namespace holds each address added with AddAddr.
	owner map[netip.Addr]*Netns
}

// RouterLink is one named interface of the node and the peer namespace at
// its other end.
type RouterLink struct {
	Name             string // the node's interface name
	Peer             *Netns
	PeerIf           string
	NodeMAC, PeerMAC string
}

// NewRouterLab makes the node namespace with one interface per name (each
// to a fresh peer namespace), IP forwarding on or off as asked, reverse
// path filtering off, and ICMP error rate limits off (so that a burst of
// rejects is answered every time, as the firewall decides, not as the
// kernel's rate limiter does). Call AddAddr, then Commit.
func NewRouterLab(t testing.TB, ifnames []string, forwarding bool) *RouterLab {
	t.Helper()
	if len(ifnames) == 0 {
		t.Fatal("NewRouterLab: no interface")
	}
	l := &RouterLab{
		Node:    NewNetns(t, "rnode"),
		Links:   map[string]*RouterLink{},
		pending: map[*Netns][]string{},
		owner:   map[netip.Addr]*Netns{},
	}
	fwd := "0"
	if forwarding {
		fwd = "1"
	}
	sysctls := map[string]string{
		"net/ipv4/ip_forward":              fwd,
		"net/ipv6/conf/all/forwarding":     fwd,
		"net/ipv4/conf/all/rp_filter":      "0",
		"net/ipv4/conf/default/rp_filter":  "0",
		"net/ipv4/icmp_ratemask":           "0",
		"net/ipv4/icmp_ratelimit":          "0",
		"net/ipv6/icmp/ratelimit":          "0",
		"net/ipv6/icmp/ratemask":           "",
		"net/ipv6/conf/default/accept_dad": "0",
	}
	err := l.Node.Do(func() error {
		for _, k := range sortedKeys(sysctls) {
			if err := os.WriteFile("/proc/sys/"+k, []byte(sysctls[k]+"\n"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("lab %s: sysctl: %v", l.Node, err)
	}
	for _, name := range ifnames {
		if _, dup := l.Links[name]; dup {
			t.Fatalf("NewRouterLab: interface %q twice", name)
		}
		n := seq.Add(1)
		peer := NewNetns(t, "rpeer")
		lk := &RouterLink{
			Name:    name,
			Peer:    peer,
			PeerIf:  fmt.Sprintf("hwp%d", n),
			NodeMAC: labMAC(2 * n),
			PeerMAC: labMAC(2*n + 1),
		}
		l.Links[name] = lk
		l.queue(l.Node,
			fmt.Sprintf("link add %s address %s type veth peer name %s address %s netns %s", name, lk.NodeMAC, lk.PeerIf, lk.PeerMAC, peer.Name),
			fmt.Sprintf("link set %s up", name))
		l.queue(peer, fmt.Sprintf("link set %s up", lk.PeerIf))
	}
	return l
}

// labMAC is a locally administered unicast MAC address, unique within the
// test process.
func labMAC(n uint64) string {
	return fmt.Sprintf("02:68:77:%02x:%02x:%02x", byte(n>>16), byte(n>>8), byte(n))
}

func (l *RouterLab) queue(ns *Netns, cmds ...string) {
	l.pending[ns] = append(l.pending[ns], cmds...)
}

// Peer returns the peer namespace behind the node's interface name.
func (l *RouterLab) Peer(ifname string) *Netns { return l.Links[ifname].Peer }

// AddAddr puts a on the lo of ns (the node or one of the peers) and routes
// it from every other namespace of the lab: the node sends to a peer's
// address over that peer's link, a peer sends everything that is not its
// own to the node. It fails when a already lives in another namespace of
// the lab (an address is in one place or the packets go astray); adding
// it again to the same namespace does nothing.
func (l *RouterLab) AddAddr(ns *Netns, a netip.Addr) error {
	if !LabAddr(a) {
		return fmt.Errorf("address %s is outside the lab's ranges 198.18.0.0/15 and fd00::/8", a)
	}
	if o, ok := l.owner[a]; ok {
		if o != ns {
			return fmt.Errorf("address %s is already in namespace %s", a, o)
		}
		return nil
	}
	l.owner[a] = ns
	dad := ""
	if a.Is6() {
		dad = " nodad"
	}
	l.queue(ns, fmt.Sprintf("addr add %s dev lo%s", labHost(a), dad))
	var owned *RouterLink // the link whose peer holds a, if a peer does
	for _, lk := range l.sortedLinks() {
		if lk.Peer == ns {
			owned = lk
		}
	}
	if owned != nil {
		l.queue(l.Node,
			fmt.Sprintf("route replace %s dev %s", labHost(a), owned.Name),
			fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", a, owned.PeerMAC, owned.Name))
	}
	for _, lk := range l.sortedLinks() {
		if lk.Peer == ns {
			continue
		}
		l.queue(lk.Peer,
			fmt.Sprintf("route replace %s dev %s", labHost(a), lk.PeerIf),
			fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", a, lk.NodeMAC, lk.PeerIf))
	}
	return nil
}

// Owner returns the namespace AddAddr put a in, or nil.
func (l *RouterLab) Owner(a netip.Addr) *Netns { return l.owner[a] }

func (l *RouterLab) sortedLinks() []*RouterLink {
	var out []*RouterLink
	for _, k := range sortedKeys(l.Links) {
		out = append(out, l.Links[k])
	}
	return out
}

// Commit runs the queued setup: the node's commands first (it creates the
// links), then each peer's.
func (l *RouterLab) Commit(t testing.TB) {
	t.Helper()
	order := []*Netns{l.Node}
	for _, lk := range l.sortedLinks() {
		order = append(order, lk.Peer)
	}
	for _, ns := range order {
		cmds := l.pending[ns]
		if len(cmds) == 0 {
			continue
		}
		delete(l.pending, ns)
		if out, err := commandInput(strings.Join(cmds, "\n")+"\n", "ip", "-n", ns.Name, "-batch", "-"); err != nil {
			t.Fatalf("lab %s: ip -batch: %v\n%s\ncommands:\n%s", ns, err, out, strings.Join(cmds, "\n"))
		}
	}
}

// LabAddr reports whether a may be used in the lab: it is in 198.18.0.0/15
// or fd00::/8.
func LabAddr(a netip.Addr) bool {
	return labNet4.Contains(a) || labNet6.Contains(a)
}

var (
	labNet4 = netip.MustParsePrefix("198.18.0.0/15")
	labNet6 = netip.MustParsePrefix("fd00::/8")
)

// labHost is a as a host prefix (/32 or /128).
func labHost(a netip.Addr) string {
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// sortedKeys returns the keys of m in sorted order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// commandInput is command with stdin.
func commandInput(stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Stdin = strings.NewReader(stdin)
	out, err := c.CombinedOutput()
	return string(out), err
}
