package compiler

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
)

// Session is the connection an operator applies a policy over: an ssh
// session from Client to Server, crossing this host's interface Iface.
type Session struct {
	// Client is the operator's address and port (SSH_CONNECTION's first
	// two fields).
	Client netip.AddrPort
	// Server is this host's address and port of the session (ssh: 22).
	Server netip.AddrPort
	// Ifaces are the interfaces the session may cross; the session is cut
	// only when it is cut on every one of them. Empty means no interface
	// name is known (rules with a zone never match).
	Ifaces []string
}

// String returns "198.18.0.2:50022 -> 198.18.0.1:22".
func (s Session) String() string {
	return s.Client.String() + " -> " + s.Server.String()
}

// Cut is a packet of the session that a ruleset does not accept.
type Cut struct {
	// Packet is the packet that is dropped or rejected.
	Packet ir.Packet
	// Stage names it for humans: "new connection, client to server".
	Stage string
	// Result is Eval's answer: the verdict, and the rule (nil when a
	// chain's policy decided) and chain that decided.
	Result ir.Result
}

// Error describes the cut with the rule's position and origin:
// `policy.toml:12:3: policy "web" in[2] drops the ssh session 198.18.0.2:50022 -> 198.18.0.1:22 (new connection, client to server)`.
func (c Cut) Error() string {
	verdict := "drops"
	if _, ok := c.Result.Verdict.(ir.Reject); ok {
		verdict = "rejects"
	}
	what := "the policy of chain ?"
	if c.Result.Rule != nil {
		src := c.Result.Rule.Source
		what = src.What
		if src.File != "" {
			what = fmt.Sprintf("%s:%d:%d: %s", src.File, src.Line, src.Col, src.What)
		}
		if what == "" {
			what = "a rule"
		}
		if c.Result.Chain != nil {
			what += " (chain " + c.Result.Chain.Name + ")"
		}
	} else if c.Result.Chain != nil {
		what = "the default policy of chain " + c.Result.Chain.Name
	}
	if c.Result.Err != nil {
		return fmt.Sprintf("%s: cannot be evaluated: %v", what, c.Result.Err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s the session's packet %s %s:%d -> %s:%d", what, verdict, c.Packet.Direction,
		c.Packet.Src, c.Packet.SPort, c.Packet.Dst, c.Packet.DPort)
	if c.Packet.IIF != "" {
		fmt.Fprintf(&b, " iif %s", c.Packet.IIF)
	}
	if c.Packet.OIF != "" {
		fmt.Fprintf(&b, " oif %s", c.Packet.OIF)
	}
	fmt.Fprintf(&b, " (%s)", c.Stage)
	return b.String()
}

// sessionStages are the packets of a TCP session as conntrack sees them:
// a new connection is the client's SYN (new) and the server's answers
// (established: conntrack has seen the SYN); a running session is
// established both ways. A server-to-client packet is never new.
var sessionStages = []struct {
	dir   ir.PacketDir
	state ir.CtState
	stage string
}{
	{ir.DirIn, ir.CtNew, "new connection, client to server"},
	{ir.DirIn, ir.CtEstablished, "established session, client to server"},
	{ir.DirOut, ir.CtEstablished, "new connection and established session, server to client"},
}

// CheckLockout evaluates the session's packets (a new connection and an
// established session, both directions) against rs with ir.Eval, guard
// chains included, and returns those rs would not accept. For each stage,
// the packet counts as cut only when it is cut on every interface of
// s.Ifaces; the cut reported is that of the first interface.
func CheckLockout(rs *ir.Ruleset, s Session) []Cut {
	if !s.Client.IsValid() || !s.Server.IsValid() {
		return nil
	}
	ifaces := s.Ifaces
	if len(ifaces) == 0 {
		ifaces = []string{""}
	}
	// A scoped address (sshd writes a link-local peer as fe80::7%eth0)
	// is the same address to the firewall: the scope must not hide it
	// from address rules.
	client, server := s.Client.Addr().Unmap().WithZone(""), s.Server.Addr().Unmap().WithZone("")
	var cuts []Cut
	for _, st := range sessionStages {
		var first *Cut
		accepted := false
		for _, ifc := range ifaces {
			p := ir.Packet{Direction: st.dir, Proto: ir.ProtoTCP, State: st.state, HopLimit: ir.DefaultHopLimit}
			if st.dir == ir.DirIn {
				p.IIF, p.Src, p.Dst, p.SPort, p.DPort, p.DstLocal = ifc, client, server, s.Client.Port(), s.Server.Port(), true
			} else {
				p.OIF, p.Src, p.Dst, p.SPort, p.DPort = ifc, server, client, s.Server.Port(), s.Client.Port()
				p.DstLocal = client == server
			}
			res := ir.Eval(rs, p)
			if _, ok := res.Verdict.(ir.Accept); ok && res.Err == nil {
				accepted = true
				break
			}
			if first == nil {
				first = &Cut{Packet: p, Stage: st.stage, Result: res}
			}
		}
		if accepted || first == nil {
			continue
		}
		cuts = append(cuts, *first)
	}
	return cuts
}

// ParseSSHConnection reads the SSH_CONNECTION variable sshd sets:
// "CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT". A link-local client's
// scope (fe80::7%eth0) is dropped from the address and names the
// session's interface (Ifaces).
func ParseSSHConnection(v string) (Session, error) {
	f := strings.Fields(v)
	if len(f) != 4 {
		return Session{}, fmt.Errorf("SSH_CONNECTION %q: want \"CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT\"", v)
	}
	c, err := netip.ParseAddrPort(joinHostPort(f[0], f[1]))
	if err != nil {
		return Session{}, fmt.Errorf("SSH_CONNECTION %q: client: %v", v, err)
	}
	s, err := netip.ParseAddrPort(joinHostPort(f[2], f[3]))
	if err != nil {
		return Session{}, fmt.Errorf("SSH_CONNECTION %q: server: %v", v, err)
	}
	sess := Session{Client: unmapPort(c), Server: unmapPort(s)}
	if z := ScopeIface(c.Addr()); z != "" {
		sess.Ifaces = []string{z}
	}
	return sess, nil
}

// ScopeIface returns the interface a scoped address names (fe80::7%eth0:
// eth0), or "" (no scope, or a numeric one).
func ScopeIface(a netip.Addr) string {
	z := a.Zone()
	if strings.Trim(z, "0123456789") == "" {
		return ""
	}
	return z
}

func joinHostPort(h, p string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + p
	}
	return h + ":" + p
}

func unmapPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap().WithZone(""), a.Port())
}
