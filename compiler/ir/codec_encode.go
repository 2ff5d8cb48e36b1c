package ir

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"go4.org/netipx"
)

// MarshalBinary encodes rs (every field, Merged rules and Sources included)
// in hostwall's own versioned binary format, which UnmarshalBinary reads
// back into an equal Ruleset with the same sharing of sets, chains and
// rules. It fails on a match or verdict kind it does not know, an enum
// value out of its range, and a set or chain pointer that is not one of
// rs.Sets or rs.Chains.
func (rs *Ruleset) MarshalBinary() ([]byte, error) {
	if rs == nil {
		return nil, errors.New("ir: encode ruleset: nil Ruleset")
	}
	e := newEncoder(rs)
	e.ruleset(rs)
	if e.err != nil {
		return nil, e.err
	}
	var head []byte
	head = append(head, codecMagic...)
	head = append(head, codecVersion)
	for _, n := range []int{len(e.strs), len(e.sets.list), len(e.chains.list), len(e.rules.list), len(e.bases.list), len(e.limits.list), len(e.logs.list)} {
		head = binary.AppendUvarint(head, uint64(n))
	}
	size := 0
	for _, s := range e.strs {
		head = binary.AppendUvarint(head, uint64(len(s)))
		size += len(s)
	}
	out := make([]byte, 0, len(head)+size+len(e.buf))
	out = append(out, head...)
	for _, s := range e.strs {
		out = append(out, s...)
	}
	return append(out, e.buf...), nil
}

// encoder writes the body of an encoding; the string table and the counts
// are known at its end.
type encoder struct {
	buf    []byte
	err    error
	strIDs map[string]uint64 // string -> its str (1-based)
	strs   []string
	// file and fileID are the last Source.File written and its str: the
	// rules of a ruleset come from few files, in runs. what and whatID
	// are the last Source.What: it is new for almost every rule, or
	// repeats the rule before (the halves of a policy rule), so it goes
	// to the string table without the cost of a lookup.
	file   string
	fileID uint64
	what   string
	whatID uint64
	// prev are the matches of the rule written last (see tagSameMatch).
	prev   []Match
	sets   table[Set]
	chains table[Chain]
	rules  table[Rule]
	bases  table[Base]
	limits table[Limit]
	logs   table[Log]
}

// newEncoder returns an encoder with room for rs: its tables, string
// table and buffer sized from the rules of its chains and the rules they
// merge (one level), and its set elements.
func newEncoder(rs *Ruleset) *encoder {
	rules, elems := 0, 0
	for _, c := range rs.Chains {
		if c == nil {
			continue
		}
		rules += len(c.Rules)
		for _, r := range c.Rules {
			if r != nil {
				rules += len(r.Merged)
			}
		}
	}
	for _, s := range rs.Sets {
		if s != nil {
			elems += len(s.Elems)
		}
	}
	e := &encoder{strIDs: map[string]uint64{}, strs: make([]string, 0, rules+16)}
	e.rules.ids = make(map[*Rule]uint64, rules)
	e.rules.list = make([]*Rule, 0, rules)
	e.buf = make([]byte, 0, 64+48*rules+33*elems)
	return e
}

// table numbers the distinct objects of one type in the order they are
// first met; a ref is 0 for nil, k for the k-th.
type table[T any] struct {
	ids  map[*T]uint64
	list []*T
}

// ref returns p's ref, adding p to the table when it is new.
func (t *table[T]) ref(p *T) uint64 {
	if p == nil {
		return 0
	}
	if id, ok := t.ids[p]; ok {
		return id
	}
	if t.ids == nil {
		t.ids = map[*T]uint64{}
	}
	t.list = append(t.list, p)
	id := uint64(len(t.list))
	t.ids[p] = id
	return id
}

// failf records the first encoding error.
func (e *encoder) failf(format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf("ir: encode ruleset: "+format, args...)
	}
}

func (e *encoder) uv(v uint64) {
	if v < 0x80 {
		e.buf = append(e.buf, byte(v))
		return
	}
	e.buf = binary.AppendUvarint(e.buf, v)
}

func (e *encoder) sv(v int) { e.buf = binary.AppendVarint(e.buf, int64(v)) }

func (e *encoder) u8(v uint8) { e.buf = append(e.buf, v) }

func (e *encoder) u16(v uint16) { e.buf = binary.BigEndian.AppendUint16(e.buf, v) }

func (e *encoder) bool(v bool) {
	if v {
		e.buf = append(e.buf, 1)
	} else {
		e.buf = append(e.buf, 0)
	}
}

// enum writes v, an enum value of the IR named what, when it is at most max.
func (e *encoder) enum(what string, v, max uint8) {
	if v > max {
		e.failf("%s %d is out of range 0-%d", what, v, max)
	}
	e.buf = append(e.buf, v)
}

// list writes the length of a slice (n+1, or 0 for nil).
func (e *encoder) list(n int, isNil bool) {
	if isNil {
		e.buf = append(e.buf, 0)
		return
	}
	e.uv(uint64(n) + 1)
}

func (e *encoder) str(s string) {
	if s == "" {
		e.buf = append(e.buf, 0)
		return
	}
	id, ok := e.strIDs[s]
	if !ok {
		e.strs = append(e.strs, s)
		id = uint64(len(e.strs))
		e.strIDs[s] = id
	}
	e.uv(id)
}

func (e *encoder) source(s Source) {
	if s.File != "" && s.File == e.file {
		e.uv(e.fileID)
	} else {
		e.str(s.File)
		e.file, e.fileID = s.File, e.strIDs[s.File]
	}
	e.sv(s.Line)
	e.sv(s.Col)
	switch {
	case s.What == "":
		e.u8(0)
	case s.What == e.what:
		e.uv(e.whatID)
	default:
		e.strs = append(e.strs, s.What)
		e.what, e.whatID = s.What, uint64(len(e.strs))
		e.uv(e.whatID)
	}
}

func (e *encoder) ruleset(rs *Ruleset) {
	e.str(rs.Table)
	for _, s := range rs.Sets {
		e.sets.ref(s)
	}
	for _, s := range e.sets.list {
		e.str(s.Name)
		e.enum("set "+strconv.Quote(s.Name)+" family", uint8(s.Family), uint8(maxFamily))
		e.ranges(s.Elems)
		e.str(s.Comment)
		e.source(s.Source)
	}
	e.list(len(rs.Sets), rs.Sets == nil)
	for _, s := range rs.Sets {
		e.uv(e.sets.ref(s))
	}
	for _, c := range rs.Chains {
		e.chains.ref(c)
	}
	for _, c := range e.chains.list {
		e.str(c.Name)
		e.uv(e.bases.ref(c.Base))
		e.list(len(c.Rules), c.Rules == nil)
		for _, r := range c.Rules {
			e.uv(e.rules.ref(r))
		}
	}
	e.list(len(rs.Chains), rs.Chains == nil)
	for _, c := range rs.Chains {
		e.uv(e.chains.ref(c))
	}
	// Rules met while writing rules (Merged) join the table and are
	// written in turn.
	for i := 0; i < len(e.rules.list); i++ {
		e.rule(e.rules.list[i])
	}
	for _, b := range e.bases.list {
		e.enum("chain type", uint8(b.Type), uint8(maxChainType))
		e.enum("hook", uint8(b.Hook), uint8(maxHook))
		e.sv(b.Priority)
		e.verdict(b.Policy)
		e.source(b.Source)
	}
	// Written after the rules, which find them.
	for _, l := range e.limits.list {
		e.uv(l.Rate)
		e.enum("limit unit", uint8(l.Unit), uint8(maxTimeUnit))
		e.uv(uint64(l.Burst))
	}
	for _, l := range e.logs.list {
		e.str(l.Prefix)
	}
}

func (e *encoder) rule(r *Rule) {
	e.list(len(r.Matches), r.Matches == nil)
	for i, m := range r.Matches {
		if i < len(e.prev) && sameMatch(m, e.prev[i]) {
			e.u8(tagSameMatch)
		} else {
			e.match(m)
		}
	}
	e.prev = r.Matches
	e.uv(e.limits.ref(r.Limit))
	e.bool(r.Counter)
	e.uv(e.logs.ref(r.Log))
	e.verdict(r.Verdict)
	e.str(r.Comment)
	e.source(r.Source)
	e.list(len(r.Merged), r.Merged == nil)
	for _, o := range r.Merged {
		e.uv(e.rules.ref(o))
	}
}

// setRef returns the ref of a set of the ruleset.
func (e *encoder) setRef(s *Set) uint64 {
	if s == nil {
		return 0
	}
	id, ok := e.sets.ids[s]
	if !ok {
		e.failf("an address match points at set %q, which is not one of the ruleset's sets", s.Name)
	}
	return id
}

// chainRef returns the ref of a chain of the ruleset.
func (e *encoder) chainRef(c *Chain) uint64 {
	if c == nil {
		return 0
	}
	id, ok := e.chains.ids[c]
	if !ok {
		e.failf("a verdict points at chain %q, which is not one of the ruleset's chains", c.Name)
	}
	return id
}

func (e *encoder) match(m Match) {
	switch m := m.(type) {
	case nil:
		e.u8(tagMatchNil)
	case FamilyMatch:
		e.u8(tagFamilyMatch)
		e.enum("family", uint8(m.Family), uint8(maxFamily))
	case IfaceMatch:
		e.u8(tagIfaceMatch)
		e.enum("direction", uint8(m.Dir), uint8(maxDirection))
		e.list(len(m.Names), m.Names == nil)
		for _, n := range m.Names {
			e.str(n)
		}
		e.bool(m.Negate)
	case AddrMatch:
		e.u8(tagAddrMatch)
		e.enum("direction", uint8(m.Field), uint8(maxDirection))
		e.enum("family", uint8(m.Family), uint8(maxFamily))
		e.uv(e.setRef(m.Set))
		e.ranges(m.Elems)
		e.bool(m.Negate)
	case ProtoMatch:
		e.u8(tagProtoMatch)
		e.list(len(m.Protos), m.Protos == nil)
		for _, p := range m.Protos {
			e.u8(uint8(p))
		}
	case PortMatch:
		e.u8(tagPortMatch)
		e.u8(uint8(m.Proto))
		e.enum("direction", uint8(m.Field), uint8(maxDirection))
		e.list(len(m.Ranges), m.Ranges == nil)
		for _, r := range m.Ranges {
			e.u16(r.Lo)
			e.u16(r.Hi)
		}
	case ICMPMatch:
		e.u8(tagICMPMatch)
		e.enum("family", uint8(m.Family), uint8(maxFamily))
		e.list(len(m.Types), m.Types == nil)
		for _, t := range m.Types {
			e.u8(uint8(t))
		}
	case CtStateMatch:
		e.u8(tagCtStateMatch)
		if m.States&^ctStateBits != 0 {
			e.failf("ct state %#x has bits hostwall does not name", uint8(m.States))
		}
		e.u8(uint8(m.States))
	case FibLocalMatch:
		e.u8(tagFibLocalMatch)
	case HopLimitMatch:
		e.u8(tagHopLimitMatch)
		e.u8(m.Value)
	case CtStatusMatch:
		e.u8(tagCtStatusMatch)
		e.uv(uint64(m.Status))
	case TCPFlagsMatch:
		e.u8(tagTCPFlagsMatch)
		e.u8(m.Mask)
		e.u8(m.Value)
	case ConcatMatch:
		e.u8(tagConcatMatch)
		e.enum("family", uint8(m.Family), uint8(maxFamily))
		e.enum("direction", uint8(m.AddrField), uint8(maxDirection))
		e.u8(uint8(m.Proto))
		e.enum("direction", uint8(m.PortField), uint8(maxDirection))
		e.addrPorts(m.Elems)
	default:
		e.failf("unknown match kind %T", m)
	}
}

// sameMatch reports whether a and b are equal, nil and empty slices apart,
// for the kinds of matches that rules repeat; it may say false for equal
// matches.
func sameMatch(a, b Match) bool {
	switch a := a.(type) {
	case FamilyMatch, CtStateMatch, FibLocalMatch, HopLimitMatch, CtStatusMatch, TCPFlagsMatch:
		return a == b // comparable kinds: false for another kind
	case IfaceMatch:
		b, ok := b.(IfaceMatch)
		return ok && a.Dir == b.Dir && a.Negate == b.Negate && sameSlice(a.Names, b.Names)
	case AddrMatch:
		b, ok := b.(AddrMatch)
		return ok && a.Field == b.Field && a.Family == b.Family && a.Set == b.Set && a.Negate == b.Negate && sameSlice(a.Elems, b.Elems)
	case ProtoMatch:
		b, ok := b.(ProtoMatch)
		return ok && sameSlice(a.Protos, b.Protos)
	case PortMatch:
		b, ok := b.(PortMatch)
		return ok && a.Proto == b.Proto && a.Field == b.Field && sameSlice(a.Ranges, b.Ranges)
	case ICMPMatch:
		b, ok := b.(ICMPMatch)
		return ok && a.Family == b.Family && sameSlice(a.Types, b.Types)
	}
	return false
}

// sameSlice reports whether a and b are equal and both nil or both not.
func sameSlice[T comparable](a, b []T) bool {
	return (a == nil) == (b == nil) && slices.Equal(a, b)
}

func (e *encoder) verdict(v Verdict) {
	switch v := v.(type) {
	case nil:
		e.u8(tagVerdictNil)
	case Accept:
		e.u8(tagAccept)
	case Drop:
		e.u8(tagDrop)
	case Reject:
		e.u8(tagReject)
		e.enum("reject type", uint8(v.With), uint8(maxRejectType))
	case Jump:
		e.u8(tagJump)
		e.uv(e.chainRef(v.Chain))
	case Return:
		e.u8(tagReturn)
	case VerdictMap:
		e.u8(tagVerdictMap)
		e.enum("direction", uint8(v.Dir), uint8(maxDirection))
		e.list(len(v.Elems), v.Elems == nil)
		for _, el := range v.Elems {
			e.str(el.Name)
			e.uv(e.chainRef(el.Chain))
		}
	case SNAT:
		e.u8(tagSNAT)
		e.enum("family", uint8(v.Family), uint8(maxFamily))
		e.addr(v.Addr)
	case DNAT:
		e.u8(tagDNAT)
		e.enum("family", uint8(v.Family), uint8(maxFamily))
		e.addr(v.Addr)
		e.u16(v.Port)
	case Masquerade:
		e.u8(tagMasquerade)
	case ClampMSS:
		e.u8(tagClampMSS)
		e.u16(v.Size)
		e.bool(v.PMTU)
	default:
		e.failf("unknown verdict kind %T", v)
	}
}

func (e *encoder) addr(a netip.Addr) {
	switch {
	case !a.IsValid():
		e.u8(addrInvalid)
	case a.Is4():
		b := a.As4()
		e.u8(addrIPv4)
		e.buf = append(e.buf, b[:]...)
	default:
		b := a.As16()
		z := a.Zone()
		if z == "" {
			e.u8(addrIPv6)
		} else {
			e.u8(addrZoned)
		}
		e.buf = append(e.buf, b[:]...)
		if z != "" {
			e.str(z)
		}
	}
}

// addrMode returns the list mode of addresses: all IPv4, all IPv6 without
// zone, or any.
func addrMode(a netip.Addr, mode uint8) uint8 {
	switch {
	case mode == modeAny:
	case a.Is4():
		if mode != modeIPv4 && mode != 0 {
			return modeAny
		}
		return modeIPv4
	case a.Is6() && a.Zone() == "":
		if mode != modeIPv6 && mode != 0 {
			return modeAny
		}
		return modeIPv6
	default:
		return modeAny
	}
	return mode
}

func (e *encoder) ranges(rs []netipx.IPRange) {
	e.list(len(rs), rs == nil)
	if len(rs) == 0 {
		return
	}
	var mode uint8
	for _, r := range rs {
		mode = addrMode(r.To(), addrMode(r.From(), mode))
	}
	e.u8(mode)
	switch mode {
	case modeIPv4:
		for _, r := range rs {
			f, t := r.From().As4(), r.To().As4()
			e.buf = append(append(e.buf, f[:]...), t[:]...)
		}
	case modeIPv6:
		for _, r := range rs {
			f, t := r.From().As16(), r.To().As16()
			e.buf = append(append(e.buf, f[:]...), t[:]...)
		}
	default:
		for _, r := range rs {
			e.addr(r.From())
			e.addr(r.To())
		}
	}
}

func (e *encoder) addrPorts(aps []AddrPort) {
	e.list(len(aps), aps == nil)
	if len(aps) == 0 {
		return
	}
	var mode uint8
	for _, ap := range aps {
		mode = addrMode(ap.Addr, mode)
	}
	e.u8(mode)
	for _, ap := range aps {
		switch mode {
		case modeIPv4:
			a := ap.Addr.As4()
			e.buf = append(e.buf, a[:]...)
		case modeIPv6:
			a := ap.Addr.As16()
			e.buf = append(e.buf, a[:]...)
		default:
			e.addr(ap.Addr)
		}
		e.u16(ap.Port)
	}
}
