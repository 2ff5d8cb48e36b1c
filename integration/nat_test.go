package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/iptables"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

// TestNATGateway is issue 10's acceptance test: a lan -- gateway -- wan
// lab where the gateway runs a policy with masquerade, a port forward
// (IPv4 and IPv6) and MSS clamping, loaded once over netlink and once as
// the iptables export (iptables-legacy-restore). Real connections judge
// it:
//   - masquerade: the wan listener sees the gateway's wan address, and the
//     wan has no route back to the lan, so without it there is no answer;
//   - dnat: a connection to the gateway's port 8443 reaches the lan
//     server's port 443, from the wan client's own address;
//   - a port that is not forwarded is dropped;
//   - MSS: a raw AF_PACKET capture in the wan namespace sees the
//     forwarded SYN with MSS 1250 (the lan client sent 1460), and one in
//     the lan namespace sees the port-forwarded SYN, which leaves through
//     the lan, unchanged.
func TestNATGateway(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "ip")
	for _, mode := range []string{"nft-netlink", "iptables-legacy"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "iptables-legacy" {
				RequireTool(t, "iptables-legacy-restore")
				RequireTool(t, "ip6tables-legacy-restore")
			}
			lab := newNATLab(t)
			lab.load(t, mode)
			lab.check(t)
		})
	}
}

// natLab is the three namespaces and the gateway's interface names.
type natLab struct {
	lan, gw, wan     *Netns
	gwLan, gwWan     string // the gateway's interfaces
	lanIf, wanIf     string // the lan's and the wan's interfaces
	policy           *model.Policy
	policyText, file string
}

// Lab addresses (198.18.0.0/15 and fd00::/8 only).
const (
	natLanClient  = "198.18.64.20"
	natLanServer  = "198.18.64.80"
	natLanServer6 = "fd00:64::80"
	natGwLan      = "198.18.64.1"
	natGwWan      = "198.19.0.1"
	natGwWan6     = "fd00:99::1"
	natWanHost    = "198.19.0.7"
	natWanHost6   = "fd00:99::7"
	natMSS        = 1250
)

func newNATLab(t *testing.T) *natLab {
	l := &natLab{lan: NewNetns(t, "natlan"), gw: NewNetns(t, "natgw"), wan: NewNetns(t, "natwan")}
	l.lanIf, l.gwLan = Link(t, l.lan, []string{natLanClient + "/24", natLanServer + "/24", "fd00:64::20/64", natLanServer6 + "/64"},
		l.gw, []string{natGwLan + "/24", "fd00:64::1/64"})
	l.gwWan, l.wanIf = Link(t, l.gw, []string{natGwWan + "/24", natGwWan6 + "/64"},
		l.wan, []string{natWanHost + "/24", natWanHost6 + "/64"})
	// The lan routes through the gateway; the wan knows no route to the
	// lan, so only masquerade can bring answers back to it.
	l.lan.MustRun(t, "ip", "route", "add", "default", "via", natGwLan)
	l.lan.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd00:64::1")
	err := l.gw.Do(func() error {
		for _, p := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("gateway: turn on forwarding: %v", err)
	}
	l.policyText = fmt.Sprintf(`
[defaults]
input   = "drop"
forward = "drop"

[zones]
wan = { interfaces = [%q] }
lan = { interfaces = [%q] }

[[nat]]
type    = "masquerade"
to_zone = "wan"
from    = "198.18.64.0/24"

[[nat]]
type      = "dnat"
from_zone = "wan"
service   = "tcp/8443"
to        = "%s:443"

[[nat]]
type      = "dnat"
from_zone = "wan"
service   = "tcp/8443"
to        = "[%s]:443"

[[mss]]
zone = "wan"
size = %d

[[policy]]
name = "routing"
  [[policy.forward]]
  from_zone = "lan"
  to_zone   = "wan"
`, l.gwWan, l.gwLan, natLanServer, natLanServer6, natMSS)
	l.file = filepath.Join(t.TempDir(), "gateway.toml")
	pol, diags := model.LoadSources([]model.Source{{Name: l.file, Data: []byte(l.policyText)}})
	if err := diags.Err(); err != nil {
		t.Fatalf("lab policy: %v\n%s", err, l.policyText)
	}
	l.policy = pol
	return l
}

// load puts the policy into the gateway namespace, over netlink or as the
// iptables export of both families.
func (l *natLab) load(t *testing.T, mode string) {
	rs, diags := compiler.Compile(l.policy, compiler.Options{})
	if err := diags.Err(); err != nil {
		t.Fatalf("compile: %v", err)
	}
	switch mode {
	case "nft-netlink":
		k := &nft.Netlink{NetNS: l.gw.Name, LockPath: filepath.Join(t.TempDir(), "hostwall.lock")}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := k.Replace(ctx, rs); err != nil {
			t.Fatalf("apply over netlink: %v", err)
		}
	case "iptables-legacy":
		for _, f := range []struct {
			fam  ir.Family
			tool string
		}{{ir.FamilyIPv4, "iptables-legacy-restore"}, {ir.FamilyIPv6, "ip6tables-legacy-restore"}} {
			var buf bytes.Buffer
			if err := iptables.Export(&buf, rs, iptables.Options{Family: f.fam}); err != nil {
				t.Fatalf("export: %v", err)
			}
			if out, err := natRunInput(buf.Bytes(), "ip", "netns", "exec", l.gw.Name, f.tool); err != nil {
				t.Fatalf("%s: %v\n%s\n%s", f.tool, err, out, buf.String())
			}
		}
	}
}

func (l *natLab) check(t *testing.T) {
	// Masquerade: the lan client reaches the wan listener, which sees the
	// gateway's address. The SYN leaving through the wan has MSS 1250.
	wanSeen := natListen(t, l.wan, natWanHost+":8080")
	wanCap := natCaptureSYN(t, l.wan, l.wanIf, 8080)
	if err := natDial(l.lan, natLanClient, natWanHost+":8080"); err != nil {
		t.Fatalf("lan -> wan through masquerade: %v", err)
	}
	if got := natRemote(t, wanSeen); got != natGwWan {
		t.Errorf("wan listener saw the connection from %s, want the gateway's %s (masquerade)", got, natGwWan)
	}
	if mss, err := wanCap(); err != nil {
		t.Errorf("capture of the forwarded SYN on the wan: %v", err)
	} else if mss != natMSS {
		t.Errorf("forwarded SYN left through the wan with MSS %d, want %d", mss, natMSS)
	}

	// DNAT, IPv4: the wan client's connection to the gateway's 8443
	// reaches the lan server's 443, from the client's own address. The
	// SYN leaves through the lan, which has no MSS clamp: unchanged.
	lanSeen := natListen(t, l.lan, natLanServer+":443")
	lanCap := natCaptureSYN(t, l.lan, l.lanIf, 443)
	if err := natDial(l.wan, natWanHost, natGwWan+":8443"); err != nil {
		t.Fatalf("wan -> gateway:8443 port forward: %v", err)
	}
	if got := natRemote(t, lanSeen); got != natWanHost {
		t.Errorf("lan server saw the forwarded connection from %s, want the wan client %s", got, natWanHost)
	}
	if mss, err := lanCap(); err != nil {
		t.Errorf("capture of the port-forwarded SYN on the lan: %v", err)
	} else if mss == natMSS || mss == 0 {
		t.Errorf("port-forwarded SYN left through the lan with MSS %d; the clamp is on the wan only", mss)
	}

	// DNAT, IPv6.
	lanSeen6 := natListen(t, l.lan, "["+natLanServer6+"]:443")
	if err := natDial(l.wan, natWanHost6, "["+natGwWan6+"]:8443"); err != nil {
		t.Fatalf("wan -> [gateway]:8443 IPv6 port forward: %v", err)
	}
	if got := natRemote(t, lanSeen6); got != natWanHost6 {
		t.Errorf("lan server saw the IPv6 forwarded connection from %s, want %s", got, natWanHost6)
	}

	// A port that is not forwarded ends at the gateway's input: dropped.
	if got := ProbeTCP(l.wan, natWanHost, natGwWan+":8444", time.Second); got != Dropped {
		t.Errorf("wan -> gateway:8444 (not forwarded): %s, want dropped", got)
	}
}

// natRunInput runs a command with stdin, bounded to 30 seconds.
func natRunInput(stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Stdin = bytes.NewReader(stdin)
	out, err := c.CombinedOutput()
	return string(out), err
}

// natListen accepts TCP connections inside ns and reports each one's
// remote address.
func natListen(t *testing.T, ns *Netns, addr string) <-chan string {
	var l net.Listener
	if err := ns.Do(func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("in %s: listen %s: %v", ns, addr, err)
	}
	seen := make(chan string, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
				select {
				case seen <- ap.Addr().Unmap().String():
				default:
				}
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return seen
}

// natRemote waits (bounded) for a listener's first connection.
func natRemote(t *testing.T, seen <-chan string) string {
	select {
	case a := <-seen:
		return a
	case <-time.After(3 * time.Second):
		t.Error("the listener saw no connection")
		return ""
	}
}

// natDial connects from src (an address of ns) to dst and closes.
func natDial(ns *Netns, src, dst string) error {
	return ns.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", dst)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// natCaptureSYN opens an AF_PACKET socket on iface inside ns before the
// traffic starts; the returned function waits (bounded) for the first TCP
// SYN (without ACK) to dport and returns its MSS option (0 for none).
func natCaptureSYN(t *testing.T, ns *Netns, iface string, dport uint16) func() (int, error) {
	var fd int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		proto := int(htons(syscall.ETH_P_ALL))
		fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, proto)
		if err != nil {
			return err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			syscall.Close(fd)
			return err
		}
		tv := syscall.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
		return syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("in %s: raw capture on %s: %v", ns, iface, err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			syscall.Close(fd)
		}
	})
	return func() (int, error) {
		defer func() { syscall.Close(fd); closed = true }()
		buf := make([]byte, 65536)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			n, _, err := syscall.Recvfrom(fd, buf, 0)
			if err != nil {
				if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
					continue
				}
				return 0, err
			}
			if mss, ok := synMSS(buf[:n], dport); ok {
				return mss, nil
			}
		}
		return 0, fmt.Errorf("no SYN to port %d within 3s", dport)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// synMSS parses an Ethernet frame; for a TCP SYN without ACK to dport it
// returns the MSS option (0 when there is none).
func synMSS(frame []byte, dport uint16) (int, bool) {
	if len(frame) < 14 {
		return 0, false
	}
	etype := binary.BigEndian.Uint16(frame[12:14])
	p := frame[14:]
	var l4 []byte
	switch etype {
	case 0x0800:
		if len(p) < 20 || p[9] != byte(ir.ProtoTCP) {
			return 0, false
		}
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl {
			return 0, false
		}
		l4 = p[ihl:]
	case 0x86dd:
		if len(p) < 40 || p[6] != byte(ir.ProtoTCP) {
			return 0, false
		}
		l4 = p[40:]
	default:
		return 0, false
	}
	if len(l4) < 20 || binary.BigEndian.Uint16(l4[2:4]) != dport {
		return 0, false
	}
	flags := l4[13]
	if flags&0x02 == 0 || flags&0x10 != 0 {
		return 0, false
	}
	off := int(l4[12]>>4) * 4
	if off < 20 || len(l4) < off {
		return 0, false
	}
	opts := l4[20:off]
	for i := 0; i < len(opts); {
		switch kind := opts[i]; kind {
		case 0:
			return 0, true
		case 1:
			i++
		default:
			if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
				return 0, true
			}
			if kind == 2 && opts[i+1] == 4 {
				return int(binary.BigEndian.Uint16(opts[i+2 : i+4])), true
			}
			i += int(opts[i+1])
		}
	}
	return 0, true
}

// TestNATSynMSS checks the capture's parser on hand-made frames, so that
// the acceptance test's judge is itself judged.
func TestNATSynMSS(t *testing.T) {
	tcp := func(flags byte, opts ...byte) []byte {
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[2:], 443)
		h[12] = byte((20+len(opts))/4) << 4
		h[13] = flags
		return append(h, opts...)
	}
	v4 := func(l4 []byte) []byte {
		f := make([]byte, 14)
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0], ip[9] = 0x45, 6
		return append(append(f, ip...), l4...)
	}
	v6 := func(l4 []byte) []byte {
		f := make([]byte, 14)
		binary.BigEndian.PutUint16(f[12:], 0x86dd)
		ip := make([]byte, 40)
		ip[6] = 6
		return append(append(f, ip...), l4...)
	}
	mss := []byte{1, 1, 2, 4, 0x04, 0xe2, 4, 2} // nop nop mss=1250 sackok
	tests := []struct {
		name  string
		frame []byte
		mss   int
		ok    bool
	}{
		{"v4 syn", v4(tcp(0x02, mss...)), 1250, true},
		{"v6 syn", v6(tcp(0x02, mss...)), 1250, true},
		{"syn-ack is not a syn", v4(tcp(0x12, mss...)), 0, false},
		{"syn without mss", v4(tcp(0x02, 1, 1, 1, 1)), 0, true},
		{"other port", v4(append(tcp(0x02, mss...)[:2], append([]byte{0, 80}, tcp(0x02, mss...)[4:]...)...)), 0, false},
		{"truncated", v4(tcp(0x02, mss...))[:30], 0, false},
	}
	for _, tc := range tests {
		got, ok := synMSS(tc.frame, 443)
		if got != tc.mss || ok != tc.ok {
			t.Errorf("%s: synMSS = %d, %v; want %d, %v", tc.name, got, ok, tc.mss, tc.ok)
		}
	}
}
