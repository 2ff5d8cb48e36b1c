package ir

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"

	"go4.org/netipx"
)

// This file holds hostwall's own binary form of a Ruleset, which the
// compiled-policy cache of `hostwall apply` stores, so that a re-apply of
// an unchanged policy skips loading and compiling it. It is exact: every
// field of every type reachable from a Ruleset survives, nil and empty
// slices stay apart, and so does the pointer graph: a Jump or a verdict
// map element points at the decoded chain of Ruleset.Chains, an AddrMatch
// at the decoded set of Ruleset.Sets, and a Rule, Base, Limit or Log that
// several places share (a zone dispatch rule's Merged and its chains' Rules,
// the halves of an expanded policy rule and their Limit and Log) is one
// object again after decoding. What it does not keep is which slices and
// match values shared memory: small decoded slices are cut, capacity
// limited, from shared allocations, and a match equal to the one at the
// same position of the rule before is that match again (see tagSameMatch;
// the compiler shares them the same way). Nothing writes into the slices
// of a compiled ruleset.
//
// Layout, version 1. uv is an unsigned varint (encoding/binary, in its
// shortest form), sv a zigzag varint, u8 a byte, u16 two bytes big endian.
// A str is a uv: 0 is "", k the k-th string of the string table. A ref is a
// uv: 0 is nil, k the k-th object of its table. A list is a uv n+1 and n
// items; uv 0 is a nil slice.
//
//	header  "HWIR" u8(version)
//	counts  uv strings, sets, chains, rules, bases, limits, logs
//	strings uv byte length of each string, then all their bytes
//	body    str Table
//	        sets:   (str Name, u8 Family, ranges Elems, str Comment, source) each
//	        list of set refs (Ruleset.Sets)
//	        chains: (str Name, base ref, list of rule refs) each
//	        list of chain refs (Ruleset.Chains)
//	        rules:  (list of matches, limit ref, u8 Counter, log ref,
//	                 verdict, str Comment, source, list of rule refs Merged) each
//	        bases:  (u8 Type, u8 Hook, sv Priority, verdict Policy, source) each
//	        limits: (uv Rate, u8 Unit, uv Burst) each
//	        logs:   (str Prefix) each
//
// A source is str File, sv Line, sv Col, str What. A match or verdict is a
// u8 tag (the tag* constants; 0 is nil) and its fields in declaration
// order; a match may also be tagSameMatch alone. An address is u8 0
// (invalid), 4 and 4 bytes, 6 and 16 bytes, or 7, 16 bytes and str zone. A
// list of ranges (or of AddrPorts) has, when not empty, a u8 mode after
// its count: 1 all IPv4 (4+4 bytes per range, 4+2 per AddrPort), 2 all
// IPv6 without zone (16+16, 16+2), 3 any (address, address; address, u16).
//
// The sets and chains tables hold the distinct sets and chains of
// Ruleset.Sets and Ruleset.Chains, so a match or verdict that points
// anywhere else cannot be encoded. The other tables hold every object
// reached, in the order the encoder first meets it. The string table holds
// every distinct string once, except Source.What, which is new for almost
// every rule and is stored unless it repeats the one before.
//
// Decoding checks every count against the bytes left before allocating, so
// what it allocates stays proportional to the input (under 50 bytes per
// byte, and a few shared chunks of 512 elements), every reference, enum
// value and bool, and refuses trailing bytes. It does not insist on the encoder's
// exact choices (an unused string, a string stored twice, a match written
// out that could have been tagSameMatch), which do not change the decoded
// ruleset.

// codecMagic starts every encoding; codecVersion is its layout's version,
// to be raised by any change of the layout or of a tag's meaning.
const (
	codecMagic   = "HWIR"
	codecVersion = 1
)

// Match tags. Append only: the numbers are the format.
const (
	tagMatchNil      = 0
	tagFamilyMatch   = 1
	tagIfaceMatch    = 2
	tagAddrMatch     = 3
	tagProtoMatch    = 4
	tagPortMatch     = 5
	tagICMPMatch     = 6
	tagCtStateMatch  = 7
	tagFibLocalMatch = 8
	tagHopLimitMatch = 9
	tagCtStatusMatch = 10
	tagTCPFlagsMatch = 11
	tagConcatMatch   = 12
	// tagSameMatch stands for a match equal to the one at the same
	// position of the previous rule (in table order), which the decoder
	// then shares: the thousands of rules of a merged run differ in one
	// match and repeat the others.
	tagSameMatch = 255
)

// Verdict tags. Append only: the numbers are the format.
const (
	tagVerdictNil = 0
	tagAccept     = 1
	tagDrop       = 2
	tagReject     = 3
	tagJump       = 4
	tagReturn     = 5
	tagVerdictMap = 6
	tagSNAT       = 7
	tagDNAT       = 8
	tagMasquerade = 9
	tagClampMSS   = 10
)

// Address list modes (see the layout).
const (
	modeIPv4 = 1
	modeIPv6 = 2
	modeAny  = 3
)

// Address kinds (see the layout).
const (
	addrInvalid = 0
	addrIPv4    = 4
	addrIPv6    = 6
	addrZoned   = 7
)

// The largest values of the enums the IR defines, and the conntrack state
// bits it names; anything else is refused both ways.
const (
	maxFamily     = FamilyIPv6
	maxDirection  = Out
	maxHook       = HookPostrouting
	maxChainType  = TypeNAT
	maxTimeUnit   = PerDay
	maxRejectType = RejectTCPReset
	ctStateBits   = CtInvalid | CtEstablished | CtRelated | CtNew | CtUntracked
)

// The fewest bytes an object of each table takes in the body (all its
// references nil, its strings empty, its lists nil), which bounds what a
// count can make the decoder allocate.
const (
	minSetLen   = 1 + 1 + 1 + 1 + 4
	minChainLen = 1 + 1 + 1
	minRuleLen  = 1 + 1 + 1 + 1 + 1 + 1 + 4 + 1
	minBaseLen  = 1 + 1 + 1 + 1 + 4
	minLimitLen = 1 + 1 + 1
	minLogLen   = 1
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
	if n, isNil := d.list("sets", 1); !isNil {
		rs.Sets = make([]*Set, n)
		for i := range rs.Sets {
			if k := d.ref("set", len(d.sets)); k >= 0 {
				rs.Sets[i] = &d.sets[k]
				used[k] = true
			}
		}
	}
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
	if n, isNil := d.list("chains", 1); !isNil {
		rs.Chains = make([]*Chain, n)
		for i := range rs.Chains {
			if k := d.ref("chain", len(d.chains)); k >= 0 {
				rs.Chains[i] = &d.chains[k]
				used[k] = true
			}
		}
	}
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
