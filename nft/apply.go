package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Op is one netlink message of a transaction, with the words that name it
// in errors (`add rule to chain input (rule 3, policy.toml:12:3 ...)`).
type Op struct {
	Name string
	Msg  netlink.Message
}

// maxChunkBytes bounds the encoded size of one NEWSETELEM message's element
// list: a netlink attribute's length is 16 bits, and google/nftables v0.3.0
// silently truncates a list over 64 KiB. maxChunkElems is the element cap
// per message (about what nft itself sends).
const (
	maxChunkBytes = 48 << 10
	maxChunkElems = 2000
)

// chunkSize returns how many elements of a set with keys of keyLen bytes go
// into one message: element nest (4) + key nest (4) + value attr (4 +
// aligned key) + interval-end flags attr (8).
func chunkSize(keyLen uint32) int {
	per := 4 + 4 + 4 + int((keyLen+3)&^3) + 8
	return min(maxChunkElems, maxChunkBytes/per)
}

// builder records the messages google/nftables produces for each
// operation. It uses the library only as an encoder: every operation is
// flushed into a capturing test dialer, nothing reaches a socket, and the
// Conn is thrown away as soon as any operation fails (a half-built batch is
// never sent).
type builder struct {
	conn     *nftables.Conn
	captured []netlink.Message
	ops      []Op
}

func newBuilder() (*builder, error) {
	b := &builder{}
	conn, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req == nil {
			return nil, io.EOF
		}
		b.captured = append(b.captured, req...)
		return nil, nil
	}))
	if err != nil {
		return nil, err
	}
	b.conn = conn
	return b, nil
}

// do runs one builder call and files the messages it made under name.
func (b *builder) do(name string, f func(*nftables.Conn) error) error {
	b.captured = b.captured[:0]
	if err := f(b.conn); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// The capture holds BATCH_BEGIN, the messages, BATCH_END.
	if len(b.captured) < 2 {
		return fmt.Errorf("%s: encoder produced no messages", name)
	}
	for _, m := range b.captured[1 : len(b.captured)-1] {
		m.Header.Sequence, m.Header.PID, m.Header.Length = 0, 0, 0
		b.ops = append(b.ops, Op{Name: name, Msg: m})
	}
	return nil
}

// addSet adds a set and its elements in chunks.
func (b *builder) addSet(what string, s *BatchSet) error {
	if err := b.do("add "+what, func(c *nftables.Conn) error { return c.AddSet(s.Set, nil) }); err != nil {
		return err
	}
	if keyIsHostOrder(s.Set.KeyType) {
		if err := hostByteOrderUserdata(b.ops[len(b.ops)-1].Msg.Data); err != nil {
			return fmt.Errorf("add %s: %w", what, err)
		}
	}
	n := chunkSize(s.Set.KeyType.Bytes)
	for i := 0; i < len(s.Elems); i += n {
		chunk := s.Elems[i:min(i+n, len(s.Elems))]
		name := fmt.Sprintf("add elements %d-%d of %d to %s", i+1, i+len(chunk), len(s.Elems), what)
		// google/nftables refuses SetAddElements on an anonymous set, but
		// the message is the same for a copy not marked anonymous (name and
		// ID identify the set), and the kernel takes elements for an
		// anonymous set until a rule binds it.
		target := *s.Set
		target.Anonymous = false
		if err := b.do(name, func(c *nftables.Conn) error { return c.SetAddElements(&target, chunk) }); err != nil {
			return err
		}
		if err := checkChunk(b.ops[len(b.ops)-1].Msg.Data, len(chunk)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// checkChunk checks that a NEWSETELEM payload (nfgenmsg header, then
// attributes) carries exactly want elements: google/nftables truncates an
// element list whose encoding outgrows the 16-bit attribute length without
// an error, and a list cut short must never be sent.
func checkChunk(data []byte, want int) error {
	if len(data) < 4 {
		return errors.New("element message shorter than its header")
	}
	got := -1
	for off := 4; off+4 <= len(data); {
		n := int(binary.NativeEndian.Uint16(data[off:]))
		t := binary.NativeEndian.Uint16(data[off+2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if n < 4 || off+n > len(data) {
			return errors.New("element message: malformed attribute")
		}
		if t == unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			got = 0
			for e := off + 4; e+4 <= off+n; got++ {
				l := int(binary.NativeEndian.Uint16(data[e:]))
				if l < 4 {
					return errors.New("element message: malformed element")
				}
				e += (l + 3) &^ 3
			}
		}
		off += (n + 3) &^ 3
	}
	if got != want {
		return fmt.Errorf("the encoder put %d of %d elements into the message", max(got, 0), want)
	}
	return nil
}

// ReplaceOps encodes the transaction that replaces b's table: add the table
// (creating it if missing, so the delete cannot fail), delete it, add it
// again, then its sets with their elements, chains, and rules (each after
// its anonymous sets). Nothing is sent.
func ReplaceOps(b *Batch) ([]Op, error) {
	bl, err := newBuilder()
	if err != nil {
		return nil, err
	}
	t := b.Table
	steps := []struct {
		name string
		f    func(*nftables.Conn) error
	}{
		{"create table " + t.Name + " if missing", func(c *nftables.Conn) error { c.AddTable(t); return nil }},
		{"delete table " + t.Name, func(c *nftables.Conn) error { c.DelTable(t); return nil }},
		{"add table " + t.Name, func(c *nftables.Conn) error { c.AddTable(t); return nil }},
	}
	for _, s := range steps {
		if err := bl.do(s.name, s.f); err != nil {
			return nil, err
		}
	}
	for _, s := range b.Sets {
		if err := bl.addSet("set "+s.Set.Name, s); err != nil {
			return nil, err
		}
	}
	for _, ch := range b.Chains {
		if err := bl.do("add chain "+ch.Name, func(c *nftables.Conn) error { c.AddChain(ch); return nil }); err != nil {
			return nil, err
		}
	}
	for _, r := range b.Rules {
		what := fmt.Sprintf("rule %d%s", r.Index+1, srcParen(r))
		for _, s := range r.AnonSets {
			if err := bl.addSet(fmt.Sprintf("anonymous set of chain %s %s", r.Chain, what), s); err != nil {
				return nil, err
			}
		}
		if err := bl.do(fmt.Sprintf("add rule to chain %s (%s)", r.Chain, what), func(c *nftables.Conn) error { c.AddRule(r.Rule); return nil }); err != nil {
			return nil, err
		}
	}
	return bl.ops, nil
}

func srcParen(r *BatchRule) string {
	if s := formatSource(r.Source); s != "" {
		return ", " + s
	}
	return ""
}

// DeleteOps encodes the transaction that deletes table (family inet) and
// succeeds when the table is absent: create-if-missing, then delete.
func DeleteOps(table string) ([]Op, error) {
	bl, err := newBuilder()
	if err != nil {
		return nil, err
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	if err := bl.do("create table "+table+" if missing", func(c *nftables.Conn) error { c.AddTable(t); return nil }); err != nil {
		return nil, err
	}
	if err := bl.do("delete table "+table, func(c *nftables.Conn) error { c.DelTable(t); return nil }); err != nil {
		return nil, err
	}
	return bl.ops, nil
}

// OpError is a kernel (or socket) failure of one operation of a
// transaction. The transaction as a whole was not applied unless Unknown.
type OpError struct {
	// Op names the operation (e.g. `add rule to chain input (rule 3, ...)`),
	// or the transaction step (`send batch`, `receive acknowledgements`).
	Op string
	// Unknown is set when the kernel may have committed the batch even so
	// (acknowledgements were lost).
	Unknown bool
	Err     error
}

// Error returns "add rule to chain input (...): netlink: invalid argument".
func (e *OpError) Error() string {
	s := e.Op + ": netlink: " + e.Err.Error()
	if e.Unknown {
		s += " (the transaction may have been applied; check with hostwall status)"
	}
	return s
}

// Unwrap returns the cause (a unix.Errno for kernel refusals).
func (e *OpError) Unwrap() error { return e.Err }

// socketBufferBytes returns read and write buffer sizes for a transaction:
// the kernel needs the whole batch in the write buffer (EMSGSIZE otherwise)
// and queues one acknowledgement per message in the read buffer before we
// read any (ENOBUFS otherwise, possibly after committing).
func socketBufferBytes(ops []Op) (rd, wr int) {
	total := 0
	for _, op := range ops {
		total += 16 + len(op.Msg.Data)
	}
	wr = max(4<<20, 2*total+(1<<20))
	rd = max(4<<20, 1024*len(ops)+(1<<20))
	return min(rd, 1<<30), min(wr, 1<<30)
}

// raiseBuffers sets SO_RCVBUFFORCE/SO_SNDBUFFORCE (root), falling back to
// the ordinary options (capped by net.core.[rw]mem_max).
func raiseBuffers(c *netlink.Conn, rd, wr int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rd); e != nil {
			if e = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rd); e != nil {
				serr = e
			}
		}
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, wr); e != nil {
			if e = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, wr); e != nil {
				serr = e
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// sockOptions are the google/nftables socket options hostwall uses for
// reads (dumps of large tables): large read and write buffers.
func sockOptions() []nftables.SockOption {
	return []nftables.SockOption{func(c *netlink.Conn) error {
		return raiseBuffers(c, 32<<20, 4<<20)
	}}
}

// sendOn sends ops as one nfnetlink batch on conn and waits for every
// acknowledgement. A refused message is reported as an *OpError naming its
// operation (the first refused one, which is the cause; later ones fail in
// its wake).
func sendOn(ctx context.Context, conn *netlink.Conn, ops []Op) error {
	rd, wr := socketBufferBytes(ops)
	if err := raiseBuffers(conn, rd, wr); err != nil {
		return &OpError{Op: "raise socket buffers", Err: err}
	}
	_ = conn.SetOption(netlink.ExtendedAcknowledge, true)
	_ = conn.SetOption(netlink.CapAcknowledge, true)

	msgs := make([]netlink.Message, 0, len(ops)+2)
	msgs = append(msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
		Data:   nfgenHeader(),
	})
	for _, op := range ops {
		msgs = append(msgs, op.Msg)
	}
	msgs = append(msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
		Data:   nfgenHeader(),
	})
	deadline := time.Now().Add(60 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	sent, err := conn.SendMessages(msgs)
	if err != nil {
		return &OpError{Op: fmt.Sprintf("send batch of %d messages", len(msgs)), Err: err}
	}
	bySeq := map[uint32]int{}
	want := 0
	for i, m := range sent[1 : len(sent)-1] {
		bySeq[m.Header.Sequence] = i
		if m.Header.Flags&netlink.Acknowledge != 0 {
			want++
		}
	}
	return readAcks(conn, bySeq, want, ops)
}

// dialNetfilter opens a netfilter netlink socket in the network namespace
// nsFd (0: this one). Close it with closeInBackground.
func dialNetfilter(nsFd int) (*netlink.Conn, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsFd})
	if err != nil {
		return nil, &OpError{Op: "open netlink socket", Err: err}
	}
	return conn, nil
}

// readAcks reads acknowledgements until every acked message has one,
// mapping each error to its message by sequence number.
func readAcks(conn *netlink.Conn, bySeq map[uint32]int, want int, ops []Op) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return &OpError{Op: "receive acknowledgements", Err: err, Unknown: true}
	}
	buf := make([]byte, 1<<16)
	var first *OpError
	firstIdx := len(ops)
	got := 0
	for got < want {
		var n int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			if first != nil {
				// Acks after a refusal are only the aftermath.
				return first
			}
			unknown := errors.Is(err, unix.ENOBUFS) || errors.Is(err, os.ErrDeadlineExceeded)
			return &OpError{Op: fmt.Sprintf("receive acknowledgements (%d of %d)", got, want), Err: err, Unknown: unknown}
		}
		nlmsgs, perr := syscall.ParseNetlinkMessage(buf[:n])
		if perr != nil {
			return &OpError{Op: "parse acknowledgements", Err: perr, Unknown: true}
		}
		for _, m := range nlmsgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			got++
			errno := -int32(nativeUint32(m.Data[:4]))
			if errno == 0 {
				continue
			}
			idx, ok := bySeq[m.Header.Seq]
			name := "batch"
			if ok {
				name = ops[idx].Name
			} else {
				idx = -1
			}
			if idx < firstIdx {
				firstIdx = idx
				first = &OpError{Op: name, Err: withExtAck(unix.Errno(errno), m)}
			}
			if !ok {
				// An error on the batch itself: no per-message acks follow.
				return first
			}
		}
		if first != nil {
			// The kernel aborted; the remaining acks are already queued.
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		}
	}
	if first != nil {
		return first
	}
	return nil
}

// extAckError is a kernel errno with the extended-ack message, if any.
type extAckError struct {
	errno unix.Errno
	msg   string
}

func (e *extAckError) Error() string {
	if e.msg == "" {
		return e.errno.Error()
	}
	return e.errno.Error() + ": " + e.msg
}

func (e *extAckError) Unwrap() error { return e.errno }

// withExtAck returns errno, with the kernel's NLMSGERR_ATTR_MSG text when
// the ack carries one.
func withExtAck(errno unix.Errno, m syscall.NetlinkMessage) error {
	if m.Header.Flags&unix.NLM_F_ACK_TLVS == 0 {
		return errno
	}
	off := 4 + unix.SizeofNlMsghdr
	if m.Header.Flags&unix.NLM_F_CAPPED == 0 && len(m.Data) >= off {
		off = 4 + int(nativeUint32(m.Data[4:8]))
	}
	if off > len(m.Data) {
		return errno
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[off:])
	if err != nil {
		return errno
	}
	for ad.Next() {
		if ad.Type() == unix.NLMSGERR_ATTR_MSG {
			return &extAckError{errno: errno, msg: ad.String()}
		}
	}
	return errno
}

// closeInBackground closes a netfilter netlink socket without waiting for
// the kernel. Releasing such a socket runs nf_tables' NETLINK_URELEASE
// notifier, which first flushes the deferred destruction of the last
// transaction's objects, and that waits for an RCU grace period: about
// 10 ms on a 2-CPU machine, a third of a small apply's time. The apply
// writes its state files meanwhile; the process's exit waits for what is
// left of it, so nothing is left behind.
func closeInBackground(c io.Closer) { go c.Close() }
