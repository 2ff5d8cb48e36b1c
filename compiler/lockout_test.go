package compiler_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

func TestCheckLockout(t *testing.T) {
	const sshFromAdmins = `
[groups]
admins = ["198.18.5.0/24", "fd00:5::/64"]
[[policy]]
name = "ssh"
  [[policy.in]]
  service = "tcp/22"
  from = "admins"
`
	for _, tc := range []struct {
		name   string
		policy string
		conn   string
		ifaces []string
		// want are substrings of each cut's Error, in order; none: not cut.
		want []string
	}{
		{"ssh from admins, client is an admin", sshFromAdmins, "198.18.5.7 50022 198.18.0.1 22", []string{"eth0"}, nil},
		{"ssh from admins, IPv6 admin", sshFromAdmins, "fd00:5::7 50022 fd00::1 22", []string{"eth0"}, nil},
		{"ssh from admins, client is not an admin", sshFromAdmins, "198.18.6.7 50022 198.18.0.1 22", []string{"eth0"},
			[]string{"defaults.input (default) (chain input) drops the session's packet in 198.18.6.7:50022 -> 198.18.0.1:22 iif eth0 (new connection, client to server)"}},
		{"no ssh rule at all, established still passes", "[defaults]\ninput = \"drop\"\n", "198.18.6.7 50022 198.18.0.1 22", []string{"eth0"},
			[]string{"(new connection, client to server)"}},
		{"input accepts everything", "[defaults]\ninput = \"accept\"\n", "198.18.6.7 50022 198.18.0.1 22", nil, nil},
		{"a drop rule names its position", `
[[policy]]
name = "block"
  [[policy.in]]
  from = "198.18.6.0/24"
  action = "reject"
`, "198.18.6.7 50022 198.18.0.1 22", []string{"eth0"},
			[]string{
				`policy.toml:4:3: policy "block" in[0] (chain input) rejects the session's packet in 198.18.6.7:50022 -> 198.18.0.1:22 iif eth0 (new connection, client to server)`,
			}},
		{"output drop without established cuts the answers", `
[defaults]
input = "accept"
output = "drop"
established = false
`, "198.18.6.7 50022 198.18.0.1 22", []string{"eth0"},
			[]string{`policy.toml:4:10: defaults.output (chain output) drops the session's packet out 198.18.0.1:22 -> 198.18.6.7:50022 oif eth0 (new connection and established session, server to client)`}},
		{"a guard drops ssh before DNAT", `
[[guard]]
name = "no-ssh"
service = "tcp/22"
[[policy]]
name = "ssh"
  [[policy.in]]
  service = "tcp/22"
`, "198.18.6.7 50022 198.18.0.1 22", []string{"eth0"},
			[]string{`guard "no-ssh" (chain guard_prerouting) drops`, `(established session, client to server)`}},
		{"zone: cut only if cut on every interface", `
[zones]
mgmt = { interfaces = ["mgmt0"] }
[[policy]]
name = "ssh"
zone = "mgmt"
  [[policy.in]]
  service = "tcp/22"
`, "198.18.6.7 50022 198.18.0.1 22", []string{"eth0", "mgmt0"}, nil},
		{"zone: cut on the only interface", `
[zones]
mgmt = { interfaces = ["mgmt0"] }
[[policy]]
name = "ssh"
zone = "mgmt"
  [[policy.in]]
  service = "tcp/22"
`, "198.18.6.7 50022 198.18.0.1 22", []string{"eth0"}, []string{"iif eth0 (new connection"}},
		// sshd writes a link-local peer with its scope (getnameinfo
		// appends %IFACE); the scope must not hide the client from an
		// address rule.
		{"link-local client with a scope, rejected by address", `
[defaults]
input = "accept"
[[policy]]
name = "block"
  [[policy.in]]
  from = "fe80::7"
  action = "reject"
`, "fe80::7%eth0 50022 fe80::1%eth0 22", []string{"eth0"},
			[]string{`policy "block" in[0] (chain input) rejects the session's packet in fe80::7:50022 -> fe80::1:22 iif eth0`}},
		{"link-local client with a scope, accepted by address", `
[[policy]]
name = "ssh"
  [[policy.in]]
  service = "tcp/22"
  from = "fe80::7"
`, "fe80::7%eth0 50022 fe80::1%eth0 22", []string{"eth0"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rs := compileText(t, tc.policy, "")
			if rs == nil {
				t.Fatal("policy does not compile")
			}
			s, err := compiler.ParseSSHConnection(tc.conn)
			if err != nil {
				t.Fatal(err)
			}
			s.Ifaces = tc.ifaces
			cuts := compiler.CheckLockout(rs, s)
			if len(cuts) != len(tc.want) {
				var got []string
				for _, c := range cuts {
					got = append(got, c.Error())
				}
				t.Fatalf("got %d cuts, want %d:\n%s", len(cuts), len(tc.want), strings.Join(got, "\n"))
			}
			for i, c := range cuts {
				if !strings.Contains(c.Error(), tc.want[i]) {
					t.Errorf("cut %d:\n got %s\nwant %s", i, c.Error(), tc.want[i])
				}
				if _, ok := c.Result.Verdict.(ir.Accept); ok {
					t.Errorf("cut %d has verdict accept", i)
				}
			}
		})
	}
}

func TestParseSSHConnection(t *testing.T) {
	for _, tc := range []struct {
		in, client, server string
		err                bool
	}{
		{"198.18.0.2 50022 198.18.0.1 22", "198.18.0.2:50022", "198.18.0.1:22", false},
		{"fd00::2 50022 fd00::1 2222", "[fd00::2]:50022", "[fd00::1]:2222", false},
		{"::ffff:198.18.0.2 50022 ::ffff:198.18.0.1 22", "198.18.0.2:50022", "198.18.0.1:22", false},
		{"fe80::2%eth0 50022 fe80::1%eth0 22", "[fe80::2]:50022", "[fe80::1]:22", false},
		{"198.18.0.2 50022 198.18.0.1", "", "", true},
		{"198.18.0.2 x 198.18.0.1 22", "", "", true},
		{"", "", "", true},
	} {
		s, err := compiler.ParseSSHConnection(tc.in)
		if wantIfaces := strings.HasPrefix(tc.in, "fe80::2%eth0 "); err == nil && (len(s.Ifaces) == 1 && s.Ifaces[0] == "eth0") != wantIfaces {
			t.Errorf("%q: Ifaces %q", tc.in, s.Ifaces)
		}
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && (s.Client.String() != tc.client || s.Server.String() != tc.server) {
			t.Errorf("%q: got %s, want %s -> %s", tc.in, s, tc.client, tc.server)
		}
	}
}

func TestFailsafe(t *testing.T) {
	var b netipx.IPSetBuilder
	b.AddPrefix(netip.MustParsePrefix("198.18.5.0/24"))
	admins, _ := b.IPSet()
	type probe struct {
		pkt  string
		want string // accept | drop
	}
	for _, tc := range []struct {
		name   string
		from   *netipx.IPSet
		probes []probe
	}{
		{"from admins", admins, []probe{
			{"tcp 198.18.5.7 -> 198.18.0.1:22 iif eth0", "accept"},
			{"tcp 198.18.6.7 -> 198.18.0.1:22 iif eth0", "drop"},
			{"tcp 198.18.5.7 -> 198.18.0.1:80 iif eth0", "drop"},
			{"udp 198.18.5.7 -> 198.18.0.1:53 iif eth0", "drop"},
			{"tcp fd00::7 -> [fd00::1]:22 iif eth0", "drop"},
			{"tcp 198.18.6.7 -> 198.18.0.1:80 iif eth0 state established", "accept"},
			{"tcp 127.0.0.1 -> 127.0.0.1:80 iif lo", "accept"},
			{"icmpv6 fe80::1 -> fe80::2 iif eth0 type nd-neighbor-solicit", "accept"},
			{"forward tcp 198.18.5.7 -> 198.18.9.9:22 iif eth0 oif eth1", "drop"},
			{"out tcp 198.18.0.1 -> 198.18.9.9:443 oif eth0", "accept"},
		}},
		{"from anywhere", nil, []probe{
			{"tcp 198.18.6.7 -> 198.18.0.1:22 iif eth0", "accept"},
			{"tcp fd00::7 -> [fd00::1]:22 iif eth0", "accept"},
			{"tcp 198.18.6.7 -> 198.18.0.1:23 iif eth0", "drop"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := compiler.Failsafe("hostwall", tc.from, ir.Source{File: "p.toml", Line: 2, Col: 12})
			for _, p := range tc.probes {
				pkt, err := ir.ParsePacket(p.pkt)
				if err != nil {
					t.Fatalf("%s: %v", p.pkt, err)
				}
				res := ir.Eval(rs, pkt)
				got := "drop"
				if _, ok := res.Verdict.(ir.Accept); ok {
					got = "accept"
				}
				if got != p.want || res.Err != nil {
					t.Errorf("%s: got %s (%v), want %s", p.pkt, got, res.Err, p.want)
				}
			}
		})
	}
}
