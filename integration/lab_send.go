package integration

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hostwall/hostwall/compiler/ir"
)

// PacketCase is one packet to send through the lab, described as ir.Eval
// sees it, with the outcome the caller expects.
type PacketCase struct {
	// Name says where the case comes from, for messages.
	Name string
	Pkt  ir.Packet
	// Want is the expected outcome; Failed means none. A packet that seems
	// dropped against a Want of Accepted or Rejected is sent once more with
	// a long timeout before Got says Dropped (a slow machine must not turn
	// an accept into a drop; a real drop stays one).
	Want Outcome
}

// PacketResult is what happened to one PacketCase.
type PacketResult struct {
	// Sent is the packet as sent: the case's packet with the interfaces
	// the lab chose where it had none (see NoZoneIface).
	Sent ir.Packet
	// Skip, when not empty, says why the packet was not sent; Got is then
	// Failed.
	Skip string
	Got  Outcome
	// Err is the socket error or observation behind Got.
	Err error
	// Resent says the packet was sent a second time (see PacketCase.Want).
	Resent bool
}

// LabLoader loads a ruleset into a namespace with the backend under test
// (netlink, iptables-restore...), failing the test if it cannot.
type LabLoader func(t *testing.T, ns *Netns, rs *ir.Ruleset)

// PacketSender sends ir.Packets as real packets: for each (direction,
// input interface, output interface) a RouterLab whose node has those
// interfaces, with the ruleset loaded by Load.
//
//   - in: from the peer behind iif to the node; out: from the node to the
//     peer behind oif; forward: from the peer behind iif, routed by the
//     node, to the peer behind oif.
//   - TCP and UDP, state new: a connect (accepted when established) or a
//     datagram echoed by a listener; every destination port has one.
//   - Other protocols (ICMP and ICMPv6 of any type, IGMP, ESP, VRRP...):
//     one packet from a raw socket carrying a token; accepted when a raw
//     socket at the destination sees it, rejected when an ICMP error
//     quoting it comes back.
//   - State established (TCP, UDP): the connection is opened the other
//     way (the packet is a reply) while a permissive ruleset is loaded,
//     then Load replaces it with the ruleset (conntrack keeps the entry)
//     and the packet is sent on the open connection.
//   - State invalid (TCP): a SYN+FIN segment from a raw socket, which
//     conntrack calls invalid; accepted when the destination's raw socket
//     sees it.
//
// What cannot be sent honestly is skipped with its reason (PacketResult.Skip).
type PacketSender struct {
	Load LabLoader
	// Timeout is how long a probe waits before it calls a packet dropped
	// (default 300ms).
	Timeout time.Duration
	// Confirm is the timeout of the second send (default 3s).
	Confirm time.Duration
	// InFlight bounds the probes in flight per lab (default 128); Labs the
	// labs at work at once (default 3).
	InFlight, Labs int
}

// Lab node addresses used as the source of the node's own ICMP errors
// (and as the destination of in packets that name none).
var (
	labNode4 = netip.MustParseAddr("198.18.255.254")
	labNode6 = netip.MustParseAddr("fd00:ff::fe")
)

// NoZoneIface returns an interface name that no interface match of rs
// matches (nz0, nz1...): a packet crossing it decides exactly as one with
// no interface name in ir.Eval.
func NoZoneIface(rs *ir.Ruleset) string {
	var names []string
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			for _, m := range r.Matches {
				if im, ok := m.(ir.IfaceMatch); ok {
					names = append(names, im.Names...)
				}
			}
		}
	}
	for i := 0; ; i++ {
		cand := fmt.Sprintf("nz%d", i)
		if !ifaceMatchesAny(cand, names) {
			return cand
		}
	}
}

func ifaceMatchesAny(name string, patterns []string) bool {
	for _, n := range patterns {
		if pre, ok := strings.CutSuffix(n, "*"); ok && strings.HasPrefix(name, pre) || n == name {
			return true
		}
	}
	return false
}

// Unsendable says why the lab cannot send p (empty: it can).
func Unsendable(p ir.Packet) string {
	switch {
	case !p.Dst.IsValid() || p.Dst.IsUnspecified():
		return "no destination address"
	case !p.Src.IsValid() || p.Src.IsUnspecified():
		return "no source address"
	case !LabAddr(p.Src) || !LabAddr(p.Dst):
		return fmt.Sprintf("%s -> %s: outside the lab's ranges 198.18.0.0/15 and fd00::/8", p.Src, p.Dst)
	case p.Src == p.Dst:
		return "source and destination are one address"
	case p.Direction == ir.DirForward && p.IIF == p.OIF:
		return "forward in and out of one interface (a hairpin): not built"
	case p.State == ir.CtRelated:
		return "state related: needs an ICMP error or expectation about a live connection; the lab makes none"
	case p.State == ir.CtUntracked:
		return "state untracked: needs a notrack rule outside hostwall's table"
	case p.State == ir.CtInvalid && p.Proto != ir.ProtoTCP:
		return fmt.Sprintf("state invalid over %s: the lab makes invalid packets for TCP only (SYN+FIN)", p.Proto)
	case p.State == ir.CtEstablished && p.Proto != ir.ProtoTCP && p.Proto != ir.ProtoUDP:
		return fmt.Sprintf("state established over %s: the lab opens TCP and UDP connections only", p.Proto)
	case p.State != ir.CtNew && p.State != ir.CtEstablished && p.State != ir.CtInvalid:
		return fmt.Sprintf("state %s: not one state", p.State)
	case p.Proto.HasPorts() && p.Proto != ir.ProtoTCP && p.Proto != ir.ProtoUDP:
		return fmt.Sprintf("protocol %s: no probe for it", p.Proto)
	case (p.Proto == ir.ProtoTCP || p.Proto == ir.ProtoUDP) && p.DPort == 0:
		return "destination port 0"
	case p.State == ir.CtEstablished && p.SPort == 0:
		return "established without a source port"
	}
	return ""
}

// Send sends every case and returns what happened to each, in order.
func (s PacketSender) Send(t *testing.T, rs *ir.Ruleset, cases []PacketCase) []PacketResult {
	t.Helper()
	res := make([]PacketResult, len(cases))
	noZone := NoZoneIface(rs)
	groups := map[string][]int{}
	for i, c := range cases {
		p := c.Pkt
		if p.Direction != ir.DirOut && p.IIF == "" {
			p.IIF = noZone
		}
		if p.Direction != ir.DirIn && p.OIF == "" {
			p.OIF = noZone
		}
		res[i].Sent = p
		if why := Unsendable(p); why != "" {
			res[i].Skip = why
			continue
		}
		key := p.Direction.String() + "-" + p.IIF
		switch p.Direction {
		case ir.DirOut:
			key = "out-" + p.OIF
		case ir.DirForward:
			key += "-" + p.OIF
		}
		groups[key] = append(groups[key], i)
	}
	labs := s.Labs
	if labs <= 0 {
		labs = 3
	}
	sem := make(chan struct{}, labs)
	var wg sync.WaitGroup
	for _, key := range sortedKeys(groups) {
		idx := groups[key]
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(key, func(t *testing.T) { s.runLab(t, rs, cases, res, idx) })
		}()
	}
	wg.Wait()
	return res
}

// runLab builds one lab and sends the cases idx through it.
func (s PacketSender) runLab(t *testing.T, rs *ir.Ruleset, cases []PacketCase, res []PacketResult, idx []int) {
	first := res[idx[0]].Sent
	ifnames := []string{first.IIF}
	switch first.Direction {
	case ir.DirOut:
		ifnames = []string{first.OIF}
	case ir.DirForward:
		ifnames = append(ifnames, first.OIF)
	}
	lab := NewRouterLab(t, ifnames, first.Direction == ir.DirForward)
	var sendNS, recvNS *Netns
	switch first.Direction {
	case ir.DirIn:
		sendNS, recvNS = lab.Peer(first.IIF), lab.Node
	case ir.DirOut:
		sendNS, recvNS = lab.Node, lab.Peer(first.OIF)
	case ir.DirForward:
		sendNS, recvNS = lab.Peer(first.IIF), lab.Peer(first.OIF)
	}
	for _, a := range []netip.Addr{labNode4, labNode6} {
		if err := lab.AddAddr(lab.Node, a); err != nil {
			t.Fatal(err)
		}
	}
	var live []int
	for _, i := range idx {
		p := res[i].Sent
		if err := lab.AddAddr(sendNS, p.Src); err != nil {
			res[i].Skip = "source: " + err.Error()
			continue
		}
		if err := lab.AddAddr(recvNS, p.Dst); err != nil {
			res[i].Skip = "destination: " + err.Error()
			continue
		}
		live = append(live, i)
	}
	lab.Commit(t)

	// Listeners for new TCP and UDP, raw watches for the rest.
	listening := map[string]bool{}
	watches := map[string]*rawWatch{}
	watch := func(ns *Netns, v4 bool, proto ir.Proto) *rawWatch {
		key := fmt.Sprintf("%s/%t/%d", ns.Name, v4, proto)
		if w, ok := watches[key]; ok {
			return w
		}
		w, err := newRawWatch(ns, v4, proto)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		watches[key] = w
		return w
	}
	var established []int
	for _, i := range live {
		p := res[i].Sent
		v4 := p.Src.Is4()
		switch {
		case p.State == ir.CtEstablished:
			established = append(established, i)
		case p.State == ir.CtNew && (p.Proto == ir.ProtoTCP || p.Proto == ir.ProtoUDP):
			// TCP listens on every address (an accepted connection
			// answers from the address it was opened to); UDP on the
			// destination address itself, or the echo would leave from
			// whatever address the route prefers.
			addr := fmt.Sprintf(":%d", p.DPort)
			if p.Proto == ir.ProtoUDP {
				addr = netip.AddrPortFrom(p.Dst, p.DPort).String()
			}
			key := p.Proto.String() + "/" + addr
			if listening[key] {
				continue
			}
			listening[key] = true
			if p.Proto == ir.ProtoTCP {
				TCPListen(t, recvNS, addr)
			} else {
				UDPListen(t, recvNS, addr)
			}
		default:
			watch(recvNS, v4, p.Proto)
			watch(sendNS, v4, icmpProto(v4))
			if p.Proto == ir.ProtoTCP {
				watch(sendNS, v4, ir.ProtoTCP)
			}
		}
	}

	// Established flows: opened under a permissive ruleset, then the
	// ruleset under test replaces it.
	flows := map[int]*estFlow{}
	if len(established) > 0 {
		s.Load(t, lab.Node, PermissiveRuleset(rs.Table))
		for _, i := range established {
			f, err := openFlow(t, sendNS, recvNS, res[i].Sent)
			if err != nil {
				res[i].Got, res[i].Err = Failed, fmt.Errorf("opening the connection under a permissive ruleset: %w", err)
				continue
			}
			flows[i] = f
		}
	}
	s.Load(t, lab.Node, rs)

	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 300 * time.Millisecond
	}
	confirm := s.Confirm
	if confirm <= 0 {
		confirm = 3 * time.Second
	}
	inFlight := s.InFlight
	if inFlight <= 0 {
		inFlight = 128
	}
	probe := func(i int, timeout time.Duration) (Outcome, error) {
		p := res[i].Sent
		v4 := p.Src.Is4()
		switch {
		case p.State == ir.CtEstablished:
			f := flows[i]
			if f == nil {
				return res[i].Got, res[i].Err
			}
			return f.send(timeout)
		case p.State == ir.CtNew && (p.Proto == ir.ProtoTCP || p.Proto == ir.ProtoUDP):
			typ := syscall.SOCK_STREAM
			if p.Proto == ir.ProtoUDP {
				typ = syscall.SOCK_DGRAM
			}
			fds, err := openSockets(sendNS, []sockReq{{afOf(p.Src), typ, 0}})
			if err != nil {
				return Failed, err
			}
			if p.Proto == ir.ProtoTCP {
				return tcpConnect(fds[0], p.Src, p.SPort, p.Dst, p.DPort, p.HopLimit, timeout)
			}
			return udpExchange(fds[0], p.Src, p.SPort, p.Dst, p.DPort, p.HopLimit, timeout)
		}
		fds, err := openSockets(sendNS, []sockReq{{afOf(p.Src), syscall.SOCK_RAW, int(p.Proto)}})
		if err != nil {
			return Failed, err
		}
		tok := newToken()
		var flags byte
		rstKey := ""
		if p.Proto == ir.ProtoTCP { // invalid state
			flags = tcpSYN | tcpFIN
			rstKey = fmt.Sprintf("rst:%s:%d:%d", p.Dst, p.DPort, p.SPort)
		}
		serr := rawSend(fds[0], p.Src, p.Dst, p.Proto, p.HopLimit, rawPayload(p, tok, flags))
		// Every watch was made before the probes: only read the map here.
		get := func(ns *Netns, proto ir.Proto) *rawWatch { return watches[fmt.Sprintf("%s/%t/%d", ns.Name, v4, proto)] }
		return rawOutcome(get(recvNS, p.Proto), get(sendNS, icmpProto(v4)), get(sendNS, ir.ProtoTCP), rstKey, tok, serr, timeout)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, inFlight)
	for _, i := range live {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			got, err := probe(i, timeout)
			want := cases[i].Want
			if got == Dropped && want != Dropped && want != Failed && res[i].Sent.State != ir.CtEstablished {
				res[i].Resent = true
				got, err = probe(i, confirm)
			}
			res[i].Got, res[i].Err = got, err
		}()
	}
	wg.Wait()
}

func icmpProto(v4 bool) ir.Proto {
	if v4 {
		return ir.ProtoICMP
	}
	return ir.ProtoICMPv6
}

// PermissiveRuleset is a table named table whose input, forward and output
// chains accept everything, with a ct state rule so that conntrack tracks
// every connection of the namespace from the start.
func PermissiveRuleset(table string) *ir.Ruleset {
	rs := &ir.Ruleset{Table: table}
	for _, h := range []struct {
		name string
		hook ir.Hook
	}{{"input", ir.HookInput}, {"forward", ir.HookForward}, {"output", ir.HookOutput}} {
		rs.Chains = append(rs.Chains, &ir.Chain{
			Name: h.name,
			Base: &ir.Base{Type: ir.TypeFilter, Hook: h.hook, Priority: ir.PriorityFilter, Policy: ir.Accept{}},
			Rules: []*ir.Rule{{
				Matches: []ir.Match{ir.CtStateMatch{States: ir.CtNew | ir.CtEstablished | ir.CtRelated}},
				Verdict: ir.Accept{},
				Comment: "lab: track and accept everything",
				Source:  ir.Source{What: "lab permissive ruleset"},
			}},
		})
	}
	return rs
}

// estFlow is a connection opened for an established packet p: the side
// that owns p's source (sendNS) answers the side that owns p's
// destination, which opened it.
type estFlow struct {
	tcp  net.Conn       // the source's end of a TCP connection
	udp  net.PacketConn // the source's UDP socket
	to   net.Addr       // p's destination (UDP)
	recv net.Conn       // the destination's end
}

// openFlow opens the connection whose reply p is: from p.Dst:p.DPort (in
// recvNS) to p.Src:p.SPort (in sendNS), and waits until both ends have
// talked.
func openFlow(t *testing.T, sendNS, recvNS *Netns, p ir.Packet) (*estFlow, error) {
	src := netip.AddrPortFrom(p.Src, p.SPort)
	dst := netip.AddrPortFrom(p.Dst, p.DPort)
	const setup = 3 * time.Second
	f := &estFlow{}
	if p.Proto == ir.ProtoTCP {
		var ln net.Listener
		if err := sendNS.Do(func() (err error) { ln, err = net.Listen("tcp", src.String()); return err }); err != nil {
			return nil, err
		}
		defer ln.Close()
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(dst), Timeout: setup, Control: setRecvErr}
		if err := recvNS.Do(func() (err error) { f.recv, err = d.Dial("tcp", src.String()); return err }); err != nil {
			return nil, err
		}
		t.Cleanup(func() { f.recv.Close() })
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(setup))
		c, err := ln.Accept()
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Close() })
		f.tcp = c
		return f, nil
	}
	if err := sendNS.Do(func() (err error) { f.udp, err = net.ListenPacket("udp", src.String()); return err }); err != nil {
		return nil, err
	}
	t.Cleanup(func() { f.udp.Close() })
	d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(dst), Control: setRecvErr}
	if err := recvNS.Do(func() (err error) { f.recv, err = d.Dial("udp", src.String()); return err }); err != nil {
		return nil, err
	}
	t.Cleanup(func() { f.recv.Close() })
	if _, err := f.recv.Write([]byte("open")); err != nil {
		return nil, err
	}
	f.udp.SetReadDeadline(time.Now().Add(setup))
	buf := make([]byte, 64)
	_, from, err := f.udp.ReadFrom(buf)
	if err != nil {
		return nil, err
	}
	f.to = from
	return f, nil
}

// send sends a token from p's source on the open connection and waits up
// to timeout for it at p's destination.
func (f *estFlow) send(timeout time.Duration) (Outcome, error) {
	tok := newToken()
	var err error
	if f.tcp != nil {
		_, err = f.tcp.Write(tok[:])
	} else {
		_, err = f.udp.WriteTo(tok[:], f.to)
	}
	if err != nil {
		return classify(err)
	}
	f.recv.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	got := 0
	for got < len(tok) {
		n, err := f.recv.Read(buf[got:])
		if err != nil {
			return classify(err)
		}
		got += n
		if f.tcp == nil {
			break
		}
	}
	if string(buf[:got]) != string(tok[:]) {
		return Failed, errors.New("the connection carried something else")
	}
	return Accepted, nil
}
