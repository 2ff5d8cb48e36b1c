package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExportCommand(t *testing.T) {
	const mgmt = "../../examples/mgmt-lockdown.toml"
	const guard = "../../examples/nodeport-guard.toml"
	tests := []struct {
		name   string
		args   func(dir string) []string
		code   int
		stdout string            // a substring, "" for none expected
		stderr string            // a substring
		files  map[string]string // file in dir -> a substring it must hold
	}{
		{"ipv4 to stdout", func(string) []string { return []string{"export", "--family", "ipv4", mgmt} },
			exitOK, "-A INPUT -j HOSTWALL-INPUT\n", "", nil},
		{"ipv6 to stdout", func(string) []string { return []string{"export", "--family", "ipv6", mgmt} },
			exitOK, "ip6tables-restore", "", nil},
		{"noflush declares no built-in chain", func(string) []string { return []string{"export", "--family", "ipv4", "--noflush", mgmt} },
			exitOK, ":HOSTWALL-INPUT - [0:0]", "", nil},
		{"both families into a directory", func(dir string) []string { return []string{"export", "-o", dir, mgmt} },
			exitOK, "", "", map[string]string{"rules.v4": "iptables-restore", "rules.v6": "ip6tables-restore"}},
		{"one family into a file", func(dir string) []string {
			return []string{"export", "--family", "ipv6", "-o", filepath.Join(dir, "six"), mgmt}
		}, exitOK, "", "", map[string]string{"six": "*filter"}},
		{"ipset file", func(dir string) []string {
			return []string{"export", "--node", "worker1", "--guard-reject", "mark", "-o", dir, "--ipset", filepath.Join(dir, "ipsets"), guard}
		}, exitOK, "", "", map[string]string{"ipsets": "create hostwall-nodes_v6 hash:net family inet6", "rules.v4": "--match-set hostwall-nodes_v4 src"}},
		{"both families need a directory", func(string) []string { return []string{"export", mgmt} },
			exitUsage, "", "-o must name a directory", nil},
		{"guard reject is an error with its position", func(string) []string { return []string{"export", "--family", "ipv4", "--node", "worker1", guard} },
			exitPolicy, "", "nodeport-guard.toml:67:1: guard \"nodeport-internal\": reject is not possible in a guard", nil},
		{"guard reject as mark", func(string) []string {
			return []string{"export", "--family", "ipv4", "--node", "worker1", "--guard-reject", "mark", guard}
		}, exitOK, "-j MARK --set-xmark 0x100000/0xf00000", "", nil},
		{"guard reject as drop", func(string) []string {
			return []string{"export", "--family", "ipv4", "--node", "worker1", "--guard-reject=drop", guard}
		}, exitOK, "--ctstate NEW -m addrtype --dst-type LOCAL -m comment --comment \"internal NodePorts, refused on the public interface\" -j DROP", "", nil},
		{"bad family", func(string) []string { return []string{"export", "--family", "ipx", mgmt} }, exitUsage, "", "--family", nil},
		{"help shows an example", func(string) []string { return []string{"export", "--help"} }, exitOK, "Example:", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			code, stdout, stderr := runCLI(tt.args(dir)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, stdout)
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, stderr)
			}
			for name, want := range tt.files {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), want) {
					t.Errorf("%s lacks %q:\n%s", name, want, b)
				}
			}
			if tt.code != exitOK {
				if entries, _ := os.ReadDir(dir); len(entries) != 0 {
					t.Errorf("a failed export wrote %d files", len(entries))
				}
			}
		})
	}
}
