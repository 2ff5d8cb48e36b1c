package nft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Snapshot is a table exactly as the kernel holds it: the netlink messages
// of a dump of the table, its chains, sets with their elements and rules
// (handles and use counts stripped), which replay as the transaction that
// recreates it. Rule counters keep their values. It is how apply --confirm
// saves the previous table and how the last known good table is stored.
type Snapshot struct {
	// Table is the table's name (family inet).
	Table string `json:"table"`
	// Exists is false when there was no such table: restoring deletes it.
	Exists bool `json:"exists"`
	// TableMsg, Chains, Sets and Rules are NEWTABLE, NEWCHAIN, NEWSET and
	// NEWRULE message payloads (nfgenmsg header, then attributes), in
	// dump order.
	TableMsg []byte        `json:"table_msg,omitempty"`
	Chains   [][]byte      `json:"chains,omitempty"`
	Sets     []SnapshotSet `json:"sets,omitempty"`
	Rules    [][]byte      `json:"rules,omitempty"`
}

// SnapshotSet is one set (named or anonymous) and its NEWSETELEM message
// payloads.
type SnapshotSet struct {
	Msg   []byte   `json:"msg"`
	Elems [][]byte `json:"elems,omitempty"`
}

// nfnlSubsysNFTables is NFNL_SUBSYS_NFTABLES, the high byte of nf_tables
// message types.
const nfnlSubsysNFTables = 10

// Attribute numbers of linux/netfilter/nf_tables.h that x/sys/unix v0.28
// lacks.
const (
	nftaTableHandle    = 4
	nftaTableOwner     = 7
	nftaChainID        = 11
	nftaSetID          = 10
	nftaSetHandle      = 16
	nftaSetType        = 19 // dump only: the backend's name
	nftaSetCount       = 20 // dump only: the element count
	nftaRulePositionID = 10
	nftaRuleChainID    = 11
	nftaExprName       = 1
	nftaExprData       = 2
	nftaListElem       = 1
	nftaFlowtableTable = 1
)

func nftMsgType(m int) netlink.HeaderType {
	return netlink.HeaderType(nfnlSubsysNFTables<<8 | m)
}

// nfgenInet is the nfgenmsg header of a request about family inet.
func nfgenInet() []byte { return []byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0} }

// attr is one netlink attribute: its type (flags masked off), the whole
// attribute as encoded (header and padding) and its payload.
type attr struct {
	typ     uint16
	raw     []byte
	payload []byte
}

// parseAttrs splits encoded attributes.
func parseAttrs(b []byte) ([]attr, error) {
	var out []attr
	for off := 0; off < len(b); {
		if off+4 > len(b) {
			return nil, errors.New("truncated attribute header")
		}
		n := int(binary.NativeEndian.Uint16(b[off:]))
		t := binary.NativeEndian.Uint16(b[off+2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if n < 4 || off+n > len(b) {
			return nil, errors.New("malformed attribute length")
		}
		end := min(off+(n+3)&^3, len(b))
		out = append(out, attr{typ: t, raw: b[off:end], payload: b[off+4 : off+n]})
		off = end
	}
	return out, nil
}

// encodeAttr encodes one attribute with the header flags hdrType carries
// (e.g. NLA_F_NESTED).
func encodeAttr(hdrType uint16, payload []byte) []byte {
	n := 4 + len(payload)
	b := make([]byte, (n+3)&^3)
	binary.NativeEndian.PutUint16(b, uint16(n))
	binary.NativeEndian.PutUint16(b[2:], hdrType)
	copy(b[4:], payload)
	return b
}

// attrString returns the NUL-terminated string attribute of type t, or "".
func attrString(attrs []attr, t uint16) string {
	for _, a := range attrs {
		if a.typ == t {
			return string(bytes.TrimRight(a.payload, "\x00"))
		}
	}
	return ""
}

// strAttr encodes a NUL-terminated string attribute.
func strAttr(t uint16, s string) []byte { return encodeAttr(t, append([]byte(s), 0)) }

// replayable turns a dumped message into the payload of the message that
// creates the object: an nfgenmsg header for family inet and the
// attributes without the dropped types (handles, use counts, IDs).
func replayable(data []byte, drop ...uint16) ([]byte, []attr, error) {
	if len(data) < 4 {
		return nil, nil, errors.New("message shorter than its nfgenmsg header")
	}
	attrs, err := parseAttrs(data[4:])
	if err != nil {
		return nil, nil, err
	}
	out := nfgenInet()
	var kept []attr
outer:
	for _, a := range attrs {
		for _, d := range drop {
			if a.typ == d {
				continue outer
			}
		}
		if a.typ == unix.NFTA_SET_DESC && len(a.payload) == 0 && len(drop) > 0 && drop[0] == nftaSetHandle {
			continue // an empty set description: the kernel refuses it back
		}
		out = append(out, a.raw...)
		kept = append(kept, a)
	}
	return out, kept, nil
}

// dumper runs nf_tables dumps on one socket and checks that every answer
// comes from one ruleset generation.
type dumper struct {
	conn *netlink.Conn
	gen  uint16
	seen bool
	// moved is set when answers came from different generations: the
	// ruleset changed while it was read.
	moved bool
	// buf is the read buffer of dumps.
	buf []byte
}

func (d *dumper) run(m int, flags netlink.HeaderFlags, attrs ...[]byte) ([]netlink.Message, error) {
	data := nfgenInet()
	for _, a := range attrs {
		data = append(data, a...)
	}
	req := netlink.Message{Header: netlink.Header{Type: nftMsgType(m), Flags: netlink.Request | flags}, Data: data}
	var msgs []netlink.Message
	var err error
	if flags&netlink.Dump != 0 {
		msgs, err = d.dump(req)
	} else {
		msgs, err = d.conn.Execute(req)
	}
	if err != nil {
		return nil, err
	}
	var out []netlink.Message
	for _, msg := range msgs {
		if len(msg.Data) < 4 {
			continue
		}
		gen := binary.BigEndian.Uint16(msg.Data[2:4])
		if d.seen && gen != d.gen {
			d.moved = true
		}
		d.gen, d.seen = gen, true
		out = append(out, msg)
	}
	return out, nil
}

// dumpBufSize is the read buffer of dumps. The kernel sizes each part of
// a dump after the largest read the socket has seen (up to 32 KiB), and an
// rbtree set's element dump walks the tree from its start again for every
// part: mdlayher/netlink reads with one page, so a 100,000-interval set
// came back in 4 KiB parts, with a walk of the tree for each (half a second
// of kernel time at N = 100,000).
const dumpBufSize = 64 << 10

// dump sends a dump request and reads its answer with dumpBufSize reads,
// up to NLMSG_DONE; an interrupted dump (NLM_F_DUMP_INTR: the ruleset
// changed) marks the dumper moved, as a generation change does.
func (d *dumper) dump(req netlink.Message) ([]netlink.Message, error) {
	sent, err := d.conn.Send(req)
	if err != nil {
		return nil, err
	}
	raw, err := d.conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	_ = d.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	defer func() { _ = d.conn.SetReadDeadline(time.Time{}) }()
	if d.buf == nil {
		d.buf = make([]byte, dumpBufSize)
	}
	var out []netlink.Message
	for {
		var n int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), d.buf, unix.MSG_DONTWAIT)
			return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(d.buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != sent.Header.Sequence {
				continue
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				d.moved = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(nativeUint32(m.Data[:4])); errno != 0 {
						return nil, fmt.Errorf("dump: %w", unix.Errno(errno))
					}
				}
				if m.Header.Type == unix.NLMSG_DONE {
					return out, nil
				}
				continue
			}
			out = append(out, netlink.Message{
				Header: netlink.Header{Length: m.Header.Len, Type: netlink.HeaderType(m.Header.Type), Flags: netlink.HeaderFlags(m.Header.Flags), Sequence: m.Header.Seq, PID: m.Header.Pid},
				Data:   bytes.Clone(m.Data),
			})
		}
	}
}

// Snapshot reads table (family inet) as the kernel holds it; a missing
// table gives a Snapshot with Exists false. A table with stateful objects
// or flowtables (which hostwall never makes) cannot be saved exactly and
// is an error.
func (k *Netlink) Snapshot(ctx context.Context, table string) (*Snapshot, error) {
	if err := checkObjName("table", table); err != nil {
		return nil, err
	}
	fd, closeNS, err := k.nsHandle()
	if err != nil {
		return nil, err
	}
	defer closeNS()
	for try := 0; ; try++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, moved, err := snapshotOnce(fd, table)
		if err != nil || !moved {
			return s, err
		}
		if try == 4 {
			return nil, &OpError{Op: "snapshot table " + table, Err: errors.New("the ruleset kept changing while it was read")}
		}
	}
}

func snapshotOnce(fd int, table string) (*Snapshot, bool, error) {
	conn, err := dialNetfilter(fd)
	if err != nil {
		return nil, false, err
	}
	defer closeInBackground(conn)
	d := &dumper{conn: conn}
	return snapshotOn(d, table)
}

// snapshotOn reads table with d; moved reports that the ruleset changed
// while it was read (d.gen is the generation read otherwise).
func snapshotOn(d *dumper, table string) (*Snapshot, bool, error) {
	if err := raiseBuffers(d.conn, 32<<20, 4<<20); err != nil {
		return nil, false, &OpError{Op: "raise socket buffers", Err: err}
	}
	s := &Snapshot{Table: table}
	fail := func(op string, err error) (*Snapshot, bool, error) {
		return nil, false, &OpError{Op: op + " of table " + table, Err: err}
	}
	msgs, err := d.run(unix.NFT_MSG_GETTABLE, 0, strAttr(unix.NFTA_TABLE_NAME, table))
	if errors.Is(err, unix.ENOENT) {
		return s, false, nil
	}
	if err != nil {
		return fail("read", err)
	}
	if len(msgs) != 1 {
		return fail("read", fmt.Errorf("%d answers, want 1", len(msgs)))
	}
	s.Exists = true
	if s.TableMsg, _, err = replayable(msgs[0].Data, nftaTableHandle, unix.NFTA_TABLE_USE, nftaTableOwner); err != nil {
		return fail("read", err)
	}
	// Objects and flowtables: refuse rather than lose them.
	for _, o := range []struct {
		m        int
		tableAtt uint16
		what     string
	}{{unix.NFT_MSG_GETOBJ, unix.NFTA_OBJ_TABLE, "stateful objects"}, {unix.NFT_MSG_GETFLOWTABLE, nftaFlowtableTable, "flowtables"}} {
		msgs, err := d.run(o.m, netlink.Dump, strAttr(o.tableAtt, table))
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fail("list "+o.what, err)
		}
		for _, m := range msgs {
			if attrs, err := parseAttrs(m.Data[4:]); err == nil && attrString(attrs, o.tableAtt) == table {
				return fail("snapshot", fmt.Errorf("the table has %s, which hostwall cannot save and restore", o.what))
			}
		}
	}
	msgs, err = d.run(unix.NFT_MSG_GETCHAIN, netlink.Dump, strAttr(unix.NFTA_CHAIN_TABLE, table))
	if err != nil {
		return fail("list chains", err)
	}
	for _, m := range msgs {
		b, attrs, err := replayable(m.Data, unix.NFTA_CHAIN_HANDLE, unix.NFTA_CHAIN_USE, nftaChainID)
		if err != nil {
			return fail("list chains", err)
		}
		if attrString(attrs, unix.NFTA_CHAIN_TABLE) == table {
			s.Chains = append(s.Chains, b)
		}
	}
	msgs, err = d.run(unix.NFT_MSG_GETSET, netlink.Dump, strAttr(unix.NFTA_SET_TABLE, table))
	if err != nil {
		return fail("list sets", err)
	}
	for _, m := range msgs {
		b, attrs, err := replayable(m.Data, nftaSetHandle, nftaSetID, nftaSetType, nftaSetCount)
		if err != nil {
			return fail("list sets", err)
		}
		if attrString(attrs, unix.NFTA_SET_TABLE) != table {
			continue
		}
		name := attrString(attrs, unix.NFTA_SET_NAME)
		set := SnapshotSet{Msg: b}
		elems, err := d.run(unix.NFT_MSG_GETSETELEM, netlink.Dump,
			strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, table), strAttr(unix.NFTA_SET_ELEM_LIST_SET, name))
		if err != nil {
			return fail("list elements of set "+name, err)
		}
		for _, e := range elems {
			eb, eattrs, err := replayable(e.Data)
			if err != nil {
				return fail("list elements of set "+name, err)
			}
			has := false
			for _, a := range eattrs {
				has = has || (a.typ == unix.NFTA_SET_ELEM_LIST_ELEMENTS && len(a.payload) > 0)
			}
			if has {
				set.Elems = append(set.Elems, eb)
			}
		}
		s.Sets = append(s.Sets, set)
	}
	msgs, err = d.run(unix.NFT_MSG_GETRULE, netlink.Dump, strAttr(unix.NFTA_RULE_TABLE, table))
	if err != nil {
		return fail("list rules", err)
	}
	for _, m := range msgs {
		b, attrs, err := replayable(m.Data, unix.NFTA_RULE_HANDLE, unix.NFTA_RULE_POSITION, unix.NFTA_RULE_ID, nftaRulePositionID, nftaRuleChainID)
		if err != nil {
			return fail("list rules", err)
		}
		if attrString(attrs, unix.NFTA_RULE_TABLE) == table {
			s.Rules = append(s.Rules, replayableRule(b))
		}
	}
	return s, d.moved, nil
}

// RestoreOps encodes the transaction that puts s back: the table exactly
// as saved, or no table when there was none. Nothing is sent.
func (s *Snapshot) RestoreOps() ([]Op, error) {
	if s == nil {
		return nil, errors.New("no snapshot")
	}
	if err := checkObjName("table", s.Table); err != nil {
		return nil, err
	}
	ops, err := DeleteOps(s.Table)
	if err != nil {
		return nil, err
	}
	if !s.Exists {
		return ops, nil
	}
	create := netlink.Request | netlink.Acknowledge | netlink.Create
	add := func(name string, m int, flags netlink.HeaderFlags, data []byte) {
		ops = append(ops, Op{Name: name, Msg: netlink.Message{Header: netlink.Header{Type: nftMsgType(m), Flags: flags}, Data: data}})
	}
	add("restore table "+s.Table, unix.NFT_MSG_NEWTABLE, create, s.TableMsg)
	for i, c := range s.Chains {
		add(fmt.Sprintf("restore chain %d (%s)", i+1, nameOf(c, unix.NFTA_CHAIN_NAME)), unix.NFT_MSG_NEWCHAIN, create, c)
	}
	for i, set := range s.Sets {
		name := nameOf(set.Msg, unix.NFTA_SET_NAME)
		// The kernel requires a transaction-local set ID (NFTA_SET_ID),
		// which dumps do not carry.
		id := binary.BigEndian.AppendUint32(nil, uint32(i+1))
		msg := append(append([]byte(nil), set.Msg...), encodeAttr(nftaSetID, id)...)
		add("restore set "+name, unix.NFT_MSG_NEWSET, create, msg)
		for i, e := range set.Elems {
			add(fmt.Sprintf("restore elements (message %d) of set %s", i+1, name), unix.NFT_MSG_NEWSETELEM, create, e)
		}
	}
	for i, r := range s.Rules {
		add(fmt.Sprintf("restore rule %d (chain %s)", i+1, nameOf(r, unix.NFTA_RULE_CHAIN)), unix.NFT_MSG_NEWRULE, create|netlink.Append, r)
	}
	return ops, nil
}

func nameOf(msg []byte, t uint16) string {
	if len(msg) < 4 {
		return "?"
	}
	attrs, err := parseAttrs(msg[4:])
	if err != nil {
		return "?"
	}
	return attrString(attrs, t)
}

// Restore sends s.RestoreOps() in one transaction, then reads the table
// back and checks that it is what s saved (counters aside).
func (k *Netlink) Restore(ctx context.Context, s *Snapshot) error {
	ops, err := s.RestoreOps()
	if err != nil {
		return &OpError{Op: "encode restore", Err: err}
	}
	if err := k.send(ctx, ops, nil, nil); err != nil {
		return err
	}
	got, err := k.Snapshot(ctx, s.Table)
	if err != nil {
		return err
	}
	if d := s.Compare(got); d != "" {
		return &OpError{Op: "verify restored table " + s.Table, Err: errors.New(d)}
	}
	return nil
}

// Compare returns "" when o holds what s holds, counter values aside, or
// what differs first.
func (s *Snapshot) Compare(o *Snapshot) string {
	switch {
	case s == nil || o == nil:
		return "missing snapshot"
	case s.Table != o.Table:
		return fmt.Sprintf("table %s, want %s", o.Table, s.Table)
	case s.Exists != o.Exists:
		return fmt.Sprintf("table exists: %v, want %v", o.Exists, s.Exists)
	case !bytes.Equal(s.TableMsg, o.TableMsg):
		return "the table's attributes differ"
	case len(s.Chains) != len(o.Chains):
		return fmt.Sprintf("%d chains, want %d", len(o.Chains), len(s.Chains))
	case len(s.Sets) != len(o.Sets):
		return fmt.Sprintf("%d sets, want %d", len(o.Sets), len(s.Sets))
	case len(s.Rules) != len(o.Rules):
		return fmt.Sprintf("%d rules, want %d", len(o.Rules), len(s.Rules))
	}
	for i := range s.Chains {
		if !bytes.Equal(s.Chains[i], o.Chains[i]) {
			return fmt.Sprintf("chain %s differs", nameOf(s.Chains[i], unix.NFTA_CHAIN_NAME))
		}
	}
	for i := range s.Sets {
		name := nameOf(s.Sets[i].Msg, unix.NFTA_SET_NAME)
		if !bytes.Equal(s.Sets[i].Msg, o.Sets[i].Msg) {
			return fmt.Sprintf("set %s differs", name)
		}
		if !bytes.Equal(elemBytes(s.Sets[i].Elems), elemBytes(o.Sets[i].Elems)) {
			return fmt.Sprintf("the elements of set %s differ", name)
		}
	}
	for i := range s.Rules {
		if !bytes.Equal(withoutCounters(s.Rules[i]), withoutCounters(o.Rules[i])) {
			return fmt.Sprintf("rule %d (chain %s) differs", i+1, nameOf(s.Rules[i], unix.NFTA_RULE_CHAIN))
		}
	}
	return ""
}

// elemBytes returns the elements of NEWSETELEM payloads, sorted and
// concatenated: neither how the kernel splits a dump into messages nor the
// order of a hash set's elements matters.
func elemBytes(msgs [][]byte) []byte {
	var elems [][]byte
	for _, m := range msgs {
		if len(m) < 4 {
			continue
		}
		attrs, _ := parseAttrs(m[4:])
		for _, a := range attrs {
			if a.typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				continue
			}
			list, err := parseAttrs(a.payload)
			if err != nil {
				elems = append(elems, a.payload)
				continue
			}
			for _, e := range list {
				elems = append(elems, e.raw)
			}
		}
	}
	slices.SortFunc(elems, bytes.Compare)
	return bytes.Join(elems, nil)
}

// withoutCounters returns a NEWRULE payload with the data of its counter
// expressions removed: a counter restored from it starts at zero.
func withoutCounters(msg []byte) []byte {
	return rewriteExprs(msg, func(name string, data []attr) ([]attr, bool) {
		if name == "counter" {
			return nil, false
		}
		return data, true
	})
}

// Attributes of the exthdr expression (linux/netfilter/nf_tables.h).
const (
	nftaExthdrFlags = 5
	nftaExthdrSreg  = 7
)

// replayableRule fixes what the kernel dumps but refuses back: an exthdr
// expression that writes a TCP option (it has a source register) is dumped
// with NFTA_EXTHDR_FLAGS, which its init refuses.
func replayableRule(msg []byte) []byte {
	return rewriteExprs(msg, func(name string, data []attr) ([]attr, bool) {
		if name != "exthdr" || !slices.ContainsFunc(data, func(a attr) bool { return a.typ == nftaExthdrSreg }) {
			return data, true
		}
		return slices.DeleteFunc(slices.Clone(data), func(a attr) bool { return a.typ == nftaExthdrFlags }), true
	})
}

// rewriteExprs returns a NEWRULE payload whose expressions' data
// attributes f rewrote (f's keep false drops the data attribute). It
// returns msg itself when it cannot be parsed.
func rewriteExprs(msg []byte, f func(name string, data []attr) (out []attr, keep bool)) []byte {
	if len(msg) < 4 {
		return msg
	}
	attrs, err := parseAttrs(msg[4:])
	if err != nil {
		return msg
	}
	out := append([]byte(nil), msg[:4]...)
	for _, a := range attrs {
		if a.typ != unix.NFTA_RULE_EXPRESSIONS {
			out = append(out, a.raw...)
			continue
		}
		elems, err := parseAttrs(a.payload)
		if err != nil {
			return msg
		}
		var list []byte
		for _, e := range elems {
			parts, err := parseAttrs(e.payload)
			if err != nil {
				return msg
			}
			name := attrString(parts, nftaExprName)
			var elem []byte
			for _, p := range parts {
				if p.typ != nftaExprData {
					elem = append(elem, p.raw...)
					continue
				}
				data, err := parseAttrs(p.payload)
				if err != nil {
					return msg
				}
				data, keep := f(name, data)
				if !keep {
					continue
				}
				var b []byte
				for _, d := range data {
					b = append(b, d.raw...)
				}
				elem = append(elem, encodeAttr(nftaExprData|unix.NLA_F_NESTED, b)...)
			}
			list = append(list, encodeAttr(nftaListElem|unix.NLA_F_NESTED, elem)...)
		}
		out = append(out, encodeAttr(unix.NFTA_RULE_EXPRESSIONS|unix.NLA_F_NESTED, list)...)
	}
	return out
}

// ZeroCounters returns a copy of s whose rules' counters restore at zero
// (the last known good table is stored so).
func (s *Snapshot) ZeroCounters() *Snapshot {
	c := *s
	c.Rules = make([][]byte, len(s.Rules))
	for i, r := range s.Rules {
		c.Rules[i] = withoutCounters(r)
	}
	return &c
}
