package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTestNATExpectations: expect_dnat and expect_snat decide a test as
// much as expect does; a wrong translation fails it and the command.
func TestTestNATExpectations(t *testing.T) {
	policy := `
[zones]
wan = { interfaces = ["eth0"] }
lan = { interfaces = ["eth1"] }

[[nat]]
type      = "dnat"
from_zone = "wan"
service   = "tcp/8443"
to        = "198.18.64.80:443"

[[nat]]
type    = "masquerade"
to_zone = "wan"

[[test]]
name        = "right dnat"
direction   = "forward"
iif         = "eth0"
oif         = "eth1"
proto       = "tcp"
src         = "198.19.0.7"
dst         = "198.19.0.1"
dport       = 8443
expect      = "accept"
expect_dnat = "198.18.64.80:443"

[[test]]
name        = "wrong dnat port"
direction   = "forward"
iif         = "eth0"
oif         = "eth1"
proto       = "tcp"
src         = "198.19.0.7"
dst         = "198.19.0.1"
dport       = 8443
expect      = "accept"
expect_dnat = "198.18.64.80:8443"

[[test]]
name        = "dnat expected where there is none"
direction   = "forward"
iif         = "eth1"
oif         = "eth0"
proto       = "tcp"
src         = "198.18.64.9"
dst         = "198.19.0.7"
dport       = 8443
expect      = "drop"
expect_dnat = "198.18.64.80"

[[test]]
name        = "snat none, but masqueraded"
direction   = "out"
oif         = "eth0"
proto       = "udp"
src         = "198.19.0.1"
dst         = "198.19.0.7"
dport       = 53
expect      = "accept"
expect_snat = "none"

[[test]]
name        = "masquerade expected and got"
direction   = "out"
oif         = "eth0"
proto       = "udp"
src         = "198.19.0.1"
dst         = "198.19.0.7"
dport       = 53
expect      = "accept"
expect_snat = "masquerade"
`
	path := filepath.Join(t.TempDir(), "nat.toml")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI("test", path)
	if code != exitPolicy {
		t.Errorf("exit %d, want %d\n%s%s", code, exitPolicy, out, errs)
	}
	for _, want := range []string{
		"PASS  right dnat  expect accept dnat 198.18.64.80:443, got accept dnat 198.18.64.80:443  (",
		"FAIL  wrong dnat port  expect accept dnat 198.18.64.80:8443, got accept dnat 198.18.64.80:443  (",
		"FAIL  dnat expected where there is none  expect drop dnat 198.18.64.80, got drop  (",
		"FAIL  snat none, but masqueraded  expect accept snat none, got accept snat masquerade  (",
		"PASS  masquerade expected and got  expect accept snat masquerade, got accept snat masquerade  (",
		"2 passed, 3 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI("test", "--format", "json", path)
	if code != exitPolicy {
		t.Errorf("json: exit %d, want %d", code, exitPolicy)
	}
	var rep testReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(rep.Tests) != 5 || rep.Tests[1].ExpDNAT != "198.18.64.80:8443" || rep.Tests[1].DNAT != "198.18.64.80:443" || rep.Tests[1].Pass ||
		rep.Tests[4].SNAT != "masquerade" || !rep.Tests[4].Pass {
		t.Errorf("json results: %+v", rep.Tests)
	}
}
