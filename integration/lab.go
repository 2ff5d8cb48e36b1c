// Package integration is hostwall's lab for tests that need root: network
// namespaces joined by veth pairs, listeners and probes that send real
// packets between them. Every test builds its own namespaces (named
// hw-<purpose>-<pid>-<n>), uses addresses from 198.18.0.0/15 and fd00::/8
// only, never touches the machine's own namespace, and deletes what it made
// through t.Cleanup, also when it fails.
package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// cmdTimeout bounds every command the lab runs.
const cmdTimeout = 30 * time.Second

// RequireRoot skips the test, loudly, unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration: needs root (network namespaces, veth pairs, nftables); run as root, e.g. sudo go test ./integration")
	}
}

// RequireTool skips the test, loudly, unless the named program is on PATH.
func RequireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("integration: needs %q on PATH: %v", name, err)
	}
}

// Netns is a network namespace made for one test: `ip netns` knows it by
// Name, and Handle refers to it for Do.
type Netns struct {
	Name   string
	handle netns.NsHandle
}

// seq numbers the namespaces and links of this test process, so that names
// never repeat within it (the pid tells processes apart).
var seq atomic.Uint64

var purposeRE = regexp.MustCompile(`^[a-z0-9]+$`)

// NewNetns creates the namespace hw-<purpose>-<pid>-<n> with lo up and
// IPv6 duplicate address detection off, and deletes it when the test ends.
// purpose is a short word of lower-case letters and digits.
func NewNetns(t testing.TB, purpose string) *Netns {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "ip")
	if !purposeRE.MatchString(purpose) || len(purpose) > 20 {
		t.Fatalf("NewNetns: purpose %q: want 1 to 20 lower-case letters or digits", purpose)
	}
	name := fmt.Sprintf("hw-%s-%d-%d", purpose, os.Getpid(), seq.Add(1))
	if out, err := command("ip", "netns", "add", name); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &Netns{Name: name, handle: netns.None()}
	t.Cleanup(func() {
		if n.handle.IsOpen() {
			n.handle.Close()
		}
		if out, err := command("ip", "netns", "delete", name); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	n.handle = h
	err = n.Do(func() error {
		for _, f := range []string{"all", "default"} {
			p := "/proc/sys/net/ipv6/conf/" + f + "/accept_dad"
			if err := os.WriteFile(p, []byte("0"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("namespace %s: turn off IPv6 DAD: %v", name, err)
	}
	n.MustRun(t, "ip", "link", "set", "lo", "up")
	return n
}

// String returns the namespace's name.
func (n *Netns) String() string { return n.Name }

// Run runs a command inside the namespace (`ip netns exec`) and returns its
// combined output. It gives up after 30 seconds.
func (n *Netns) Run(args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("Run: no command")
	}
	return command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// MustRun is Run that fails the test on error.
func (n *Netns) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Run(args...)
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", n.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// Do runs fn on an OS thread switched into the namespace, and returns its
// error. Sockets fn opens stay in the namespace afterwards. The thread is
// switched back before it is released; if switching back fails, the thread
// is never reused (its goroutine exits locked, so the runtime ends it).
func (n *Netns) Do(fn func() error) error {
	if !n.handle.IsOpen() {
		return fmt.Errorf("namespace %s is not open", n.Name)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.handle); err != nil {
			// setns failed, so the thread is still where it was.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", n.Name, err)
			return
		}
		var ferr error
		func() {
			defer func() {
				if r := recover(); r != nil {
					ferr = fmt.Errorf("panic in namespace %s: %v", n.Name, r)
				}
			}()
			ferr = fn()
		}()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Link joins a and b with a veth pair, brings both ends up, then gives them
// the addresses (CIDR form, e.g. "198.18.0.1/24", "fd00::1/64"; IPv6 ones
// with nodad). It returns the interface names in a and in b.
func Link(t testing.TB, a *Netns, aAddrs []string, b *Netns, bAddrs []string) (aIf, bIf string) {
	t.Helper()
	n := seq.Add(1)
	aIf, bIf = fmt.Sprintf("hwa%d", n), fmt.Sprintf("hwb%d", n)
	// Created inside a, with its peer inside b: the machine's own
	// namespace never sees either end.
	if out, err := command("ip", "-n", a.Name, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name); err != nil {
		t.Fatalf("veth %s/%s between %s and %s: %v: %s", aIf, bIf, a, b, err, out)
	}
	for _, end := range []struct {
		ns    *Netns
		dev   string
		addrs []string
	}{{a, aIf, aAddrs}, {b, bIf, bAddrs}} {
		if out, err := command("ip", "-n", end.ns.Name, "link", "set", end.dev, "up"); err != nil {
			t.Fatalf("in %s: link %s up: %v: %s", end.ns, end.dev, err, out)
		}
		for _, addr := range end.addrs {
			args := []string{"-n", end.ns.Name, "addr", "add", addr, "dev", end.dev}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			if out, err := command("ip", args...); err != nil {
				t.Fatalf("in %s: address %s on %s: %v: %s", end.ns, addr, end.dev, err, out)
			}
		}
	}
	return aIf, bIf
}

// Outcome is what a probe saw.
type Outcome int

const (
	// Failed: the probe could not be made (bad address, socket error).
	Failed Outcome = iota
	// Accepted: the connection was established (TCP) or the echo came back
	// (UDP).
	Accepted
	// Dropped: nothing came back before the timeout, or the local stack
	// refused to send (EPERM from a drop on this host's output hook).
	Dropped
	// Rejected: a TCP RST or an ICMP error came back.
	Rejected
)

// String returns "accepted", "dropped", "rejected" or "failed".
func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Dropped:
		return "dropped"
	case Rejected:
		return "rejected"
	}
	return "failed"
}

// TCPListen listens on addr ("host:port") inside ns, accepts and closes
// every connection, and stops when the test ends. It returns the listener
// (whose Addr has the port when addr asked for port 0).
func TCPListen(t testing.TB, ns *Netns, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("in %s: listen tcp %s: %v", ns, addr, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l
}

// UDPListen listens on addr inside ns and echoes every datagram back to
// its sender, until the test ends.
func UDPListen(t testing.TB, ns *Netns, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("in %s: listen udp %s: %v", ns, addr, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc
}

// ProbeTCP connects from srcAddr (an address of ns, no port) to
// dstAddrPort ("198.18.0.2:22", "[fd00::2]:22") inside ns and says what
// happened within timeout. Each probe uses a fresh ephemeral source port,
// so conntrack state of earlier probes does not decide it.
func ProbeTCP(ns *Netns, srcAddr, dstAddrPort string, timeout time.Duration) Outcome {
	o, _ := Probe(ns, "tcp", srcAddr, dstAddrPort, timeout)
	return o
}

// ProbeUDP sends a datagram from srcAddr to dstAddrPort inside ns and
// waits up to timeout for the echo of a UDPListen listener.
func ProbeUDP(ns *Netns, srcAddr, dstAddrPort string, timeout time.Duration) Outcome {
	o, _ := Probe(ns, "udp", srcAddr, dstAddrPort, timeout)
	return o
}

// Probe is ProbeTCP ("tcp") or ProbeUDP ("udp") with the error behind the
// outcome: nil for Accepted, the socket error for Rejected and Dropped, the
// reason for Failed.
func Probe(ns *Netns, network, srcAddr, dstAddrPort string, timeout time.Duration) (Outcome, error) {
	return ProbeFrom(ns, network, srcAddr, 0, dstAddrPort, timeout)
}

// ProbeFrom is Probe from a fixed source port (0: a fresh ephemeral one),
// for tests whose rules match the source port.
func ProbeFrom(ns *Netns, network, srcAddr string, sport uint16, dstAddrPort string, timeout time.Duration) (Outcome, error) {
	src := net.ParseIP(srcAddr)
	if src == nil {
		return Failed, fmt.Errorf("source %q is not an IP address", srcAddr)
	}
	if timeout <= 0 {
		return Failed, errors.New("timeout must be positive")
	}
	var local net.Addr
	switch network {
	case "tcp":
		local = &net.TCPAddr{IP: src, Port: int(sport)}
	case "udp":
		local = &net.UDPAddr{IP: src, Port: int(sport)}
	default:
		return Failed, fmt.Errorf("network %q: want tcp or udp", network)
	}
	d := net.Dialer{LocalAddr: local, Timeout: timeout, Control: setRecvErr}
	var out Outcome
	var perr error
	err := ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := d.DialContext(ctx, network, dstAddrPort)
		if err != nil {
			out, perr = classify(err)
			return nil
		}
		defer c.Close()
		if network == "tcp" {
			out = Accepted
			return nil
		}
		deadline, _ := ctx.Deadline()
		c.SetDeadline(deadline)
		msg := []byte("hostwall probe " + dstAddrPort)
		if _, err := c.Write(msg); err != nil {
			out, perr = classify(err)
			return nil
		}
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		switch {
		case err != nil:
			out, perr = classify(err)
		case string(buf[:n]) != string(msg):
			out, perr = Failed, fmt.Errorf("echo %q, want %q", buf[:n], msg)
		default:
			out = Accepted
		}
		return nil
	})
	if err != nil {
		return Failed, err
	}
	return out, perr
}

// classify maps a socket error to an outcome.
func classify(err error) (Outcome, error) {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return Dropped, err
	case errors.Is(err, syscall.EPERM):
		return Dropped, err // a drop on this host's own output path
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EACCES),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EHOSTDOWN),
		errors.Is(err, syscall.ENONET), errors.Is(err, syscall.EPROTO):
		return Rejected, err
	}
	return Failed, err
}

// setRecvErr turns on IP_RECVERR / IPV6_RECVERR, so that an ICMP error
// that arrives while connect() waits ends it at once (a reject) instead of
// being ignored until the timeout (which would look like a drop).
func setRecvErr(network, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if strings.HasSuffix(network, "6") {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_RECVERR, 1)
			return
		}
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_RECVERR, 1)
	})
	return errors.Join(err, serr)
}

// command runs a program with the lab's timeout and returns its combined
// output.
func command(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// portOf is a test's optional port, 0 when it has none.
func portOf(p *uint16) uint16 {
	if p == nil {
		return 0
	}
	return *p
}
