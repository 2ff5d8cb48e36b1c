package model

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
)

func (l *loader) guards(top *tbl) {
	for _, t := range top.tableList("guard", "[[guard]]") {
		t.checkKeys("name", "service", "from", "zone", "action", "local", "output", "state", "log", "limit", "counter", "comment")
		g := &Guard{Action: ActionDrop, Pos: t.header(), Keys: t.keys()}
		if t.require("name", `name = "nodeport-31002"`) {
			if s, ok := t.str("name"); ok {
				if err := checkName(s); err != nil {
					l.errf(t.valPos("name"), "guard name %q %v", s, err)
				} else {
					l.define("guard", s, t.keyPos("name"))
				}
				g.Name = s
			}
		}
		if t.require("service", `service = "tcp/31002"`) {
			g.Services = l.specs(t, "service", true)
		}
		g.From = l.addrSpec(t, "from")
		g.Zone = l.zoneRef(t, "zone")
		if i := t.enum("action", "accept", "drop", "reject"); i >= 0 {
			g.Action = Action(i)
		}
		g.Local = t.boolean("local", true)
		g.Output = t.boolean("output", true)
		g.State = l.ctState(t, "state")
		if _, ok := t.m["state"]; ok && l.p.Settings.GuardPriority <= -200 {
			l.errf(t.valPos("state"), "\"state\" can't be used with guard_priority %d: guards at or below -200 run before conntrack; remove state or set guard_priority between -199 and -101", l.p.Settings.GuardPriority)
		}
		g.Log = l.logVal(t, "log")
		g.Limit = l.limit(t, "limit")
		g.Counter = t.boolean("counter", true)
		g.Comment = l.comment(t, "comment")
		l.p.Guards = append(l.p.Guards, g)
	}
}

// natKeys are the keys each [[nat]] type takes.
var natKeys = map[string][]string{
	"masquerade": {"type", "to_zone", "from"},
	"snat":       {"type", "to_zone", "from", "to"},
	"dnat":       {"type", "from_zone", "from", "service", "to"},
}

func (l *loader) nats(top *tbl) {
	for _, t := range top.tableList("nat", "[[nat]]") {
		n := &NAT{Pos: t.header(), Keys: t.keys()}
		if !t.require("type", `type = "masquerade"`) {
			continue
		}
		i := t.enum("type", "masquerade", "snat", "dnat")
		if i < 0 {
			continue
		}
		n.Type = NATType(i)
		typ := t.m["type"].(string)
		t.kind = fmt.Sprintf("[[nat]] of type %q", typ)
		t.checkKeys(natKeys[typ]...)
		n.ToZone = l.zoneRef(t, "to_zone")
		n.FromZone = l.zoneRef(t, "from_zone")
		n.From = l.addrSpec(t, "from")
		if _, ok := t.m["service"]; ok {
			n.Services = l.specs(t, "service", true)
		}
		switch n.Type {
		case NATSNAT:
			if t.require("to", `to = "203.0.113.7"`) {
				if s, ok := t.str("to"); ok {
					a, err := parseAddr(s)
					if err != nil {
						l.errf(t.valPos("to"), "snat \"to\" must be the new source address: %v", err)
					}
					n.ToAddr = a
				}
			}
		case NATDNAT:
			if t.require("to", `to = "10.8.0.5:443"`) {
				if s, ok := t.str("to"); ok {
					a, port, err := parseDNATTarget(s)
					if err != nil {
						l.errf(t.valPos("to"), "%v", err)
					}
					n.ToAddr, n.ToPort = a, port
					if port != 0 {
						l.dnatPortNeedsPorts(t, n)
					}
				}
			}
		}
		l.p.NATs = append(l.p.NATs, n)
	}
}

// dnatPortNeedsPorts checks that a dnat with a port only applies to
// protocols with ports (nft can only rewrite a port after matching one).
func (l *loader) dnatPortNeedsPorts(t *tbl, n *NAT) {
	if _, ok := t.m["service"]; !ok {
		l.errf(t.valPos("to"), "\"to\" has a port, so the dnat needs a \"service\" with ports (e.g. service = \"tcp/8443\")")
		return
	}
	for _, s := range n.Services {
		if !s.Proto.HasPorts() {
			l.errf(t.valPos("service"), "service %q has no ports, but \"to\" rewrites the port; use tcp, udp, sctp, dccp or udplite services, or drop the port from \"to\"", s.Text)
			return
		}
	}
}

func (l *loader) msses(top *tbl) {
	for _, t := range top.tableList("mss", "[[mss]]") {
		t.checkKeys("zone", "size")
		m := &MSS{Pos: t.header(), Keys: t.keys()}
		m.Zone = l.zoneRef(t, "zone")
		if t.require("size", `size = 1250 or size = "pmtu"`) {
			switch v := t.m["size"].(type) {
			case int64:
				if v < 1 || v > 65535 {
					l.errf(t.valPos("size"), "\"size\" %d is out of range; an MSS is 1 to 65535 (or \"pmtu\")", v)
				} else {
					m.Size = uint16(v)
				}
			case string:
				if v != "pmtu" {
					l.errf(t.valPos("size"), "\"size\" must be a number or \"pmtu\"; not %q", v)
				} else {
					m.PMTU = true
				}
			default:
				t.typeErr("size", "an integer or \"pmtu\"", v)
			}
		}
		l.p.MSS = append(l.p.MSS, m)
	}
}

func (l *loader) tests(top *tbl) {
	for _, t := range top.tableList("test", "[[test]]") {
		t.checkKeys("name", "node", "direction", "iif", "oif", "proto", "src", "dst", "sport", "dport", "type", "state", "expect", "expect_dnat", "expect_snat")
		x := &Test{Pos: t.header(), Keys: t.keys(), State: ir.CtNew}
		if t.require("name", `name = "ssh from admins is accepted"`) {
			if s, ok := t.str("name"); ok {
				if err := checkTestName(s); err != nil {
					l.errf(t.valPos("name"), "test name %q %v", s, err)
				} else {
					l.define("test", s, t.keyPos("name"))
				}
				x.Name = s
			}
		}
		l.testNode(t, x)
		if i := t.enum("direction", "in", "out", "forward"); i >= 0 {
			x.Direction = Hook(i)
		}
		for _, k := range []string{"iif", "oif"} {
			s, ok := t.str(k)
			if !ok {
				continue
			}
			if (k == "iif" && x.Direction == HookOut) || (k == "oif" && x.Direction == HookIn) {
				l.errf(t.keyPos(k), "%q does not apply to direction %q; iif is for in and forward, oif for out and forward", k, []string{"in", "out", "forward"}[x.Direction])
				continue
			}
			if err := checkIface(s, false); err != nil {
				l.errf(t.valPos(k), "interface %q %v", s, err)
				continue
			}
			if k == "iif" {
				x.IIF = s
			} else {
				x.OIF = s
			}
		}
		protoOK := false
		if t.require("proto", `proto = "tcp"`) {
			var text string
			switch v := t.m["proto"].(type) {
			case string:
				text = v
			case int64:
				text = fmt.Sprint(v)
			default:
				t.typeErr("proto", "a protocol name or number", v)
			}
			if text != "" {
				if p, err := parseProto(text); err != nil {
					l.errf(t.valPos("proto"), "%v", err)
				} else {
					x.Proto, protoOK = p, true
				}
			}
		}
		if t.require("src", `src = "192.0.2.1"`) {
			x.Src = l.testAddr(t, "src")
		}
		x.Dst = l.testAddr(t, "dst")
		if x.Src.IsValid() && x.Dst.IsValid() && x.Src.Is4() != x.Dst.Is4() {
			l.errf(t.valPos("dst"), "src %s and dst %s are of different families; a packet is IPv4 or IPv6", x.Src, x.Dst)
		}
		for _, k := range []string{"sport", "dport"} {
			n, ok := t.integer(k)
			if !ok {
				continue
			}
			if protoOK && !x.Proto.HasPorts() {
				l.errf(t.keyPos(k), "%q does not apply to protocol %s; ports work with tcp, udp, sctp, dccp and udplite", k, x.Proto)
				continue
			}
			if n < 0 || n > 65535 {
				l.errf(t.valPos(k), "%q: port %d is out of range 0-65535", k, n)
				continue
			}
			port := uint16(n)
			if k == "sport" {
				x.SPort = &port
			} else {
				x.DPort = &port
			}
		}
		if fam, isICMP := icmpFamily(x.Proto); protoOK && isICMP {
			if x.Src.IsValid() && ir.FamilyOf(x.Src) != fam {
				l.errf(t.valPos("src"), "proto %s needs an %s src; %s is not (use %s for this family)", x.Proto, famName(fam), x.Src, otherICMP(fam))
			}
			name := "echo-request"
			if s, ok := t.str("type"); ok {
				name = s
			}
			if ty, err := parseICMPType(x.Proto, name); err != nil {
				l.errf(t.valPos("type"), "%v", err)
			} else {
				x.ICMPType = &ty
			}
		} else if _, ok := t.m["type"]; ok && protoOK {
			l.errf(t.keyPos("type"), "\"type\" only applies to proto icmp or icmpv6, not %s", x.Proto)
		}
		if i := t.enum("state", "new", "established", "related", "invalid", "untracked"); i >= 0 {
			x.State, _ = ir.ParseCtState(t.m["state"].(string))
		}
		if t.require("expect", `expect = "accept"`) {
			if i := t.enum("expect", "accept", "drop", "reject"); i >= 0 {
				x.Expect = Action(i)
			}
		}
		x.ExpectDNAT = l.natExpect(t, x, "expect_dnat")
		x.ExpectSNAT = l.natExpect(t, x, "expect_snat")
		l.p.Tests = append(l.p.Tests, x)
	}
}

func famName(f ir.Family) string {
	if f == ir.FamilyIPv6 {
		return "IPv6"
	}
	return "IPv4"
}

func otherICMP(f ir.Family) string {
	if f == ir.FamilyIPv6 {
		return "icmp"
	}
	return "icmpv6"
}

// testNode checks a test's node: required when there are [nodes], and then
// defined; an error without [nodes].
func (l *loader) testNode(t *tbl, x *Test) {
	s, ok := t.str("node")
	_, present := t.m["node"]
	switch {
	case len(l.p.Nodes) == 0 && present:
		l.errf(t.keyPos("node"), "\"node\" needs [nodes], and this policy has none; remove node or define [nodes]")
	case len(l.p.Nodes) == 0:
	case !present:
		l.errf(t.header(), "[[test]] needs \"node\" because the policy has [nodes]; one of %s", strings.Join(l.nodeNames(), ", "))
	case ok && l.p.Node(s) == nil:
		l.errf(t.valPos("node"), "undefined node %q%s", s, hint(s, l.nodeNames(), "nodes", "[nodes]"))
	case ok:
		x.Node = s
	}
}

func (l *loader) nodeNames() []string {
	var names []string
	for _, n := range l.p.Nodes {
		names = append(names, n.Name)
	}
	return names
}

// testAddr reads a test's src or dst: one address.
func (l *loader) testAddr(t *tbl, k string) netip.Addr {
	s, ok := t.str(k)
	if !ok {
		return netip.Addr{}
	}
	a, err := parseAddr(s)
	if err != nil {
		l.errf(t.valPos(k), "%q must be one address: %v", k, err)
		return netip.Addr{}
	}
	return a
}

// natExpect reads a test's expect_dnat or expect_snat: "none", an address
// (expect_dnat: with an optional port), or "masquerade" (expect_snat). The
// translated address must be of the packet's family, and the direction one
// the translation can happen on.
func (l *loader) natExpect(t *tbl, x *Test, key string) *NATExpect {
	s, ok := t.str(key)
	if !ok {
		return nil
	}
	e := &NATExpect{Text: s, Pos: t.valPos(key)}
	dnat := key == "expect_dnat"
	switch {
	case s == "none":
		e.None = true
	case s == "masquerade" && !dnat:
		e.Masquerade = true
	case dnat:
		a, port, err := parseDNATTarget(s)
		if err != nil {
			l.errf(e.Pos, "expect_dnat: %v; or \"none\"", err)
			return nil
		}
		e.Addr, e.Port = a, port
	default:
		a, err := parseAddr(s)
		if err != nil {
			l.errf(e.Pos, "expect_snat %q: write the new source address, \"masquerade\" or \"none\"", s)
			return nil
		}
		e.Addr = a
	}
	if e.Addr.IsValid() && x.Src.IsValid() && e.Addr.Is4() != x.Src.Is4() {
		l.errf(e.Pos, "%s %s is not of the packet's family (src %s); NAT keeps the family", key, e.Addr, x.Src)
	}
	if dnat && x.Direction == HookOut {
		l.errf(t.keyPos(key), "expect_dnat does not apply to direction \"out\"; hostwall's dnat rewrites packets arriving (in, forward)")
	}
	if !dnat && x.Direction == HookIn {
		l.errf(t.keyPos(key), "expect_snat does not apply to direction \"in\"; snat and masquerade rewrite packets leaving (out, forward)")
	}
	return e
}
