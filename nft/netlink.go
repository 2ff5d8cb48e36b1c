package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/internal/text"
	"go4.org/netipx"
)

// Batch is a ruleset lowered to google/nftables objects: everything one
// transaction needs, built before any message is sent. Lower makes it; the
// sender turns it into netlink messages.
type Batch struct {
	// Table is hostwall's inet table.
	Table *nftables.Table
	// Sets are the named sets, in declaration order.
	Sets []*BatchSet
	// Chains are the chains, in declaration order.
	Chains []*nftables.Chain
	// Rules are the rules of all chains, chain by chain, in order.
	Rules []*BatchRule
}

// BatchSet is a set with the elements to load into it, in kernel encoding
// (interval sets carry start and end+1 elements and nft's leading zero
// element).
type BatchSet struct {
	Set   *nftables.Set
	Elems []nftables.SetElement
}

// BatchRule is one rule and the anonymous sets it needs, which the batch
// creates right before the rule, as nft does.
type BatchRule struct {
	// Chain is the name of the rule's chain.
	Chain string
	// Index is the rule's 0-based position in its chain.
	Index int
	// AnonSets are the anonymous sets the rule's lookups reference.
	AnonSets []*BatchSet
	// Rule is the rule itself (Exprs and UserData).
	Rule *nftables.Rule
	// Source is where the rule came from in the policy.
	Source ir.Source
}

// Userdata TLV types in a rule's NFTA_RULE_USERDATA. Type 0 is libnftnl's
// NFTNL_UDATA_RULE_COMMENT, which `nft list` shows as `comment "..."`. nft
// ignores TLV types it does not know, so hostwall keeps the rule's policy
// source in its own type, which keeps `nft list` output unchanged.
const (
	udataComment = userdata.TypeComment
	udataSource  = 0xa8
)

// Limits of the kernel and nft on strings.
const (
	maxComment  = text.MaxComment // nft refuses longer rule comments
	maxUserdata = 256             // NFT_USERDATA_MAXLEN: the kernel refuses longer userdata
	maxLogPref  = 127             // NF_LOG_PREFIXLEN - 1
	maxNameLen  = 255             // NFT_NAME_MAXLEN - 1 (table, chain, set names)
)

// LowerError is a lowering failure: the IR asks for something netlink cannot
// express. What says where (e.g. `chain input rule 3`).
type LowerError struct {
	What string
	Err  error
}

// Error returns "lower chain input rule 3: ...".
func (e *LowerError) Error() string { return "lower " + e.What + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *LowerError) Unwrap() error { return e.Err }

// Lower turns a ruleset into netlink objects. It is pure: it sends nothing
// and touches no global state (set IDs are numbered per batch, so batches
// never depend on google/nftables' package-level set ID counter).
func Lower(rs *ir.Ruleset) (*Batch, error) {
	if rs == nil {
		return nil, &LowerError{What: "ruleset", Err: errors.New("nil ruleset")}
	}
	if err := checkObjName("table", rs.Table); err != nil {
		return nil, &LowerError{What: "table", Err: err}
	}
	l := &lowerer{
		b:     &Batch{Table: &nftables.Table{Name: rs.Table, Family: nftables.TableFamilyINet}},
		named: map[*ir.Set]*nftables.Set{},
	}
	seenSet := map[string]bool{}
	for _, s := range rs.Sets {
		if s == nil {
			return nil, &LowerError{What: "set", Err: errors.New("nil set")}
		}
		if err := checkObjName("set", s.Name); err != nil {
			return nil, &LowerError{What: "set " + s.Name, Err: err}
		}
		if seenSet[s.Name] {
			return nil, &LowerError{What: "set " + s.Name, Err: errors.New("declared twice")}
		}
		seenSet[s.Name] = true
		bs, err := l.namedSet(s)
		if err != nil {
			return nil, &LowerError{What: "set " + s.Name, Err: err}
		}
		l.b.Sets = append(l.b.Sets, bs)
		l.named[s] = bs.Set
	}
	chains := map[*ir.Chain]bool{}
	seenChain := map[string]bool{}
	for _, c := range rs.Chains {
		if c == nil {
			return nil, &LowerError{What: "chain", Err: errors.New("nil chain")}
		}
		if err := checkObjName("chain", c.Name); err != nil {
			return nil, &LowerError{What: "chain " + c.Name, Err: err}
		}
		if seenChain[c.Name] {
			return nil, &LowerError{What: "chain " + c.Name, Err: errors.New("declared twice")}
		}
		seenChain[c.Name] = true
		chains[c] = true
		nc, err := l.chain(c)
		if err != nil {
			return nil, &LowerError{What: "chain " + c.Name, Err: err}
		}
		l.b.Chains = append(l.b.Chains, nc)
	}
	l.chains = chains
	for ci, c := range rs.Chains {
		for i, r := range c.Rules {
			br, err := l.rule(l.b.Chains[ci], i, r)
			if err != nil {
				return nil, &LowerError{What: fmt.Sprintf("chain %s rule %d%s", c.Name, i+1, sourceSuffix(r)), Err: err}
			}
			l.b.Rules = append(l.b.Rules, br)
		}
	}
	return l.b, nil
}

func sourceSuffix(r *ir.Rule) string {
	if r == nil || (r.Source.File == "" && r.Source.What == "") {
		return ""
	}
	return " (" + formatSource(r.Source) + ")"
}

// formatSource renders a Source as "file:line:col what".
func formatSource(s ir.Source) string {
	out := s.File
	if s.Line > 0 {
		out += fmt.Sprintf(":%d:%d", s.Line, s.Col)
	}
	if s.What != "" {
		if out != "" {
			out += " "
		}
		out += s.What
	}
	return out
}

func checkObjName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("empty %s name", kind)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%s name is %d bytes, more than %d", kind, len(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return fmt.Errorf("%s name contains a NUL byte", kind)
		}
	}
	return nil
}

type lowerer struct {
	b      *Batch
	named  map[*ir.Set]*nftables.Set
	chains map[*ir.Chain]bool
	nextID uint32
}

func (l *lowerer) id() uint32 {
	l.nextID++
	return l.nextID
}

func (l *lowerer) namedSet(s *ir.Set) (*BatchSet, error) {
	key, err := addrKey(s.Family)
	if err != nil {
		return nil, err
	}
	interval := s.Interval()
	elems, err := addrElems(s.Family, s.Elems, interval)
	if err != nil {
		return nil, err
	}
	set := &nftables.Set{
		Table:    l.b.Table,
		Name:     s.Name,
		ID:       l.id(),
		KeyType:  key,
		Interval: interval,
		Comment:  s.Comment,
	}
	if len(s.Comment) > maxComment {
		return nil, fmt.Errorf("comment is %d bytes, more than %d", len(s.Comment), maxComment)
	}
	return &BatchSet{Set: set, Elems: elems}, nil
}

func addrKey(f ir.Family) (nftables.SetDatatype, error) {
	switch f {
	case ir.FamilyIPv4:
		return keyIPv4, nil
	case ir.FamilyIPv6:
		return keyIPv6, nil
	}
	return nftables.SetDatatype{}, fmt.Errorf("address family %d is neither IPv4 nor IPv6", f)
}

// addrElems encodes address ranges as set elements of family f.
func addrElems(f ir.Family, rs []netipx.IPRange, interval bool) ([]nftables.SetElement, error) {
	// One buffer holds every key: at 100,000 addresses, a slice per
	// address was most of the lowering's time.
	iv := make([]keyInterval, 0, len(rs))
	keys := make([]byte, 0, 2*16*len(rs))
	for _, r := range rs {
		if !r.IsValid() {
			return nil, fmt.Errorf("invalid range %v", r)
		}
		if ir.FamilyOf(r.From()) != f || ir.FamilyOf(r.To()) != f {
			return nil, fmt.Errorf("range %v is not of the set's family", r)
		}
		if !interval && r.From() != r.To() {
			return nil, fmt.Errorf("range %v in a set without intervals", r)
		}
		n := len(keys)
		keys = appendAddr(keys, r.From())
		m := len(keys)
		keys = appendAddr(keys, r.To())
		iv = append(iv, keyInterval{lo: keys[n:m:m], hi: keys[m:len(keys):len(keys)]})
	}
	return encodeElems(iv, interval)
}

// appendAddr appends a's bytes (4 for IPv4, 16 for IPv6) to b.
func appendAddr(b []byte, a netip.Addr) []byte {
	if a = a.Unmap(); a.Is4() {
		k := a.As4()
		return append(b, k[:]...)
	}
	k := a.As16()
	return append(b, k[:]...)
}

// keyInterval is an inclusive range of big-endian keys of one length.
type keyInterval struct{ lo, hi []byte }

// encodeElems turns sorted inclusive key ranges into set elements. For an
// interval set this is nft's encoding: a leading zero element flagged as an
// interval end (when the first range does not start at zero), then for
// each range its start and, flagged as an end, hi+1 (left out when hi is the
// largest key). Overlapping or adjacent ranges are merged first.
func encodeElems(iv []keyInterval, interval bool) ([]nftables.SetElement, error) {
	if !slices.IsSortedFunc(iv, func(a, b keyInterval) int { return compareBytes(a.lo, b.lo) }) {
		slices.SortFunc(iv, func(a, b keyInterval) int { return compareBytes(a.lo, b.lo) })
	}
	if !interval {
		out := make([]nftables.SetElement, 0, len(iv))
		for i, k := range iv {
			if i > 0 && compareBytes(k.lo, iv[i-1].lo) == 0 {
				continue
			}
			out = append(out, nftables.SetElement{Key: k.lo})
		}
		return out, nil
	}
	// Merge.
	merged := make([]keyInterval, 0, len(iv))
	var scratch []byte
	for _, k := range iv {
		if compareBytes(k.lo, k.hi) > 0 {
			return nil, fmt.Errorf("range start %x is above its end %x", k.lo, k.hi)
		}
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			scratch = append(scratch[:0], last.hi...)
			over := incBE(scratch)
			if over || compareBytes(k.lo, scratch) <= 0 {
				if compareBytes(k.hi, last.hi) > 0 {
					last.hi = k.hi
				}
				continue
			}
		}
		merged = append(merged, k)
	}
	// The elements' keys are copies (the callers' keys may be shared),
	// all in one buffer.
	size := 0
	for _, k := range merged {
		size += len(k.lo) + len(k.hi)
	}
	keys := make([]byte, 0, size)
	key := func(b []byte) []byte {
		n := len(keys)
		keys = append(keys, b...)
		return keys[n:len(keys):len(keys)]
	}
	out := make([]nftables.SetElement, 0, 2*len(merged)+1)
	if len(merged) > 0 && !allZero(merged[0].lo) {
		out = append(out, nftables.SetElement{Key: make([]byte, len(merged[0].lo)), IntervalEnd: true})
	}
	for _, k := range merged {
		out = append(out, nftables.SetElement{Key: key(k.lo)})
		end := key(k.hi)
		if !incBE(end) {
			out = append(out, nftables.SetElement{Key: end, IntervalEnd: true})
		}
	}
	return out, nil
}

func compareBytes(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func (l *lowerer) chain(c *ir.Chain) (*nftables.Chain, error) {
	nc := &nftables.Chain{Name: c.Name, Table: l.b.Table}
	if c.Base == nil {
		return nc, nil
	}
	hook, ok := hookOf(c.Base.Hook)
	if !ok {
		return nil, fmt.Errorf("unknown hook %d", c.Base.Hook)
	}
	switch c.Base.Type {
	case ir.TypeFilter:
		nc.Type = nftables.ChainTypeFilter
	case ir.TypeNAT:
		nc.Type = nftables.ChainTypeNAT
	default:
		return nil, fmt.Errorf("unknown chain type %d", c.Base.Type)
	}
	prio := nftables.ChainPriority(int32(c.Base.Priority))
	nc.Hooknum = hook
	nc.Priority = &prio
	var pol nftables.ChainPolicy
	switch c.Base.Policy.(type) {
	case ir.Accept, nil:
		pol = nftables.ChainPolicyAccept
	case ir.Drop:
		pol = nftables.ChainPolicyDrop
	default:
		return nil, fmt.Errorf("chain policy %T: only accept or drop", c.Base.Policy)
	}
	nc.Policy = &pol
	return nc, nil
}

// ruleCtx tracks what the expressions emitted so far already establish, so
// that the implicit dependencies nft adds in an inet table (`meta nfproto`
// before an L3 payload, `meta l4proto` before an L4 payload) are added once,
// exactly where nft adds them.
type ruleCtx struct {
	l     *lowerer
	br    *BatchRule
	exprs []expr.Any
	fam   ir.Family // the family a previous match established, or FamilyAny
	l4    int       // the L4 protocol a previous match established, or -1
}

func (c *ruleCtx) add(e ...expr.Any) { c.exprs = append(c.exprs, e...) }

func (c *ruleCtx) needFamily(f ir.Family) {
	if c.fam == f {
		return
	}
	c.add(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfprotoOf(f)}})
	c.fam = f
}

func (c *ruleCtx) needL4(p ir.Proto) {
	if c.l4 == int(p) {
		return
	}
	c.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{byte(p)}})
	c.l4 = int(p)
}

func cmpOp(negate bool) expr.CmpOp {
	if negate {
		return expr.CmpOpNeq
	}
	return expr.CmpOpEq
}

// anon creates an anonymous constant set for the rule and returns the
// lookup expression that reads register 1 against it.
func (c *ruleCtx) anon(key nftables.SetDatatype, interval bool, elems []nftables.SetElement, negate bool) *expr.Lookup {
	s := &nftables.Set{
		Table:     c.l.b.Table,
		Name:      "__set%d",
		ID:        c.l.id(),
		Anonymous: true,
		Constant:  true,
		Interval:  interval,
		KeyType:   key,
	}
	c.br.AnonSets = append(c.br.AnonSets, &BatchSet{Set: s, Elems: elems})
	return &expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID, Invert: negate}
}

func (l *lowerer) rule(ch *nftables.Chain, index int, r *ir.Rule) (*BatchRule, error) {
	if r == nil {
		return nil, errors.New("nil rule")
	}
	br := &BatchRule{Chain: ch.Name, Index: index, Source: r.Source}
	c := &ruleCtx{l: l, br: br, fam: ir.FamilyAny, l4: -1}
	for _, m := range r.Matches {
		if err := c.match(m); err != nil {
			return nil, err
		}
	}
	if r.Limit != nil {
		unit, ok := limitUnitOf[r.Limit.Unit]
		if !ok {
			return nil, fmt.Errorf("unknown limit unit %d", r.Limit.Unit)
		}
		if r.Limit.Rate == 0 {
			return nil, errors.New("limit rate 0")
		}
		burst := r.Limit.Burst
		if burst == 0 {
			burst = defaultBurst
		}
		c.add(&expr.Limit{Type: expr.LimitTypePkts, Rate: r.Limit.Rate, Unit: unit, Burst: burst})
	}
	if r.Counter {
		c.add(&expr.Counter{})
	}
	if r.Log != nil {
		if err := checkText("log prefix", r.Log.Prefix, maxLogPref); err != nil {
			return nil, err
		}
		lg := &expr.Log{}
		if r.Log.Prefix != "" {
			lg.Key = 1 << logPrefixAttr
			lg.Data = []byte(r.Log.Prefix)
		}
		c.add(lg)
	}
	if gw, err := c.lowerGateway(r); err != nil {
		return nil, err
	} else if !gw {
		if err := c.verdict(r.Verdict); err != nil {
			return nil, err
		}
	}
	ud, err := ruleUserdata(r)
	if err != nil {
		return nil, err
	}
	br.Rule = &nftables.Rule{Table: l.b.Table, Chain: ch, Exprs: c.exprs, UserData: ud}
	return br, nil
}

// ruleUserdata encodes the comment (as nft does) and hostwall's source TLV,
// shortened so the whole stays within the kernel's limit.
func ruleUserdata(r *ir.Rule) ([]byte, error) {
	if err := checkText("comment", r.Comment, maxComment); err != nil {
		return nil, err
	}
	var ud []byte
	if r.Comment != "" {
		ud = userdata.AppendString(ud, udataComment, r.Comment)
	}
	if src := formatSource(r.Source); src != "" {
		room := maxUserdata - len(ud) - 2 - 1 // TLV header and NUL
		if room > 0 {
			if len(src) > room {
				src = src[:room]
			}
			ud = userdata.AppendString(ud, udataSource, src)
		}
	}
	return ud, nil
}

func checkText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes, more than %d", what, len(s), max)
	}
	if i := text.BadTextByte(s); i >= 0 {
		return fmt.Errorf("%s contains %q: only printable ASCII without quotes or backslashes", what, s[i])
	}
	return nil
}

func (c *ruleCtx) match(m ir.Match) error {
	switch m := m.(type) {
	case ir.FamilyMatch:
		if m.Family != ir.FamilyIPv4 && m.Family != ir.FamilyIPv6 {
			return fmt.Errorf("family match of family %d", m.Family)
		}
		c.needFamily(m.Family)
	case ir.IfaceMatch:
		return c.iface(m)
	case ir.AddrMatch:
		return c.addr(m)
	case ir.ProtoMatch:
		if len(m.Protos) == 0 {
			return errors.New("protocol match without protocols")
		}
		c.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1})
		if len(m.Protos) == 1 {
			c.add(&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{byte(m.Protos[0])}})
			c.l4 = int(m.Protos[0])
			return nil
		}
		var iv []keyInterval
		for _, p := range m.Protos {
			iv = append(iv, keyInterval{lo: []byte{byte(p)}, hi: []byte{byte(p)}})
		}
		elems, _ := encodeElems(iv, false)
		c.add(c.anon(keyProto, false, elems, false))
	case ir.PortMatch:
		return c.port(m)
	case ir.ICMPMatch:
		return c.icmp(m)
	case ir.CtStateMatch:
		if m.States == 0 {
			return errors.New("ct state match without states")
		}
		c.add(&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: ctStateLen, Mask: ctStateBytes(m.States), Xor: make([]byte, ctStateLen)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, ctStateLen)})
	case ir.FibLocalMatch:
		c.add(&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: fibTypeBytes(rtnLocal)})
	case ir.CtStatusMatch:
		return c.lowerCtStatus(m)
	case ir.TCPFlagsMatch:
		return c.lowerTCPFlags(m)
	case ir.ConcatMatch:
		return c.lowerConcat(m)
	case ir.HopLimitMatch:
		c.needFamily(ir.FamilyIPv6)
		c.add(&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: ip6HopLimOff, Len: hopLimitLen},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{m.Value}})
	case nil:
		return errors.New("nil match")
	default:
		return fmt.Errorf("match %T has no netlink lowering", m)
	}
	return nil
}

func (c *ruleCtx) iface(m ir.IfaceMatch) error {
	if len(m.Names) == 0 {
		return errors.New("interface match without names")
	}
	var iv []keyInterval
	wild := false
	for _, n := range m.Names {
		base, isWild := cutWildcard(n)
		if base == "" && !isWild || len(base) >= ifNameLen {
			return fmt.Errorf("interface name %q: 1 to 15 bytes", n)
		}
		if isWild && base == "" {
			return fmt.Errorf("interface name %q: a wildcard needs a prefix", n)
		}
		if err := text.Iface(n, true); err != nil {
			return fmt.Errorf("interface name %q %v", n, err)
		}
		lo := ifnameBytes(base)
		hi := slices.Clone(lo)
		if isWild {
			wild = true
			for i := len(base); i < ifNameLen; i++ {
				hi[i] = 0xff
			}
		}
		iv = append(iv, keyInterval{lo: lo, hi: hi})
	}
	c.add(&expr.Meta{Key: ifnameKey(m.Dir), Register: reg1})
	if len(m.Names) == 1 {
		base, isWild := cutWildcard(m.Names[0])
		data := ifnameBytes(base)
		if isWild {
			data = []byte(base)
		}
		c.add(&expr.Cmp{Op: cmpOp(m.Negate), Register: reg1, Data: data})
		return nil
	}
	elems, err := encodeElems(iv, wild)
	if err != nil {
		return err
	}
	c.add(c.anon(keyIfname, wild, elems, m.Negate))
	return nil
}

func cutWildcard(n string) (string, bool) {
	if len(n) > 0 && n[len(n)-1] == '*' {
		return n[:len(n)-1], true
	}
	return n, false
}

func (c *ruleCtx) addr(m ir.AddrMatch) error {
	key, err := addrKey(m.Family)
	if err != nil {
		return err
	}
	off, n := addrOffset(m.Family, m.Field)
	c.needFamily(m.Family)
	load := func(length uint32) *expr.Payload {
		return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: length}
	}
	if m.Set != nil {
		if len(m.Elems) > 0 {
			return errors.New("address match with both a set and elements")
		}
		s, ok := c.l.named[m.Set]
		if !ok {
			return fmt.Errorf("address match refers to set %q, which is not in the ruleset", m.Set.Name)
		}
		if m.Set.Family != m.Family {
			return fmt.Errorf("address match of one family uses set %q of the other", m.Set.Name)
		}
		c.add(load(n), &expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID, Invert: m.Negate})
		return nil
	}
	if len(m.Elems) == 0 {
		return errors.New("address match without a set or elements")
	}
	if len(m.Elems) == 1 {
		r := m.Elems[0]
		if !r.IsValid() || ir.FamilyOf(r.From()) != m.Family || ir.FamilyOf(r.To()) != m.Family {
			return fmt.Errorf("invalid range %v for the match's family", r)
		}
		if r.From() == r.To() {
			c.add(load(n), &expr.Cmp{Op: cmpOp(m.Negate), Register: reg1, Data: addrBytes(r.From())})
			return nil
		}
		if p, ok := r.Prefix(); ok && p.Bits() > 0 {
			c.prefix(p, load, n, m.Negate)
			return nil
		}
		c.add(load(n))
		c.rangeCmp(addrBytes(r.From()), addrBytes(r.To()), m.Negate)
		return nil
	}
	interval := false
	for _, r := range m.Elems {
		if r.From() != r.To() {
			interval = true
		}
	}
	elems, err := addrElems(m.Family, m.Elems, interval)
	if err != nil {
		return err
	}
	c.add(load(n), c.anon(key, interval, elems, m.Negate))
	return nil
}

// prefix matches a CIDR as nft does: a byte-aligned prefix loads only its
// bytes; any other is masked with bitwise.
func (c *ruleCtx) prefix(p netip.Prefix, load func(uint32) *expr.Payload, n uint32, negate bool) {
	addr := addrBytes(p.Masked().Addr())
	bits := p.Bits()
	if bits%8 == 0 {
		c.add(load(uint32(bits/8)), &expr.Cmp{Op: cmpOp(negate), Register: reg1, Data: addr[:bits/8]})
		return
	}
	mask := make([]byte, n)
	for i := 0; i < bits; i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	c.add(load(n),
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: cmpOp(negate), Register: reg1, Data: addr})
}

// rangeCmp matches register 1 against lo-hi (big-endian): two cmps, or a
// range expression when negated, as nft 1.0.6 does.
func (c *ruleCtx) rangeCmp(lo, hi []byte, negate bool) {
	if negate {
		c.add(&expr.Range{Op: expr.CmpOpNeq, Register: reg1, FromData: lo, ToData: hi})
		return
	}
	c.add(&expr.Cmp{Op: expr.CmpOpGte, Register: reg1, Data: lo},
		&expr.Cmp{Op: expr.CmpOpLte, Register: reg1, Data: hi})
}

func (c *ruleCtx) port(m ir.PortMatch) error {
	if !m.Proto.HasPorts() {
		return fmt.Errorf("port match on protocol %v, which has no ports", m.Proto)
	}
	if len(m.Ranges) == 0 {
		return errors.New("port match without ports")
	}
	c.needL4(m.Proto)
	c.add(&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: portOffset(m.Field), Len: portLen})
	if len(m.Ranges) == 1 {
		r := m.Ranges[0]
		if r.Lo > r.Hi {
			return fmt.Errorf("port range %v is upside down", r)
		}
		if r.Lo == r.Hi {
			c.add(&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: portBytes(r.Lo)})
			return nil
		}
		c.rangeCmp(portBytes(r.Lo), portBytes(r.Hi), false)
		return nil
	}
	interval := false
	var iv []keyInterval
	for _, r := range m.Ranges {
		if r.Lo > r.Hi {
			return fmt.Errorf("port range %v is upside down", r)
		}
		if r.Lo != r.Hi {
			interval = true
		}
		iv = append(iv, keyInterval{lo: portBytes(r.Lo), hi: portBytes(r.Hi)})
	}
	if !interval {
		elems, _ := encodeElems(iv, false)
		c.add(c.anon(keyService, false, elems, false))
		return nil
	}
	elems, err := encodeElems(iv, true)
	if err != nil {
		return err
	}
	c.add(c.anon(keyService, true, elems, false))
	return nil
}

func (c *ruleCtx) icmp(m ir.ICMPMatch) error {
	var proto ir.Proto
	var key nftables.SetDatatype
	switch m.Family {
	case ir.FamilyIPv4:
		proto, key = ir.ProtoICMP, keyICMP
	case ir.FamilyIPv6:
		proto, key = ir.ProtoICMPv6, keyICMPv6
	default:
		return fmt.Errorf("icmp match of family %d", m.Family)
	}
	if len(m.Types) == 0 {
		return errors.New("icmp match without types")
	}
	c.needFamily(m.Family)
	c.needL4(proto)
	c.add(&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: icmpTypeOff, Len: icmpTypeLen})
	if len(m.Types) == 1 {
		c.add(&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{byte(m.Types[0])}})
		return nil
	}
	var iv []keyInterval
	for _, t := range m.Types {
		iv = append(iv, keyInterval{lo: []byte{byte(t)}, hi: []byte{byte(t)}})
	}
	elems, _ := encodeElems(iv, false)
	c.add(c.anon(key, false, elems, false))
	return nil
}

func (c *ruleCtx) verdict(v ir.Verdict) error {
	switch v := v.(type) {
	case nil:
	case ir.Accept:
		c.add(&expr.Verdict{Kind: expr.VerdictAccept})
	case ir.Drop:
		c.add(&expr.Verdict{Kind: expr.VerdictDrop})
	case ir.Return:
		c.add(&expr.Verdict{Kind: expr.VerdictReturn})
	case ir.VerdictMap:
		return c.lowerVmap(v)
	case ir.Jump:
		if v.Chain == nil || !c.l.chains[v.Chain] {
			return errors.New("jump to a chain that is not in the ruleset")
		}
		if v.Chain.Base != nil {
			return fmt.Errorf("jump to base chain %s", v.Chain.Name)
		}
		c.add(&expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain.Name})
	case ir.Reject:
		typ, code, fam, ok := rejectSpec(v.With)
		if !ok {
			return fmt.Errorf("unknown reject type %d", v.With)
		}
		if fam != ir.FamilyAny {
			if c.fam != ir.FamilyAny && c.fam != fam {
				return fmt.Errorf("reject type %d answers %v packets only, but the rule matches the other family", v.With, fam)
			}
			c.needFamily(fam)
		}
		if typ == rejectTCPRst {
			c.needL4(ir.ProtoTCP)
		}
		c.add(&expr.Reject{Type: typ, Code: code})
	default:
		return fmt.Errorf("verdict %T has no netlink lowering", v)
	}
	return nil
}
