package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadSameFileTwice: a file named twice (directly, through its
// directory, or through a symlink) is one clear error, not a duplicate
// error for every name it defines (policy-format.md: "a name defined twice
// ... is an error that cites both positions" is about two definitions).
func TestLoadSameFileTwice(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.toml")
	if err := os.WriteFile(a, []byte("[zones]\nlan = { interfaces = [\"eth1\"] }\n[[policy]]\nname = \"p\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link.toml")
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		paths []string
		twice string // the path reported as named twice
	}{
		{"file twice", []string{a, a}, a},
		{"directory then file", []string{dir, a}, a},
		{"file then directory", []string{a, dir}, a},
		{"symlink", []string{a, link}, link},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, d := Load(tc.paths...)
			if len(d) != 1 {
				t.Fatalf("want one error, got %d:\n%v", len(d), d.Err())
			}
			if d[0].Pos.File != tc.twice || !strings.Contains(d[0].Msg, "policy file named twice: it is the same file as "+a) {
				t.Errorf("diag = %s", d[0])
			}
		})
	}
	// Two different files defining the same name are still duplicates.
	b := filepath.Join(dir, "b.toml")
	if err := os.WriteFile(b, []byte("[zones]\nlan = { interfaces = [\"eth2\"] }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, d := Load(a, b)
	if len(d) != 1 || !strings.Contains(d[0].Msg, `duplicate zone "lan"`) {
		t.Errorf("two files: %v", d.Err())
	}
}

// TestNegativePort: policy-format.md "Ports are 0 to 65535": a negative
// port is out of range (not "missing"), in the string and the table form
// and in a [[test]].
func TestNegativePort(t *testing.T) {
	tests := []struct {
		name, toml, want string
	}{
		{"inline", "[services]\na = \"tcp/-5\"\n", `a.toml:2:5: service "tcp/-5": port -5 is out of range 0-65535`},
		{"table port", "[services]\na = { proto = \"tcp\", port = -5 }\n", `a.toml:2:29: "port": port -5 is out of range 0-65535`},
		{"table sport", "[services]\na = { proto = \"udp\", sport = -1 }\n", `a.toml:2:30: "sport": port -1 is out of range 0-65535`},
		{"test dport", "[[test]]\nname = \"t\"\nproto = \"tcp\"\nsrc = \"198.18.0.1\"\ndport = -5\nexpect = \"drop\"\n", `a.toml:5:9: "dport": port -5 is out of range 0-65535`},
		{"range end", "[services]\na = \"tcp/5-\"\n", `a.toml:2:5: service "tcp/5-": a port is missing; write a number 0-65535 or a range low-high`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, d := LoadSources([]Source{{Name: "a.toml", Data: []byte(tc.toml)}})
			if len(d) != 1 || d[0].String() != tc.want {
				t.Errorf("diags:\n%v\nwant:\n%s", d.Err(), tc.want)
			}
		})
	}
}

// TestEmptyLists: an empty list gets a message that says what is right.
// Leaving a zone's interfaces out is itself an error, and leaving a rule's
// key out widens the rule to everything, so "leave the key out" is the
// wrong advice for both.
func TestEmptyLists(t *testing.T) {
	tests := []struct {
		name, toml, want string
	}{
		{"zone interfaces", "[zones]\nlan = { interfaces = [] }\n", `a.toml:2:22: zone "lan" has no interfaces; list at least one (e.g. interfaces = ["eth0"])`},
		{"service definition", "[services]\nweb = []\n", `a.toml:2:7: service "web" is an empty list; list at least one spec (e.g. web = "tcp/22")`},
		{"rule service", "[[policy]]\nname = \"p\"\n[[policy.in]]\nservice = []\n", `a.toml:4:11: "service" is an empty list; list at least one service (leaving the key out means any service, not none)`},
		{"rule from", "[[policy]]\nname = \"p\"\n[[policy.in]]\nfrom = []\n", `a.toml:4:8: "from" is an empty list; list at least one item (leaving the key out means no restriction, not nothing)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, d := LoadSources([]Source{{Name: "a.toml", Data: []byte(tc.toml)}})
			if len(d) != 1 || d[0].String() != tc.want {
				t.Errorf("diags:\n%v\nwant:\n%s", d.Err(), tc.want)
			}
		})
	}
}

// TestZoneIfaceLength: policy-format.md "Interface names are 1 to 15 bytes
// ... (plus the trailing *)". A 15-byte name with the * is allowed and,
// since no interface name is longer, matches exactly that interface.
func TestZoneIfaceLength(t *testing.T) {
	tests := []struct {
		iface, want, err string
	}{
		{iface: "123456789012345", want: "123456789012345"},
		{iface: "123456789012345*", want: "123456789012345"},
		{iface: "12345678901234*", want: "12345678901234*"},
		{iface: "vxlan*", want: "vxlan*"},
		{iface: "1234567890123456", err: `a.toml:2:21: interface "1234567890123456" is 16 bytes long; an interface name has at most 15`},
		{iface: "1234567890123456*", err: `a.toml:2:21: interface "1234567890123456*" is 16 bytes long; an interface name has at most 15`},
		{iface: "*", err: `a.toml:2:21: interface "*" is empty; an interface name is 1 to 15 bytes of letters, digits, ., _ or -`},
	}
	for _, tc := range tests {
		t.Run(tc.iface, func(t *testing.T) {
			p, d := LoadSources([]Source{{Name: "a.toml", Data: []byte("[zones]\nz = { interfaces = [\"" + tc.iface + "\"] }\n")}})
			if tc.err != "" {
				if len(d) != 1 || d[0].String() != tc.err {
					t.Errorf("diags:\n%v\nwant:\n%s", d.Err(), tc.err)
				}
				return
			}
			if len(d) != 0 {
				t.Fatal(d.Err())
			}
			if got := p.Zones[0].Interfaces[0].Name; got != tc.want {
				t.Errorf("interface = %q, want %q", got, tc.want)
			}
		})
	}
}
