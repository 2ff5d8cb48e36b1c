package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/nft"
	vnl "github.com/vishvananda/netlink"
)

// sshPort is the server port of a --keep session when --keep-server
// names none.
const sshPort = 22

// checkLockout refuses (exit 1) a ruleset that would cut the ssh session
// of SSH_CONNECTION or --keep, naming the rule that cuts it, unless
// --force.
func (c *ApplyCmd) checkLockout(env *Env, rs *ir.Ruleset) error {
	var s compiler.Session
	var from string
	switch {
	case c.Keep != "":
		client, err := netip.ParseAddrPort(c.Keep)
		if err != nil {
			return fmt.Errorf("apply: --keep %q: want CLIENT_IP:PORT (e.g. 198.18.0.2:50022 or [fd00::2]:50022)", c.Keep)
		}
		s.Client = netip.AddrPortFrom(client.Addr().Unmap().WithZone(""), client.Port())
		if z := compiler.ScopeIface(client.Addr()); z != "" {
			s.Ifaces = []string{z}
		}
		if c.Server != "" {
			srv, err := parseServer(c.Server)
			if err != nil {
				return err
			}
			s.Server = srv
		}
		from = "--keep"
	case c.SSHConnection != "":
		var err error
		if s, err = compiler.ParseSSHConnection(c.SSHConnection); err != nil {
			if c.Force {
				fmt.Fprintf(env.Stderr, "hostwall: warning: %v; not checking for a lockout (--force)\n", err)
				return nil
			}
			return fmt.Errorf("apply: %v; unset it, or use --force to apply without the lockout check", err)
		}
		from = "SSH_CONNECTION"
	default:
		return nil
	}
	route := c.route
	if route == nil {
		route = routeTo
	}
	// A link-local client's scope names the session's interface; the
	// routing table cannot (every interface has fe80::/64).
	scoped := len(s.Ifaces) > 0
	srcAddr, iface, err := route(c.Netns, s.Client.Addr())
	switch {
	case err == nil:
		if !s.Server.IsValid() {
			s.Server = netip.AddrPortFrom(srcAddr, sshPort)
		}
		if !scoped {
			s.Ifaces = []string{iface}
		}
	case !s.Server.IsValid():
		return fmt.Errorf("apply: --keep: no route to %s to find this host's end of the session (%v); give it with --keep-server ADDR[:PORT]", s.Client.Addr(), err)
	case scoped:
	default:
		// No route: the session is cut only if it is cut on every interface.
		s.Ifaces, _ = linkNames(c.Netns)
	}
	cuts := compiler.CheckLockout(rs, s)
	if len(cuts) == 0 {
		return nil
	}
	for _, cut := range cuts {
		fmt.Fprintf(env.Stderr, "hostwall: lockout: %s\n", cut.Error())
	}
	if c.Force {
		fmt.Fprintf(env.Stderr, "hostwall: applying anyway (--force): the ssh session %s (%s) will be cut\n", s, from)
		return nil
	}
	return &policyError{fmt.Errorf("apply: refused: the new ruleset would cut the ssh session %s (%s); nothing was changed; fix the policy, or apply with --force", s, from)}
}

// parseServer reads --keep-server: ADDR or ADDR:PORT ([ADDR]:PORT for
// IPv6).
func parseServer(v string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(strings.Trim(v, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("apply: --keep-server %q: want ADDR or ADDR:PORT", v)
	}
	return netip.AddrPortFrom(a.Unmap(), sshPort), nil
}

// nsHandle opens a netlink handle in the network namespace (the current
// one when name is "").
func nsHandle(name string) (*vnl.Handle, error) {
	if name == "" {
		return vnl.NewHandle()
	}
	ns, err := nft.OpenNetNS(name)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %q: %w", name, err)
	}
	defer ns.Close()
	return vnl.NewHandleAt(ns)
}

// routeTo asks the namespace's routing table which source address and
// interface this host uses to reach client.
func routeTo(netnsName string, client netip.Addr) (netip.Addr, string, error) {
	h, err := nsHandle(netnsName)
	if err != nil {
		return netip.Addr{}, "", err
	}
	defer h.Close()
	routes, err := h.RouteGet(net.IP(client.AsSlice()))
	if err != nil {
		return netip.Addr{}, "", err
	}
	if len(routes) == 0 {
		return netip.Addr{}, "", fmt.Errorf("no route to %s", client)
	}
	r := routes[0]
	link, err := h.LinkByIndex(r.LinkIndex)
	if err != nil {
		return netip.Addr{}, "", err
	}
	src, ok := netip.AddrFromSlice(r.Src)
	if !ok {
		return netip.Addr{}, "", fmt.Errorf("route to %s has no source address", client)
	}
	return src.Unmap(), link.Attrs().Name, nil
}

// linkNames lists the namespace's interfaces.
func linkNames(netnsName string) ([]string, error) {
	h, err := nsHandle(netnsName)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	return out, nil
}
