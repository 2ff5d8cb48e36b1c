package integration

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"go4.org/netipx"
)

// TestKernelAgreement is issue 6's kernel agreement: for every example and
// node, a grid of probes generated from the compiled ruleset itself is
// sent as real packets through labs whose node applied the table over
// netlink, and the kernel's verdict must be ir.Eval's for every one of
// them. The grid crosses
//
//   - every zone's interfaces (a wildcard by one name it matches) and an
//     interface in no zone,
//   - sources (and, forwarded, destinations) inside and just outside every
//     address set and literal a rule matches (the first and last address
//     of its ranges and their neighbours), the node's own addresses as
//     destinations, and an address outside everything, IPv4 and IPv6,
//   - every destination port a rule names (each range's ends and their
//     neighbours) and one port no rule names, over TCP and UDP, with the
//     source ports rules name, plus an ICMP or ICMPv6 echo request,
//
// in direction in, and forward (every ordered pair of those interfaces)
// where the example routes. It prints the number of probes per example and
// in total.
func TestKernelAgreement(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	sender := PacketSender{Load: netlinkLoader, InFlight: 256, Labs: 4}
	var total, totalSkipped int
	totals := map[string]int{}
	for _, ex := range compiledExamples(t) {
		g := newAgreementGrid(ex)
		for _, c := range ex.rs.Chains {
			// A regular chain the grid never read (reached some new way)
			// would leave its rules without probes.
			if c.Base == nil && len(c.Rules) > 0 && !g.visited[c] {
				t.Errorf("%s: the grid takes no samples from chain %s", ex.name, c.Name)
			}
		}
		cases, skipped := g.cases()
		if len(cases) == 0 {
			t.Errorf("%s: the grid is empty", ex.name)
			continue
		}
		counts := map[string]int{}
		t.Run(ex.name, func(t *testing.T) {
			results := sender.Send(t, ex.rs, cases)
			disagree := 0
			for i, r := range results {
				if r.Skip != "" {
					skipped[r.Skip]++
					continue
				}
				c := cases[i]
				counts[r.Sent.Direction.String()+"/"+r.Sent.Proto.String()+"/"+familyWord(r.Sent.Src)]++
				counts[r.Got.String()]++
				if r.Resent {
					counts["resent"]++
				}
				if r.Got != c.Want {
					disagree++
					ev := ir.Eval(ex.rs, r.Sent)
					t.Errorf("%s: kernel %s (%v), ir.Eval %s by %s", r.Sent, r.Got, r.Err, c.Want, decidedBy(ev))
				}
			}
			if disagree > 0 {
				t.Errorf("%d disagreements", disagree)
			}
		})
		n := 0
		for _, k := range []string{"accepted", "dropped", "rejected", "failed"} {
			n += counts[k]
		}
		ns := 0
		for _, v := range skipped {
			ns += v
		}
		t.Logf("%s: %d probes agreed with ir.Eval (%d accepted, %d dropped, %d rejected; %d resent to confirm a drop), %d not sent; by direction/protocol/family: %s%s",
			ex.name, n, counts["accepted"], counts["dropped"], counts["rejected"], counts["resent"], ns, countList(counts, "/"), skipList(skipped))
		total += n
		totalSkipped += ns
		for k, v := range counts {
			totals[k] += v
		}
	}
	t.Logf("kernel agreement: %d probes over every example (%d accepted, %d dropped, %d rejected), %d not sent", total, totals["accepted"], totals["dropped"], totals["rejected"], totalSkipped)
	if total == 0 {
		t.Fatal("no probe was sent")
	}
}

func decidedBy(r ir.Result) string {
	switch {
	case r.Rule != nil:
		return fmt.Sprintf("%s (%s:%d) in chain %s", r.Rule.Source.What, r.Rule.Source.File, r.Rule.Source.Line, r.Chain.Name)
	case r.Chain != nil:
		return "the policy of chain " + r.Chain.Name
	}
	return "no chain"
}

func countList(m map[string]int, must string) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		if strings.Contains(k, must) {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	return strings.Join(parts, ", ")
}

func skipList(m map[string]int) string {
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		fmt.Fprintf(&b, "\n      not sent: %d x %s", m[k], k)
	}
	return b.String()
}

// agreementGrid holds the samples of one example node's grid.
type agreementGrid struct {
	ex     example
	ifaces []string
	in     gridSamples
	fwd    *gridSamples // nil: the example does not route
	nodes  []netip.Addr // the node's own addresses
	// visited are the chains the samples were read from.
	visited map[*ir.Chain]bool
}

// gridSamples are the values one direction's rules look at.
type gridSamples struct {
	src, dst []netip.Addr
	dports   map[ir.Proto][]uint16 // tcp, udp
	sports   map[ir.Proto][]uint16
}

// Hooks whose chains decide each direction (guards on prerouting included).
var (
	inHooks  = []ir.Hook{ir.HookPrerouting, ir.HookInput}
	fwdHooks = []ir.Hook{ir.HookPrerouting, ir.HookForward, ir.HookPostrouting}
)

// Addresses outside every example's groups, used as "outside everything".
var (
	outside4 = netip.MustParseAddr("198.19.254.1")
	outside6 = netip.MustParseAddr("fd00:fe::1")
	farDst4  = netip.MustParseAddr("198.19.253.1")
	farDst6  = netip.MustParseAddr("fd00:fd::1")
)

func newAgreementGrid(ex example) *agreementGrid {
	g := &agreementGrid{ex: ex, nodes: nodeAddrs(ex.pol, ex.node), visited: map[*ir.Chain]bool{}}
	names := map[string]bool{NoZoneIface(ex.rs): true}
	for _, z := range ex.pol.Zones {
		for _, i := range z.Interfaces {
			names[concreteIface(i.Name)] = true
		}
	}
	for _, c := range ex.rs.Chains {
		for _, r := range c.Rules {
			for _, m := range r.Matches {
				if im, ok := m.(ir.IfaceMatch); ok {
					for _, n := range im.Names {
						names[concreteIface(n)] = true
					}
				}
			}
		}
	}
	delete(names, "lo") // the node's own loopback: not a lab link
	g.ifaces = sortedKeys(names)
	g.in = g.samples(inHooks)
	g.in.dst = append(g.in.dst, g.nodes...)
	if routes(ex.pol) {
		s := g.samples(fwdHooks)
		s.dst = append(s.dst, farDst4, farDst6)
		g.fwd = &s
	}
	return g
}

// routes reports whether the example forwards anything: forward rules, a
// forward default of accept, or a guard that also watches routed packets.
func routes(pol *model.Policy) bool {
	if pol.Defaults.Forward == model.ActionAccept {
		return true
	}
	for _, p := range pol.Policies {
		if len(p.Forward) > 0 {
			return true
		}
	}
	for _, g := range pol.Guards {
		if !g.Local {
			return true
		}
	}
	return false
}

// concreteIface is an interface name a zone pattern matches: the name, or
// for a wildcard its prefix and "7".
func concreteIface(pattern string) string {
	pre, ok := strings.CutSuffix(pattern, "*")
	if !ok {
		return pattern
	}
	return (pre + "7")[:min(15, len(pre)+1)]
}

// samples collects addresses and ports from the chains of hooks and the
// chains they jump to.
func (g *agreementGrid) samples(hooks []ir.Hook) gridSamples {
	s := gridSamples{dports: map[ir.Proto][]uint16{}, sports: map[ir.Proto][]uint16{}}
	seen := map[*ir.Chain]bool{}
	var walk func(c *ir.Chain)
	walk = func(c *ir.Chain) {
		if c == nil || seen[c] {
			return
		}
		seen[c] = true
		g.visited[c] = true
		for _, r := range c.Rules {
			switch v := r.Verdict.(type) {
			case ir.Jump:
				walk(v.Chain)
			case ir.VerdictMap:
				for _, c := range v.Chains() {
					walk(c)
				}
			}
			for _, m := range r.Matches {
				switch m := m.(type) {
				case ir.AddrMatch:
					elems := m.Elems
					if m.Set != nil {
						elems = m.Set.Elems
					}
					if m.Field == ir.Src {
						s.src = append(s.src, rangeSamples(elems)...)
					} else {
						s.dst = append(s.dst, rangeSamples(elems)...)
					}
				case ir.ConcatMatch:
					if m.Proto != ir.ProtoTCP && m.Proto != ir.ProtoUDP {
						continue
					}
					for _, e := range m.Elems {
						a := []netip.Addr{e.Addr}
						if m.AddrField == ir.Src {
							s.src = append(s.src, a...)
						} else {
							s.dst = append(s.dst, a...)
						}
						if m.PortField == ir.Dst {
							s.dports[m.Proto] = append(s.dports[m.Proto], portSamples([]ir.PortRange{{Lo: e.Port, Hi: e.Port}})...)
						} else {
							s.sports[m.Proto] = append(s.sports[m.Proto], portSamples([]ir.PortRange{{Lo: e.Port, Hi: e.Port}})...)
						}
					}
				case ir.PortMatch:
					if m.Proto != ir.ProtoTCP && m.Proto != ir.ProtoUDP {
						continue
					}
					if m.Field == ir.Dst {
						s.dports[m.Proto] = append(s.dports[m.Proto], portSamples(m.Ranges)...)
					} else {
						s.sports[m.Proto] = append(s.sports[m.Proto], portSamples(m.Ranges)...)
					}
				}
			}
		}
	}
	for _, c := range g.ex.rs.Chains {
		if c.Base != nil && slices.Contains(hooks, c.Base.Hook) {
			walk(c)
		}
	}
	s.src = append(s.src, outside4, outside6)
	for _, p := range []ir.Proto{ir.ProtoTCP, ir.ProtoUDP} {
		s.dports[p] = append(s.dports[p], unusedPort(g.ex.rs, p))
		slices.Sort(s.dports[p])
		s.dports[p] = slices.Compact(s.dports[p])
		slices.Sort(s.sports[p])
		s.sports[p] = slices.Compact(s.sports[p])
	}
	// Sources are never the node's own addresses (the kernel drops such
	// packets as martians before any hook that matters here), nor the lab
	// node's.
	s.src = slices.DeleteFunc(dedupeAddrs(s.src), func(a netip.Addr) bool {
		return !usable(a) || slices.Contains(g.nodes, a) || a == labNode4 || a == labNode6
	})
	s.dst = slices.DeleteFunc(dedupeAddrs(s.dst), func(a netip.Addr) bool { return !usable(a) })
	return s
}

// usable reports whether a can stand on a lab host: in the lab's ranges,
// not multicast.
func usable(a netip.Addr) bool {
	return a.IsValid() && LabAddr(a) && !a.IsMulticast()
}

// rangeSamples are the first and last address of the first three ranges
// and of the last, and the addresses just outside each.
func rangeSamples(rs []netipx.IPRange) []netip.Addr {
	var out []netip.Addr
	for i, r := range rs {
		if i >= 3 && i != len(rs)-1 {
			continue
		}
		out = append(out, r.From(), r.To(), r.From().Prev(), r.To().Next())
	}
	return out
}

// portSamples are each range's ends and the ports just outside it.
func portSamples(rs []ir.PortRange) []uint16 {
	var out []uint16
	for _, r := range rs {
		out = append(out, r.Lo, r.Hi)
		if r.Lo > 1 {
			out = append(out, r.Lo-1)
		}
		if r.Hi < 65535 {
			out = append(out, r.Hi+1)
		}
	}
	return slices.DeleteFunc(out, func(p uint16) bool { return p == 0 })
}

// unusedPort is a low port no port match of proto in rs covers.
func unusedPort(rs *ir.Ruleset, proto ir.Proto) uint16 {
	covered := func(p uint16) bool {
		for _, c := range rs.Chains {
			for _, r := range c.Rules {
				for _, m := range r.Matches {
					if pm, ok := m.(ir.PortMatch); ok && pm.Proto == proto {
						for _, pr := range pm.Ranges {
							if pr.Lo <= p && p <= pr.Hi {
								return true
							}
						}
					}
				}
			}
		}
		return false
	}
	for p := uint16(7); p < 1024; p++ {
		if !covered(p) {
			return p
		}
	}
	return 1023
}

func dedupeAddrs(s []netip.Addr) []netip.Addr {
	slices.SortFunc(s, netip.Addr.Compare)
	return slices.Compact(s)
}

// cases builds the probes, each expecting ir.Eval's verdict, and counts
// what it leaves out and why.
func (g *agreementGrid) cases() ([]PacketCase, map[string]int) {
	var out []PacketCase
	skipped := map[string]int{}
	sport := uint16(32768)
	nextSport := func() uint16 {
		sport++
		if sport == 0 {
			sport = 32769
		}
		return sport
	}
	// budget bounds, per lab, the probes a rate-limited rule with a
	// verdict decides (past its burst the kernel would skip it, which
	// ir.Eval does not model).
	budget := map[string]int{}
	add := func(p ir.Packet, lab string) {
		if why := rewritten(g.ex.rs, p); why != "" {
			skipped[why]++
			return
		}
		res := ir.Eval(g.ex.rs, p)
		for _, st := range res.Trace {
			if st.Kind == ir.StepRule && st.Rule.Limit != nil && st.Rule.Verdict != nil {
				key := fmt.Sprintf("%s/%p", lab, st.Rule)
				if budget[key]++; budget[key] > 3 {
					skipped["a rate-limited rule decides it, and 3 probes already used the rule's burst in this lab"]++
					return
				}
			}
		}
		out = append(out, PacketCase{Name: p.String(), Pkt: p, Want: outcomeOfVerdict(res.Verdict)})
	}
	probes := func(base ir.Packet, s *gridSamples, lab string) {
		for _, src := range s.src {
			for _, dst := range s.dst {
				if src.Is4() != dst.Is4() || src == dst {
					continue
				}
				p := base
				p.Src, p.Dst = src, dst
				p.HopLimit = ir.DefaultHopLimit
				for _, proto := range []ir.Proto{ir.ProtoTCP, ir.ProtoUDP} {
					for _, dport := range s.dports[proto] {
						q := p
						q.Proto, q.DPort, q.SPort = proto, dport, nextSport()
						add(q, lab)
						for _, sp := range s.sports[proto] {
							q.SPort = sp
							add(q, lab)
						}
					}
				}
				q := p
				q.Proto, q.ICMPType = ir.ProtoICMP, 8
				if src.Is6() {
					q.Proto, q.ICMPType = ir.ProtoICMPv6, 128
				}
				add(q, lab)
			}
		}
	}
	for _, iif := range g.ifaces {
		probes(ir.Packet{Direction: ir.DirIn, IIF: iif, State: ir.CtNew, DstLocal: true}, &g.in, "in-"+iif)
	}
	if g.fwd != nil {
		// A forwarded packet's destination is not the node's, and is not
		// also a source of the same lab (an address lives on one side).
		fwd := *g.fwd
		fwd.dst = slices.DeleteFunc(slices.Clone(fwd.dst), func(a netip.Addr) bool {
			return slices.Contains(g.nodes, a) || slices.Contains(fwd.src, a) || a == labNode4 || a == labNode6
		})
		for _, iif := range g.ifaces {
			for _, oif := range g.ifaces {
				if iif != oif {
					probes(ir.Packet{Direction: ir.DirForward, IIF: iif, OIF: oif, State: ir.CtNew}, &fwd, "forward-"+iif+"-"+oif)
				}
			}
		}
	}
	return out, skipped
}
