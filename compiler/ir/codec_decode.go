package ir

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"

	"go4.org/netipx"
)

// UnmarshalBinary decodes what MarshalBinary wrote into rs, replacing what
// rs held; any other input is an error (and rs is left as it was), never a
// panic. It keeps no reference to data.
func (rs *Ruleset) UnmarshalBinary(data []byte) error {
	d := &decoder{data: data}
	out := d.ruleset()
	if d.err != nil {
		return d.err
	}
	*rs = *out
	return nil
}

// decoder reads an encoding. Errors are sticky: after the first, reads
// return zero values and consume nothing, so every loop (bounded by a
// count checked against the input's length) ends quickly.
type decoder struct {
	data []byte
	off  int
	err  error
	// short is set by a read past the end; the error it makes (failf's
	// next, or the check at the end) says so.
	short bool
	// strs is the string table.
	strs []string
	// prev are the matches of the rule decoded last (see tagSameMatch).
	prev []Match
	// The tables, allocated at once from the counts.
	sets   []Set
	chains []Chain
	rules  []Rule
	bases  []Base
	limits []Limit
	logs   []Log
	// Small slices are cut from shared chunks.
	matchBuf    chunk[Match]
	ruleRefBuf  chunk[*Rule]
	rangeBuf    chunk[netipx.IPRange]
	portBuf     chunk[PortRange]
	nameBuf     chunk[string]
	protoBuf    chunk[Proto]
	icmpBuf     chunk[ICMPType]
	addrPortBuf chunk[AddrPort]
}

// chunk hands out small slices cut from larger allocations, each with its
// capacity limited to its length (an append copies it).
type chunk[T any] struct{ free []T }

const (
	chunkLen    = 512 // elements per shared allocation
	maxChunkCut = 64  // longer slices get their own
)

// take returns a new slice of n zero elements; n may be 0 (an empty,
// non-nil slice).
func (c *chunk[T]) take(n int) []T {
	if n == 0 {
		return []T{}
	}
	if n > len(c.free) {
		if n > maxChunkCut {
			return make([]T, n)
		}
		c.free = make([]T, chunkLen)
	}
	s := c.free[:n:n]
	c.free = c.free[n:]
	return s
}

// failf records the first decoding error, with the offset it was found at,
// and ends the reading.
func (d *decoder) failf(format string, args ...any) {
	if d.short {
		format, args = "unexpected end of input", nil
	}
	if d.err == nil {
		d.err = fmt.Errorf("ir: decode ruleset: offset %d: "+format, append([]any{d.off}, args...)...)
		d.off = len(d.data)
	}
}

func (d *decoder) left() int { return len(d.data) - d.off }

func (d *decoder) u8() uint8 {
	if i := d.off; uint(i) < uint(len(d.data)) {
		d.off = i + 1
		return d.data[i]
	}
	d.short = true // reported by failf
	return 0
}

func (d *decoder) u16() uint16 {
	if d.left() < 2 {
		d.failf("unexpected end of input")
		return 0
	}
	v := binary.BigEndian.Uint16(d.data[d.off:])
	d.off += 2
	return v
}

// uv reads a uvarint; one byte inline, more in uvLong.
func (d *decoder) uv() uint64 {
	if i := d.off; uint(i) < uint(len(d.data)) && d.data[i] < 0x80 {
		d.off = i + 1
		return uint64(d.data[i])
	}
	return d.uvLong()
}

func (d *decoder) uvLong() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data[d.off:])
	switch {
	case n == 0:
		d.failf("unexpected end of input")
		return 0
	case n < 0:
		d.failf("varint overflows 64 bits")
		return 0
	case d.data[d.off+n-1] == 0:
		d.failf("varint not in its shortest form")
		return 0
	}
	d.off += n
	return v
}

// sv reads a zigzag varint into an int.
func (d *decoder) sv() int {
	u := d.uv()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	if int64(int(v)) != v {
		d.failf("integer %d does not fit an int", v)
		return 0
	}
	return int(v)
}

func (d *decoder) bool() bool {
	b := d.u8()
	if b > 1 {
		d.failf("bool %d is not 0 or 1", b)
	}
	return b == 1
}

// enum reads an enum value named what, which must be at most max.
func (d *decoder) enum(what string, max uint8) uint8 {
	v := d.u8()
	if v > max {
		d.failf("%s %d is out of range 0-%d", what, v, max)
		return 0
	}
	return v
}

// count reads a count of objects of at least min bytes each that follow.
func (d *decoder) count(what string, min int) int {
	n := d.uv()
	if n > uint64(d.left()/min) {
		d.failf("%d %s cannot fit in the %d bytes left", n, what, d.left())
		return 0
	}
	return int(n)
}

// list reads the length of a slice whose items take at least min bytes
// each; isNil reports a nil slice.
func (d *decoder) list(what string, min int) (n int, isNil bool) {
	v := d.uv()
	if v == 0 {
		return 0, true
	}
	v--
	if v > uint64(d.left()/min) {
		d.failf("%d %s cannot fit in the %d bytes left", v, what, d.left())
		return 0, true
	}
	return int(v), false
}

// ref reads a reference into a table of n objects: -1 for nil, else the
// index.
func (d *decoder) ref(what string, n int) int {
	v := d.uv()
	if v > uint64(n) {
		d.failf("%s %d does not exist (there are %d)", what, v, n)
		return -1
	}
	return int(v) - 1
}

func (d *decoder) str() string {
	i := d.ref("string", len(d.strs))
	if i < 0 {
		return ""
	}
	return d.strs[i]
}

func (d *decoder) source() Source {
	var s Source
	s.File = d.str()
	s.Line = d.sv()
	s.Col = d.sv()
	s.What = d.str()
	return s
}

func (d *decoder) ruleset() *Ruleset {
	if len(d.data) < len(codecMagic)+1 || string(d.data[:len(codecMagic)]) != codecMagic {
		d.failf("not an encoded hostwall ruleset (no %q header)", codecMagic)
		return nil
	}
	if v := d.data[len(codecMagic)]; v != codecVersion {
		d.failf("encoding version %d; this hostwall reads version %d", v, codecVersion)
		return nil
	}
	d.off = len(codecMagic) + 1
	nStrs := d.count("strings", 1)
	// Each table's count is checked against what is left after the
	// objects of the tables before it.
	left := d.left() - nStrs
	counts := [6]int{}
	for i, min := range []int{minSetLen, minChainLen, minRuleLen, minBaseLen, minLimitLen, minLogLen} {
		counts[i] = d.count("objects", min)
		left -= counts[i] * min
		if left < 0 {
			d.failf("the tables' objects cannot fit in the bytes left")
		}
	}
	if d.err != nil {
		return nil
	}
	d.readStrings(nStrs)
	d.sets = make([]Set, counts[0])
	d.chains = make([]Chain, counts[1])
	d.rules = make([]Rule, counts[2])
	d.bases = make([]Base, counts[3])
	d.limits = make([]Limit, counts[4])
	d.logs = make([]Log, counts[5])

	rs := &Ruleset{}
	rs.Table = d.str()
	for i := range d.sets {
		s := &d.sets[i]
		s.Name = d.str()
		s.Family = Family(d.enum("family", uint8(maxFamily)))
		s.Elems = d.ranges()
		s.Comment = d.str()
		s.Source = d.source()
	}
	// Every set and chain of the tables is one of the ruleset's (the
	// encoder's tables hold nothing else), so what decodes encodes again.
	used := make([]bool, max(len(d.sets), len(d.chains)))
	rs.Sets = refList(d, "set", d.sets, used)
	d.allUsed("set", used[:len(d.sets)])
	for i := range d.chains {
		c := &d.chains[i]
		c.Name = d.str()
		if k := d.ref("base", len(d.bases)); k >= 0 {
			c.Base = &d.bases[k]
		}
		c.Rules = d.ruleList()
	}
	clear(used)
	rs.Chains = refList(d, "chain", d.chains, used)
	d.allUsed("chain", used[:len(d.chains)])
	for i := range d.rules {
		d.rule(&d.rules[i])
	}
	for i := range d.bases {
		b := &d.bases[i]
		b.Type = ChainType(d.enum("chain type", uint8(maxChainType)))
		b.Hook = Hook(d.enum("hook", uint8(maxHook)))
		b.Priority = d.sv()
		b.Policy = d.verdict()
		b.Source = d.source()
	}
	for i := range d.limits {
		l := &d.limits[i]
		l.Rate = d.uv()
		l.Unit = TimeUnit(d.enum("limit unit", uint8(maxTimeUnit)))
		burst := d.uv()
		if burst > math.MaxUint32 {
			d.failf("limit burst %d is out of range", burst)
		}
		l.Burst = uint32(burst)
	}
	for i := range d.logs {
		d.logs[i].Prefix = d.str()
	}
	if d.short {
		d.failf("unexpected end of input")
	}
	if d.err == nil && d.off != len(d.data) {
		d.failf("%d bytes after the end of the ruleset", d.left())
	}
	return rs
}

// refList decodes a list of references to table's entries (what names
// one, e.g. "set"), marking each entry used; a nil list stays nil.
func refList[T any](d *decoder, what string, table []T, used []bool) []*T {
	n, isNil := d.list(what+"s", 1)
	if isNil {
		return nil
	}
	out := make([]*T, n)
	for i := range out {
		if k := d.ref(what, len(table)); k >= 0 {
			out[i] = &table[k]
			used[k] = true
		}
	}
	return out
}

// allUsed checks that every object of a table was referenced.
func (d *decoder) allUsed(what string, used []bool) {
	for i, u := range used {
		if !u {
			d.failf("%s %d of the table is not in the ruleset", what, i+1)
			return
		}
	}
}

// readStrings reads the string table: n lengths, then the bytes of all
// the strings, copied once.
func (d *decoder) readStrings(n int) {
	start, total := d.off, 0
	for range n {
		l := d.uv()
		if l > uint64(d.left()) {
			d.failf("a string of %d bytes cannot fit in the %d bytes left", l, d.left())
			return
		}
		total += int(l)
		if total > d.left() {
			d.failf("strings of %d bytes cannot fit in the %d bytes left", total, d.left())
			return
		}
	}
	if d.err != nil {
		return
	}
	blob := string(d.data[d.off : d.off+total])
	d.off += total
	d.strs = make([]string, n)
	p := 0
	for i := range d.strs {
		// The lengths were read and checked above.
		l, k := binary.Uvarint(d.data[start:])
		start += k
		d.strs[i] = blob[p : p+int(l)]
		p += int(l)
	}
}

func (d *decoder) chainRef() *Chain {
	if k := d.ref("chain", len(d.chains)); k >= 0 {
		return &d.chains[k]
	}
	return nil
}

// ruleList reads a list of rule refs.
func (d *decoder) ruleList() []*Rule {
	n, isNil := d.list("rules", 1)
	if isNil {
		return nil
	}
	out := d.ruleRefBuf.take(n)
	for i := range out {
		if k := d.ref("rule", len(d.rules)); k >= 0 {
			out[i] = &d.rules[k]
		}
	}
	return out
}

func (d *decoder) rule(r *Rule) {
	if n, isNil := d.list("matches", 1); !isNil {
		r.Matches = d.matchBuf.take(n)
		for i := range r.Matches {
			if d.off < len(d.data) && d.data[d.off] == tagSameMatch {
				d.off++
				if i >= len(d.prev) {
					d.failf("match %d repeats the previous rule's, which has %d", i+1, len(d.prev))
					break
				}
				r.Matches[i] = d.prev[i]
				continue
			}
			r.Matches[i] = d.match()
		}
	}
	d.prev = r.Matches
	if k := d.ref("limit", len(d.limits)); k >= 0 {
		r.Limit = &d.limits[k]
	}
	r.Counter = d.bool()
	if k := d.ref("log", len(d.logs)); k >= 0 {
		r.Log = &d.logs[k]
	}
	r.Verdict = d.verdict()
	r.Comment = d.str()
	r.Source = d.source()
	r.Merged = d.ruleList()
}

func (d *decoder) match() Match {
	switch tag := d.u8(); tag {
	case tagMatchNil:
		return nil
	case tagFamilyMatch:
		return FamilyMatch{Family: Family(d.enum("family", uint8(maxFamily)))}
	case tagIfaceMatch:
		var m IfaceMatch
		m.Dir = Direction(d.enum("direction", uint8(maxDirection)))
		if n, isNil := d.list("interface names", 1); !isNil {
			m.Names = d.nameBuf.take(n)
			for i := range m.Names {
				m.Names[i] = d.str()
			}
		}
		m.Negate = d.bool()
		return m
	case tagAddrMatch:
		var m AddrMatch
		m.Field = Direction(d.enum("direction", uint8(maxDirection)))
		m.Family = Family(d.enum("family", uint8(maxFamily)))
		if k := d.ref("set", len(d.sets)); k >= 0 {
			m.Set = &d.sets[k]
		}
		m.Elems = d.ranges()
		m.Negate = d.bool()
		return m
	case tagProtoMatch:
		var m ProtoMatch
		if n, isNil := d.list("protocols", 1); !isNil {
			m.Protos = d.protoBuf.take(n)
			for i := range m.Protos {
				m.Protos[i] = Proto(d.u8())
			}
		}
		return m
	case tagPortMatch:
		var m PortMatch
		m.Proto = Proto(d.u8())
		m.Field = Direction(d.enum("direction", uint8(maxDirection)))
		if n, isNil := d.list("port ranges", 4); !isNil {
			m.Ranges = d.portBuf.take(n)
			for i := range m.Ranges {
				m.Ranges[i] = PortRange{Lo: d.u16(), Hi: d.u16()}
			}
		}
		return m
	case tagICMPMatch:
		var m ICMPMatch
		m.Family = Family(d.enum("family", uint8(maxFamily)))
		if n, isNil := d.list("ICMP types", 1); !isNil {
			m.Types = d.icmpBuf.take(n)
			for i := range m.Types {
				m.Types[i] = ICMPType(d.u8())
			}
		}
		return m
	case tagCtStateMatch:
		s := CtState(d.u8())
		if s&^ctStateBits != 0 {
			d.failf("ct state %#x has bits hostwall does not name", uint8(s))
		}
		return CtStateMatch{States: s}
	case tagFibLocalMatch:
		return FibLocalMatch{}
	case tagHopLimitMatch:
		return HopLimitMatch{Value: d.u8()}
	case tagCtStatusMatch:
		v := d.uv()
		if v > math.MaxUint32 {
			d.failf("ct status %#x is out of range", v)
		}
		return CtStatusMatch{Status: CtStatus(v)}
	case tagTCPFlagsMatch:
		return TCPFlagsMatch{Mask: d.u8(), Value: d.u8()}
	case tagConcatMatch:
		var m ConcatMatch
		m.Family = Family(d.enum("family", uint8(maxFamily)))
		m.AddrField = Direction(d.enum("direction", uint8(maxDirection)))
		m.Proto = Proto(d.u8())
		m.PortField = Direction(d.enum("direction", uint8(maxDirection)))
		m.Elems = d.addrPortList()
		return m
	default:
		d.failf("unknown match tag %d", tag)
		return nil
	}
}

func (d *decoder) verdict() Verdict {
	switch tag := d.u8(); tag {
	case tagVerdictNil:
		return nil
	case tagAccept:
		return Accept{}
	case tagDrop:
		return Drop{}
	case tagReject:
		return Reject{With: RejectType(d.enum("reject type", uint8(maxRejectType)))}
	case tagJump:
		return Jump{Chain: d.chainRef()}
	case tagReturn:
		return Return{}
	case tagVerdictMap:
		var v VerdictMap
		v.Dir = Direction(d.enum("direction", uint8(maxDirection)))
		if n, isNil := d.list("verdict map elements", 2); !isNil {
			v.Elems = make([]VmapElem, n)
			for i := range v.Elems {
				v.Elems[i].Name = d.str()
				v.Elems[i].Chain = d.chainRef()
			}
		}
		return v
	case tagSNAT:
		var v SNAT
		v.Family = Family(d.enum("family", uint8(maxFamily)))
		v.Addr = d.addr()
		return v
	case tagDNAT:
		var v DNAT
		v.Family = Family(d.enum("family", uint8(maxFamily)))
		v.Addr = d.addr()
		v.Port = d.u16()
		return v
	case tagMasquerade:
		return Masquerade{}
	case tagClampMSS:
		var v ClampMSS
		v.Size = d.u16()
		v.PMTU = d.bool()
		return v
	default:
		d.failf("unknown verdict tag %d", tag)
		return nil
	}
}

func (d *decoder) addr() netip.Addr {
	switch kind := d.u8(); kind {
	case addrInvalid:
		return netip.Addr{}
	case addrIPv4:
		if d.left() < 4 {
			d.failf("unexpected end of input")
			return netip.Addr{}
		}
		a := netip.AddrFrom4([4]byte(d.data[d.off:]))
		d.off += 4
		return a
	case addrIPv6, addrZoned:
		if d.left() < 16 {
			d.failf("unexpected end of input")
			return netip.Addr{}
		}
		a := netip.AddrFrom16([16]byte(d.data[d.off:]))
		d.off += 16
		if kind == addrZoned {
			z := d.str()
			if z == "" {
				d.failf("zoned address with an empty zone")
			}
			a = a.WithZone(z)
		}
		return a
	default:
		d.failf("unknown address kind %d", kind)
		return netip.Addr{}
	}
}

// mode reads the mode of a non-empty address list and returns the fewest
// bytes an address takes in it.
func (d *decoder) mode() (mode uint8, addrLen int) {
	switch mode = d.u8(); mode {
	case modeIPv4:
		return mode, 4
	case modeIPv6:
		return mode, 16
	case modeAny:
		return mode, 1
	default:
		d.failf("unknown address list mode %d", mode)
		return 0, 1
	}
}

func (d *decoder) ranges() []netipx.IPRange {
	n, isNil := d.list("address ranges", 2)
	if isNil {
		return nil
	}
	out := d.rangeBuf.take(n)
	if n == 0 {
		return out
	}
	mode, l := d.mode()
	if n > d.left()/(2*l) {
		d.failf("%d address ranges cannot fit in the %d bytes left", n, d.left())
		return nil
	}
	b := d.data[d.off:]
	switch mode {
	case modeIPv4:
		for i := range out {
			out[i] = netipx.IPRangeFrom(netip.AddrFrom4([4]byte(b[8*i:])), netip.AddrFrom4([4]byte(b[8*i+4:])))
		}
		d.off += 8 * n
	case modeIPv6:
		for i := range out {
			out[i] = netipx.IPRangeFrom(netip.AddrFrom16([16]byte(b[32*i:])), netip.AddrFrom16([16]byte(b[32*i+16:])))
		}
		d.off += 32 * n
	default:
		for i := range out {
			from := d.addr()
			out[i] = netipx.IPRangeFrom(from, d.addr())
		}
	}
	return out
}

func (d *decoder) addrPortList() []AddrPort {
	n, isNil := d.list("address-port elements", 3)
	if isNil {
		return nil
	}
	out := d.addrPortBuf.take(n)
	if n == 0 {
		return out
	}
	mode, l := d.mode()
	if n > d.left()/(l+2) {
		d.failf("%d address-port elements cannot fit in the %d bytes left", n, d.left())
		return nil
	}
	b := d.data[d.off:]
	switch mode {
	case modeIPv4:
		for i := range out {
			p := b[6*i:]
			out[i] = AddrPort{Addr: netip.AddrFrom4([4]byte(p)), Port: binary.BigEndian.Uint16(p[4:])}
		}
		d.off += 6 * n
	case modeIPv6:
		for i := range out {
			p := b[18*i:]
			out[i] = AddrPort{Addr: netip.AddrFrom16([16]byte(p)), Port: binary.BigEndian.Uint16(p[16:])}
		}
		d.off += 18 * n
	default:
		for i := range out {
			out[i].Addr = d.addr()
			out[i].Port = d.u16()
		}
	}
	return out
}
