package compiler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// TestDifferentialOptimized is the differential test of the optimiser
// (design.md invariant 5) on policies made for it to fire: many rules of
// few shapes, runs of the same shape and verdict with different ports,
// addresses, zones and protocols, both families interleaved, duplicates,
// and the odd rule that must break a run (log, limit, negation, another
// verdict). For every packet the optimised ruleset must decide as the
// plain first-match reference does (the shared differential helper), and
// exactly as the unoptimised ruleset does: same verdict, same deciding
// rule, same source. It fails if any kind of merge never fired.
func TestDifferentialOptimized(t *testing.T) {
	policies, packets := 150, 600
	if testing.Short() {
		policies, packets = 30, 300
	}
	fired := map[string][2]int{}
	byMerged, byMap := 0, 0
	total, seen := 0, map[string]int{}
	for seed := range policies {
		r := rand.New(rand.NewPCG(uint64(seed), 8))
		text := genMergeable(r)
		name := fmt.Sprintf("mergeable policy seed %d", seed)
		p, diags := model.LoadSources([]model.Source{{Name: "merge.toml", Data: []byte(text)}})
		if err := diags.Err(); err != nil {
			t.Fatalf("%s does not load (a generator bug): %v\n%s", name, err, text)
		}
		opt, d1 := Compile(p, Options{})
		plain, d2 := Compile(p, Options{NoOptimize: true})
		if d1.HasErrors() || d2.HasErrors() {
			t.Fatalf("%s: compile: %v %v", name, d1.Err(), d2.Err())
		}
		for k, v := range MergeStats(opt) {
			f := fired[k]
			fired[k] = [2]int{f[0] + v[0], f[1] + v[1]}
		}
		total += differential(t, name, text, p, r, packets, seen)
		parts, mapped := map[*ir.Rule]bool{}, map[*ir.Rule]bool{}
		for _, c := range opt.Chains {
			for _, m := range c.Rules {
				_, isMap := m.Verdict.(ir.VerdictMap)
				for _, o := range m.Merged {
					parts[o] = true
					mapped[o] = mapped[o] || isMap
				}
			}
		}
		s := newSampler(r, p)
		bad := 0
		for range packets {
			pkt := s.packet(nil)
			a, b := ir.Eval(opt, pkt), ir.Eval(plain, pkt)
			if parts[a.Rule] {
				byMerged++
			}
			if mapped[a.Rule] {
				byMap++
			}
			if msg := sameResult(a, b); msg != "" {
				bad++
				if bad <= 3 {
					t.Errorf("%s, packet %q: optimised and plain rulesets differ: %s\n%s", name, pkt, msg, text)
				}
			}
		}
	}
	t.Logf("merges over %d policies (kind: merged rules, rules they stand for): %v", policies, fired)
	t.Logf("%d comparisons with the reference; decided by (kind/action): %v", total, seen)
	t.Logf("%d packets were decided by a rule inside a merged rule", byMerged)
	t.Logf("%d packets were decided by a rule reached through a zone dispatch map", byMap)
	if byMap < policies {
		t.Errorf("only %d packets were decided through zone dispatch maps: the comparison proves little", byMap)
	}
	if byMerged < policies {
		t.Errorf("only %d packets were decided by merged rules: the comparison proves little", byMerged)
	}
	for _, k := range []string{"ports", "addrs", "ifaces", "concat", "same", "protos", "vmap"} {
		if fired[k][0] == 0 {
			t.Errorf("the %q merge never fired: the generator no longer exercises it", k)
		}
	}
}

// sameResult compares two Eval results: verdict, deciding rule's source,
// chain; "" when they agree.
func sameResult(a, b ir.Result) string {
	if (a.Err == nil) != (b.Err == nil) {
		return fmt.Sprintf("errors %v and %v", a.Err, b.Err)
	}
	if fmt.Sprint(a.Verdict) != fmt.Sprint(b.Verdict) {
		return fmt.Sprintf("verdicts %v and %v", a.Verdict, b.Verdict)
	}
	if (a.Rule == nil) != (b.Rule == nil) {
		return "one decided by a rule, the other by a policy"
	}
	if a.Rule != nil && a.Rule.Source != b.Rule.Source {
		return fmt.Sprintf("deciding rules %+v and %+v", a.Rule.Source, b.Rule.Source)
	}
	if (a.Chain == nil) != (b.Chain == nil) || (a.Chain != nil && a.Chain.Name != b.Chain.Name) {
		return "deciding chains differ"
	}
	return ""
}

// genMergeable writes a random policy of many rules in runs of one shape.
func genMergeable(r *rand.Rand) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	chance := func(n int) bool { return r.IntN(n) == 0 }

	w("[defaults]\ninput = %q\nforward = %q\noutput = %q\n", pick("drop", "reject"), pick("drop", "accept"), pick("accept", "drop"))
	w("\n[zones]\n")
	zoneIfs := [][]string{{"eth0"}, {"eth1"}, {"bond0", "bond1"}, {"vx*"}, {"wan0"}, {"lan0", "lan1"}, {"eth*"}}
	var zones []string
	for i, ifs := range zoneIfs {
		z := fmt.Sprintf("z%d", i)
		zones = append(zones, z)
		q := make([]string, len(ifs))
		for k, n := range ifs {
			q[k] = fmt.Sprintf("%q", n)
		}
		w("%s = { interfaces = [%s] }\n", z, strings.Join(q, ", "))
	}
	w("\n[groups]\ngA = [\"198.18.0.0/28\", \"fd00::/124\"]\n")

	v4 := func() string { return fmt.Sprintf("198.18.%d.%d", r.IntN(2), r.IntN(24)) }
	v6 := func() string { return fmt.Sprintf("fd00:%x::%x", r.IntN(2), r.IntN(24)) }
	ports := []int{22, 53, 80, 443, 8080, 8443, 9000, 9001}

	type shape struct {
		hook, zone, action, proto string
		from, to, port, fam       int // 0 none, 1 literal...
	}
	newShape := func() shape {
		s := shape{
			hook:   pick("in", "in", "out", "forward"),
			action: pick("accept", "accept", "drop", "reject"),
			proto:  pick("tcp", "tcp", "udp"),
			fam:    r.IntN(3), // 0 IPv4, 1 IPv6, 2 alternate
			from:   r.IntN(4), // 0 none, 1 one address, 2 two addresses, 3 a CIDR
			to:     r.IntN(5), // 0-2 none, 3 one address, 4 the group
			port:   r.IntN(5), // 0 none, 1-2 one port, 3 two ports, 4 a bare protocol (esp, vrrp, ...)
		}
		if chance(2) {
			s.zone = pick(zones...)
		}
		return s
	}
	addrOf := func(s shape, i int) string {
		f := s.fam
		if f == 2 {
			f = i % 2
		}
		if f == 0 {
			return v4()
		}
		return v6()
	}

	w("\n[[policy]]\nname = \"many\"\n")
	s := newShape()
	for i := range 20 + r.IntN(40) {
		if chance(4) {
			s = newShape()
		}
		zone := s.zone
		if chance(3) && s.zone != "" {
			zone = pick(zones...) // same shape, another zone: the iface merge
		}
		w("  [[policy.%s]]\n", s.hook)
		if zone != "" {
			if s.hook == "forward" {
				w("  from_zone = %q\n", zone)
			} else {
				w("  zone = %q\n", zone)
			}
		}
		switch s.from {
		case 1:
			w("  from = %q\n", addrOf(s, i))
		case 2:
			w("  from = [%q, %q]\n", addrOf(s, i), addrOf(s, i))
		case 3:
			w("  from = \"198.18.%d.%d/30\"\n", r.IntN(2), 4*r.IntN(6))
		}
		switch s.to {
		case 3:
			w("  to = %q\n", addrOf(s, i))
		case 4:
			w("  to = \"gA\"\n")
		}
		switch s.port {
		case 1, 2:
			w("  service = \"%s/%d\"\n", s.proto, ports[r.IntN(len(ports))])
		case 3:
			w("  service = [\"%s/%d\", \"%s/%d\"]\n", s.proto, ports[r.IntN(len(ports))], s.proto, ports[r.IntN(len(ports))])
		case 4:
			w("  service = %q\n", pick("esp", "vrrp", "gre", "ah"))
		}
		action := s.action
		if chance(12) {
			action = pick("accept", "drop") // a different verdict breaks the run
		}
		if action != "accept" {
			w("  action = %q\n", action)
		}
		switch {
		case chance(15):
			w("  log = true\n")
		case chance(15):
			w("  comment = \"odd one\"\n")
		case chance(15):
			w("  state = \"new\"\n")
		}
		w("\n")
	}
	// Zone dispatch: a block of rules of one hook whose zones vary and
	// whose verdicts differ, so that they do not merge into one set but
	// go to per-zone chains of a verdict map; the odd wildcard zone, log
	// rule or zone-less rule ends a run.
	if chance(3) {
		return b.String()
	}
	exact := []string{"z0", "z1", "z2", "z4", "z5"}
	hook := pick("in", "out", "forward")
	for range 5 + r.IntN(12) {
		w("  [[policy.%s]]\n", hook)
		zone := pick(exact...)
		if chance(12) {
			zone = pick("z3", "z6") // a wildcard: cannot be a map key
		}
		switch {
		case chance(15):
			// no zone
		case hook == "forward":
			w("  from_zone = %q\n", zone)
			if chance(3) {
				w("  to_zone = %q\n", pick(exact...))
			}
		default:
			w("  zone = %q\n", zone)
		}
		if chance(2) {
			w("  from = %q\n", pick(v4(), v6()))
		}
		w("  service = \"%s/%d\"\n", pick("tcp", "udp"), ports[r.IntN(len(ports))])
		if a := pick("accept", "drop", "reject"); a != "accept" {
			w("  action = %q\n", a)
		}
		if chance(10) {
			w("  log = true\n")
		}
		w("\n")
	}
	return b.String()
}

// TestOptimizeShapes checks what the optimiser makes of typical runs.
func TestOptimizeShapes(t *testing.T) {
	tests := []struct {
		name  string
		rules string
		want  []string // merge kinds of the input chain, in order ("" for a plain rule)
	}{
		{"ports of one source", `
  [[policy.in]]
  service = "tcp/22"
  [[policy.in]]
  service = "tcp/80"
  [[policy.in]]
  service = "tcp/443"`, []string{"ports"}},
		{"source and port pairs become a concatenation", `
  [[policy.in]]
  from = "198.18.0.1"
  service = "tcp/22"
  [[policy.in]]
  from = "198.18.0.2"
  service = "tcp/80"
  [[policy.in]]
  from = "198.18.0.3"
  service = "tcp/443"`, []string{"concat"}},
		{"a different verdict breaks the run", `
  [[policy.in]]
  service = "tcp/22"
  [[policy.in]]
  service = "tcp/23"
  action = "drop"
  [[policy.in]]
  service = "tcp/80"`, []string{"", "", ""}},
		{"a log rule breaks the run", `
  [[policy.in]]
  service = "tcp/22"
  [[policy.in]]
  service = "tcp/23"
  log = true
  [[policy.in]]
  service = "tcp/80"`, []string{"", "", "ports"}}, // 22 | log 23 | 23 and 80
		{"families interleaved merge per family", `
  [[policy.in]]
  from = ["198.18.0.1", "fd00::1"]
  [[policy.in]]
  from = ["198.18.0.2", "fd00::2"]
  [[policy.in]]
  from = ["198.18.0.3", "fd00::3"]`, []string{"addrs", "addrs"}},
		{"zones", `
  [[policy.in]]
  zone = "a"
  service = "tcp/22"
  [[policy.in]]
  zone = "b"
  service = "tcp/22"`, []string{"ifaces"}},
		{"a negated address stays", `
  [[policy.in]]
  from = "!198.18.0.1"
  [[policy.in]]
  from = "!198.18.0.2"`, []string{"", "", "", ""}}, // v4 and v6 parts each
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := "[defaults]\nicmp = \"none\"\nestablished = false\nloopback = false\ninvalid = \"accept\"\n[zones]\na = { interfaces = [\"eth0\"] }\nb = { interfaces = [\"eth1\"] }\n[[policy]]\nname = \"p\"\n" + tt.rules + "\n"
			p, diags := model.LoadSources([]model.Source{{Name: "p.toml", Data: []byte(text)}})
			if err := diags.Err(); err != nil {
				t.Fatal(err)
			}
			rs, diags := Compile(p, Options{})
			if err := diags.Err(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range rs.Chains {
				if c.Name != ChainInput {
					continue
				}
				for _, r := range c.Rules {
					if r.Source.What == "" || strings.HasPrefix(r.Source.What, "defaults.") {
						continue
					}
					k := ""
					if len(r.Merged) > 0 {
						k = mergeKind(r)
					}
					got = append(got, k)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("merges %q, want %q", got, tt.want)
			}
		})
	}
}
