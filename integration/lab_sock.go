package integration

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hostwall/hostwall/compiler/ir"
)

// This file holds the lab's packet probes at the socket level. A socket
// belongs to the namespace it was made in, whatever thread uses it later:
// sockets are opened in a batch inside the namespace (one thread switch
// for many probes) and used from ordinary goroutines, so hundreds of probes
// can wait for their timeouts at once without holding an OS thread each.

// sockReq asks for one socket: socket(family, typ, proto).
type sockReq struct{ family, typ, proto int }

// openSockets opens the sockets inside ns, non-blocking and close-on-exec,
// and returns their descriptors in order. On error none stays open.
func openSockets(ns *Netns, reqs []sockReq) ([]int, error) {
	fds := make([]int, 0, len(reqs))
	err := ns.Do(func() error {
		for _, r := range reqs {
			fd, err := syscall.Socket(r.family, r.typ|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, r.proto)
			if err != nil {
				return fmt.Errorf("socket(%d, %d, %d): %w", r.family, r.typ, r.proto, err)
			}
			fds = append(fds, fd)
		}
		return nil
	})
	if err != nil {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return nil, fmt.Errorf("in %s: %w", ns, err)
	}
	return fds, nil
}

func afOf(a netip.Addr) int {
	if a.Is4() {
		return syscall.AF_INET
	}
	return syscall.AF_INET6
}

func sockaddr(a netip.Addr, port uint16) syscall.Sockaddr {
	if a.Is4() {
		return &syscall.SockaddrInet4{Addr: a.As4(), Port: int(port)}
	}
	return &syscall.SockaddrInet6{Addr: a.As16(), Port: int(port)}
}

func addrOf(sa syscall.Sockaddr) netip.Addr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr)
	case *syscall.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr)
	}
	return netip.Addr{}
}

// prepareSock sets what every probe socket needs: SO_REUSEADDR (fixed
// source ports may repeat towards different destinations), IP_RECVERR or
// IPV6_RECVERR (an ICMP error ends the probe at once as a reject), the
// IPv6 hop limit when hop > 0, and the bind to src:sport.
func prepareSock(fd int, src netip.Addr, sport uint16, hop uint8, recvErr bool) error {
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if recvErr {
		var err error
		if src.Is4() {
			err = syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, syscall.IP_RECVERR, 1)
		} else {
			err = syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_RECVERR, 1)
		}
		if err != nil {
			return fmt.Errorf("RECVERR: %w", err)
		}
	}
	if src.Is6() && hop > 0 {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_UNICAST_HOPS, int(hop)); err != nil {
			return fmt.Errorf("IPV6_UNICAST_HOPS: %w", err)
		}
	}
	if err := syscall.Bind(fd, sockaddr(src, sport)); err != nil {
		return fmt.Errorf("bind %s: %w", netip.AddrPortFrom(src, sport), err)
	}
	return nil
}

// tcpConnect connects fd (a fresh TCP socket) from src:sport to dst:dport
// and says what happened within timeout; it closes fd.
func tcpConnect(fd int, src netip.Addr, sport uint16, dst netip.Addr, dport uint16, hop uint8, timeout time.Duration) (Outcome, error) {
	f := os.NewFile(uintptr(fd), "tcp-probe")
	defer f.Close()
	if err := prepareSock(fd, src, sport, hop, true); err != nil {
		return Failed, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return Failed, err
	}
	if err := f.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return Failed, err
	}
	started := false
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		if !started {
			started = true
			e := syscall.Connect(int(fd), sockaddr(dst, dport))
			if e == syscall.EINPROGRESS || e == syscall.EALREADY || e == syscall.EINTR {
				return false
			}
			cerr = e
			return true
		}
		v, e := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
		switch {
		case e != nil:
			cerr = e
		case v != 0:
			cerr = syscall.Errno(v)
		default:
			if _, e := syscall.Getpeername(int(fd)); e == syscall.ENOTCONN {
				return false // woken early: still connecting
			}
		}
		return true
	})
	if werr != nil {
		return classify(werr)
	}
	if cerr != nil {
		return classify(cerr)
	}
	return Accepted, nil
}

// udpExchange sends one datagram from src:sport to dst:dport over fd (a
// fresh UDP socket) and waits up to timeout for the echo of a UDPListen
// listener; it closes fd.
func udpExchange(fd int, src netip.Addr, sport uint16, dst netip.Addr, dport uint16, hop uint8, timeout time.Duration) (Outcome, error) {
	f := os.NewFile(uintptr(fd), "udp-probe")
	defer f.Close()
	if err := prepareSock(fd, src, sport, hop, true); err != nil {
		return Failed, err
	}
	if err := syscall.Connect(fd, sockaddr(dst, dport)); err != nil {
		return Failed, fmt.Errorf("connect: %w", err)
	}
	if err := f.SetDeadline(time.Now().Add(timeout)); err != nil {
		return Failed, err
	}
	tok := newToken()
	if _, err := f.Write(tok[:]); err != nil {
		if !errors.Is(err, syscall.EPERM) {
			return classify(err)
		}
		// This host's output hook dropped the datagram; a reject there
		// also sends an ICMP error to this socket, which the read below
		// returns (IP_RECVERR). Silence means a plain drop.
		f.SetDeadline(time.Now().Add(min(timeout, 300*time.Millisecond)))
		if _, rerr := f.Read(make([]byte, 64)); rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) {
			return classify(rerr)
		}
		return Dropped, err
	}
	buf := make([]byte, 2048)
	n, err := f.Read(buf)
	switch {
	case err != nil:
		return classify(err)
	case !bytes.Equal(buf[:n], tok[:]):
		return Failed, fmt.Errorf("echo %q, want %q", buf[:n], tok[:])
	}
	return Accepted, nil
}

// probeToken marks one probe's packet so that a raw socket elsewhere can
// tell it was delivered (or quoted in an ICMP error).
type probeToken [16]byte

const tokenMagic = "HWPROBE-"

var tokenSeq atomic.Uint64

func newToken() probeToken {
	var tk probeToken
	copy(tk[:], tokenMagic)
	binary.BigEndian.PutUint64(tk[8:], uint64(os.Getpid())<<32|tokenSeq.Add(1))
	return tk
}

// tokensIn returns every token in b.
func tokensIn(b []byte) []probeToken {
	var out []probeToken
	for {
		i := bytes.Index(b, []byte(tokenMagic))
		if i < 0 || i+16 > len(b) {
			return out
		}
		var tk probeToken
		copy(tk[:], b[i:i+16])
		out = append(out, tk)
		b = b[i+16:]
	}
}

// inetSum is the Internet checksum of b, starting from sum.
func inetSum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
)

// rawPayload builds what a raw socket of p's protocol sends for p, with
// tok in it: an ICMP or ICMPv6 message of p's type (checksum filled in for
// ICMP; the kernel fills ICMPv6's), an IGMPv2 report, a TCP segment with
// the flags given (for invalid state: SYN+FIN), or the bare token for any
// other protocol.
func rawPayload(p ir.Packet, tok probeToken, tcpFlags byte) []byte {
	switch p.Proto {
	case ir.ProtoICMP, ir.ProtoICMPv6:
		b := make([]byte, 8, 8+len(tok))
		b[0] = byte(p.ICMPType)
		binary.BigEndian.PutUint16(b[4:], uint16(tokenSeq.Load()))
		binary.BigEndian.PutUint16(b[6:], 1)
		b = append(b, tok[:]...)
		if p.Proto == ir.ProtoICMP {
			binary.BigEndian.PutUint16(b[2:], inetSum(b, 0))
		}
		return b
	case ir.ProtoIGMP:
		b := make([]byte, 8, 8+len(tok))
		b[0] = 0x16 // IGMPv2 membership report
		b = append(b, tok[:]...)
		binary.BigEndian.PutUint16(b[2:], inetSum(b, 0))
		return b
	case ir.ProtoTCP:
		b := make([]byte, 20, 20+len(tok))
		binary.BigEndian.PutUint16(b[0:], p.SPort)
		binary.BigEndian.PutUint16(b[2:], p.DPort)
		binary.BigEndian.PutUint32(b[4:], uint32(tokenSeq.Load())*7919)
		b[12] = 5 << 4
		b[13] = tcpFlags
		binary.BigEndian.PutUint16(b[14:], 1024)
		b = append(b, tok[:]...)
		if p.Src.Is4() {
			// IPv4 raw sockets leave the checksum to us: pseudo-header
			// (source, destination, zero, protocol, length) plus segment.
			ph := make([]byte, 0, 12)
			ph = append(ph, p.Src.AsSlice()...)
			ph = append(ph, p.Dst.AsSlice()...)
			ph = append(ph, 0, byte(ir.ProtoTCP), byte(len(b)>>8), byte(len(b)))
			var sum uint32
			for i := 0; i < len(ph); i += 2 {
				sum += uint32(ph[i])<<8 | uint32(ph[i+1])
			}
			binary.BigEndian.PutUint16(b[16:], inetSum(b, sum))
		}
		return b
	}
	return tok[:]
}

// rawSend sends payload from src to dst over fd (a fresh raw socket of the
// packet's protocol) and closes fd. For IPv6 TCP the kernel computes the
// checksum (IPV6_CHECKSUM).
func rawSend(fd int, src, dst netip.Addr, proto ir.Proto, hop uint8, payload []byte) error {
	defer syscall.Close(fd)
	if err := prepareSock(fd, src, 0, hop, false); err != nil {
		return err
	}
	if src.Is6() && proto == ir.ProtoTCP {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_CHECKSUM, 16); err != nil {
			return fmt.Errorf("IPV6_CHECKSUM: %w", err)
		}
	}
	return syscall.Sendto(fd, payload, 0, sockaddr(dst, 0))
}

// rawWatch reads every packet of one protocol and family that a
// namespace's stack delivers locally (a raw socket gets a copy of each,
// after the input hook and before the protocol's own handler), and
// remembers what they carried:
//
//	tok:TOKEN   a packet that is not an ICMP error carried TOKEN (it was delivered)
//	err:TOKEN   an ICMP or ICMPv6 error quoted a packet that carried TOKEN (a reject)
//	rst:ADDR:SPORT:DPORT   a TCP RST from ADDR:SPORT to local port DPORT
type rawWatch struct {
	f     *os.File
	proto ir.Proto
	v4    bool
	mu    sync.Mutex
	seen  map[string]chan struct{}
	fired map[string]bool
	done  chan struct{}
}

// newRawWatch opens a raw socket of proto inside ns and reads it until
// Close.
func newRawWatch(ns *Netns, v4 bool, proto ir.Proto) (*rawWatch, error) {
	af := syscall.AF_INET6
	if v4 {
		af = syscall.AF_INET
	}
	fds, err := openSockets(ns, []sockReq{{af, syscall.SOCK_RAW, int(proto)}})
	if err != nil {
		return nil, err
	}
	w := &rawWatch{
		f:     os.NewFile(uintptr(fds[0]), "raw-watch"),
		proto: proto,
		v4:    v4,
		seen:  map[string]chan struct{}{},
		fired: map[string]bool{},
		done:  make(chan struct{}),
	}
	syscall.SetsockoptInt(fds[0], syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
	go w.loop()
	return w, nil
}

// Close stops the watch.
func (w *rawWatch) Close() {
	w.f.Close()
	<-w.done
}

func (w *rawWatch) loop() {
	defer close(w.done)
	rc, err := w.f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 65536)
	for {
		var n int
		var from syscall.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = syscall.Recvfrom(int(fd), buf, 0)
			return rerr != syscall.EAGAIN
		})
		if err != nil {
			return // closed
		}
		if rerr != nil || n <= 0 {
			continue
		}
		l4 := buf[:n]
		if w.v4 { // IPv4 raw sockets read the IP header too
			ihl := int(l4[0]&0x0f) * 4
			if ihl > len(l4) {
				continue
			}
			l4 = l4[ihl:]
		}
		for _, k := range w.keys(l4, addrOf(from)) {
			w.fire(k)
		}
	}
}

// keys lists what one packet tells (see rawWatch).
func (w *rawWatch) keys(l4 []byte, from netip.Addr) []string {
	var out []string
	isErr := false
	switch w.proto {
	case ir.ProtoICMP:
		isErr = len(l4) > 0 && (l4[0] == 3 || l4[0] == 4 || l4[0] == 5 || l4[0] == 11 || l4[0] == 12)
	case ir.ProtoICMPv6:
		isErr = len(l4) > 0 && l4[0] < 128
	case ir.ProtoTCP:
		if len(l4) >= 20 && l4[13]&tcpRST != 0 {
			out = append(out, fmt.Sprintf("rst:%s:%d:%d", from, binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])))
		}
	}
	prefix := "tok:"
	if isErr {
		prefix = "err:"
	}
	for _, tk := range tokensIn(l4) {
		out = append(out, prefix+string(tk[:]))
	}
	return out
}

func (w *rawWatch) fire(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fired[key] {
		return
	}
	w.fired[key] = true
	ch, ok := w.seen[key]
	if !ok {
		ch = make(chan struct{})
		w.seen[key] = ch
	}
	close(ch)
}

// wait returns a channel that is closed once key has been seen (at once,
// if it already was).
func (w *rawWatch) wait(key string) <-chan struct{} {
	if w == nil {
		return nil // never
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.seen[key]
	if !ok {
		ch = make(chan struct{})
		w.seen[key] = ch
	}
	return ch
}

// rawOutcome waits up to timeout for the delivery of tok at the receiving
// end (arrive: Accepted), an ICMP error quoting it or a RST at the sending
// end (errw, rst: Rejected). sendErr is the send's own error: EPERM means
// this host's output hook dropped the packet (a reject there also answers
// with an ICMP error, which is waited for briefly).
func rawOutcome(arrive, errw, rstw *rawWatch, rstKey string, tok probeToken, sendErr error, timeout time.Duration) (Outcome, error) {
	if sendErr != nil && !errors.Is(sendErr, syscall.EPERM) {
		return Failed, fmt.Errorf("send: %w", sendErr)
	}
	if sendErr != nil {
		arrive = nil
		timeout = min(timeout, 300*time.Millisecond)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var rstC <-chan struct{}
	if rstKey != "" {
		rstC = rstw.wait(rstKey)
	}
	select {
	case <-arrive.wait("tok:" + string(tok[:])):
		return Accepted, nil
	case <-errw.wait("err:" + string(tok[:])):
		return Rejected, errors.New("an ICMP error quoting the probe came back")
	case <-rstC:
		return Rejected, errors.New("a TCP reset came back")
	case <-timer.C:
		if sendErr != nil {
			return Dropped, sendErr
		}
		return Dropped, os.ErrDeadlineExceeded
	}
}
