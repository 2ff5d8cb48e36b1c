package compiler

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"go4.org/netipx"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/examples"
	"github.com/hostwall/hostwall/model"
)

// The differential test (design.md invariant 5): for the examples and for
// random policies, ir.Eval of the compiled ruleset decides every random
// packet as the plain first-match reading (Reference) does — the same
// action, a reject type that means the policy's reject_with, and the same
// deciding guard, rule or defaults key.

// agree compares Eval's result with the reference; "" when they agree.
func agree(ref RefDecision, res ir.Result, pkt ir.Packet) string {
	if res.Err != nil {
		return "eval error: " + res.Err.Error()
	}
	want := []string{"accept", "drop", "reject"}[ref.Action]
	got := "?"
	switch v := res.Verdict.(type) {
	case ir.Accept:
		got = "accept"
	case ir.Drop:
		got = "drop"
	case ir.Reject:
		got = "reject"
		if ref.Action == model.ActionReject {
			ok := RefRejectTypes(ref.RejectWith, pkt.Family(), pkt.Proto)
			if !slices.Contains(ok, v.With) {
				return fmt.Sprintf("reject type %d, want one of %v", v.With, ok)
			}
		}
	}
	if got != want {
		return fmt.Sprintf("verdict %s, want %s", got, want)
	}
	src := ir.Source{}
	if res.Rule != nil {
		src = res.Rule.Source
	}
	samePos := func(p model.Pos) bool {
		return res.Rule != nil && src.File == p.File && src.Line == p.Line && src.Col == p.Col
	}
	switch ref.By {
	case RefGuard:
		if !samePos(ref.Guard.Pos) {
			return fmt.Sprintf("decided by %s %q, want guard %q at %s", srcPos(src), src.What, ref.Guard.Name, ref.Guard.Pos)
		}
	case RefRule:
		if !samePos(ref.Rule.Pos) {
			return fmt.Sprintf("decided by %s %q, want the rule at %s", srcPos(src), src.What, ref.Rule.Pos)
		}
	case RefDefaults:
		if res.Rule == nil || !strings.HasPrefix(src.What, "defaults."+ref.Key) {
			return fmt.Sprintf("decided by %s %q, want defaults.%s", srcPos(src), src.What, ref.Key)
		}
	case RefDefaultVerdict:
		if res.Rule != nil && !strings.HasPrefix(src.What, "defaults."+ref.Key) {
			return fmt.Sprintf("decided by %s %q, want the default verdict (defaults.%s)", srcPos(src), src.What, ref.Key)
		}
	case RefDNATAccept:
		if res.Rule == nil || !strings.HasPrefix(src.What, DNATAcceptWhat) {
			return fmt.Sprintf("decided by %s %q, want ct status dnat accept", srcPos(src), src.What)
		}
	}
	return agreeNAT(ref, res)
}

// agreeNAT compares the translations and MSS clamps; "" when they agree.
func agreeNAT(ref RefDecision, res ir.Result) string {
	sameNAT := func(kind string, n *model.NAT, t *ir.Translation) string {
		switch {
		case n == nil && t == nil:
			return ""
		case n == nil:
			return fmt.Sprintf("%s by %s %q, want none", kind, srcPos(t.Rule.Source), t.Rule.Source.What)
		case t == nil:
			return fmt.Sprintf("no %s, want the one at %s", kind, n.Pos)
		}
		s := t.Rule.Source
		if s.File != n.Pos.File || s.Line != n.Pos.Line || s.Col != n.Pos.Col {
			return fmt.Sprintf("%s by %s %q, want the one at %s", kind, srcPos(s), s.What, n.Pos)
		}
		if t.Masquerade != (n.Type == model.NATMasquerade) || (!t.Masquerade && (t.Addr != n.ToAddr || t.Port != n.ToPort)) {
			return fmt.Sprintf("%s to %v:%d (masquerade %v), want %v:%d", kind, t.Addr, t.Port, t.Masquerade, n.ToAddr, n.ToPort)
		}
		return ""
	}
	if msg := sameNAT("dnat", ref.DNAT, res.DNAT); msg != "" {
		return msg
	}
	if _, accepted := res.Verdict.(ir.Accept); accepted {
		if msg := sameNAT("snat", ref.SNAT, res.SNAT); msg != "" {
			return msg
		}
	}
	var clamps []string
	for _, s := range res.Trace {
		if _, ok := s.Verdict.(ir.ClampMSS); ok && s.Kind == ir.StepRule {
			clamps = append(clamps, srcPos(s.Rule.Source))
		}
	}
	var want []string
	for _, m := range ref.MSS {
		want = append(want, m.Pos.String())
	}
	if !slices.Equal(clamps, want) {
		return fmt.Sprintf("mss clamps %v, want %v", clamps, want)
	}
	return ""
}

func srcPos(s ir.Source) string { return fmt.Sprintf("%s:%d:%d", s.File, s.Line, s.Col) }

// sampler draws random packets biased towards a policy's own addresses,
// ports, protocols and interfaces.
type sampler struct {
	r      *rand.Rand
	addrs  [2][]netip.Addr // per family: IPv4, IPv6
	ports  []uint16
	protos []ir.Proto
	ifaces []string
}

func newSampler(r *rand.Rand, p *model.Policy) *sampler {
	s := &sampler{r: r}
	addRange := func(rg netipx.IPRange) {
		for _, a := range []netip.Addr{rg.From(), rg.To(), rg.From().Prev(), rg.To().Next()} {
			if a.IsValid() {
				i := 0
				if a.Is6() {
					i = 1
				}
				s.addrs[i] = append(s.addrs[i], a)
			}
		}
	}
	for _, g := range p.Groups {
		if g.Addrs != nil {
			for i, rg := range g.Addrs.Ranges() {
				if i > 50 {
					break
				}
				addRange(rg)
			}
		}
	}
	for _, n := range p.Nodes {
		for _, a := range n.Addresses {
			addRange(netipx.IPRangeFrom(a, a))
		}
	}
	specs := func(ss []model.ServiceSpec) {
		for _, sp := range ss {
			s.protos = append(s.protos, sp.Proto)
			for _, pr := range append(slices.Clone(sp.DPorts), sp.SPorts...) {
				s.ports = append(s.ports, pr.Lo, pr.Hi, pr.Lo-1, pr.Hi+1)
			}
		}
	}
	for _, sv := range p.Services {
		specs(sv.Specs)
	}
	walkAddr := func(a model.AddrSpec) {
		for _, it := range a.Items {
			if it.Kind == model.AddrLiteral {
				addRange(it.Range)
			}
		}
	}
	for _, pb := range p.Policies {
		for _, list := range [][]*model.Rule{pb.In, pb.Out, pb.Forward} {
			for _, rule := range list {
				specs(rule.Services)
				walkAddr(rule.From)
				walkAddr(rule.To)
			}
		}
	}
	for _, g := range p.Guards {
		specs(g.Services)
		walkAddr(g.From)
	}
	for _, n := range p.NATs {
		specs(n.Services)
		walkAddr(n.From)
		if n.ToAddr.IsValid() {
			addRange(netipx.IPRangeFrom(n.ToAddr, n.ToAddr))
		}
		if n.ToPort != 0 {
			s.ports = append(s.ports, n.ToPort)
		}
	}
	for _, z := range p.Zones {
		for _, i := range z.Interfaces {
			if pre, ok := strings.CutSuffix(i.Name, "*"); ok {
				s.ifaces = append(s.ifaces, pre, pre+"0", pre+".7")
				if len(pre) > 1 {
					s.ifaces = append(s.ifaces, pre[:len(pre)-1])
				}
			} else {
				s.ifaces = append(s.ifaces, i.Name)
			}
		}
	}
	s.ifaces = append(s.ifaces, "lo", "eth0", "eth9", "bond0", "wan0")
	s.protos = append(s.protos, ir.ProtoTCP, ir.ProtoUDP, ir.ProtoICMP, ir.ProtoICMPv6, ir.ProtoESP, ir.ProtoVRRP, ir.ProtoSCTP, ir.ProtoGRE)
	s.ports = append(s.ports, 0, 22, 53, 80, 443, 500, 4500, 40000, 65535)
	return s
}

func (s *sampler) addr(fam int) netip.Addr {
	if len(s.addrs[fam]) > 0 && s.r.IntN(4) != 0 {
		return s.addrs[fam][s.r.IntN(len(s.addrs[fam]))]
	}
	if fam == 0 {
		return netip.AddrFrom4([4]byte{198, byte(18 + s.r.IntN(2)), byte(s.r.IntN(4)), byte(s.r.IntN(256))})
	}
	b := netip.MustParseAddr("fd00::").As16()
	b[3], b[15] = byte(s.r.IntN(4)), byte(s.r.IntN(256))
	return netip.AddrFrom16(b)
}

func (s *sampler) port() uint16 {
	if s.r.IntN(5) == 0 {
		return uint16(s.r.IntN(65536))
	}
	return s.ports[s.r.IntN(len(s.ports))]
}

func (s *sampler) iface() string { return s.ifaces[s.r.IntN(len(s.ifaces))] }

func (s *sampler) packet(nodeAddrs []netip.Addr) ir.Packet {
	r := s.r
	var p ir.Packet
	p.Direction = []ir.PacketDir{ir.DirIn, ir.DirIn, ir.DirOut, ir.DirForward}[r.IntN(4)]
	p.Proto = s.protos[r.IntN(len(s.protos))]
	fam := r.IntN(2)
	switch p.Proto {
	case ir.ProtoICMP:
		fam = 0
	case ir.ProtoICMPv6:
		fam = 1
	}
	p.Src, p.Dst = s.addr(fam), s.addr(fam)
	if len(nodeAddrs) > 0 && r.IntN(2) == 0 {
		// Often the node itself is the destination (in) or source (out).
		a := nodeAddrs[r.IntN(len(nodeAddrs))]
		if ir.FamilyOf(a) == ir.FamilyOf(p.Src) {
			if p.Direction == ir.DirOut {
				p.Src = a
			} else {
				p.Dst = a
			}
		}
	}
	if p.Proto.HasPorts() {
		p.SPort, p.DPort = s.port(), s.port()
		if r.IntN(2) == 0 {
			p.SPort = ir.DefaultSPort
		}
	}
	if p.Proto == ir.ProtoICMP || p.Proto == ir.ProtoICMPv6 {
		f := ir.FamilyIPv4
		if p.Proto == ir.ProtoICMPv6 {
			f = ir.FamilyIPv6
		}
		names := ir.ICMPTypeNames(f)
		p.ICMPType, _ = ir.ParseICMPType(f, names[r.IntN(len(names))])
		if r.IntN(10) == 0 {
			p.ICMPType = ir.ICMPType(r.IntN(256))
		}
	}
	p.State = []ir.CtState{ir.CtNew, ir.CtNew, ir.CtNew, ir.CtEstablished, ir.CtRelated, ir.CtInvalid, ir.CtUntracked}[r.IntN(7)]
	p.HopLimit = []uint8{64, 255, 255, 1}[r.IntN(4)]
	switch p.Direction {
	case ir.DirIn:
		p.IIF, p.DstLocal = s.iface(), true
	case ir.DirOut:
		p.OIF, p.DstLocal = s.iface(), r.IntN(4) == 0
	case ir.DirForward:
		p.IIF, p.OIF = s.iface(), s.iface()
	}
	return p
}

// differential compares Eval and Reference on n random packets for every
// node of p (or once without nodes); it returns the number of comparisons
// and reports the first few mismatches.
func differential(t *testing.T, name string, text string, p *model.Policy, r *rand.Rand, n int, seen map[string]int) int {
	t.Helper()
	nodes := p.Nodes
	if len(nodes) == 0 {
		nodes = []*model.Node{nil}
	}
	s := newSampler(r, p)
	count, bad := 0, 0
	for _, node := range nodes {
		opts := Options{}
		var addrs []netip.Addr
		if node != nil {
			opts.Node, addrs = node.Name, node.Addresses
		}
		rs, diags := Compile(p, opts)
		if err := diags.Err(); err != nil {
			t.Errorf("%s: compile for node %q: %v\n%s", name, opts.Node, err, text)
			return count
		}
		for range n {
			pkt := s.packet(addrs)
			// Every sampled packet can be written as PACKET text and read back.
			if back, err := ir.ParsePacket(pkt.String()); err != nil {
				t.Errorf("packet %q does not parse back: %v", pkt, err)
			} else if back.DstLocal = pkt.DstLocal; back != pkt {
				t.Errorf("packet %q parses back as %+v, want %+v", pkt, back, pkt)
			}
			ref := Reference(p, node, pkt)
			res := ir.Eval(rs, pkt)
			count++
			seen[fmt.Sprintf("%d/%d", ref.By, ref.Action)]++
			if ref.DNAT != nil {
				seen["dnat"]++
			}
			if ref.SNAT != nil {
				seen[natTypeName(ref.SNAT.Type)]++
			}
			if len(ref.MSS) > 0 {
				seen["mss"]++
			}
			if msg := agree(ref, res, pkt); msg != "" {
				bad++
				if bad <= 3 {
					t.Errorf("%s, node %q, packet %q (dst local %v):\n  eval:      %s\n  reference: %s\n%s", name, opts.Node, pkt, pkt.DstLocal, msg, ref, text)
				}
			}
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d more mismatches", name, bad-3)
	}
	return count
}

// exampleSources returns the examples as load arguments: each .toml file,
// and each directory.
func exampleSources(t *testing.T) []string {
	out, err := examples.Policies("../examples")
	if err != nil {
		t.Fatalf("examples: %v", err)
	}
	if len(out) == 0 {
		t.Fatal("no examples found")
	}
	return out
}

func TestDifferentialExamples(t *testing.T) {
	n := 4000
	if testing.Short() {
		n = 500
	}
	total, seen := 0, map[string]int{}
	for i, path := range exampleSources(t) {
		p, diags := model.Load(path)
		if err := diags.Err(); err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		r := rand.New(rand.NewPCG(uint64(i), 7))
		total += differential(t, path, "", p, r, n, seen)
	}
	t.Logf("differential over the examples: %d comparisons; decided by (kind/action): %v", total, seen)
	if total == 0 {
		t.Fatal("no comparisons made")
	}
}

// TestReferenceExampleTests checks the reference against the examples'
// own [[test]]s: the spec reading and the examples' authors agree.
func TestReferenceExampleTests(t *testing.T) {
	n := 0
	for _, path := range exampleSources(t) {
		p, diags := model.Load(path)
		if err := diags.Err(); err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		for _, x := range p.Tests {
			pkt := PacketOfTest(p, x)
			ref := Reference(p, p.Node(x.Node), pkt)
			n++
			if ref.Action != x.Expect {
				t.Errorf("%s: test %q (%s): reference says %s, the test expects %s", x.Pos, x.Name, pkt, ref, []string{"accept", "drop", "reject"}[x.Expect])
			}
		}
	}
	if n == 0 {
		t.Fatal("the examples have no tests")
	}
}

func TestDifferentialRandom(t *testing.T) {
	policies, packets := 300, 800
	if testing.Short() {
		policies, packets = 40, 300
	}
	total, loadFailures, seen := 0, 0, map[string]int{}
	for seed := range policies {
		r := rand.New(rand.NewPCG(uint64(seed), 42))
		text := genPolicy(r)
		name := fmt.Sprintf("random policy seed %d", seed)
		p, diags := model.LoadSources([]model.Source{{Name: "rand.toml", Data: []byte(text)}})
		if err := diags.Err(); err != nil {
			loadFailures++
			t.Errorf("%s does not load (a generator bug): %v\n%s", name, err, text)
			continue
		}
		total += differential(t, name, text, p, r, packets, seen)
	}
	t.Logf("differential over %d random policies: %d comparisons; decided by (kind/action): %v", policies, total, seen)
	if total == 0 {
		t.Fatal("no comparisons made")
	}
	// The packets must reach every kind of decision, or the comparison
	// proves little.
	for _, by := range []RefBy{RefGuard, RefDefaults, RefRule, RefDefaultVerdict} {
		for _, a := range []model.Action{model.ActionAccept, model.ActionDrop, model.ActionReject} {
			if by == RefDefaults && a == model.ActionReject {
				continue // the defaults never reject
			}
			if by == RefGuard && a == model.ActionAccept {
				continue // an accepting guard does not decide
			}
			if seen[fmt.Sprintf("%d/%d", by, a)] == 0 {
				t.Errorf("no packet was decided by kind %d with action %d", by, a)
			}
		}
	}
	for _, k := range []string{fmt.Sprintf("%d/%d", RefDNATAccept, model.ActionAccept), "dnat", "snat", "masquerade", "mss"} {
		if seen[k] == 0 {
			t.Errorf("no packet was translated or decided by %s", k)
		}
	}
}

// genPolicy writes a random valid policy: zones with wildcards, groups of
// both families with ranges and nesting, services with ports, ranges,
// source ports and ICMP types, optional nodes and roles, policies with
// orders, roles and default zones, rules of every hook with negation,
// states, actions and reject types, guards, and random defaults.
func genPolicy(r *rand.Rand) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	chance := func(n int) bool { return r.IntN(n) == 0 }
	quote := func(xs []string) string {
		q := make([]string, len(xs))
		for i, x := range xs {
			q[i] = fmt.Sprintf("%q", x)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}

	w("version = 1\n\n[defaults]\n")
	if chance(2) {
		w("input = %q\n", pick("drop", "reject", "accept"))
	}
	if chance(2) {
		w("forward = %q\n", pick("drop", "reject", "accept"))
	}
	if chance(2) {
		w("output = %q\n", pick("drop", "reject", "accept"))
	}
	if chance(3) {
		w("established = %v\n", chance(2))
	}
	if chance(3) {
		w("invalid = %q\n", pick("drop", "accept"))
	}
	if chance(3) {
		w("loopback = %v\n", chance(2))
	}
	if chance(2) {
		w("icmp = %q\n", pick("essential", "all", "none"))
	}
	if chance(4) {
		w("log = { prefix = \"dflt: \", rate = \"5/minute\" }\n")
	}
	rejectWiths := []string{"admin-prohibited", "port-unreachable", "host-unreachable", "net-unreachable", "host-prohibited", "net-prohibited", "tcp-reset"}
	if chance(2) {
		w("reject_with = %q\n", pick(rejectWiths...))
	}

	v4 := func() string { return fmt.Sprintf("198.18.%d.%d", r.IntN(4), r.IntN(32)) }
	v6 := func() string { return fmt.Sprintf("fd00:%x::%x", r.IntN(4), r.IntN(32)) }
	literal := func() string {
		switch r.IntN(6) {
		case 0:
			return v4()
		case 1:
			return fmt.Sprintf("198.18.%d.%d/%d", r.IntN(4), 16*r.IntN(4), 28)
		case 2:
			lo := r.IntN(20)
			return fmt.Sprintf("198.18.%d.%d-198.18.%d.%d", r.IntN(2), lo, 2+r.IntN(2), lo+r.IntN(10))
		case 3:
			return v6()
		case 4:
			return fmt.Sprintf("fd00:%x::%x/124", r.IntN(4), 16*r.IntN(2))
		}
		lo := r.IntN(20)
		return fmt.Sprintf("fd00:1::%x-fd00:1::%x", lo, lo+r.IntN(20))
	}

	ifaceNames := []string{"eth0", "eth1", "bond0", "bond0.*", "vx*", "lan0", "wan0", "lo"}
	var zones []string
	if nz := r.IntN(4); nz > 0 {
		w("\n[zones]\n")
		for i := range nz {
			n := 1 + r.IntN(3)
			var ifs []string
			for range n {
				if f := pick(ifaceNames...); !slices.Contains(ifs, f) {
					ifs = append(ifs, f)
				}
			}
			z := fmt.Sprintf("z%d", i)
			zones = append(zones, z)
			w("%s = { interfaces = %s }\n", z, quote(ifs))
		}
	}

	var groups []string
	if ng := r.IntN(5); ng > 0 {
		w("\n[groups]\n")
		for i := range ng {
			var ms []string
			for range 1 + r.IntN(4) {
				if len(groups) > 0 && chance(4) {
					ms = append(ms, pick(groups...))
				} else {
					ms = append(ms, literal())
				}
			}
			g := fmt.Sprintf("g%d", i)
			groups = append(groups, g)
			w("%s = %s\n", g, quote(slices.Compact(ms)))
		}
	}

	specPool := []string{"tcp/22", "tcp/80-90", "tcp/1024-65535", "udp/53", "udp/1000-2000", "tcp", "udp",
		"esp", "vrrp", "112", "icmp", "icmpv6", "icmp/echo-request", "icmpv6/echo-request",
		"icmp/destination-unreachable", "icmpv6/nd-neighbor-solicit", "icmpv6/echo-reply", "sctp/9", "tcp/0", "udp/65535"}
	tables := []string{`{ proto = "udp", port = 500, sport = 500 }`, `{ proto = "tcp", port = 80, sport = 40000 }`, `{ proto = "tcp", sport = 22 }`}
	var services []string
	if ns := r.IntN(4); ns > 0 {
		w("\n[services]\n")
		for i := range ns {
			s := fmt.Sprintf("svc%d", i)
			services = append(services, s)
			switch r.IntN(3) {
			case 0:
				w("%s = %q\n", s, pick(specPool...))
			case 1:
				w("%s = %s\n", s, pick(tables...))
			default:
				var xs []string
				for range 1 + r.IntN(3) {
					xs = append(xs, pick(specPool...))
				}
				w("%s = %s\n", s, quote(xs))
			}
		}
	}

	var roles []string
	hasNodes := chance(2)
	if hasNodes {
		w("\n[nodes]\n")
		used := map[string]bool{}
		for i := range 1 + r.IntN(3) {
			var addrs []string
			for range 1 + r.IntN(2) {
				a := pick(v4(), v6())
				if !used[a] {
					used[a] = true
					addrs = append(addrs, a)
				}
			}
			var rs []string
			for _, role := range []string{"ra", "rb", "rc"} {
				if chance(2) {
					rs = append(rs, role)
					if !slices.Contains(roles, role) {
						roles = append(roles, role)
					}
				}
			}
			w("n%d = { addresses = %s, roles = %s }\n", i, quote(addrs), quote(rs))
		}
	}

	addr := func() string {
		var names []string
		names = append(names, groups...)
		names = append(names, "any")
		if hasNodes {
			names = append(names, "nodes")
			for _, role := range roles {
				names = append(names, "role:"+role)
			}
		}
		switch r.IntN(4) {
		case 0:
			n := pick(names...)
			if n != "any" && chance(2) {
				n = "!" + n
			}
			return fmt.Sprintf("%q", n)
		case 1:
			n := literal()
			if chance(3) {
				n = "!" + n
			}
			return fmt.Sprintf("%q", n)
		case 2:
			return quote([]string{pick(names...), literal()})
		}
		return fmt.Sprintf("%q", pick(names...))
	}
	service := func() string {
		var items []string
		for range 1 + r.IntN(2) {
			if len(services) > 0 && chance(2) {
				items = append(items, pick(services...))
			} else {
				items = append(items, pick(specPool...))
			}
		}
		if len(items) == 1 && chance(2) {
			return fmt.Sprintf("%q", items[0])
		}
		return quote(items)
	}
	states := []string{"new", "established", "related", "invalid", "untracked"}
	state := func() string {
		if chance(2) {
			return fmt.Sprintf("%q", pick(states...))
		}
		return quote([]string{pick(states...), pick(states...)})
	}
	roleList := func() string {
		return quote([]string{pick(roles...)})
	}

	for i := range 1 + r.IntN(4) {
		w("\n[[policy]]\nname = \"p%d\"\n", i)
		if !chance(3) {
			w("order = %d\n", []int{10, 100, 1000, 5}[r.IntN(4)])
		}
		if len(roles) > 0 && chance(3) {
			w("roles = %s\n", roleList())
		}
		if len(zones) > 0 && chance(3) {
			w("zone = %q\n", pick(zones...))
		}
		for _, hook := range []string{"in", "out", "forward"} {
			for range r.IntN(4) {
				w("  [[policy.%s]]\n", hook)
				if len(zones) > 0 {
					if hook == "forward" {
						if chance(2) {
							w("  from_zone = %q\n", pick(zones...))
						}
						if chance(2) {
							w("  to_zone = %q\n", pick(zones...))
						}
					} else if chance(2) {
						w("  zone = %q\n", pick(zones...))
					}
				}
				if chance(2) {
					w("  from = %s\n", addr())
				}
				if chance(2) {
					w("  to = %s\n", addr())
				}
				if !chance(4) {
					w("  service = %s\n", service())
				}
				if chance(4) {
					w("  state = %s\n", state())
				}
				action := pick("accept", "accept", "drop", "reject")
				if action != "accept" || chance(2) {
					w("  action = %q\n", action)
				}
				if action == "reject" && chance(2) {
					w("  reject_with = %q\n", pick(rejectWiths...))
				}
				if chance(6) {
					w("  log = true\n")
				}
				if chance(8) {
					w("  limit = \"10/second\"\n")
				}
				if len(roles) > 0 && chance(5) {
					w("  roles = %s\n", roleList())
				}
			}
		}
	}

	for i := range r.IntN(3) {
		w("\n[[guard]]\nname = \"guard%d\"\nservice = %s\n", i, service())
		if chance(2) {
			w("from = %s\n", addr())
		}
		if len(zones) > 0 && chance(3) {
			w("zone = %q\n", pick(zones...))
		}
		if chance(2) {
			w("action = %q\n", pick("drop", "reject", "accept"))
		}
		if chance(3) {
			w("local = %v\n", chance(2))
		}
		if chance(3) {
			w("output = %v\n", chance(2))
		}
		if chance(4) {
			w("state = %s\n", state())
		}
		if chance(4) {
			w("log = \"guard: \"\nlimit = \"3/minute\"\n")
		}
		if chance(6) {
			w("counter = false\n")
		}
	}

	// NAT and MSS clamping. Targets are outside the nodes' addresses (a
	// dnat to the node itself is an error); a snat's or dnat's from is a
	// literal of the target's family.
	if len(zones) > 0 {
		for range r.IntN(4) {
			v6 := chance(3)
			target, from := fmt.Sprintf("198.19.%d.%d", r.IntN(4), 1+r.IntN(9)), fmt.Sprintf("198.18.%d.0/24", r.IntN(4))
			if v6 {
				target, from = fmt.Sprintf("fd00:99::%x", 1+r.IntN(9)), fmt.Sprintf("fd00:%x::/64", r.IntN(4))
			}
			switch r.IntN(3) {
			case 0:
				w("\n[[nat]]\ntype = \"masquerade\"\nto_zone = %q\n", pick(zones...))
				if chance(2) {
					w("from = %s\n", addr())
				}
			case 1:
				w("\n[[nat]]\ntype = \"snat\"\nto_zone = %q\nto = %q\n", pick(zones...), target)
				if chance(2) {
					w("from = %q\n", from)
				}
			default:
				w("\n[[nat]]\ntype = \"dnat\"\n")
				if chance(4) != true {
					w("from_zone = %q\n", pick(zones...))
				}
				if chance(3) {
					w("from = %q\n", from)
				}
				if chance(3) {
					w("to = %q\n", target)
					if chance(2) {
						w("service = %s\n", service())
					}
				} else {
					w("service = %q\n", pick("tcp/8443", "udp/5000-5010", "tcp/22"))
					if v6 {
						w("to = \"[%s]:%d\"\n", target, 443)
					} else {
						w("to = \"%s:%d\"\n", target, 443)
					}
				}
			}
		}
		for range r.IntN(3) {
			w("\n[[mss]]\nzone = %q\nsize = ", pick(zones...))
			if chance(2) {
				w("\"pmtu\"\n")
			} else {
				w("%d\n", 1200+r.IntN(200))
			}
		}
	}
	return b.String()
}
