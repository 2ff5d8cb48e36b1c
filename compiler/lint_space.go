package compiler

import (
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

// This file is the packet space the shadowing analyses work in. A packet
// of one family is a point with one coordinate per dimension (interfaces,
// addresses, protocol, ports, ICMP type, conntrack state, hop limit); the
// packets an IR rule matches are a box, the product of one set per
// dimension. Every set is a sorted list of disjoint closed intervals of
// uint32 "atoms": ports, protocols and ICMP types are their own numbers;
// addresses and interface names are first cut into atoms, the classes of
// values no match of the chain can tell apart, so a box is exact.

// Dimensions of a box.
const (
	dimIIF      = iota // input interface (atom)
	dimOIF             // output interface (atom)
	dimSrc             // source address (atom of the family)
	dimDst             // destination address (atom of the family)
	dimProto           // L4 protocol number
	dimSPort           // source port
	dimDPort           // destination port
	dimICMPType        // ICMP or ICMPv6 type
	dimState           // conntrack state: the bit number of the state
	dimHop             // IPv6 hop limit
	numDims
)

// span is a closed interval of atoms.
type span struct{ lo, hi uint32 }

// spans is a sorted list of disjoint, non-adjacent spans.
type spans []span

func (s spans) empty() bool { return len(s) == 0 }

// intersect returns s ∩ t.
func (s spans) intersect(t spans) spans {
	var out spans
	i, j := 0, 0
	for i < len(s) && j < len(t) {
		lo, hi := max(s[i].lo, t[j].lo), min(s[i].hi, t[j].hi)
		if lo <= hi {
			out = append(out, span{lo, hi})
		}
		if s[i].hi < t[j].hi {
			i++
		} else {
			j++
		}
	}
	return out
}

// overlaps reports whether s ∩ t is not empty, without building it.
func (s spans) overlaps(t spans) bool {
	i, j := 0, 0
	for i < len(s) && j < len(t) {
		if max(s[i].lo, t[j].lo) <= min(s[i].hi, t[j].hi) {
			return true
		}
		if s[i].hi < t[j].hi {
			i++
		} else {
			j++
		}
	}
	return false
}

// minus returns s \ t.
func (s spans) minus(t spans) spans {
	var out spans
	j := 0
	for _, a := range s {
		lo := a.lo
		done := false
		for j < len(t) && t[j].hi < lo {
			j++
		}
		for k := j; k < len(t) && t[k].lo <= a.hi; k++ {
			if t[k].lo > lo {
				out = append(out, span{lo, t[k].lo - 1})
			}
			if t[k].hi >= a.hi {
				done = true
				break
			}
			lo = t[k].hi + 1
		}
		if !done {
			out = append(out, span{lo, a.hi})
		}
	}
	return out
}

// equal reports whether s and t are the same set.
func (s spans) equal(t spans) bool { return slices.Equal(s, t) }

// normalize sorts and merges overlapping and adjacent spans.
func normalize(s spans) spans {
	slices.SortFunc(s, func(a, b span) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	var out spans
	for _, x := range s {
		if n := len(out); n > 0 && uint64(x.lo) <= uint64(out[n-1].hi)+1 {
			out[n-1].hi = max(out[n-1].hi, x.hi)
			continue
		}
		out = append(out, x)
	}
	return out
}

// box is the set of packets whose every coordinate is in its dimension's
// set.
type box [numDims]spans

// checkOrder is the order dimensions are tested for overlap: the ones
// that most often differ first.
var checkOrder = [numDims]int{dimDPort, dimProto, dimSrc, dimDst, dimIIF, dimOIF, dimState, dimICMPType, dimSPort, dimHop}

func (b *box) overlaps(c *box) bool {
	for _, d := range checkOrder {
		if !b[d].overlaps(c[d]) {
			return false
		}
	}
	return true
}

// intersect returns b ∩ c and whether it is not empty.
func (b *box) intersect(c *box) (box, bool) {
	var out box
	for d := range numDims {
		out[d] = b[d].intersect(c[d])
		if out[d].empty() {
			return out, false
		}
	}
	return out, true
}

// minus returns b \ c as disjoint boxes (b itself when they do not
// overlap).
func (b *box) minus(c *box) []box {
	if !b.overlaps(c) {
		return []box{*b}
	}
	var out []box
	cur := *b
	for d := range numDims {
		if rest := cur[d].minus(c[d]); !rest.empty() {
			piece := cur
			piece[d] = rest
			out = append(out, piece)
		}
		cur[d] = cur[d].intersect(c[d])
	}
	return out
}

// region is a union of disjoint boxes.
type region []box

// maxBoxes bounds the boxes of one region while subtracting: beyond it an
// analysis gives up on the rule (no finding) rather than take long.
const maxBoxes = 20000

// subtract removes c from every box of r; hit reports whether c overlapped
// r, ok is false when the result grew beyond maxBoxes.
func (r region) subtract(c *box) (out region, hit, ok bool) {
	first := -1
	for i := range r {
		if r[i].overlaps(c) {
			first = i
			break
		}
	}
	if first < 0 {
		return r, false, true // the common case: no allocation
	}
	out = append(make(region, 0, len(r)+numDims), r[:first]...)
	for i := first; i < len(r); i++ {
		if !r[i].overlaps(c) {
			out = append(out, r[i])
			continue
		}
		hit = true
		out = append(out, r[i].minus(c)...)
		if len(out) > maxBoxes {
			return nil, hit, false
		}
	}
	return out, hit, true
}

// universe is the space of one family on one hook: how addresses and
// interface names map to atoms, and the full set of each dimension.
type universe struct {
	fam    ir.Family
	bounds []netip.Addr // address atom i starts at bounds[i]
	ifaces []string     // a representative name of each interface atom
	full   box
}

// otherIface is the representative of interface names no pattern of the
// chain matches (no real name starts with a NUL byte).
const otherIface = "\x00other"

// maxIfaceLen is the longest interface name Linux allows (IFNAMSIZ - 1).
const maxIfaceLen = 15

// newUniverse cuts addresses and interface names into atoms at every
// boundary the given rules use.
func newUniverse(fam ir.Family, rules []*ir.Rule) *universe {
	u := &universe{fam: fam}
	start := netip.IPv4Unspecified()
	if fam == ir.FamilyIPv6 {
		start = netip.IPv6Unspecified()
	}
	bounds := []netip.Addr{start}
	exact := map[string]bool{"lo": true}
	var prefixes []string
	for _, r := range rules {
		for _, m := range r.Matches {
			switch m := m.(type) {
			case ir.AddrMatch:
				if m.Family != fam {
					continue
				}
				for _, e := range addrElems(m) {
					bounds = append(bounds, e.From())
					if n := e.To().Next(); n.IsValid() {
						bounds = append(bounds, n)
					}
				}
			case ir.IfaceMatch:
				for _, n := range m.Names {
					if p, ok := strings.CutSuffix(n, "*"); ok {
						prefixes = append(prefixes, p)
					} else {
						exact[n] = true
					}
				}
			}
		}
	}
	slices.SortFunc(bounds, netip.Addr.Compare)
	u.bounds = slices.Compact(bounds)
	// Interface atoms: every exact name, for every prefix p the names that
	// start with p but are no exact name (represented by p+"\x00", which
	// matches exactly the prefixes of p), and the names nothing matches.
	u.ifaces = []string{otherIface}
	for n := range exact {
		u.ifaces = append(u.ifaces, n)
	}
	for _, p := range prefixes {
		if exact[p] && len(p) >= maxIfaceLen {
			continue // the only name with this prefix is p itself
		}
		u.ifaces = append(u.ifaces, p+"\x00")
	}
	slices.Sort(u.ifaces)
	u.ifaces = slices.Compact(u.ifaces)

	all := func(n int) spans { return spans{{0, uint32(n - 1)}} }
	u.full = box{
		dimIIF:      all(len(u.ifaces)),
		dimOIF:      all(len(u.ifaces)),
		dimSrc:      all(len(u.bounds)),
		dimDst:      all(len(u.bounds)),
		dimProto:    all(256),
		dimSPort:    all(65536),
		dimDPort:    all(65536),
		dimICMPType: all(256),
		dimState:    stateSpans(ir.CtInvalid | ir.CtEstablished | ir.CtRelated | ir.CtNew | ir.CtUntracked),
		dimHop:      all(256),
	}
	return u
}

func addrElems(m ir.AddrMatch) []netipx.IPRange {
	if m.Set != nil {
		return m.Set.Elems
	}
	return m.Elems
}

// atom returns the address atom holding a.
func (u *universe) atom(a netip.Addr) uint32 {
	i := sort.Search(len(u.bounds), func(i int) bool { return u.bounds[i].Compare(a) > 0 })
	return uint32(i - 1)
}

// addrSpans returns the atoms of a list of ranges of the universe's family.
func (u *universe) addrSpans(elems []netipx.IPRange) spans {
	var out spans
	for _, e := range elems {
		if ir.FamilyOf(e.From()) != u.fam {
			continue
		}
		out = append(out, span{u.atom(e.From()), u.atom(e.To())})
	}
	return normalize(out)
}

// ifaceSpans returns the interface atoms a list of names (a trailing *
// is a prefix) matches.
func (u *universe) ifaceSpans(names []string) spans {
	var out spans
	for i, rep := range u.ifaces {
		for _, n := range names {
			if ifaceMatches(n, rep) {
				out = append(out, span{uint32(i), uint32(i)})
				break
			}
		}
	}
	return normalize(out)
}

func ifaceMatches(pattern, name string) bool {
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(name, p)
	}
	return pattern == name
}

func stateSpans(s ir.CtState) spans {
	var out spans
	for bit := range uint32(8) {
		if s&(1<<bit) != 0 {
			out = append(out, span{bit, bit})
		}
	}
	return normalize(out)
}

func portSpans(rs []ir.PortRange) spans {
	out := make(spans, len(rs))
	for i, r := range rs {
		out[i] = span{uint32(r.Lo), uint32(r.Hi)}
	}
	return normalize(out)
}

func point(v uint32) spans { return spans{{v, v}} }

// box returns the packets of the universe's family an IR rule's matches
// hold for; ok is false when there are none. A FibLocalMatch is left out
// (filter chains have none).
func (u *universe) box(r *ir.Rule) (box, bool) {
	b := u.full
	and := func(d int, s spans) { b[d] = b[d].intersect(s) }
	for _, m := range r.Matches {
		switch m := m.(type) {
		case ir.FamilyMatch:
			if m.Family != u.fam {
				return b, false
			}
		case ir.IfaceMatch:
			d := dimIIF
			if m.Dir == ir.Out {
				d = dimOIF
			}
			s := u.ifaceSpans(m.Names)
			if m.Negate {
				s = u.full[d].minus(s)
			}
			and(d, s)
		case ir.AddrMatch:
			if m.Family != u.fam {
				return b, false
			}
			d := dimSrc
			if m.Field == ir.Dst {
				d = dimDst
			}
			s := u.addrSpans(addrElems(m))
			if m.Negate {
				s = u.full[d].minus(s)
			}
			and(d, s)
		case ir.ProtoMatch:
			var s spans
			for _, p := range m.Protos {
				s = append(s, span{uint32(p), uint32(p)})
			}
			and(dimProto, normalize(s))
		case ir.PortMatch:
			and(dimProto, point(uint32(m.Proto)))
			d := dimSPort
			if m.Field == ir.Dst {
				d = dimDPort
			}
			and(d, portSpans(m.Ranges))
		case ir.ICMPMatch:
			if m.Family != u.fam {
				return b, false
			}
			proto := ir.ProtoICMP
			if m.Family == ir.FamilyIPv6 {
				proto = ir.ProtoICMPv6
			}
			and(dimProto, point(uint32(proto)))
			var s spans
			for _, t := range m.Types {
				s = append(s, span{uint32(t), uint32(t)})
			}
			and(dimICMPType, normalize(s))
		case ir.CtStateMatch:
			and(dimState, stateSpans(m.States))
		case ir.HopLimitMatch:
			if u.fam != ir.FamilyIPv6 {
				return b, false
			}
			and(dimHop, point(uint32(m.Value)))
		case ir.CtStatusMatch:
			// The forward chain's `ct status dnat accept`: no rule of a
			// policy can match on ct status, so every packet a policy
			// rule decides is one without it, and the analyses are exact
			// over those packets alone.
			return b, false
		}
	}
	for d := range numDims {
		if b[d].empty() {
			return b, false
		}
	}
	return b, true
}
