package compiler

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// TestLintShadowingExact holds lint's shadowed (HW001), redundant (HW002)
// and empty-match (HW003) findings to brute force: random small policies
// over a small universe (addresses in 198.18.0.0/29 and fd00::/125, ports
// 0-7, tcp and udp, a few interfaces), every packet of that universe plus
// one "outside" value per dimension enumerated, and each packet decided by
// the plain first-match reference (reference.go), which shares no code
// with lint. Brute force over the in hook:
//   - empty: the rule matches no packet;
//   - shadowed: it matches some, decides none;
//   - redundant: it decides some, and for each of them the next matching
//     rule (or the default) gives the same verdict; as lint does, not
//     reported when one of those next rules is itself shadowed.
func TestLintShadowingExact(t *testing.T) {
	policies := 150
	if testing.Short() {
		policies = 40
	}
	pkts := smallUniverse()
	counts := map[string]int{}
	for seed := range policies {
		r := rand.New(rand.NewPCG(uint64(seed), 5))
		text := genSmallPolicy(r)
		p, diags := model.LoadSources([]model.Source{{Name: "small.toml", Data: []byte(text)}})
		if err := diags.Err(); err != nil {
			t.Fatalf("seed %d: generated policy does not load (a generator bug): %v\n%s", seed, err, text)
		}
		want := bruteForce(p, pkts)
		var got []string
		for _, d := range Lint(p, LintOptions{}) {
			if d.ID == LintShadowed || d.ID == LintRedundant || d.ID == LintEmptyMatch {
				if strings.HasPrefix(d.Msg, "guard") {
					continue
				}
				got = append(got, d.ID+" "+d.Pos.String())
			}
		}
		slices.Sort(got)
		for _, w := range want {
			counts[strings.Fields(w)[0]]++
		}
		if !slices.Equal(got, want) {
			t.Errorf("seed %d: lint says %q, brute force over %d packets says %q\n%s", seed, got, len(pkts), want, text)
		}
	}
	t.Logf("%d random policies, %d packets each; findings confirmed: %v", policies, len(pkts), counts)
	// The generator must produce every kind of finding, or the comparison
	// proves little.
	for _, id := range []string{LintShadowed, LintRedundant, LintEmptyMatch} {
		if counts[id] == 0 && !testing.Short() {
			t.Errorf("no random policy had a %s finding", id)
		}
	}
}

// bruteForce returns the expected HW001-HW003 findings of the in rules,
// as "ID file:line:col", sorted.
func bruteForce(p *model.Policy, pkts []ir.Packet) []string {
	rules := refEval{p: p}.rules(model.HookIn)
	n := len(rules)
	matched := make([]bool, n)
	decided := make([]bool, n)
	same := make([]bool, n)
	laters := make([]map[int]bool, n)
	for i := range same {
		same[i] = true
		laters[i] = map[int]bool{}
	}
	idx := map[*model.Rule]int{}
	for i, r := range rules {
		idx[r] = i
	}
	m := make([]bool, n)
	for _, pkt := range pkts {
		ev := refEval{p: p, pkt: pkt}
		for i, r := range rules {
			m[i] = ev.ruleMatches(r)
			matched[i] = matched[i] || m[i]
		}
		dec := Reference(p, nil, pkt)
		if dec.By != RefRule {
			continue
		}
		i := idx[dec.Rule]
		decided[i] = true
		// Without rule i: the next matching rule, or the default.
		next := p.Defaults.Input
		for j := i + 1; j < n; j++ {
			if m[j] {
				next = rules[j].Action
				laters[i][j] = true
				break
			}
		}
		if next != rules[i].Action {
			same[i] = false
		}
	}
	shadowed := make([]bool, n)
	for i := range rules {
		shadowed[i] = matched[i] && !decided[i]
	}
	var out []string
	for i, r := range rules {
		usesEmpty := false
		for _, it := range append(slices.Clone(r.From.Items), r.To.Items...) {
			if g := p.Group(it.Name); it.Kind == model.AddrGroup && g != nil && len(g.Addrs.Ranges()) == 0 {
				usesEmpty = true
			}
		}
		laterShadowed := false
		for j := range laters[i] {
			laterShadowed = laterShadowed || shadowed[j]
		}
		switch {
		case !matched[i]:
			if !usesEmpty {
				out = append(out, LintEmptyMatch+" "+r.Pos.String())
			}
		case shadowed[i]:
			out = append(out, LintShadowed+" "+r.Pos.String())
		case same[i] && !laterShadowed:
			out = append(out, LintRedundant+" "+r.Pos.String())
		}
	}
	slices.Sort(out)
	return out
}

// smallUniverse is every in packet the generated policies can tell apart:
// each address of 198.18.0.0/29 and fd00::/125 and one outside them, ports
// 0-8 (8: outside), tcp, udp, esp, gre and the ICMP types the defaults
// treat differently, every state, interfaces the zones name, one they
// don't, and lo.
func smallUniverse() []ir.Packet {
	var out []ir.Packet
	ifaces := []string{"eth0", "eth1", "eth9", "wg0", "ppp0", "lo"}
	states := []ir.CtState{ir.CtNew, ir.CtEstablished, ir.CtRelated, ir.CtInvalid, ir.CtUntracked}
	for _, fam := range []ir.Family{ir.FamilyIPv4, ir.FamilyIPv6} {
		base := netip.MustParseAddr("198.18.0.0")
		icmp, echoReq, echoRep := ir.ProtoICMP, ir.ICMPType(8), ir.ICMPType(0)
		if fam == ir.FamilyIPv6 {
			base = netip.MustParseAddr("fd00::")
			icmp, echoReq, echoRep = ir.ProtoICMPv6, 128, 129
		}
		var addrs []netip.Addr
		for a, k := base, 0; k < 9; a, k = a.Next(), k+1 {
			addrs = append(addrs, a)
		}
		type l4 struct {
			proto ir.Proto
			dport uint16
			typ   ir.ICMPType
			hop   uint8
		}
		var l4s []l4
		for port := range uint16(9) {
			l4s = append(l4s, l4{proto: ir.ProtoTCP, dport: port}, l4{proto: ir.ProtoUDP, dport: port})
		}
		l4s = append(l4s, l4{proto: ir.ProtoESP}, l4{proto: ir.ProtoGRE},
			l4{proto: icmp, typ: echoReq}, l4{proto: icmp, typ: echoRep})
		if fam == ir.FamilyIPv6 {
			l4s = append(l4s, l4{proto: icmp, typ: 135, hop: 255}, l4{proto: icmp, typ: 135, hop: 64})
		}
		for _, iif := range ifaces {
			for _, src := range addrs {
				for _, dst := range addrs {
					for _, x := range l4s {
						for _, st := range states {
							pkt := ir.Packet{Direction: ir.DirIn, IIF: iif, Src: src, Dst: dst, Proto: x.proto,
								DPort: x.dport, ICMPType: x.typ, State: st, HopLimit: 64, DstLocal: true}
							if x.proto.HasPorts() {
								pkt.SPort = ir.DefaultSPort
							}
							if x.hop != 0 {
								pkt.HopLimit = x.hop
							}
							out = append(out, pkt)
						}
					}
				}
			}
		}
	}
	return out
}

// genSmallPolicy writes a random policy over the small universe: random
// defaults, zones with wildcards, groups (one may be empty), and in rules
// with random zone, from, to, service, state and action in two policies of
// random order.
func genSmallPolicy(r *rand.Rand) string {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	var b strings.Builder
	fmt.Fprintf(&b, "[defaults]\ninput = %q\nestablished = %v\nloopback = %v\nicmp = %q\ninvalid = %q\n",
		pick("drop", "accept", "reject"), r.IntN(3) > 0, r.IntN(3) > 0, pick("essential", "none", "all"), pick("drop", "accept"))
	b.WriteString("[zones]\na = { interfaces = [\"eth0\"] }\nb = { interfaces = [\"eth*\"] }\nc = { interfaces = [\"eth1\", \"wg0\"] }\nl = { interfaces = [\"lo\"] }\n")
	v4 := func() string {
		return pick(fmt.Sprintf("198.18.0.%d", r.IntN(8)), fmt.Sprintf("198.18.0.%d/30", 4*r.IntN(2)),
			fmt.Sprintf("198.18.0.%d/31", 2*r.IntN(4)), "198.18.0.0/29", fmt.Sprintf("198.18.0.%d-198.18.0.%d", r.IntN(4), 4+r.IntN(4)))
	}
	v6 := func() string {
		return pick(fmt.Sprintf("fd00::%d", r.IntN(8)), fmt.Sprintf("fd00::%d/126", 4*r.IntN(2)), "fd00::/125")
	}
	group := func() string {
		var items []string
		for range 1 + r.IntN(3) {
			if r.IntN(2) == 0 {
				items = append(items, fmt.Sprintf("%q", v4()))
			} else {
				items = append(items, fmt.Sprintf("%q", v6()))
			}
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	fmt.Fprintf(&b, "[groups]\ng1 = %s\ng2 = %s\ng3 = %s\n", group(), group(), pick(group(), "[]"))
	addr := func() string {
		switch r.IntN(8) {
		case 0:
			return fmt.Sprintf("%q", v4())
		case 1:
			return fmt.Sprintf("%q", v6())
		case 2:
			return fmt.Sprintf("[%q, %q]", v4(), v6())
		case 3:
			return fmt.Sprintf("%q", "!"+pick("g1", "g2", "g3"))
		default:
			return fmt.Sprintf("%q", pick("g1", "g2", "g3"))
		}
	}
	port := func() string {
		lo := r.IntN(8)
		if r.IntN(2) == 0 {
			return fmt.Sprint(lo)
		}
		return fmt.Sprintf("%d-%d", lo, lo+r.IntN(8-lo))
	}
	service := func() string {
		one := func() string {
			return pick("tcp/"+port(), "udp/"+port(), "tcp/"+port(), "tcp", "udp", "esp", "icmp/echo-reply", "icmpv6/echo-request")
		}
		if r.IntN(3) == 0 {
			return fmt.Sprintf("[%q, %q]", one(), one())
		}
		return fmt.Sprintf("%q", one())
	}
	for pi := range 2 {
		fmt.Fprintf(&b, "[[policy]]\nname = \"p%d\"\norder = %d\n", pi, r.IntN(3))
		for range 1 + r.IntN(4) {
			b.WriteString("  [[policy.in]]\n")
			if r.IntN(3) == 0 {
				fmt.Fprintf(&b, "  zone = %q\n", pick("a", "b", "c", "l"))
			}
			if r.IntN(2) == 0 {
				fmt.Fprintf(&b, "  from = %s\n", addr())
			}
			if r.IntN(4) == 0 {
				fmt.Fprintf(&b, "  to = %s\n", addr())
			}
			if r.IntN(4) > 0 {
				fmt.Fprintf(&b, "  service = %s\n", service())
			}
			if r.IntN(4) == 0 {
				fmt.Fprintf(&b, "  state = %s\n", pick(`"new"`, `"established"`, `["new", "untracked"]`, `"invalid"`))
			}
			fmt.Fprintf(&b, "  action = %q\n", pick("accept", "accept", "drop", "reject"))
		}
	}
	return b.String()
}
