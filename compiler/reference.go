package compiler

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// This file is the plain meaning of a policy, written straight from
// policy-format.md and sharing no code path with the compiler: for one
// node and one packet, walk the guards and then the defaults and rules of
// the packet's hook in spec order, and take the first that matches. The
// differential test holds ir.Eval of the compiled (optimised) ruleset to
// it, packet by packet.
//
// Where the spec is silent the reference takes the reading an operator
// would expect, stated here so a difference is a decision, not an accident:
//   - loopback accepts in packets with iif lo and out packets with oif lo;
//     a routed packet never crosses lo, so forward has no loopback rule;
//   - a guard's zone is an input interface, which packets this host sends
//     do not have: a guard with a zone never matches on the output hook;
//   - the policy-level zone is the default of a forward rule's from_zone;
//   - a zone without interfaces matches no packet;
//   - NAT: the first [[nat]] dnat (file order) whose keys hold rewrites the
//     destination of in and forward packets after the guards (which see
//     the original packet) and before the filter hook (which sees the new
//     one); a forward packet so rewritten (or whose ct status says DNAT)
//     is accepted right after the defaults when the policy has a dnat; an
//     accepted out or forward packet gets the first snat or masquerade
//     whose keys hold. Established and related packets are translated as
//     their connection's first packet was (taken to be this one, in the
//     original direction); invalid and untracked packets never are. A NAT
//     rule only matches packets of its translation's family (a masquerade:
//     the families its from names, or both);
//   - MSS clamping applies to every accepted out or forward TCP packet in
//     state new (a SYN) leaving through an [[mss]]'s zone.

// RefBy says what kind of thing decided a packet in the reference.
type RefBy uint8

const (
	// RefGuard: a [[guard]] dropped or rejected the packet.
	RefGuard RefBy = iota
	// RefDefaults: a [defaults] rule (loopback, established, invalid, icmp).
	RefDefaults
	// RefRule: a [[policy.in|out|forward]] rule.
	RefRule
	// RefDefaultVerdict: no rule decided; the hook's default verdict.
	RefDefaultVerdict
	// RefDNATAccept: a forward packet that a dnat rewrote, accepted
	// after the forward defaults (ct status dnat).
	RefDNATAccept
)

// RefDecision is what the reference evaluation decided for a packet.
type RefDecision struct {
	// Action is accept, drop or reject.
	Action model.Action
	// RejectWith is how a reject answers (Action reject only).
	RejectWith model.RejectWith
	// By says what decided; Guard, Rule or Key says which one.
	By    RefBy
	Guard *model.Guard
	Rule  *model.Rule
	// Key is the [defaults] key that decided (RefDefaults:
	// "loopback", "established", "invalid", "icmp"; RefDefaultVerdict:
	// "input", "forward", "output").
	Key string
	// DNAT is the [[nat]] dnat that rewrote the destination, nil for
	// none; SNAT the snat or masquerade that rewrote the source of an
	// accepted packet.
	DNAT, SNAT *model.NAT
	// MSS are the [[mss]] clamps that apply to the packet, in file order.
	MSS []*model.MSS
}

// String describes the decision for humans: the action and what decided.
func (d RefDecision) String() string {
	act := []string{"accept", "drop", "reject"}[d.Action]
	switch d.By {
	case RefGuard:
		return fmt.Sprintf("%s by guard %q (%s)", act, d.Guard.Name, d.Guard.Pos)
	case RefRule:
		return fmt.Sprintf("%s by policy %q %s (%s)", act, d.Rule.Policy.Name, refHookName(d.Rule.Hook), d.Rule.Pos)
	case RefDNATAccept:
		return act + " by ct status dnat (a dnat rewrote the destination)"
	}
	return fmt.Sprintf("%s by defaults.%s", act, d.Key)
}

func refHookName(h model.Hook) string {
	return [...]string{"in", "out", "forward"}[h]
}

// Reference decides pkt by the plain first-match reading of p on node
// (nil when the policy has no [nodes]). It is the meaning the compiled
// ruleset must keep; see the comment at the top of this file.
func Reference(p *model.Policy, node *model.Node, pkt ir.Packet) RefDecision {
	r := refEval{p: p, node: node, pkt: pkt}
	if d, ok := r.guards(); ok {
		return d
	}
	dnat := r.dnat()
	if dnat != nil {
		r.pkt.Dst = dnat.ToAddr
		if dnat.ToPort != 0 && r.pkt.Proto.HasPorts() {
			r.pkt.DPort = dnat.ToPort
		}
	}
	d := r.hook(dnat)
	d.DNAT = dnat
	if d.Action == model.ActionAccept {
		d.SNAT = r.snat()
		d.MSS = r.mss()
	}
	return d
}

// translated reports whether NAT applies to the packet's state at all.
func (r refEval) translated() bool {
	return r.pkt.State&(ir.CtInvalid|ir.CtUntracked) == 0
}

// natFamilyOK: a snat or dnat matches packets of its target's family.
func (r refEval) natFamilyOK(n *model.NAT) bool {
	return n.Type == model.NATMasquerade || ir.FamilyOf(n.ToAddr) == r.pkt.Family()
}

// dnat is the first dnat whose keys hold for an in or forward packet.
func (r refEval) dnat() *model.NAT {
	if r.pkt.Direction == ir.DirOut || !r.translated() {
		return nil
	}
	for _, n := range r.p.NATs {
		if n.Type != model.NATDNAT || !r.natFamilyOK(n) {
			continue
		}
		if n.FromZone != "" && !r.inZone(n.FromZone, r.pkt.IIF) {
			continue
		}
		if r.addrOK(n.From, r.pkt.Src) && r.servicesOK(n.Services) {
			return n
		}
	}
	return nil
}

// snat is the first snat or masquerade whose keys hold for an out or
// forward packet.
func (r refEval) snat() *model.NAT {
	if r.pkt.Direction == ir.DirIn || !r.translated() {
		return nil
	}
	for _, n := range r.p.NATs {
		if n.Type == model.NATDNAT || !r.natFamilyOK(n) {
			continue
		}
		if n.ToZone != "" && !r.inZone(n.ToZone, r.pkt.OIF) {
			continue
		}
		if r.addrOK(n.From, r.pkt.Src) {
			return n
		}
	}
	return nil
}

// mss lists the clamps for an out or forward TCP SYN.
func (r refEval) mss() []*model.MSS {
	if r.pkt.Direction == ir.DirIn || r.pkt.Proto != ir.ProtoTCP || r.pkt.State != ir.CtNew {
		return nil
	}
	var out []*model.MSS
	for _, m := range r.p.MSS {
		if m.Zone == "" || r.inZone(m.Zone, r.pkt.OIF) {
			out = append(out, m)
		}
	}
	return out
}

type refEval struct {
	p    *model.Policy
	node *model.Node
	pkt  ir.Packet
}

// guards runs the guards in file order: the prerouting guards for in and
// forward packets, the output guards for out packets. An accepting guard
// ends the guards; the hook still decides.
func (r refEval) guards() (RefDecision, bool) {
	out := r.pkt.Direction == ir.DirOut
	for _, g := range r.p.Guards {
		if out && (!g.Output || g.Zone != "") {
			continue
		}
		if g.Local && !r.pkt.DstLocal {
			continue
		}
		if g.Zone != "" && !r.inZone(g.Zone, r.pkt.IIF) {
			continue
		}
		if !r.addrOK(g.From, r.pkt.Src) || !r.servicesOK(g.Services) || !stateOK(g.State, r.pkt.State) {
			continue
		}
		if g.Action == model.ActionAccept {
			return RefDecision{}, false
		}
		return RefDecision{Action: g.Action, RejectWith: r.p.Defaults.RejectWith, By: RefGuard, Guard: g}, true
	}
	return RefDecision{}, false
}

// hook runs the defaults, the rules and the default verdict of the
// packet's hook; dnat is the dnat that rewrote the packet, or nil.
func (r refEval) hook(dnat *model.NAT) RefDecision {
	d := r.p.Defaults
	pkt := r.pkt
	accept := func(key string) RefDecision {
		return RefDecision{Action: model.ActionAccept, By: RefDefaults, Key: key}
	}
	if d.Loopback && ((pkt.Direction == ir.DirIn && pkt.IIF == "lo") || (pkt.Direction == ir.DirOut && pkt.OIF == "lo")) {
		return accept("loopback")
	}
	if d.Established && pkt.State&(ir.CtEstablished|ir.CtRelated) != 0 {
		return accept("established")
	}
	if pkt.State&ir.CtInvalid != 0 {
		return RefDecision{Action: d.Invalid, By: RefDefaults, Key: "invalid"}
	}
	if r.icmpAccepted() {
		return accept("icmp")
	}
	if pkt.Direction == ir.DirForward && (dnat != nil || pkt.CtStatus&ir.CtStatusDNAT != 0) {
		for _, n := range r.p.NATs {
			if n.Type == model.NATDNAT { // the policy has a dnat
				return RefDecision{Action: model.ActionAccept, By: RefDNATAccept}
			}
		}
	}
	hook, key, def := model.HookIn, "input", d.Input
	switch pkt.Direction {
	case ir.DirOut:
		hook, key, def = model.HookOut, "output", d.Output
	case ir.DirForward:
		hook, key, def = model.HookForward, "forward", d.Forward
	}
	for _, rule := range r.rules(hook) {
		if r.ruleMatches(rule) {
			rw := d.RejectWith
			if rule.RejectWith != nil {
				rw = *rule.RejectWith
			}
			return RefDecision{Action: rule.Action, RejectWith: rw, By: RefRule, Rule: rule}
		}
	}
	return RefDecision{Action: def, RejectWith: d.RejectWith, By: RefDefaultVerdict, Key: key}
}

// icmpAccepted is [defaults] icmp: essential types (RFC 4890; neighbour
// discovery only with hop limit 255) or all ICMP.
func (r refEval) icmpAccepted() bool {
	pkt := r.pkt
	fam := pkt.Family()
	isICMP := (fam == ir.FamilyIPv4 && pkt.Proto == ir.ProtoICMP) || (fam == ir.FamilyIPv6 && pkt.Proto == ir.ProtoICMPv6)
	switch r.p.Defaults.ICMP {
	case model.ICMPAll:
		return pkt.Proto == ir.ProtoICMP || pkt.Proto == ir.ProtoICMPv6
	case model.ICMPEssential:
		if !isICMP {
			return false
		}
		name := ir.ICMPTypeName(fam, pkt.ICMPType)
		if fam == ir.FamilyIPv4 {
			return slices.Contains([]string{"echo-request", "destination-unreachable", "time-exceeded", "parameter-problem"}, name)
		}
		if slices.Contains([]string{"echo-request", "destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem"}, name) {
			return true
		}
		nd := slices.Contains([]string{"nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert"}, name)
		return nd && pkt.HopLimit == 255
	}
	return false
}

// rules returns the rules of a hook that apply on the node, in (order,
// position in the files) order.
func (r refEval) rules(h model.Hook) []*model.Rule {
	var out []*model.Rule
	for _, pb := range r.p.Policies {
		if !r.hasRole(pb.Roles) {
			continue
		}
		list := map[model.Hook][]*model.Rule{model.HookIn: pb.In, model.HookOut: pb.Out, model.HookForward: pb.Forward}[h]
		for _, rule := range list {
			if r.hasRole(rule.Roles) {
				out = append(out, rule)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b *model.Rule) int {
		return cmp.Or(cmp.Compare(a.Policy.Order, b.Policy.Order), cmp.Compare(a.Seq, b.Seq))
	})
	return out
}

// hasRole: no roles means every node; else the node has one of them.
func (r refEval) hasRole(roles []string) bool {
	if len(roles) == 0 {
		return true
	}
	if r.node == nil {
		return false
	}
	for _, role := range roles {
		if slices.Contains(r.node.Roles, role) {
			return true
		}
	}
	return false
}

// ruleMatches reports whether every key of a rule holds for the packet.
func (r refEval) ruleMatches(rule *model.Rule) bool {
	pkt := r.pkt
	switch rule.Hook {
	case model.HookIn:
		if z := cmp.Or(rule.Zone, rule.Policy.Zone); z != "" && !r.inZone(z, pkt.IIF) {
			return false
		}
	case model.HookOut:
		if z := cmp.Or(rule.Zone, rule.Policy.Zone); z != "" && !r.inZone(z, pkt.OIF) {
			return false
		}
	case model.HookForward:
		if z := cmp.Or(rule.FromZone, rule.Policy.Zone); z != "" && !r.inZone(z, pkt.IIF) {
			return false
		}
		if rule.ToZone != "" && !r.inZone(rule.ToZone, pkt.OIF) {
			return false
		}
	}
	return r.addrOK(rule.From, pkt.Src) && r.addrOK(rule.To, pkt.Dst) &&
		r.servicesOK(rule.Services) && stateOK(rule.State, pkt.State)
}

// inZone reports whether an interface name is one of a zone's interfaces
// (a trailing * matches by prefix). No interface is in no zone.
func (r refEval) inZone(zone, iface string) bool {
	z := r.p.Zone(zone)
	if z == nil || iface == "" {
		return false
	}
	for _, i := range z.Interfaces {
		if prefix, ok := strings.CutSuffix(i.Name, "*"); ok {
			if strings.HasPrefix(iface, prefix) {
				return true
			}
		} else if i.Name == iface {
			return true
		}
	}
	return false
}

// addrOK is from/to: empty, or any of its items matching (a union). An
// item matches the addresses it names; negated, every address of the
// packet's family that it does not name. `any` matches everything.
func (r refEval) addrOK(spec model.AddrSpec, a netip.Addr) bool {
	if len(spec.Items) == 0 {
		return true
	}
	for _, it := range spec.Items {
		if r.itemHas(it, a) != it.Negate {
			return true
		}
	}
	return false
}

// itemHas reports whether an address is one an item names.
func (r refEval) itemHas(it model.AddrItem, a netip.Addr) bool {
	switch it.Kind {
	case model.AddrAny:
		return true
	case model.AddrLiteral:
		return it.Range.Contains(a)
	case model.AddrGroup:
		g := r.p.Group(it.Name)
		return g != nil && g.Addrs != nil && g.Addrs.Contains(a)
	case model.AddrNodes:
		for _, n := range r.p.Nodes {
			if slices.Contains(n.Addresses, a) {
				return true
			}
		}
	case model.AddrRole:
		for _, n := range r.p.Nodes {
			if slices.Contains(n.Roles, it.Name) && slices.Contains(n.Addresses, a) {
				return true
			}
		}
	}
	return false
}

// servicesOK is the service key: empty, or any spec matching.
func (r refEval) servicesOK(specs []model.ServiceSpec) bool {
	if len(specs) == 0 {
		return true
	}
	for _, s := range specs {
		if r.specOK(s) {
			return true
		}
	}
	return false
}

// specOK: the protocol, then the ICMP type (icmp is IPv4's, icmpv6 IPv6's)
// or the ports.
func (r refEval) specOK(s model.ServiceSpec) bool {
	pkt := r.pkt
	if s.Proto != pkt.Proto {
		return false
	}
	if s.ICMPType != nil {
		fam := ir.FamilyIPv4
		if s.Proto == ir.ProtoICMPv6 {
			fam = ir.FamilyIPv6
		}
		return pkt.Family() == fam && pkt.ICMPType == *s.ICMPType
	}
	if len(s.DPorts) > 0 && !portIn(pkt.DPort, s.DPorts) {
		return false
	}
	if len(s.SPorts) > 0 && !portIn(pkt.SPort, s.SPorts) {
		return false
	}
	if (s.Proto == ir.ProtoICMP && pkt.Family() != ir.FamilyIPv4) || (s.Proto == ir.ProtoICMPv6 && pkt.Family() != ir.FamilyIPv6) {
		return false
	}
	return true
}

func portIn(p uint16, ranges []ir.PortRange) bool {
	for _, r := range ranges {
		if r.Lo <= p && p <= r.Hi {
			return true
		}
	}
	return false
}

// stateOK is the state key: 0 (any) or the packet's state among them.
func stateOK(want, got ir.CtState) bool {
	return want == 0 || want&got != 0
}

// RefRejectTypes returns the reject types that answer as reject_with rw
// means for a packet of family fam and protocol proto: what the compiled
// verdict may be. tcp-reset can only reset TCP; other protocols get an
// ICMP error, which the spec leaves open.
func RefRejectTypes(rw model.RejectWith, fam ir.Family, proto ir.Proto) []ir.RejectType {
	v4 := fam == ir.FamilyIPv4
	switch rw {
	case model.RejectAdminProhibited:
		if v4 {
			return []ir.RejectType{ir.RejectICMPXAdminProhibited}
		}
		return []ir.RejectType{ir.RejectICMPXAdminProhibited, ir.RejectICMPv6AdminProhibited}
	case model.RejectPortUnreachable:
		return []ir.RejectType{ir.RejectICMPXPortUnreachable}
	case model.RejectHostUnreachable:
		return []ir.RejectType{ir.RejectICMPXHostUnreachable}
	case model.RejectNetUnreachable:
		if v4 {
			return []ir.RejectType{ir.RejectICMPNetUnreachable, ir.RejectICMPXNoRoute}
		}
		return []ir.RejectType{ir.RejectICMPv6NoRoute, ir.RejectICMPXNoRoute}
	case model.RejectHostProhibited:
		if v4 {
			return []ir.RejectType{ir.RejectICMPHostProhibited}
		}
		return []ir.RejectType{ir.RejectICMPv6AdminProhibited, ir.RejectICMPXAdminProhibited}
	case model.RejectNetProhibited:
		if v4 {
			return []ir.RejectType{ir.RejectICMPNetProhibited}
		}
		return []ir.RejectType{ir.RejectICMPv6AdminProhibited, ir.RejectICMPXAdminProhibited}
	case model.RejectTCPReset:
		if proto == ir.ProtoTCP {
			return []ir.RejectType{ir.RejectTCPReset}
		}
		var out []ir.RejectType
		for t := ir.RejectICMPXAdminProhibited; t < ir.RejectTCPReset; t++ {
			if t.Family() == ir.FamilyAny || t.Family() == fam {
				out = append(out, t)
			}
		}
		return out
	}
	return nil
}

// PacketOfTest is the packet a [[test]] describes. Left out of the test:
// the source port is ir.DefaultSPort, the destination port 0, the hop
// limit the packet's typical one (ir.Packet.TypicalHopLimit), and the
// destination of an in test the node's first address of the source's
// family (the unspecified address when there is none, or for out and
// forward tests). DstLocal is true for in, false for forward, and for out
// true only when the destination is one of the node's addresses.
func PacketOfTest(p *model.Policy, x *model.Test) ir.Packet {
	pkt := ir.Packet{
		Direction: ir.DirIn,
		IIF:       x.IIF,
		OIF:       x.OIF,
		Src:       x.Src,
		Dst:       x.Dst,
		Proto:     x.Proto,
		State:     x.State,
	}
	switch x.Direction {
	case model.HookOut:
		pkt.Direction = ir.DirOut
	case model.HookForward:
		pkt.Direction = ir.DirForward
	}
	node := p.Node(x.Node)
	fam := ir.FamilyOf(x.Src)
	if !pkt.Dst.IsValid() {
		pkt.Dst = netip.IPv4Unspecified()
		if fam == ir.FamilyIPv6 {
			pkt.Dst = netip.IPv6Unspecified()
		}
		if node != nil && pkt.Direction == ir.DirIn {
			for _, a := range node.Addresses {
				if ir.FamilyOf(a) == fam {
					pkt.Dst = a
					break
				}
			}
		}
	}
	if pkt.Proto.HasPorts() {
		pkt.SPort = ir.DefaultSPort
		if x.SPort != nil {
			pkt.SPort = *x.SPort
		}
		if x.DPort != nil {
			pkt.DPort = *x.DPort
		}
	}
	if x.ICMPType != nil {
		pkt.ICMPType = *x.ICMPType
	}
	if pkt.State == 0 {
		pkt.State = ir.CtNew
	}
	pkt.HopLimit = pkt.TypicalHopLimit()
	switch pkt.Direction {
	case ir.DirIn:
		pkt.DstLocal = true
	case ir.DirOut:
		pkt.DstLocal = node != nil && slices.Contains(node.Addresses, pkt.Dst)
	}
	return pkt
}
