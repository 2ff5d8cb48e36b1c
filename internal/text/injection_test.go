package text_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/internal/text"
	"github.com/hostwall/hostwall/iptables"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

var update = flag.Bool("update", false, "rewrite golden files (here: the fuzz seed corpora)")

// payloads are the strings an attacker who can write one field of a policy
// (or a name in a group file) would try: break out of a quoted string and
// add a rule, end the line, start a comment, expand a variable.
var payloads = []string{
	"x\" accept\nmeta l4proto tcp accept comment \"y", // the classic nft breakout
	"x\"\nmeta l4proto tcp accept",
	"a\nmeta l4proto tcp accept",
	"a\n-A INPUT -j ACCEPT", // iptables-restore line injection
	"a\r\nCOMMIT",
	"a;b", "a; meta l4proto tcp accept", "a # b", "#", "a $x", "$(reboot)", "a`id`b",
	"a'b", `a"b`, `a\b`, `a\"b`, "a\tb", "a\x00b", "a\x7fb", "a\x1bb", "café", "a}b{",
	"drop", "accept", "ip", "-j", "--comment", "eth0 accept",
	strings.Repeat("y", 300),
}

// field is one string of a policy; a payload replaces its benign value.
type field struct {
	name string
	// text: the field's value is written into a ruleset (comment, log
	// prefix); its bytes must all be text.IsTextByte or the load fails.
	// Names and most other fields must fail on those bytes too; only test
	// names may hold `"` and `\` (they are never written into a ruleset).
	mayHoldQuotes bool
}

var fields = []field{
	{"table", false}, {"dlog", false}, {"zone", false}, {"iface", false},
	{"group", false}, {"member", false}, {"service", false}, {"spec", false},
	{"policy", false}, {"comment", false}, {"log", false}, {"limit", false},
	{"state", false}, {"action", false}, {"reject_with", false}, {"guard", false},
	{"gcomment", false}, {"glog", false}, {"test", true}, {"iif", false},
	{"node", false}, {"role", false}, {"groupfile", false},
}

var benign = map[string]string{
	"table": "hostwall", "dlog": "d: ", "zone": "mgmt", "iface": "eth0",
	"group": "admins", "member": "198.18.0.1", "service": "ssh", "spec": "tcp/22",
	"policy": "p", "comment": "c", "log": "l: ", "limit": "10/second",
	"state": "new", "action": "reject", "reject_with": "port-unreachable", "guard": "g",
	"gcomment": "gc", "glog": "g: ", "test": "t", "iif": "eth0",
	"node": "node1", "role": "web", "groupfile": "198.18.0.2",
}

// tomlString writes s as a TOML basic string; every byte arrives intact.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// policyWith returns a policy (and its group file) using every field,
// with v[f] in place of f.
func policyWith(v map[string]string) (policy, groupFile string) {
	q := func(k string) string { return tomlString(v[k]) }
	policy = `[settings]
table = ` + q("table") + `
[defaults]
log = { prefix = ` + q("dlog") + ` }
[zones]
` + q("zone") + ` = { interfaces = [` + q("iface") + `] }
[groups]
` + q("group") + ` = [` + q("member") + `]
listed = { file = "list.txt" }
[services]
` + q("service") + ` = ` + q("spec") + `
[nodes]
` + q("node") + ` = { addresses = ["198.18.0.9"], roles = [` + q("role") + `] }
[[policy]]
name = ` + q("policy") + `
roles = [` + q("role") + `]
  [[policy.in]]
  zone = ` + q("zone") + `
  from = ` + q("group") + `
  service = ` + q("service") + `
  comment = ` + q("comment") + `
  log = ` + q("log") + `
  limit = ` + q("limit") + `
  state = ` + q("state") + `
  action = ` + q("action") + `
  reject_with = ` + q("reject_with") + `
  [[policy.in]]
  from = "listed"
  service = "udp/53"
[[guard]]
name = ` + q("guard") + `
service = "tcp/31002"
comment = ` + q("gcomment") + `
log = ` + q("glog") + `
[[test]]
name = ` + q("test") + `
node = ` + q("node") + `
iif = ` + q("iif") + `
proto = "tcp"
src = "198.18.0.1"
dport = 22
expect = "reject"
`
	return policy, v["groupfile"] + "\n"
}

// injectionCase is one policy with one payload in one field.
type injectionCase struct {
	field   field
	payload string
	policy  string
	list    string
}

func injectionCases() []injectionCase {
	var out []injectionCase
	for _, f := range fields {
		for _, p := range payloads {
			v := map[string]string{}
			for k, b := range benign {
				v[k] = b
			}
			v[f.name] = p
			pol, list := policyWith(v)
			out = append(out, injectionCase{f, p, pol, list})
		}
	}
	return out
}

// shape is what a payload must not change in an output: the number of
// lines and of double quotes.
type shape struct{ lines, quotes int }

func shapeOf(b []byte) shape {
	return shape{bytes.Count(b, []byte("\n")), bytes.Count(b, []byte(`"`))}
}

// outputs compiles pol for node1 and returns the nft text and the
// iptables exports (v4, v6); an export error is returned, not fatal.
func outputs(t *testing.T, pol *model.Policy) (nftText []byte, v4, v6 []byte, exportErr error) {
	t.Helper()
	rs, d := compiler.Compile(pol, compiler.Options{Node: pol.Nodes[0].Name})
	if err := d.Err(); err != nil {
		t.Fatalf("compile: %v", err)
	}
	var b bytes.Buffer
	if err := nft.Print(&b, rs); err != nil {
		t.Fatalf("the model accepted what nft.Print refuses: %v", err)
	}
	if _, err := nft.Lower(rs); err != nil {
		t.Fatalf("the model accepted what the netlink lowering refuses: %v", err)
	}
	var x4, x6 bytes.Buffer
	if err := iptables.Export(&x4, rs, iptables.Options{Family: ir.FamilyIPv4}); err != nil {
		exportErr = err
	}
	if err := iptables.Export(&x6, rs, iptables.Options{Family: ir.FamilyIPv6}); err != nil && exportErr == nil {
		exportErr = err
	}
	return b.Bytes(), x4.Bytes(), x6.Bytes(), exportErr
}

func load(t *testing.T, dir, policy, list string) (*model.Policy, model.Diags) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "list.txt"), []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.toml")
	return model.LoadSources([]model.Source{{Name: path, Data: []byte(policy)}})
}

// TestInjection puts every payload into every string field of a policy.
// Each case is refused by the model with a position, or compiles to nft
// text and iptables files of exactly the benign policy's shape (no line,
// no quote added): a payload can't add a rule or end a string.
func TestInjection(t *testing.T) {
	dir := t.TempDir()
	basePol, baseList := policyWith(benign)
	p, d := load(t, dir, basePol, baseList)
	if err := d.Err(); err != nil {
		t.Fatalf("the benign policy does not load: %v\n%s", err, basePol)
	}
	bn, b4, b6, err := outputs(t, p)
	if err != nil {
		t.Fatalf("the benign policy does not export: %v", err)
	}
	refused, accepted := 0, 0
	for _, c := range injectionCases() {
		name := c.field.name + "/" + strconv.Quote(c.payload)
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			p, d := load(t, dir, c.policy, c.list)
			unsafe := text.BadTextByte(c.payload) >= 0
			if d.HasErrors() {
				refused++
				for _, x := range d {
					if x.Severity == model.Error && (x.Pos.File == "" || x.Pos.Line == 0) {
						t.Errorf("error without a position: %v", x)
					}
				}
				return
			}
			accepted++
			if unsafe && !c.field.mayHoldQuotes {
				t.Fatalf("accepted %q in %s", c.payload, c.field.name)
			}
			n, x4, x6, err := outputs(t, p)
			if c.field.name == "groupfile" && strings.HasPrefix(c.payload, "#") {
				return // a comment line: the group is empty, so the shape differs
			}
			if got, want := shapeOf(n), shapeOf(bn); got != want {
				t.Errorf("nft text has %+v lines/quotes, the benign policy %+v:\n%s", got, want, n)
			}
			if err != nil {
				var el iptables.ErrorList
				if !asErrorList(err, &el) {
					t.Fatalf("iptables export: %v", err)
				}
				for _, e := range el {
					if e.Source.File == "" || e.Source.Line == 0 {
						t.Errorf("iptables error without a position: %v", e)
					}
				}
				return
			}
			if got, want := shapeOf(x4), shapeOf(b4); got != want {
				t.Errorf("rules.v4 has %+v lines/quotes, the benign policy %+v:\n%s", got, want, x4)
			}
			if got, want := shapeOf(x6), shapeOf(b6); got != want {
				t.Errorf("rules.v6 has %+v lines/quotes, the benign policy %+v:\n%s", got, want, x6)
			}
		})
	}
	t.Logf("%d injection cases (%d payloads x %d fields): %d refused with a position, %d accepted with outputs of the benign shape",
		refused+accepted, len(payloads), len(fields), refused, accepted)
	if accepted == 0 || refused == 0 {
		t.Errorf("refused %d, accepted %d: the table should have both", refused, accepted)
	}
}

func asErrorList(err error, el *iptables.ErrorList) bool {
	l, ok := err.(iptables.ErrorList)
	if ok {
		*el = l
	}
	return ok
}

// TestGoldenFuzzCorpus keeps the injection policies in the seed corpora of
// the fuzz targets that read policies (model, compiler, nft, iptables), so
// `go test` replays them in CI and `go test -fuzz` starts from them. With
// -update it rewrites them; without, it checks they are there and current.
func TestGoldenFuzzCorpus(t *testing.T) {
	targets := map[string]string{ // dir -> how the target takes a policy
		"../../model/testdata/fuzz/FuzzLoadSources": "two",
		"../../compiler/testdata/fuzz/FuzzCompile":  "one",
		"../../nft/testdata/fuzz/FuzzPrint":         "one",
		"../../iptables/testdata/fuzz/FuzzExport":   "one",
	}
	dirs := make([]string, 0, len(targets))
	for d := range targets {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	// One seed per payload (in the comment, the member and the zone name)
	// keeps the corpora small; TestInjection covers every field.
	var seeds []string
	for _, f := range []string{"comment", "dlog", "zone", "member", "iface"} {
		for i, p := range payloads {
			if i%4 != 0 && f != "comment" {
				continue
			}
			v := map[string]string{}
			for k, b := range benign {
				v[k] = b
			}
			v[f] = p
			pol, _ := policyWith(v)
			seeds = append(seeds, pol)
		}
	}
	base, _ := policyWith(benign)
	seeds = append(seeds, base)
	for _, dir := range dirs {
		for i, s := range seeds {
			var body string
			if targets[dir] == "two" {
				body = fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n[]byte(%s)\n", strconv.Quote(s), strconv.Quote("[groups]\nx = [\"198.18.0.1\"]\n"))
			} else {
				body = fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(s))
			}
			path := filepath.Join(dir, fmt.Sprintf("injection-%02d", i))
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != body {
				t.Errorf("%s is missing or stale; run go test ./internal/text -run GoldenFuzzCorpus -update", path)
			}
		}
	}
}
