package model

import (
	"crypto/sha256"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

func ptr[T any](v T) *T { return &v }

func rng(s string) netipx.IPRange {
	r, err := parseLiteral(s)
	if err != nil {
		panic(err)
	}
	return r
}

func tcp(lo, hi uint16, text string) ServiceSpec {
	return ServiceSpec{Proto: ir.ProtoTCP, DPorts: []ir.PortRange{{Lo: lo, Hi: hi}}, Text: text}
}

var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b netipx.IPRange) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b *netipx.IPSet) bool {
		if a == nil || b == nil {
			return a == b
		}
		return slices.Equal(a.Ranges(), b.Ranges())
	}),
	cmpopts.IgnoreFields(Rule{}, "Policy"),
	cmpopts.IgnoreTypes(Pos{}, KeyPos{}),
	cmpopts.EquateEmpty(),
}

func set(lits ...string) *netipx.IPSet {
	var b netipx.IPSetBuilder
	for _, l := range lits {
		b.AddRange(rng(l))
	}
	s, _ := b.IPSet()
	return s
}

// TestLoadValid decodes a policy that uses every key of the format and
// compares every decoded value.
func TestLoadValid(t *testing.T) {
	const dir = "testdata/valid/full"
	p, d := Load(dir + "/policy.toml")
	if len(d) != 0 {
		t.Fatalf("unexpected diags:\n%v", d.Err())
	}
	pb1 := &PolicyBlock{Name: "control-plane-etcd", Order: 102, Roles: []string{"etcd"}, Zone: "mgmt"}
	pb1.In = []*Rule{
		{Hook: HookIn, Index: 0, Seq: 0, From: AddrSpec{Items: []AddrItem{{Kind: AddrRole, Name: "etcd", Text: "role:etcd"}}},
			Services: []ServiceSpec{tcp(2379, 2379, "tcp/2379")}, Action: ActionAccept, Counter: true, Comment: "etcd client"},
		{Hook: HookIn, Index: 1, Seq: 2, Zone: "workload",
			From:     AddrSpec{Items: []AddrItem{{Kind: AddrGroup, Negate: true, Name: "cluster", Text: "!cluster"}}},
			To:       AddrSpec{Items: []AddrItem{{Kind: AddrAny, Text: "any"}}},
			Services: []ServiceSpec{tcp(80, 80, "tcp/80"), tcp(443, 443, "tcp/443")},
			State:    ir.CtNew | ir.CtUntracked, Action: ActionReject, RejectWith: ptr(RejectTCPReset),
			Log: &Log{Prefix: "web: "}, Limit: &ir.Limit{Rate: 100, Unit: ir.PerMinute, Burst: 20},
			Counter: false, Roles: []string{"master"}},
	}
	pb1.Out = []*Rule{
		{Hook: HookOut, Index: 0, Seq: 1, Zone: "mgmt",
			To: AddrSpec{Items: []AddrItem{{Kind: AddrRole, Name: "etcd", Text: "role:etcd"}, {Kind: AddrNodes, Text: "nodes"},
				{Kind: AddrLiteral, Range: rng("192.0.2.0/24"), Text: "192.0.2.0/24"}}},
			Services: []ServiceSpec{tcp(2380, 2380, "tcp/2380"), tcp(22, 22, "tcp/22")}, Action: ActionAccept, Counter: true},
	}
	ike := ServiceSpec{Proto: ir.ProtoUDP, DPorts: []ir.PortRange{{Lo: 500, Hi: 500}}, SPorts: []ir.PortRange{{Lo: 500, Hi: 500}}, Text: "udp port 500 sport 500"}
	pb2 := &PolicyBlock{Name: "routing", Order: 1000}
	pb2.Forward = []*Rule{{Hook: HookForward, Seq: 3, FromZone: "lan", ToZone: "public", Services: []ServiceSpec{ike},
		State: ir.CtNew, Action: ActionDrop, Log: &Log{}, Counter: true}}
	for _, r := range slices.Concat(pb1.In, pb1.Out) {
		r.Policy = pb1
	}
	want := &Policy{
		Version:  1,
		Settings: Settings{Table: "hostwall", GuardPriority: -110},
		Defaults: Defaults{Input: ActionDrop, Forward: ActionDrop, Output: ActionAccept, Established: true, Invalid: ActionDrop,
			Loopback: true, ICMP: ICMPEssential, RejectWith: RejectAdminProhibited,
			Log: &Log{Prefix: "hostwall drop: ", Limit: &ir.Limit{Rate: 5, Unit: ir.PerMinute}}},
		Zones: []*Zone{
			{Name: "mgmt", Interfaces: []Iface{{Name: "eth0"}}},
			{Name: "workload", Interfaces: []Iface{{Name: "bond0"}, {Name: "vxlan*"}}},
			{Name: "public", Interfaces: []Iface{{Name: "inet0"}}},
			{Name: "lan", Interfaces: []Iface{{Name: "lan0"}}},
		},
		Groups: []*Group{
			{Name: "cluster", Members: []Member{{Range: rng("10.0.0.11"), Text: "10.0.0.11"}, {Range: rng("10.0.0.12"), Text: "10.0.0.12"},
				{Range: rng("fd00:10::/64"), Text: "fd00:10::/64"}}, Addrs: set("10.0.0.11-10.0.0.12", "fd00:10::/64")},
			{Name: "remote_gw", Members: []Member{{Range: rng("192.0.2.1"), Text: "192.0.2.1"}}, Addrs: set("192.0.2.1")},
			{Name: "ranges", Members: []Member{{Range: rng("10.9.0.5-10.9.0.40"), Text: "10.9.0.5-10.9.0.40"}}, Addrs: set("10.9.0.5-10.9.0.40")},
			{Name: "admins", Members: []Member{{Ref: "cluster", Text: "cluster"}, {Range: rng("198.51.100.0/24"), Text: "198.51.100.0/24"}},
				Addrs: set("10.0.0.11-10.0.0.12", "fd00:10::/64", "198.51.100.0/24")},
			{Name: "blocklist", File: filepath.Join(dir, "blocklist.txt"), FileSHA256: fileSHA256(t, filepath.Join(dir, "blocklist.txt")), Members: []Member{
				{Range: rng("203.0.113.0/24"), Text: "203.0.113.0/24"}, {Range: rng("198.18.0.1-198.18.0.9"), Text: "198.18.0.1-198.18.0.9"},
				{Range: rng("2001:db8::1"), Text: "2001:db8::1"}}, Addrs: set("203.0.113.0/24", "198.18.0.1-198.18.0.9", "2001:db8::1")},
		},
		Services: []*Service{
			{Name: "ssh", Specs: []ServiceSpec{tcp(22, 22, "tcp/22")}},
			{Name: "web", Specs: []ServiceSpec{tcp(80, 80, "tcp/80"), tcp(443, 443, "tcp/443")}},
			{Name: "salt", Specs: []ServiceSpec{tcp(4505, 4507, "tcp/4505-4507")}},
			{Name: "vrrp", Specs: []ServiceSpec{{Proto: ir.ProtoVRRP, Text: "vrrp"}}},
			{Name: "ipsec", Specs: []ServiceSpec{{Proto: ir.ProtoESP, Text: "esp"},
				{Proto: ir.ProtoUDP, DPorts: []ir.PortRange{{Lo: 500, Hi: 500}}, Text: "udp/500"},
				{Proto: ir.ProtoUDP, DPorts: []ir.PortRange{{Lo: 4500, Hi: 4500}}, Text: "udp/4500"}}},
			{Name: "ping", Specs: []ServiceSpec{{Proto: ir.ProtoICMP, ICMPType: ptr(ir.ICMPType(8)), Text: "icmp/echo-request"},
				{Proto: ir.ProtoICMPv6, ICMPType: ptr(ir.ICMPType(128)), Text: "icmpv6/echo-request"}}},
			{Name: "ike", Specs: []ServiceSpec{ike}},
		},
		Nodes: []*Node{
			{Name: "node1", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.11")}, Roles: []string{"bootstrap", "master", "etcd"}},
			{Name: "node2", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.12"), netip.MustParseAddr("fd00:10::12")}, Roles: []string{"master", "etcd"}},
		},
		Policies: []*PolicyBlock{pb1, pb2},
		Guards: []*Guard{{Name: "nodeport-31002", Services: []ServiceSpec{tcp(31002, 31002, "tcp/31002")},
			From: AddrSpec{Items: []AddrItem{{Kind: AddrNodes, Negate: true, Text: "!nodes"}}}, Zone: "public",
			Action: ActionReject, Local: false, Output: false, State: ir.CtNew, Log: &Log{Prefix: "np: "},
			Limit: &ir.Limit{Rate: 10, Unit: ir.PerSecond}, Counter: false, Comment: "block nodeport"}},
		NATs: []*NAT{
			{Type: NATMasquerade, ToZone: "public", From: AddrSpec{Items: []AddrItem{{Kind: AddrLiteral, Range: rng("10.8.0.0/24"), Text: "10.8.0.0/24"}}}},
			{Type: NATSNAT, ToZone: "public", ToAddr: netip.MustParseAddr("203.0.113.7")},
			{Type: NATDNAT, FromZone: "public", Services: []ServiceSpec{tcp(8443, 8443, "tcp/8443")}, ToAddr: netip.MustParseAddr("fd00::5"), ToPort: 443},
		},
		MSS: []*MSS{{Zone: "public", Size: 1250}, {Zone: "lan", PMTU: true}},
		Tests: []*Test{
			{Name: "mysql is filtered on the management interface", Node: "node1", Direction: HookIn, IIF: "eth0", Proto: ir.ProtoTCP,
				Src: netip.MustParseAddr("203.0.113.9"), Dst: netip.MustParseAddr("192.0.2.10"), SPort: ptr(uint16(40000)), DPort: ptr(uint16(3306)),
				State: ir.CtNew, Expect: ActionDrop},
			{Name: "ping6 out", Node: "node2", Direction: HookOut, OIF: "eth0", Proto: ir.ProtoICMPv6, Src: netip.MustParseAddr("fd00:10::12"),
				ICMPType: ptr(ir.ICMPType(129)), State: ir.CtNew, Expect: ActionAccept},
		},
		Files: []string{dir + "/policy.toml"},
	}
	if diff := cmp.Diff(want, p, cmpOpts); diff != "" {
		t.Errorf("decoded policy differs (-want +got):\n%s", diff)
	}
	// Positions: rules at their headers, keys at their values, definitions
	// at their keys.
	f := dir + "/policy.toml"
	for _, c := range []struct{ got, want Pos }{
		{p.Policies[0].Pos, Pos{f, 44, 1}},
		{p.Policies[0].In[1].Pos, Pos{f, 60, 3}},
		{p.Policies[0].In[1].Keys["reject_with"], Pos{f, 65, 17}},
		{p.Policies[0].In[1].From.Items[0].Pos, Pos{f, 62, 13}},
		{p.Policies[0].Out[0].To.Items[1].Pos, Pos{f, 57, 27}},
		{p.Groups[0].Pos, Pos{f, 25, 1}},
		{p.Groups[4].Members[1].Pos, Pos{dir + "/blocklist.txt", 4, 3}},
		{p.Zones[1].Interfaces[1].Pos, Pos{f, 20, 37}},
		{p.Guards[0].Pos, Pos{f, 84, 1}},
		{p.Settings.Keys["guard_priority"], Pos{f, 5, 18}},
	} {
		if c.got != c.want {
			t.Errorf("position %v, want %v", c.got, c.want)
		}
	}
	if got := p.Policies[0].In[0].Policy; got != p.Policies[0] {
		t.Errorf("Rule.Policy does not point at its block")
	}
}

func TestLookups(t *testing.T) {
	p, d := Load("testdata/valid/full/policy.toml")
	if d.HasErrors() {
		t.Fatal(d.Err())
	}
	if p.Zone("lan") == nil || p.Zone("nope") != nil || p.Group("admins") == nil || p.Service("ike") == nil || p.Node("node2") == nil || p.Node("x") != nil {
		t.Error("lookup by name failed")
	}
	if got, want := p.Roles(), []string{"bootstrap", "etcd", "master"}; !slices.Equal(got, want) {
		t.Errorf("Roles() = %v, want %v", got, want)
	}
	var names []string
	for _, n := range p.RoleNodes("master") {
		names = append(names, n.Name)
	}
	if want := []string{"node1", "node2"}; !slices.Equal(names, want) {
		t.Errorf("RoleNodes(master) = %v, want %v", names, want)
	}
	if n := p.RoleNodes("bootstrap"); len(n) != 1 || n[0].Name != "node1" {
		t.Errorf("RoleNodes(bootstrap) = %v", n)
	}
}

// TestSeqAcrossFiles checks that Seq numbers rules by file load order,
// then position, and that references reach across files.
func TestSeqAcrossFiles(t *testing.T) {
	srcs := []Source{
		{Name: "b.toml", Data: []byte("[[policy]]\nname = \"b\"\n  [[policy.out]]\n  to = \"g\"\n  [[policy.in]]\n  from = \"g\"\n")},
		{Name: "a.toml", Data: []byte("[groups]\ng = [\"10.0.0.1\"]\n[[policy]]\nname = \"a\"\n  [[policy.in]]\n  service = \"s\"\n[services]\ns = \"udp/53\"\n")},
	}
	p, d := LoadSources(srcs)
	if len(d) != 0 {
		t.Fatal(d.Err())
	}
	got := []int{p.Policies[0].Out[0].Seq, p.Policies[0].In[0].Seq, p.Policies[1].In[0].Seq}
	if want := []int{0, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("Seq = %v, want %v", got, want)
	}
	if !slices.Equal(p.Files, []string{"b.toml", "a.toml"}) {
		t.Errorf("Files = %v", p.Files)
	}
}

// TestSyntaxErrorOtherFilesChecked: a syntax error in one file is one
// error; the other files are still checked.
func TestSyntaxErrorOtherFilesChecked(t *testing.T) {
	_, d := LoadSources([]Source{
		{Name: "a.toml", Data: []byte("x = = 1\ny = 2\n")},
		{Name: "b.toml", Data: []byte("[settings]\ntable = 1\n")},
	})
	var got []string
	for _, x := range d {
		got = append(got, x.String())
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], "a.toml:1:") || got[1] != `b.toml:2:9: "table" must be a string, not an integer` {
		t.Errorf("diags = %q", got)
	}
}

func TestGroupFileLimit(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.txt")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxFileSize + 1); err != nil { // sparse: cheap
		t.Fatal(err)
	}
	f.Close()
	_, d := LoadSources([]Source{{Name: filepath.Join(dir, "p.toml"), Data: []byte("[groups]\nbig = { file = \"big.txt\" }\n")}})
	if len(d) != 1 || d[0].Pos.Line != 2 || !strings.Contains(d[0].Msg, "larger than the limit of 67108864 bytes (64 MiB)") {
		t.Errorf("diags = %v", d)
	}
}

func TestLiterals(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "10.0.0.1", want: "10.0.0.1-10.0.0.1"},
		{in: "10.0.0.0/8", want: "10.0.0.0-10.255.255.255"},
		{in: "fd00::/127", want: "fd00::-fd00::1"},
		{in: "10.0.0.5-10.0.0.5", want: "10.0.0.5-10.0.0.5"},
		{in: "10.0.0.1/24", err: "10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?"},
		{in: "10.0.0.2-10.0.0.1", err: `range "10.0.0.2-10.0.0.1" is reversed; write 10.0.0.1-10.0.0.2`},
		{in: "::ffff:1.2.3.4", err: `"::ffff:1.2.3.4" is an IPv4-mapped IPv6 address; write it as 1.2.3.4`},
		{in: "10.0.0.0/", err: `"10.0.0.0/" is not a CIDR: the prefix length must be a number from 0 to 32`},
	}
	for _, tc := range tests {
		r, err := parseLiteral(tc.in)
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("parseLiteral(%q) error = %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || r.String() != tc.want):
			t.Errorf("parseLiteral(%q) = %v, %v; want %s", tc.in, r, err, tc.want)
		}
	}
}

func TestServiceSpecsAndLimits(t *testing.T) {
	specs := []struct {
		in   string
		want ServiceSpec
		err  string
	}{
		{in: "tcp", want: ServiceSpec{Proto: ir.ProtoTCP, Text: "tcp"}},
		{in: "112", want: ServiceSpec{Proto: ir.ProtoVRRP, Text: "112"}},
		{in: "udp/0-65535", want: ServiceSpec{Proto: ir.ProtoUDP, DPorts: []ir.PortRange{{Lo: 0, Hi: 65535}}, Text: "udp/0-65535"}},
		{in: "sctp/9", want: ServiceSpec{Proto: ir.ProtoSCTP, DPorts: []ir.PortRange{{Lo: 9, Hi: 9}}, Text: "sctp/9"}},
		{in: "ipv6-icmp/packet-too-big", want: ServiceSpec{Proto: ir.ProtoICMPv6, ICMPType: ptr(ir.ICMPType(2)), Text: "ipv6-icmp/packet-too-big"}},
		{in: "tcp/70000", err: `service "tcp/70000": port 70000 is out of range 0-65535`},
		{in: "tcp/-5", err: `service "tcp/-5": port -5 is out of range 0-65535`},
		{in: "tcp/-", err: `service "tcp/-": a port is missing; write a number 0-65535 or a range low-high`},
		{in: "icmp/packet-too-big", err: `service "icmp/packet-too-big": unknown icmp type "packet-too-big"; use one of`},
	}
	for _, tc := range specs {
		got, err := parseServiceSpec(tc.in)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("parseServiceSpec(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseServiceSpec(%q): %v", tc.in, err)
		} else if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
			t.Errorf("parseServiceSpec(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	limits := []struct {
		in   string
		want ir.Limit
		ok   bool
	}{
		{"10/second", ir.Limit{Rate: 10, Unit: ir.PerSecond}, true},
		{"100/minute burst 20", ir.Limit{Rate: 100, Unit: ir.PerMinute, Burst: 20}, true},
		{"1/hour", ir.Limit{Rate: 1, Unit: ir.PerHour}, true},
		{"3/day burst 1", ir.Limit{Rate: 3, Unit: ir.PerDay, Burst: 1}, true},
		{"-1/second", ir.Limit{}, false},
		{"10/second burst", ir.Limit{}, false},
		{"10/seconds", ir.Limit{}, false},
	}
	for _, tc := range limits {
		got, err := parseLimit(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseLimit(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// fileSHA256 is the digest of a file's bytes, as Group.FileSHA256 records
// it.
func fileSHA256(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
