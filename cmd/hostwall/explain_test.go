package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestExplainGolden: the path, deciding rule (position, TOML text, nft
// rule) and verdict of packets over the examples.
func TestExplainGolden(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		policy string
	}{
		{"mgmt-mysql-dropped", []string{"tcp 203.0.113.9:40000 -> 192.0.2.10:3306 iif eth0"}, "mgmt-lockdown.toml"},
		{"mgmt-ssh-v6", []string{"tcp [fd00:99::9]:40000 -> [fd00:18::10]:22 iif eth0"}, "mgmt-lockdown.toml"},
		{"mgmt-established", []string{"tcp 198.18.0.9 -> 198.18.0.1:22 state established"}, "mgmt-lockdown.toml"},
		{"nodeport-guard-drop", []string{"--node", "worker1", "tcp 203.0.113.5 -> 198.18.0.11:31002 iif eth0"}, "nodeport-guard.toml"},
		{"nodeport-guard-accept-then-input", []string{"--node", "worker1", "tcp 198.19.60.10 -> 198.18.0.11:31002 iif eth0"}, "nodeport-guard.toml"},
		{"nodeport-forward", []string{"--node", "worker2", "forward tcp 203.0.113.5 -> 198.18.130.7:9090 iif eth0 oif vxlan.calico"}, "nodeport-guard.toml"},
		{"nodeport-out-to-self", []string{"--node", "worker1", "out tcp 198.18.0.11 -> 198.18.0.11:31002 oif lo"}, "nodeport-guard.toml"},
		{"cluster-out-reject", []string{"--node", "node4", "out tcp 198.18.1.14 -> 198.18.1.11:2379 oif bond0"}, "cluster-roles.toml"},
		{"cluster-nd-v6", []string{"--node", "node2", "icmpv6 fe80::1 -> ff02::1:ff00:12 iif bond0 type nd-neighbor-solicit"}, "cluster-roles.toml"},
		{"cluster-nd-v6-routed", []string{"--node", "node2", "icmpv6 fe80::1 -> ff02::1:ff00:12 iif bond0 type nd-neighbor-solicit hoplimit 64"}, "cluster-roles.toml"},
		{"ipsec-forward-reset", []string{"forward tcp 203.0.113.9 -> 198.18.64.10:8080 iif eth0 oif eth1"}, "ipsec-gateway.toml"},
		{"webserver-blocklist", []string{"tcp 198.19.70.150 -> 198.18.80.1:443 iif eth0"}, "webserver"},
		{"webserver-web", []string{"tcp 192.0.2.66 -> 198.18.80.1:443 iif eth0"}, "webserver"},
		{"nat-port-forward", []string{"forward tcp 198.19.7.7 -> 198.19.0.1:8443 iif eth0 oif eth1"}, "nat-gateway.toml"},
		{"nat-masquerade-mss", []string{"forward tcp 198.18.64.20 -> 198.19.7.7:443 iif eth1 oif eth0"}, "nat-gateway.toml"},
		{"nat-established-translated", []string{"forward tcp [fd00:77::7]:40001 -> [fd00:99::1]:8443 iif eth0 oif eth1 state established"}, "nat-gateway.toml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"explain"}, tc.args...)
			args = append(args, filepath.Join("../../examples", tc.policy))
			code, out, errs := runCLI(args...)
			if code != exitOK {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
			if !strings.Contains(out, "\nverdict: ") || !strings.Contains(out, "packet:  ") {
				t.Errorf("no packet or verdict line:\n%s", out)
			}
			checkGolden(t, filepath.Join("testdata", "explain", tc.name+".txt"), out)
		})
	}
}

// TestExplainAgreesWithTest: explaining the packet of every example's
// [[test]] (as `hostwall test` prints it) gives the test's verdict, so the
// PACKET text, the parser and both commands agree.
func TestExplainAgreesWithTest(t *testing.T) {
	n := 0
	for _, path := range examplePolicies(t) {
		code, js, errs := runCLI("test", "--format", "json", path)
		if code != exitOK {
			t.Fatalf("%s: exit %d\n%s", path, code, errs)
		}
		var rep testReport
		if err := json.Unmarshal([]byte(js), &rep); err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Tests {
			args := []string{"explain"}
			if r.Node != "" {
				args = append(args, "--node", r.Node)
			}
			code, out, errs := runCLI(append(args, r.Packet, path)...)
			n++
			if code != exitOK {
				t.Errorf("%s: explain %q: exit %d\n%s", r.Pos, r.Packet, code, errs)
				continue
			}
			if !strings.Contains(out, "\nverdict: "+r.Expect) {
				t.Errorf("%s: explain %q does not end in %s:\n%s", r.Pos, r.Packet, r.Expect, out)
			}
			if r.DecidedBy.Pos != "" && !strings.Contains(out, r.DecidedBy.Pos+" "+r.DecidedBy.What+")") {
				t.Errorf("%s: explain %q is not decided by %s %s:\n%s", r.Pos, r.Packet, r.DecidedBy.Pos, r.DecidedBy.What, out)
			}
		}
	}
	if n == 0 {
		t.Fatal("no tests explained")
	}
}

func TestExplainErrors(t *testing.T) {
	ex := "../../examples/mgmt-lockdown.toml"
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"bad packet is a usage error", []string{"explain", "tcp 198.18.0.1 -> 198.18.0.2", ex}, exitUsage, "PACKET: tcp packet without a destination port"},
		{"families differ", []string{"explain", "udp 198.18.0.1 -> [fd00::1]:53", ex}, exitUsage, "different families"},
		{"oif on in", []string{"explain", "tcp 198.18.0.1 -> 198.18.0.2:22 oif eth0", ex}, exitUsage, "oif on an in packet"},
		{"nodes need --node", []string{"explain", "tcp 198.18.0.1 -> 198.18.0.2:22", "../../examples/cluster-roles.toml"}, exitPolicy, "choose one with --node"},
		{"missing policy", []string{"explain", "tcp 198.18.0.1 -> 198.18.0.2:22"}, exitUsage, "expected"},
		{"help", []string{"explain", "--help"}, exitOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, out, errs)
			}
			if !strings.Contains(errs, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errs)
			}
			if tc.code != exitOK && out != "" {
				t.Errorf("stdout on error:\n%s", out)
			}
		})
	}
}
