package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Transaction is the replace transaction of one ruleset, encoded: the
// messages Replace sends, and what the kernel must hold of each named set
// afterwards. Encoding is the lowering and google/nftables' building of
// the messages; at 100,000 addresses it takes about 40 ms that an apply
// from the cache of compiled policies does not spend again (the cache
// keeps the encoding, see MarshalBinary). The messages depend only on the
// ruleset and this build: sequence numbers and port IDs are set at send.
type Transaction struct {
	Table string
	Ops   []Op
	Sets  []SetCheck
}

// SetCheck is what the kernel must hold of one named set after the
// transaction: Sent elements were sent, and a kernel that reports its
// sets' element counts reports Count (kernelCount).
type SetCheck struct {
	Name        string
	Sent, Count uint32
}

// Encode lowers rs and encodes its replace transaction. A ruleset the
// lowering refuses is a *LowerError; a failure of the message building an
// *OpError.
func Encode(rs *ir.Ruleset) (*Transaction, error) {
	b, err := Lower(rs)
	if err != nil {
		return nil, err
	}
	ops, err := ReplaceOps(b)
	if err != nil {
		return nil, &OpError{Op: "encode", Err: err}
	}
	return &Transaction{Table: b.Table.Name, Ops: ops, Sets: setChecks(b)}, nil
}

// ReplaceTransaction sends t, as Replace sends the transaction of a
// ruleset, and checks the sets.
func (k *Netlink) ReplaceTransaction(ctx context.Context, t *Transaction) error {
	return k.send(ctx, t.Ops, nil, func(conn *netlink.Conn) error { return verifyCounts(conn, t.Table, t.Sets) })
}

// ReplaceAndRead is ReplaceTransaction, then reads the table back on the
// same socket, still under the apply lock. exact reports that the
// read-back is of the generation this transaction made: the ruleset's
// generation was read before the batch, and the table was read in the
// generation after it, so no other commit (another tool's) came between;
// the snapshot is then exactly what t makes in this kernel. A read-back
// that failed or is not exact is not an error (snap may be nil).
func (k *Netlink) ReplaceAndRead(ctx context.Context, t *Transaction) (snap *Snapshot, exact bool, err error) {
	var before uint16
	var known bool
	err = k.send(ctx, t.Ops, func(conn *netlink.Conn) error {
		d := &dumper{conn: conn}
		if _, err := d.run(unix.NFT_MSG_GETGEN, 0); err == nil && d.seen {
			before, known = d.gen, true
		}
		return nil
	}, func(conn *netlink.Conn) error {
		if err := verifyCounts(conn, t.Table, t.Sets); err != nil {
			return err
		}
		d := &dumper{conn: conn}
		s, moved, rerr := snapshotOn(d, t.Table)
		if rerr != nil {
			return nil
		}
		snap = s
		exact = known && !moved && d.seen && d.gen == before+1
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return snap, exact, nil
}

// verifyCounts checks that every named set holds the elements sent (issue
// 3's trap: google/nftables alone truncates a long element list). The
// encoder already checked each message's element count before anything
// was sent (checkChunk); this is the kernel's side. It first asks for the
// sets' descriptions, one small dump: a kernel that reports a set's
// element count (NFTA_SET_COUNT, Linux 6.x) and reports what the elements
// sent make is believed; any other answer, or no count at all, reads that
// set's elements back and counts them one by one, as nft list does.
func verifyCounts(conn *netlink.Conn, table string, sets []SetCheck) error {
	if len(sets) == 0 {
		return nil
	}
	counts, err := setCounts(conn, table)
	if err != nil {
		return &OpError{Op: "verify sets", Err: err, Unknown: true}
	}
	for _, s := range sets {
		if n, ok := counts[s.Name]; ok && n == s.Count {
			continue
		}
		got, err := countElems(conn, table, s.Name)
		if err != nil {
			return &OpError{Op: "verify set " + s.Name, Err: err, Unknown: true}
		}
		if got != int(s.Sent) {
			return &OpError{Op: "verify set " + s.Name, Err: fmt.Errorf("kernel holds %d elements, %d were sent", got, s.Sent)}
		}
	}
	return nil
}

// countElems dumps the elements of one set and counts them.
func countElems(conn *netlink.Conn, table, set string) (int, error) {
	if err := raiseBuffers(conn, 32<<20, 1<<20); err != nil {
		return 0, err
	}
	d := &dumper{conn: conn}
	msgs, err := d.run(unix.NFT_MSG_GETSETELEM, netlink.Dump,
		strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, table), strAttr(unix.NFTA_SET_ELEM_LIST_SET, set))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range msgs {
		if len(m.Data) < 4 {
			return 0, errors.New("short element message")
		}
		attrs, err := parseAttrs(m.Data[4:])
		if err != nil {
			return 0, err
		}
		for _, a := range attrs {
			if a.typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				continue
			}
			list, err := parseAttrs(a.payload)
			if err != nil {
				return 0, err
			}
			n += len(list)
		}
	}
	return n, nil
}

// txMagic starts an encoded Transaction; the byte after it is the format
// version.
var txMagic = []byte("HWTX\x01")

// MarshalBinary encodes t for the cache of compiled policies.
func (t *Transaction) MarshalBinary() ([]byte, error) {
	size := len(txMagic) + len(t.Table) + 16
	for _, op := range t.Ops {
		size += len(op.Name) + len(op.Msg.Data) + 16
	}
	b := make([]byte, 0, size)
	b = append(b, txMagic...)
	str := func(s []byte) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str([]byte(t.Table))
	b = binary.AppendUvarint(b, uint64(len(t.Ops)))
	for _, op := range t.Ops {
		str([]byte(op.Name))
		b = binary.AppendUvarint(b, uint64(op.Msg.Header.Type))
		b = binary.AppendUvarint(b, uint64(op.Msg.Header.Flags))
		str(op.Msg.Data)
	}
	b = binary.AppendUvarint(b, uint64(len(t.Sets)))
	for _, s := range t.Sets {
		str([]byte(s.Name))
		b = binary.AppendUvarint(b, uint64(s.Sent))
		b = binary.AppendUvarint(b, uint64(s.Count))
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote; anything else is an
// error.
func (t *Transaction) UnmarshalBinary(data []byte) error {
	if len(data) < len(txMagic) || string(data[:len(txMagic)]) != string(txMagic) {
		return errors.New("not an encoded transaction of this version")
	}
	d := txDecoder{b: data[len(txMagic):]}
	out := Transaction{Table: string(d.bytes())}
	n := d.count(4)
	if d.err == nil {
		out.Ops = make([]Op, n)
	}
	for i := range out.Ops {
		if d.err != nil {
			break
		}
		op := &out.Ops[i]
		op.Name = string(d.bytes())
		op.Msg.Header.Type = netlink.HeaderType(d.u16())
		op.Msg.Header.Flags = netlink.HeaderFlags(d.u16())
		op.Msg.Data = d.bytes()
	}
	n = d.count(3)
	if d.err == nil {
		out.Sets = make([]SetCheck, n)
	}
	for i := range out.Sets {
		if d.err != nil {
			break
		}
		out.Sets[i] = SetCheck{Name: string(d.bytes()), Sent: d.u32(), Count: d.u32()}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes")
	}
	if d.err != nil {
		return fmt.Errorf("encoded transaction: %w", d.err)
	}
	*t = out
	return nil
}

// txDecoder reads the fields of an encoded Transaction; the first error
// sticks.
type txDecoder struct {
	b   []byte
	err error
}

func (d *txDecoder) uv(max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > max {
		d.err = errors.New("bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *txDecoder) u16() uint16 { return uint16(d.uv(1<<16 - 1)) }
func (d *txDecoder) u32() uint32 { return uint32(d.uv(1<<32 - 1)) }

// count reads a count of items that take at least min bytes each.
func (d *txDecoder) count(min int) int {
	return int(d.uv(uint64(len(d.b) / min)))
}

func (d *txDecoder) bytes() []byte {
	n := d.uv(uint64(len(d.b)))
	if d.err != nil || n > uint64(len(d.b)) {
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}
